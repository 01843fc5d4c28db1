package broker

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

// initProducerID gives an idempotent producer a new producer id at epoch 0
// (as Kafka does for producers without a transactional id, whatever id and
// epoch they send). Transactional producers are refused: transactions are
// not served.
func (b *Broker) initProducerID(r *kmsg.InitProducerIDRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	if r.TransactionalID != nil {
		resp.ErrorCode = codeInvalidRequest
		return resp
	}
	id, err := b.allocateProducerID()
	if err != nil {
		b.log.Error("allocating a producer id failed", "err", err)
		resp.ErrorCode = codeStorageError
		return resp
	}
	resp.ProducerID, resp.ProducerEpoch = id, 0
	return resp
}
