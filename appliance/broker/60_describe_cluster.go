package broker

import (
	"github.com/eddybroker/eddy/transport/kafkawire"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// describeCluster describes this node: in a single-node cluster it is both
// the only broker and the controller.
func (b *Broker) describeCluster(req *kafkawire.Request, r *kmsg.DescribeClusterRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.DescribeClusterResponse)
	resp.ClusterID = b.meta.ClusterID()
	resp.ControllerID = b.cfg.NodeID
	resp.EndpointType = r.EndpointType
	resp.ClusterAuthorizedOperations = unknownAuthorizedOps
	host, port := b.advertised(req.Conn.Listener)
	resp.Brokers = []kmsg.DescribeClusterResponseBroker{{NodeID: b.cfg.NodeID, Host: host, Port: port}}
	return resp
}
