package partlog

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"time"

	"github.com/eddybroker/eddy/appliance/record"
	"github.com/eddybroker/eddy/appliance/storage/segment"
	"github.com/eddybroker/eddy/appliance/storage/vfs"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Log compaction rewrites sealed segments copy-on-write:
//
//  1. the kept batches of each group of old segments are written to a new
//     segment "<base>.log.cleaned" (with its indexes) and synced;
//  2. a manifest naming, for each group, the new base and the old bases it
//     replaces is written atomically ("cleaner.manifest");
//  3. the old segments' files are removed and the ".cleaned" files renamed
//     into place; the directory is synced;
//  4. the manifest is removed.
//
// A crash before the manifest is durable leaves ".cleaned" strays that load
// discards; after it, load finishes steps 3 and 4 (see finishCleaning).

// CleanedSuffix marks files of a segment being written by the cleaner.
const CleanedSuffix = ".cleaned"

const manifestFile = "cleaner.manifest"

// ErrCleaningRaced means the log changed under a compaction (retention or
// truncation removed segments it read); nothing was changed, try again.
var ErrCleaningRaced = errors.New("partlog: log changed during compaction")

// SegmentDecision is what a cleanup policy decides for a whole segment.
type SegmentDecision int

// The segment decisions of a cleanup policy (PLUGIN-ABI's cleanup kind).
const (
	SegmentDefault SegmentDecision = iota // key compaction, as for cleanup.policy=compact
	SegmentKeep                           // leave the segment as it is
	SegmentDelete                         // delete every record of the segment
	SegmentRewrite                        // ask the policy about each record
)

// RecordDecision is what a cleanup policy decides for one record of a
// segment it asked to rewrite.
type RecordDecision uint8

// The record decisions of a cleanup policy.
const (
	RecordDefault RecordDecision = iota // key compaction's answer
	RecordKeep
	RecordDrop
)

// SegmentMeta describes a sealed segment to a cleanup policy.
type SegmentMeta struct {
	Base, Last                 int64 // first and last offset of the segment
	MinTimestamp, MaxTimestamp int64
	Size                       int64
	Records                    int64
	HasTombstones              bool
	NowMs                      int64
	PartitionSize, LogStart    int64
	RetentionMs                int64 // -1: unlimited
	RetentionBytes             int64 // -1: unlimited
	FederatedUpto              int64 // the fence; -1 when there is none
}

// Policy is a cleanup policy beyond key compaction (a plugin). Whatever
// it answers, the log never touches the active segment, offsets at or
// above the high watermark or the fence, or a producer's last batch, and
// rewrites copy-on-write.
type Policy interface {
	// Segment decides for a whole segment.
	Segment(meta SegmentMeta) (SegmentDecision, error)
	// Records returns one decision per record of the batch, in order.
	// latest[i] says record i is the latest of its key the log knows of
	// (always true for a record without a key).
	Records(b record.Batch, latest []bool) ([]RecordDecision, error)
}

// CompactOptions tune one compaction pass.
type CompactOptions struct {
	Now time.Time
	// MaxMapBytes bounds the key map: exact keys while they fit, 128-bit
	// hashes beyond, and a shorter pass when even those do not fit.
	MaxMapBytes int64
	// Throttle, if set, is told of every batch's bytes read and may block.
	Throttle func(bytes int)
	// Fence: offsets at or above it are never touched (data not yet
	// shipped by federation, for example); 0 means no fence.
	Fence int64
	// Policy replaces key compaction with a cleanup policy; on any error
	// from it nothing is deleted in this pass.
	Policy Policy
	// DefaultIsKeep turns the policy's SegmentDefault into SegmentKeep:
	// the log is not due for key compaction, only the policy's own
	// decisions apply.
	DefaultIsKeep bool
	// DryRun computes the pass and reports it without changing the log.
	DryRun bool
}

// CompactResult reports a pass.
type CompactResult struct {
	SegmentsRead    int
	SegmentsWritten int
	BytesRead       int64
	BytesWritten    int64
	RecordsRemoved  int64
	TombstonesKept  int64
	CleanedUpTo     int64 // the cleaner offset after the pass
	// MapKeys and MapBytes size the key map of the pass; MapHashed says
	// it held 128-bit hashes rather than exact keys.
	MapKeys   int
	MapBytes  int64
	MapHashed bool
	Duration  time.Duration
}

// CleanerState is what the log knows of its compaction, for operators.
type CleanerState struct {
	CleanerOffset  int64
	DirtyBytes     int64
	TotalBytes     int64
	LastCleaned    time.Time
	LastError      string
	LastErrorAt    time.Time
	Runs, Failures uint64
	BytesCleaned   int64
	RecordsRemoved int64
	// NextHorizon is the earliest delete horizon of a kept tombstone (Unix
	// ms), 0 when none: a pass after it can drop tombstones.
	NextHorizon int64
	// Cleaning is set while a pass runs; RetryAt, after a failure, is
	// when the cleaner tries the log again.
	Cleaning bool
	RetryAt  time.Time
}

// CleanerState returns the log's compaction state.
func (l *Log) CleanerState() CleanerState {
	l.mu.RLock()
	defer l.mu.RUnlock()
	st := l.mu.cleaner
	st.CleanerOffset = l.mu.cleanerOffset
	st.DirtyBytes, st.TotalBytes = l.dirtyLocked()
	return st
}

// dirtyLocked returns the bytes of sealed segments the cleaner has not
// covered, and of all sealed segments.
func (l *Log) dirtyLocked() (dirty, total int64) {
	segs := l.mu.segs[:len(l.mu.segs)-1]
	for i, s := range segs {
		n := s.Size()
		total += n
		next := l.mu.segs[i+1].Base()
		if next > l.mu.cleanerOffset {
			dirty += n
		}
	}
	return dirty, total
}

// RecordCleanerError notes a failed pass (for CleanerState).
func (l *Log) RecordCleanerError(err error, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mu.cleaner.Failures++
	l.mu.cleaner.LastError, l.mu.cleaner.LastErrorAt = err.Error(), now
}

// SetCleanerRetry records when the cleaner will try the log again after a
// failure (for CleanerState); a successful pass clears it.
func (l *Log) SetCleanerRetry(at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mu.cleaner.RetryAt = at
}

// Compact runs one cleaning pass over the sealed segments: key compaction
// (keep each key's latest record; tombstones until their delete horizon)
// or the given policy. It never touches the active segment, offsets at or
// above the HW or the fence, or segments with records newer than
// min.compaction.lag.ms, and it keeps each producer's last batch.
func (l *Log) Compact(opts CompactOptions) (CompactResult, error) {
	start := time.Now()
	l.mu.Lock()
	l.mu.cleaner.Cleaning = true
	l.mu.Unlock()
	res, err := l.compact(opts)
	res.Duration = time.Since(start)
	l.mu.Lock()
	l.mu.cleaner.Runs++
	l.mu.cleaner.Cleaning = false
	if err == nil {
		l.mu.cleaner.RetryAt = time.Time{}
		l.mu.cleaner.LastCleaned = opts.Now
		l.mu.cleaner.BytesCleaned += res.BytesRead
		l.mu.cleaner.RecordsRemoved += res.RecordsRemoved
	}
	l.mu.Unlock()
	if err != nil && !errors.Is(err, ErrCleaningRaced) {
		l.RecordCleanerError(err, opts.Now)
	}
	return res, err
}

func (l *Log) compact(opts CompactOptions) (CompactResult, error) {
	var res CompactResult
	cfg := l.cfg.Load()
	l.mu.RLock()
	if l.mu.closed || l.mu.failed != nil {
		l.mu.RUnlock()
		return res, l.errf("compact", ErrClosed)
	}
	all := append([]*segment.Segment(nil), l.mu.segs...)
	hw, dirtyFrom := l.mu.hw, l.mu.cleanerOffset
	l.mu.RUnlock()
	limit := min(all[len(all)-1].Base(), hw)
	if opts.Fence > 0 {
		limit = min(limit, opts.Fence)
	}
	lagLimit := opts.Now.Add(-cfg.MinCompactionLag).UnixMilli()
	// The cleanable segments: sealed, wholly below the limit, and with no
	// record younger than min.compaction.lag.ms.
	var segs []*segment.Segment
	var nexts []int64
	for i := 0; i < len(all)-1; i++ {
		s, next := all[i], all[i+1].Base()
		if next > limit {
			break
		}
		ts, _, err := s.MaxTimestamp()
		if err != nil {
			return res, l.errf("compact", err)
		}
		if ts > lagLimit {
			break
		}
		if !s.Ref() {
			return res, ErrCleaningRaced
		}
		defer s.Unref()
		segs, nexts = append(segs, s), append(nexts, next)
	}
	if len(segs) == 0 {
		return res, nil
	}
	// A policy decides for every segment first; any error, and nothing
	// is touched.
	decs := make([]SegmentDecision, len(segs))
	needMap := opts.Policy == nil
	if opts.Policy != nil {
		allKeep := true
		for i, s := range segs {
			meta, err := l.segmentMeta(s, nexts[i], opts, cfg)
			if err != nil {
				return res, l.errf("compact", err)
			}
			d, err := opts.Policy.Segment(meta)
			if err != nil {
				return res, l.errf("compact", fmt.Errorf("cleanup policy, segment %d: %w", s.Base(), err))
			}
			if d < SegmentDefault || d > SegmentRewrite {
				return res, l.errf("compact", fmt.Errorf("cleanup policy, segment %d: unknown decision %d", s.Base(), d))
			}
			if d == SegmentDefault && opts.DefaultIsKeep {
				d = SegmentKeep
			}
			decs[i] = d
			allKeep = allKeep && d == SegmentKeep
			needMap = needMap || d == SegmentDefault || d == SegmentRewrite
		}
		if allKeep {
			return res, nil
		}
	}
	var km *keyMap
	if needMap {
		// Map every key of the dirty segments to its latest offset.
		km = newKeyMap(opts.MaxMapBytes)
		for i, s := range segs {
			if nexts[i] <= dirtyFrom {
				continue
			}
			if km.full() {
				segs, nexts, decs = segs[:i], nexts[:i], decs[:i]
				break
			}
			err := s.EachBatch(func(b record.Batch) error {
				if opts.Throttle != nil {
					opts.Throttle(len(b))
				}
				if b.IsControl() {
					return nil
				}
				return b.EachRecord(cfg.MaxUncompressed, func(r *record.Record) error {
					if r.Key != nil {
						km.put(r.Key, r.Offset)
					}
					return nil
				})
			})
			if err != nil {
				return res, l.errf("compact", err)
			}
		}
		res.MapKeys, res.MapBytes, res.MapHashed = km.len(), km.bytes(), km.hashed
		if len(segs) == 0 {
			return res, nil
		}
	}
	segIndex := make(map[*segment.Segment]int, len(segs))
	for i, s := range segs {
		segIndex[s] = i
	}
	// Rewrite groups of consecutive segments, each group no bigger than a
	// segment.
	type group struct {
		old     []*segment.Segment
		newSeg  *segment.Segment // nil when nothing of the group is kept
		changed bool
	}
	var groups []*group
	for i := 0; i < len(segs); {
		g := &group{old: []*segment.Segment{segs[i]}}
		size := segs[i].Size()
		j := i + 1
		for ; j < len(segs); j++ {
			if size+segs[j].Size() > cfg.SegmentBytes || nexts[j]-1-segs[i].Base() > int64(maxInt32) {
				break
			}
			size += segs[j].Size()
			g.old = append(g.old, segs[j])
		}
		groups = append(groups, g)
		i = j
	}
	cleanup := func() {
		for _, g := range groups {
			if g.newSeg != nil {
				g.newSeg.Close()
				for _, suf := range segment.Suffixes {
					l.fsys.Remove(filepath.Join(l.dir, segment.Name(g.newSeg.Base(), suf)+CleanedSuffix))
				}
			}
		}
	}
	nextHorizon := int64(0)
	var scratch cleanScratch
	// Kept batches gather in a write buffer and go to the new segment in
	// writes of about WriteBufferBytes.
	wbuf := cfg.WriteBufferBytes
	if wbuf <= 0 {
		wbuf = 1 << 20
	}
	var pend []byte
	var infos []segment.BatchInfo
	writePending := func(g *group) error {
		if len(pend) == 0 {
			return nil
		}
		if g.newSeg == nil {
			ns, err := segment.CreateTemp(l.fsys, l.dir, g.old[0].Base(), cfg.segOpts(), CleanedSuffix)
			if err != nil {
				return err
			}
			g.newSeg = ns
		}
		err := g.newSeg.Append(pend, infos)
		pend, infos = pend[:0], infos[:0]
		return err
	}
	for _, g := range groups {
		if len(g.old) > 1 {
			g.changed = true // merging is a change
		}
		for _, s := range g.old {
			res.SegmentsRead++
			dec := decs[segIndex[s]]
			if dec == SegmentKeep && len(g.old) == 1 {
				continue
			}
			err := s.EachBatch(func(b record.Batch) error {
				res.BytesRead += int64(len(b))
				if opts.Throttle != nil {
					opts.Throttle(len(b))
				}
				out, removed, horizon, err := l.cleanBatch(b, km, dec, opts, cfg, &scratch)
				if err != nil {
					return err
				}
				res.RecordsRemoved += removed
				if horizon > 0 && (nextHorizon == 0 || horizon < nextHorizon) {
					nextHorizon = horizon
				}
				if removed > 0 || out == nil || &out[0] != &b[0] {
					g.changed = true
				}
				if out == nil || opts.DryRun {
					return nil
				}
				ob := record.Batch(out)
				pend = append(pend, out...)
				infos = append(infos, segment.BatchInfo{Base: ob.BaseOffset(), Last: ob.LastOffset(), MaxTimestamp: ob.MaxTimestamp()})
				if int64(len(pend)) >= wbuf {
					return writePending(g)
				}
				return nil
			})
			if err != nil {
				cleanup()
				return res, l.errf("compact", err)
			}
		}
		if err := writePending(g); err != nil {
			cleanup()
			return res, l.errf("compact", err)
		}
	}
	// Seal the new segments; drop groups that did not change.
	var changed []*group
	for _, g := range groups {
		if !g.changed {
			if g.newSeg != nil {
				g.newSeg.Close()
				for _, suf := range segment.Suffixes {
					l.fsys.Remove(filepath.Join(l.dir, segment.Name(g.newSeg.Base(), suf)+CleanedSuffix))
				}
				g.newSeg = nil
			}
			continue
		}
		if g.newSeg != nil {
			if err := g.newSeg.Seal(); err != nil {
				cleanup()
				return res, l.errf("compact", err)
			}
			res.SegmentsWritten++
			res.BytesWritten += g.newSeg.Size()
		}
		changed = append(changed, g)
	}
	cleanedUpTo := nexts[len(nexts)-1]
	if km == nil || opts.DryRun {
		// Without a key map the dirty part was not compacted: the
		// cleaner offset stays.
		cleanedUpTo = dirtyFrom
	}
	if opts.DryRun {
		cleanup()
		res.CleanedUpTo = dirtyFrom
		return res, nil
	}
	if len(changed) > 0 {
		var ms []manifestGroup
		for _, g := range changed {
			mg := manifestGroup{New: -1}
			if g.newSeg != nil {
				mg.New = g.newSeg.Base()
				g.newSeg.Close()
			}
			for _, s := range g.old {
				mg.Old = append(mg.Old, s.Base())
			}
			ms = append(ms, mg)
		}
		if err := l.swapCleaned(ms, cleanedUpTo, nextHorizon); err != nil {
			cleanup()
			return res, err
		}
	} else if err := l.advanceCleaner(cleanedUpTo, nextHorizon); err != nil {
		return res, err
	}
	res.CleanedUpTo = cleanedUpTo
	return res, nil
}

const maxInt32 = 1<<31 - 1

// segmentMeta describes a segment to a cleanup policy: one read of it.
func (l *Log) segmentMeta(s *segment.Segment, next int64, opts CompactOptions, cfg *Config) (SegmentMeta, error) {
	l.mu.RLock()
	m := SegmentMeta{Base: s.Base(), Last: next - 1, Size: s.Size(), MinTimestamp: -1, MaxTimestamp: -1,
		NowMs: opts.Now.UnixMilli(), LogStart: l.mu.logStart, RetentionMs: -1, RetentionBytes: cfg.RetentionBytes, FederatedUpto: -1}
	if cfg.RetentionMs >= 0 {
		m.RetentionMs = cfg.RetentionMs.Milliseconds()
	}
	for _, x := range l.mu.segs {
		m.PartitionSize += x.Size()
	}
	l.mu.RUnlock()
	if opts.Fence > 0 {
		m.FederatedUpto = opts.Fence
	}
	err := s.EachBatch(func(b record.Batch) error {
		if opts.Throttle != nil {
			opts.Throttle(len(b))
		}
		if b.IsControl() {
			return nil
		}
		m.Records += int64(b.RecordCount())
		return b.EachRecord(cfg.MaxUncompressed, func(r *record.Record) error {
			if m.MinTimestamp < 0 || r.Timestamp < m.MinTimestamp {
				m.MinTimestamp = r.Timestamp
			}
			m.MaxTimestamp = max(m.MaxTimestamp, r.Timestamp)
			m.HasTombstones = m.HasTombstones || r.Value == nil
			return nil
		})
	})
	return m, err
}

// cleanScratch is the memory cleanBatch reuses from batch to batch.
type cleanScratch struct {
	recs      []kmsg.Record
	tss       []int64
	raw, body []byte
}

// cleanBatch decides what of a batch survives. It returns the bytes to
// write (b itself when unchanged, a rebuilt batch, or nil to drop it), the
// records removed, and the delete horizon of tombstones it keeps.
func (l *Log) cleanBatch(b record.Batch, km *keyMap, dec SegmentDecision, opts CompactOptions, cfg *Config, sc *cleanScratch) ([]byte, int64, int64, error) {
	if b.IsControl() || dec == SegmentKeep {
		return b, 0, 0, nil
	}
	lastOfProducer := false
	if pid := b.ProducerID(); pid >= 0 {
		if h := l.hooks.Load(); h != nil && h.LastBatch != nil {
			if last, ok := h.LastBatch(pid); ok && last == b.LastOffset() {
				lastOfProducer = true
			}
		}
	}
	now := opts.Now.UnixMilli()
	hasHorizon := b.Attributes()&record.AttrDeleteHorizon != 0
	horizon := int64(0)
	if hasHorizon {
		horizon = b.BaseTimestamp()
	}
	var decided []RecordDecision
	switch dec {
	case SegmentDelete:
		decided = make([]RecordDecision, b.RecordCount())
		for i := range decided {
			decided[i] = RecordDrop
		}
	case SegmentRewrite:
		latest := make([]bool, 0, b.RecordCount())
		err := b.EachRecord(cfg.MaxUncompressed, func(r *record.Record) error {
			last := true
			if r.Key != nil && km != nil {
				if off, ok := km.get(r.Key); ok && off > r.Offset {
					last = false
				}
			}
			latest = append(latest, last)
			return nil
		})
		if err != nil {
			return nil, 0, 0, err
		}
		d, err := opts.Policy.Records(b, latest)
		if err != nil {
			return nil, 0, 0, fmt.Errorf("cleanup policy, batch at %d: %w", b.BaseOffset(), err)
		}
		if len(d) != len(latest) {
			return nil, 0, 0, fmt.Errorf("cleanup policy, batch at %d: %d decisions for %d records", b.BaseOffset(), len(d), len(latest))
		}
		decided = d
	}
	recs, tss := sc.recs[:0], sc.tss[:0]
	defer func() { sc.recs, sc.tss = recs[:0], tss[:0] }()
	removed, tombstones, i := int64(0), 0, 0
	stamp := false
	err := b.EachRecord(cfg.MaxUncompressed, func(r *record.Record) error {
		k, byKey := true, true
		if decided != nil {
			switch decided[i] {
			case RecordKeep:
				byKey = false
			case RecordDrop:
				k, byKey = false, false
			case RecordDefault:
			default:
				return fmt.Errorf("cleanup policy, record %d: unknown decision %d", r.Offset, decided[i])
			}
		}
		if byKey && r.Key != nil && km != nil {
			if latest, ok := km.get(r.Key); ok && latest > r.Offset {
				k = false
			}
		}
		if k && byKey && km != nil && r.Value == nil {
			// A tombstone: kept until its delete horizon.
			switch {
			case hasHorizon && now >= horizon:
				k = false
			case !hasHorizon:
				stamp = true
			}
		}
		i++
		if !k {
			removed++
			return nil
		}
		if r.Value == nil {
			tombstones++
		}
		// Key, value and header bytes alias the batch (or its
		// decompressed copy), which outlives this function; only the
		// header slice is reused by EachRecord.
		c := r.Record
		if len(r.Headers) > 0 {
			c.Headers = append([]kmsg.Header(nil), r.Headers...)
		}
		recs = append(recs, c)
		tss = append(tss, r.Timestamp)
		return nil
	})
	if err != nil {
		return nil, 0, 0, err
	}
	if removed == 0 && !stamp {
		if tombstones > 0 {
			return b, 0, horizon, nil
		}
		return b, 0, 0, nil
	}
	if len(recs) == 0 && !lastOfProducer {
		return nil, removed, 0, nil
	}
	base := b.BaseTimestamp()
	if stamp {
		horizon = now + cfg.DeleteRetention.Milliseconds()
		base = horizon
	}
	maxTS := b.MaxTimestamp()
	if len(recs) > 0 {
		maxTS = tss[0]
	}
	raw, body := sc.raw[:0], sc.body[:0]
	defer func() { sc.raw, sc.body = raw[:0], body[:0] }()
	for j := range recs {
		recs[j].TimestampDelta64 = tss[j] - base
		recs[j].TimestampDelta = int32(recs[j].TimestampDelta64)
		maxTS = max(maxTS, tss[j])
		body = recs[j].AppendTo(body[:0])
		_, n := binary.Varint(body)
		recs[j].Length = int32(len(body) - n)
		raw = recs[j].AppendTo(raw)
	}
	attrs := b.Attributes() &^ record.AttrCodecMask
	if stamp {
		attrs |= record.AttrDeleteHorizon
	}
	out, err := record.BuildRaw(record.BatchOptions{
		BaseOffset: b.BaseOffset(), LeaderEpoch: b.LeaderEpoch(), Codec: b.Codec(), Attributes: attrs,
		BaseTimestamp: base, ProducerID: b.ProducerID(), ProducerEpoch: b.ProducerEpoch(), BaseSequence: b.BaseSequence(),
	}, raw, int32(len(recs)), b.LastOffsetDelta(), maxTS)
	if err != nil {
		return nil, 0, 0, err
	}
	if tombstones == 0 {
		horizon = 0
	}
	return out, removed, horizon, nil
}

type manifestGroup struct {
	New int64   `json:"new"` // -1: nothing of the group was kept
	Old []int64 `json:"old"`
}

type manifest struct {
	Groups []manifestGroup `json:"groups"`
}

// swapCleaned puts rewritten segments in place of the old ones, durably
// and atomically for readers, and advances the cleaner offset.
func (l *Log) swapCleaned(groups []manifestGroup, cleanedUpTo, nextHorizon int64) error {
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	l.mu.RLock()
	// The old segments must still be there, in place.
	pos := map[int64]int{}
	for i, s := range l.mu.segs {
		pos[s.Base()] = i
	}
	byBase := map[int64]*segment.Segment{}
	for _, g := range groups {
		for _, b := range g.Old {
			i, ok := pos[b]
			if !ok || i == len(l.mu.segs)-1 {
				l.mu.RUnlock()
				return ErrCleaningRaced
			}
			byBase[b] = l.mu.segs[i]
		}
	}
	l.mu.RUnlock()
	buf, err := json.Marshal(manifest{Groups: groups})
	if err != nil {
		return l.errf("compact", err)
	}
	if err := vfs.WriteFileAtomic(l.fsys, l.dir, manifestFile, buf); err != nil {
		return l.errf("compact", err)
	}
	// From here on, a crash is finished by load; an error poisons the log
	// so that a reopen does the same.
	fail := func(err error) error {
		l.fail(err)
		return l.errf("compact", err)
	}
	newSegs := map[int64]*segment.Segment{}
	for _, g := range groups {
		for _, b := range g.Old {
			if err := byBase[b].Delete(); err != nil {
				return fail(err)
			}
		}
		if g.New >= 0 {
			if err := promoteCleaned(l.fsys, l.dir, g.New); err != nil {
				return fail(err)
			}
		}
	}
	if err := l.fsys.SyncDir(l.dir); err != nil {
		return fail(err)
	}
	cfg := l.cfg.Load()
	for _, g := range groups {
		if g.New >= 0 {
			s, err := segment.Open(l.fsys, l.dir, g.New, cfg.segOpts())
			if err != nil {
				return fail(err)
			}
			newSegs[g.New] = s
		}
	}
	l.mu.Lock()
	var segs []*segment.Segment
	for _, s := range l.mu.segs {
		if _, old := byBase[s.Base()]; old {
			if ns, ok := newSegs[s.Base()]; ok {
				segs = append(segs, ns)
			}
			continue
		}
		segs = append(segs, s)
	}
	for base, ns := range newSegs {
		if _, replaced := byBase[base]; !replaced {
			segs = append(segs, ns) // cannot happen: a group's new base is its first old base
		}
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].Base() < segs[j].Base() })
	l.mu.segs = segs
	// Groups removed whole at the head take the log start with them, as
	// at the next open.
	l.mu.logStart = max(l.mu.logStart, segs[0].Base())
	l.mu.cleanerOffset = max(l.mu.cleanerOffset, cleanedUpTo)
	l.mu.cleaner.NextHorizon = nextHorizon
	cp := l.cpLocked()
	l.mu.Unlock()
	if err := writeCheckpoint(l.fsys, l.dir, cp); err != nil {
		return fail(err)
	}
	if err := l.fsys.Remove(filepath.Join(l.dir, manifestFile)); err != nil {
		return fail(err)
	}
	if err := l.fsys.SyncDir(l.dir); err != nil {
		return fail(err)
	}
	return nil
}

// advanceCleaner moves the cleaner offset when a pass changed nothing.
func (l *Log) advanceCleaner(cleanedUpTo, nextHorizon int64) error {
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	l.mu.Lock()
	if cleanedUpTo <= l.mu.cleanerOffset {
		l.mu.cleaner.NextHorizon = nextHorizon
		l.mu.Unlock()
		return nil
	}
	l.mu.cleanerOffset = cleanedUpTo
	l.mu.cleaner.NextHorizon = nextHorizon
	cp := l.cpLocked()
	l.mu.Unlock()
	if err := writeCheckpoint(l.fsys, l.dir, cp); err != nil {
		return l.errf("compact", err)
	}
	return nil
}

// promoteCleaned renames a cleaned segment's files into place.
func promoteCleaned(fsys vfs.FS, dir string, base int64) error {
	for _, suf := range segment.Suffixes {
		from := filepath.Join(dir, segment.Name(base, suf)+CleanedSuffix)
		if err := fsys.Rename(from, filepath.Join(dir, segment.Name(base, suf))); err != nil {
			if vfs.IsNotExist(err) && suf != segment.LogSuffix {
				continue // indexes are rebuilt when missing
			}
			return err
		}
	}
	return nil
}

// finishCleaning completes a swap interrupted by a crash: with the manifest
// present, every new segment still under its ".cleaned" name replaces the
// old one of the same base, the other old segments go, and the manifest is
// removed. Without it, ".cleaned" files are strays and load removes them.
func (l *Log) finishCleaning() error {
	path := filepath.Join(l.dir, manifestFile)
	buf, err := vfs.ReadFile(l.fsys, path)
	if vfs.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", manifestFile, err)
	}
	var m manifest
	if err := json.Unmarshal(buf, &m); err != nil {
		return fmt.Errorf("read %s: %w", manifestFile, err)
	}
	newBases := map[int64]bool{}
	for _, g := range m.Groups {
		if g.New >= 0 {
			newBases[g.New] = true
		}
	}
	for _, g := range m.Groups {
		if g.New >= 0 {
			if _, err := l.fsys.Stat(filepath.Join(l.dir, segment.Name(g.New, segment.LogSuffix)+CleanedSuffix)); err == nil {
				for _, suf := range segment.Suffixes {
					if err := l.fsys.Remove(filepath.Join(l.dir, segment.Name(g.New, suf))); err != nil && !vfs.IsNotExist(err) {
						return err
					}
				}
				if err := promoteCleaned(l.fsys, l.dir, g.New); err != nil {
					return err
				}
			}
		}
		for _, b := range g.Old {
			if newBases[b] {
				continue
			}
			for _, suf := range segment.Suffixes {
				if err := l.fsys.Remove(filepath.Join(l.dir, segment.Name(b, suf))); err != nil && !vfs.IsNotExist(err) {
					return err
				}
			}
		}
	}
	if err := l.fsys.SyncDir(l.dir); err != nil {
		return err
	}
	if err := l.fsys.Remove(path); err != nil {
		return err
	}
	return l.fsys.SyncDir(l.dir)
}

// OldestDirtyTimestamp returns the first timestamp of the oldest sealed
// segment the cleaner has not covered (Unix ms), or -1 when none; it is
// what max.compaction.lag.ms is measured from.
func (l *Log) OldestDirtyTimestamp() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	for i := 0; i < len(l.mu.segs)-1; i++ {
		if l.mu.segs[i+1].Base() > l.mu.cleanerOffset {
			return l.mu.segs[i].FirstTimestamp()
		}
	}
	return -1
}

// RollIfIdle rolls a non-empty active segment older than segment.ms by the
// clock (not by the next append's timestamp), so an idle partition's
// records become cleanable. It reports whether it rolled.
func (l *Log) RollIfIdle(now time.Time) (bool, error) {
	cfg := l.cfg.Load()
	if cfg.SegmentMs <= 0 {
		return false, nil
	}
	l.mu.RLock()
	act := l.active()
	l.mu.RUnlock()
	if act.Size() == 0 {
		return false, nil
	}
	first := act.FirstTimestamp()
	if first < 0 {
		first = l.activeCreated.Load()
	}
	if now.UnixMilli()-first <= cfg.SegmentMs.Milliseconds() {
		return false, nil
	}
	return true, l.Roll()
}
