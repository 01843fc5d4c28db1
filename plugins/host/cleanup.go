package host

import (
	"context"
	"fmt"
	"time"

	"github.com/eddybroker/eddy/appliance/record"
	"github.com/eddybroker/eddy/plugins/abi"
	"github.com/eddybroker/eddy/plugins/host/sandbox"
)

// Cleanup runs a log-cleanup policy plugin for one topic. The invariants
// of docs/PLUGIN-ABI.md §6.3 (never the active segment, never unshipped
// offsets, copy-on-write rewrites, dry runs) are the log's to enforce: a
// policy only advises.
type Cleanup struct {
	h       *Host
	pool    *sandbox.Pool
	o       CallOptions
	timeout time.Duration
}

// Cleanup binds the cleanup policy of module d with config.
func (h *Host) Cleanup(ctx context.Context, d Digest, config []byte, o CallOptions) (*Cleanup, error) {
	pool, timeout, err := h.bind(ctx, d, abi.KindCleanup, config, o, abi.StageCleanup)
	if err != nil {
		return nil, err
	}
	return &Cleanup{h: h, pool: pool, o: o, timeout: timeout}, nil
}

// Status returns the state of this use's pool.
func (c *Cleanup) Status() PoolStatus { return c.pool.Status() }

// Segment asks the policy about a closed segment. NowMs is filled from
// the host's clock when zero.
func (c *Cleanup) Segment(ctx context.Context, meta abi.SegmentMeta) (abi.SegmentDecision, error) {
	if meta.NowMs == 0 {
		meta.NowMs = c.h.clock().UnixMilli()
	}
	return c.pool.CleanupSegment(ctx, c.timeout, meta)
}

// Records asks the policy about each record of batch (a stored batch of
// partition, offsets assigned). latest, when not nil, tells which records
// are the latest for their key (from the log's key map); tombstones are
// marked by the host.
func (c *Cleanup) Records(ctx context.Context, batch []byte, partition int32, latest []bool) ([]abi.KeepDecision, error) {
	var out, buf []abi.KeepDecision
	hdr := func(b record.Batch) abi.Header {
		out = make([]abi.KeepDecision, 0, max(b.RecordCount(), 0))
		return c.h.header(abi.StageCleanup, c.o.Topic, partition, 0, b, true)
	}
	var errLatest error
	attrs := func(i int) uint32 {
		if latest == nil {
			return 0
		}
		if i >= len(latest) {
			errLatest = fmt.Errorf("cleanup records: %d latest-for-key flags for more records", len(latest))
			return 0
		}
		if latest[i] {
			return abi.AttrLatestForKey
		}
		return 0
	}
	n, err := c.h.stream(batch, hdr, attrs, func(enc *abi.BlockEncoder, _ int) error {
		if errLatest != nil {
			return errLatest
		}
		var err error
		buf, err = c.pool.CleanupRecords(ctx, c.timeout, enc, buf)
		out = append(out, buf...)
		return err
	})
	if err != nil {
		return nil, err
	}
	if latest != nil && len(latest) != n {
		return nil, fmt.Errorf("cleanup records: %d latest-for-key flags for %d records", len(latest), n)
	}
	return out, nil
}
