package broker

import (
	"errors"

	"github.com/eddybroker/eddy/appliance/record"
	"github.com/eddybroker/eddy/appliance/storage/partlog"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Kafka error codes used by the handlers.
var (
	codeNone                 = int16(0)
	codeOffsetOutOfRange     = kerr.OffsetOutOfRange.Code
	codeCorruptMessage       = kerr.CorruptMessage.Code
	codeUnknownTopicOrPart   = kerr.UnknownTopicOrPartition.Code
	codeMessageTooLarge      = kerr.MessageTooLarge.Code
	codeInvalidTopic         = kerr.InvalidTopicException.Code
	codeInvalidRequiredAcks  = kerr.InvalidRequiredAcks.Code
	codeInvalidRecord        = kerr.InvalidRecord.Code
	codeOutOfOrderSequence   = kerr.OutOfOrderSequenceNumber.Code
	codeInvalidProducerEpoch = kerr.InvalidProducerEpoch.Code
	codeStorageError         = kerr.KafkaStorageError.Code
	codeTopicExists          = kerr.TopicAlreadyExists.Code
	codeInvalidPartitions    = kerr.InvalidPartitions.Code
	codeInvalidReplication   = kerr.InvalidReplicationFactor.Code
	codeInvalidConfig        = kerr.InvalidConfig.Code
	codeInvalidRequest       = kerr.InvalidRequest.Code
	codeUnknownTopicID       = kerr.UnknownTopicID.Code
	codeUnknownLeaderEpoch   = kerr.UnknownLeaderEpoch.Code
	codeInvalidTxnState      = kerr.InvalidTxnState.Code
)

// storageErrorCode maps an append or read error to a Kafka error code.
func storageErrorCode(err error) int16 {
	switch {
	case err == nil:
		return codeNone
	case errors.Is(err, record.ErrCorrupt):
		return codeCorruptMessage
	case errors.Is(err, record.ErrInvalid):
		return codeInvalidRecord
	case errors.Is(err, partlog.ErrOffsetOutOfRange):
		return codeOffsetOutOfRange
	}
	return codeStorageError
}

// errMessage returns a pointer to err's text, or nil.
func errMessage(err error) *string {
	if err == nil {
		return nil
	}
	s := err.Error()
	return &s
}
