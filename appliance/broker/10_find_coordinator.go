package broker

import (
	"github.com/eddybroker/eddy/transport/kafkawire"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// findCoordinator points every group at this node (it coordinates all
// groups); transaction coordinators are not served.
func (b *Broker) findCoordinator(req *kafkawire.Request, r *kmsg.FindCoordinatorRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.FindCoordinatorResponse)
	host, port := b.advertised(req.Conn.Listener)
	answer := func(key string) (int32, string, int32, int16, *string) {
		switch {
		case r.CoordinatorType != 0:
			msg := "only group coordinators are served (no transactions)"
			return -1, "", -1, kerr.CoordinatorNotAvailable.Code, &msg
		case key == "":
			msg := "empty group id"
			return -1, "", -1, kerr.InvalidRequest.Code, &msg
		}
		return b.cfg.NodeID, host, port, 0, nil
	}
	if r.Version < 4 {
		resp.NodeID, resp.Host, resp.Port, resp.ErrorCode, resp.ErrorMessage = answer(r.CoordinatorKey)
		return resp
	}
	for _, key := range r.CoordinatorKeys {
		c := kmsg.NewFindCoordinatorResponseCoordinator()
		c.Key = key
		c.NodeID, c.Host, c.Port, c.ErrorCode, c.ErrorMessage = answer(key)
		resp.Coordinators = append(resp.Coordinators, c)
	}
	return resp
}
