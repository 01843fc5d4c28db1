// Package storage is a node's data directory: the partition logs under it,
// the node-wide group committer, the clean-shutdown marker, the directory
// lock and the retention schedule.
//
// Layout of a data directory:
//
//	<dir>/.lock                  held while a process uses the directory
//	<dir>/.clean-shutdown        present only between a clean close and the next open
//	<dir>/<topic>-<partition>/   one partition log (see package partlog)
//
// Open recovers every partition log (a full scan from the recovery point
// unless the marker says the last shutdown was clean), then removes the
// marker durably before anything new is appended.
package storage

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/eddybroker/eddy/appliance/storage/flush"
	"github.com/eddybroker/eddy/appliance/storage/partlog"
	"github.com/eddybroker/eddy/appliance/storage/vfs"
)

// CleanShutdownFile is the marker a clean close leaves.
const CleanShutdownFile = ".clean-shutdown"

const lockFile = ".lock"

// TopicPartition names a partition.
type TopicPartition struct {
	Topic     string
	Partition int32
}

func (tp TopicPartition) String() string { return tp.Topic + "-" + strconv.Itoa(int(tp.Partition)) }

// ParseDirName parses a partition directory name "<topic>-<partition>".
func ParseDirName(name string) (TopicPartition, bool) {
	i := strings.LastIndexByte(name, '-')
	if i <= 0 {
		return TopicPartition{}, false
	}
	digits := name[i+1:]
	if digits == "" || strings.Trim(digits, "0123456789") != "" {
		return TopicPartition{}, false
	}
	p, err := strconv.ParseInt(digits, 10, 32)
	if err != nil {
		return TopicPartition{}, false
	}
	return TopicPartition{Topic: name[:i], Partition: int32(p)}, true
}

// Config configures a Store.
type Config struct {
	Dir   string
	Flush flush.Config
	// LogConfig returns the settings of a partition found on disk or
	// being created.
	LogConfig func(TopicPartition) partlog.Config
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Progress, if set, is told about recovery as partitions open.
	Progress func(done, total int, tp TopicPartition, rep partlog.RecoveryReport)
}

// Store is a node's data directory.
type Store struct {
	fsys      vfs.FS
	cfg       Config
	committer *flush.Committer
	lock      io.Closer
	wasClean  bool

	mu struct {
		sync.RWMutex
		logs   map[TopicPartition]*partlog.Log
		closed bool
	}
}

// Open locks the directory, opens and recovers every partition log in it,
// and clears the clean-shutdown marker.
func Open(fsys vfs.FS, cfg Config) (*Store, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.LogConfig == nil {
		cfg.LogConfig = func(tp TopicPartition) partlog.Config { return partlog.DefaultConfig(tp.String()) }
	}
	if err := vfs.MkdirAllDurable(fsys, cfg.Dir); err != nil {
		return nil, fmt.Errorf("open data dir %s: %w", cfg.Dir, err)
	}
	s := &Store{fsys: fsys, cfg: cfg}
	if lk, ok := fsys.(vfs.Locker); ok {
		l, err := lk.Lock(filepath.Join(cfg.Dir, lockFile))
		if err != nil {
			return nil, fmt.Errorf("open data dir %s: %w", cfg.Dir, err)
		}
		s.lock = l
	}
	s.mu.logs = map[TopicPartition]*partlog.Log{}
	_, err := fsys.Stat(filepath.Join(cfg.Dir, CleanShutdownFile))
	s.wasClean = err == nil
	s.committer = flush.New(cfg.Flush)
	if err := s.openAll(); err != nil {
		s.abort()
		return nil, err
	}
	if s.wasClean {
		if err := fsys.Remove(filepath.Join(cfg.Dir, CleanShutdownFile)); err != nil {
			s.abort()
			return nil, fmt.Errorf("open data dir %s: clear clean-shutdown marker: %w", cfg.Dir, err)
		}
		if err := fsys.SyncDir(cfg.Dir); err != nil {
			s.abort()
			return nil, fmt.Errorf("open data dir %s: %w", cfg.Dir, err)
		}
	}
	return s, nil
}

func (s *Store) openAll() error {
	names, err := s.fsys.List(s.cfg.Dir)
	if err != nil {
		return fmt.Errorf("open data dir %s: %w", s.cfg.Dir, err)
	}
	var tps []TopicPartition
	for _, n := range names {
		tp, ok := ParseDirName(n)
		if !ok {
			continue
		}
		if st, err := s.fsys.Stat(filepath.Join(s.cfg.Dir, n)); err != nil || !st.IsDir() {
			continue
		}
		tps = append(tps, tp)
	}
	for i, tp := range tps {
		l, rep, err := partlog.Open(s.fsys, filepath.Join(s.cfg.Dir, tp.String()), s.cfg.LogConfig(tp), partlog.Options{
			Committer: s.committer, Now: s.cfg.Now, Clean: s.wasClean,
		})
		if err != nil {
			return err
		}
		s.mu.logs[tp] = l
		if s.cfg.Progress != nil {
			s.cfg.Progress(i+1, len(tps), tp, rep)
		}
	}
	return nil
}

func (s *Store) abort() {
	for _, l := range s.mu.logs {
		l.Close()
	}
	s.committer.Close()
	if s.lock != nil {
		s.lock.Close()
	}
}

// WasClean reports whether the previous shutdown was clean.
func (s *Store) WasClean() bool { return s.wasClean }

// Committer returns the node's group committer.
func (s *Store) Committer() *flush.Committer { return s.committer }

// Log returns an open partition log.
func (s *Store) Log(tp TopicPartition) (*partlog.Log, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	l, ok := s.mu.logs[tp]
	return l, ok
}

// Logs returns every open partition log, sorted by name.
func (s *Store) Logs() map[TopicPartition]*partlog.Log {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[TopicPartition]*partlog.Log, len(s.mu.logs))
	for tp, l := range s.mu.logs {
		out[tp] = l
	}
	return out
}

// CreateLog opens the log of tp, creating it if needed.
func (s *Store) CreateLog(tp TopicPartition, cfg partlog.Config) (*partlog.Log, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return nil, fmt.Errorf("create partition %s: %w", tp, partlog.ErrClosed)
	}
	if l, ok := s.mu.logs[tp]; ok {
		return l, nil
	}
	cfg.Name = tp.String()
	l, _, err := partlog.Open(s.fsys, filepath.Join(s.cfg.Dir, tp.String()), cfg, partlog.Options{Committer: s.committer, Now: s.cfg.Now})
	if err != nil {
		return nil, err
	}
	s.mu.logs[tp] = l
	return l, nil
}

// DeleteLog closes and removes the log of tp.
func (s *Store) DeleteLog(tp TopicPartition) error {
	s.mu.Lock()
	l, ok := s.mu.logs[tp]
	delete(s.mu.logs, tp)
	s.mu.Unlock()
	if !ok {
		return nil
	}
	return l.Delete()
}

// EnforceRetention runs one retention pass over every partition. A failure
// on one partition does not stop the others; all failures are returned.
func (s *Store) EnforceRetention() error {
	now := s.cfg.Now().UnixMilli()
	logs := s.Logs()
	var errs []error
	for _, tp := range sortedKeys(logs) {
		if _, err := logs[tp].EnforceRetention(now); err != nil && !errors.Is(err, partlog.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// RunRetention runs retention passes every interval until stop is closed,
// reporting failures to onErr.
func (s *Store) RunRetention(interval time.Duration, stop <-chan struct{}, onErr func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if err := s.EnforceRetention(); err != nil && onErr != nil {
				onErr(err)
			}
		}
	}
}

// Abandon drops the store as a crash would (kill -9): pending flushes are
// not done, nothing is synced or written, no clean-shutdown marker is left,
// and the directory lock is released. Only tests use it.
func (s *Store) Abandon() {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return
	}
	s.mu.closed = true
	logs := s.mu.logs
	s.mu.Unlock()
	s.committer.Abandon()
	for _, l := range logs {
		l.Abandon()
	}
	if s.lock != nil {
		s.lock.Close()
	}
}

// Close closes every log, stops the committer and, when every log closed
// cleanly, leaves the clean-shutdown marker so the next open skips recovery.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return nil
	}
	s.mu.closed = true
	logs := s.mu.logs
	s.mu.Unlock()
	// Flush and release every waiting append first, then close the logs.
	s.committer.Close()
	var errs []error
	for _, tp := range sortedKeys(logs) {
		if err := logs[tp].Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		err := vfs.WriteFileAtomic(s.fsys, s.cfg.Dir, CleanShutdownFile, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("write clean-shutdown marker: %w", err))
		}
	}
	if s.lock != nil {
		s.lock.Close()
	}
	return errors.Join(errs...)
}

// sortedKeys orders partitions by topic, then partition.
func sortedKeys(logs map[TopicPartition]*partlog.Log) []TopicPartition {
	tps := make([]TopicPartition, 0, len(logs))
	for tp := range logs {
		tps = append(tps, tp)
	}
	sort.Slice(tps, func(i, j int) bool {
		if tps[i].Topic != tps[j].Topic {
			return tps[i].Topic < tps[j].Topic
		}
		return tps[i].Partition < tps[j].Partition
	})
	return tps
}

// FS returns the filesystem the store uses.
func (s *Store) FS() vfs.FS { return s.fsys }

// Dir returns the data directory.
func (s *Store) Dir() string { return s.cfg.Dir }
