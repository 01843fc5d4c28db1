// Package metadata holds the cluster's metadata: the cluster id, topics
// (name, id, partition count, replication factor, config overrides) and the
// producer-id allocator. Store is the interface the broker uses; Local is
// the single-node implementation, a versioned JSON file written atomically
// under the data directory. The Raft controller implements Store for
// clusters.
package metadata

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"sync"

	"github.com/eddybroker/eddy/appliance/storage/vfs"
)

// Errors of a Store.
var (
	ErrTopicExists  = errors.New("metadata: topic already exists")
	ErrNoSuchTopic  = errors.New("metadata: no such topic")
	ErrBadPartition = errors.New("metadata: partition count can only grow")
)

// Topic is a topic's metadata.
type Topic struct {
	Name              string            `json:"name"`
	ID                [16]byte          `json:"id"`
	Partitions        int32             `json:"partitions"`
	ReplicationFactor int16             `json:"replication_factor"`
	Configs           map[string]string `json:"configs,omitempty"` // overrides of broker defaults
	Internal          bool              `json:"internal,omitempty"`
}

// Clone returns a deep copy.
func (t Topic) Clone() Topic {
	c := t
	c.Configs = make(map[string]string, len(t.Configs))
	for k, v := range t.Configs {
		c.Configs[k] = v
	}
	return c
}

// Store is the cluster metadata as the broker sees it. Every change is
// durable when the call returns.
type Store interface {
	ClusterID() string
	Topics() []Topic
	Topic(name string) (Topic, bool)
	CreateTopic(t Topic) error
	DeleteTopic(name string) error
	SetTopicConfigs(name string, configs map[string]string) error
	SetPartitions(name string, n int32) error
	// AllocateProducerIDs reserves n consecutive producer ids, never
	// handed out before, even across restarts.
	AllocateProducerIDs(n int) (first int64, err error)
}

// NewTopicID returns a random topic id (a version 4 UUID, never zero).
func NewTopicID() [16]byte {
	var id [16]byte
	rand.Read(id[:])
	id[6] = id[6]&0x0f | 0x40
	id[8] = id[8]&0x3f | 0x80
	return id
}

// NewClusterID returns a random cluster id in Kafka's form: 16 random bytes
// in URL-safe base64 without padding.
func NewClusterID() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

const (
	fileName    = "metadata.json"
	fileVersion = 1
)

type fileFormat struct {
	Version        int     `json:"version"`
	ClusterID      string  `json:"cluster_id"`
	NextProducerID int64   `json:"next_producer_id"`
	Topics         []Topic `json:"topics"`
}

// Local is the single-node Store: one JSON file, rewritten atomically on
// every change.
type Local struct {
	fsys vfs.FS
	dir  string

	mu    sync.Mutex
	state fileFormat
	index map[string]int
}

var _ Store = (*Local)(nil)

// OpenLocal opens (creating if needed) the metadata file in dir. A new file
// gets clusterID, or a generated one when it is empty.
func OpenLocal(fsys vfs.FS, dir, clusterID string) (*Local, error) {
	if err := vfs.MkdirAllDurable(fsys, dir); err != nil {
		return nil, fmt.Errorf("open metadata in %s: %w", dir, err)
	}
	l := &Local{fsys: fsys, dir: dir}
	buf, err := vfs.ReadFile(fsys, filepath.Join(dir, fileName))
	switch {
	case vfs.IsNotExist(err):
		if clusterID == "" {
			clusterID = NewClusterID()
		}
		l.state = fileFormat{Version: fileVersion, ClusterID: clusterID, NextProducerID: 1000}
		if err := l.saveLocked(); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", filepath.Join(dir, fileName), err)
	default:
		if err := json.Unmarshal(buf, &l.state); err != nil {
			return nil, fmt.Errorf("read %s: %w", filepath.Join(dir, fileName), err)
		}
		if l.state.Version != fileVersion {
			return nil, fmt.Errorf("read %s: version %d is not supported (this build reads version %d)", filepath.Join(dir, fileName), l.state.Version, fileVersion)
		}
		if clusterID != "" && clusterID != l.state.ClusterID {
			return nil, fmt.Errorf("data directory belongs to cluster %q, configured cluster id is %q", l.state.ClusterID, clusterID)
		}
	}
	l.reindex()
	return l, nil
}

func (l *Local) reindex() {
	sort.Slice(l.state.Topics, func(i, j int) bool { return l.state.Topics[i].Name < l.state.Topics[j].Name })
	l.index = make(map[string]int, len(l.state.Topics))
	for i, t := range l.state.Topics {
		l.index[t.Name] = i
	}
}

func (l *Local) saveLocked() error {
	buf, err := json.MarshalIndent(l.state, "", "  ")
	if err != nil {
		return fmt.Errorf("encode metadata: %w", err)
	}
	if err := vfs.WriteFileAtomic(l.fsys, l.dir, fileName, buf); err != nil {
		return fmt.Errorf("write metadata: %w", err)
	}
	return nil
}

// mutate applies f to a copy of the state and persists it; on failure the
// in-memory state is unchanged.
func (l *Local) mutate(f func(s *fileFormat) error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	old := l.state
	next := old
	next.Topics = make([]Topic, len(old.Topics))
	for i, t := range old.Topics {
		next.Topics[i] = t.Clone()
	}
	if err := f(&next); err != nil {
		return err
	}
	l.state = next
	if err := l.saveLocked(); err != nil {
		l.state = old
		return err
	}
	l.reindex()
	return nil
}

// ClusterID implements Store.
func (l *Local) ClusterID() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state.ClusterID
}

// Topics implements Store.
func (l *Local) Topics() []Topic {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Topic, len(l.state.Topics))
	for i, t := range l.state.Topics {
		out[i] = t.Clone()
	}
	return out
}

// Topic implements Store.
func (l *Local) Topic(name string) (Topic, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	i, ok := l.index[name]
	if !ok {
		return Topic{}, false
	}
	return l.state.Topics[i].Clone(), true
}

// CreateTopic implements Store.
func (l *Local) CreateTopic(t Topic) error {
	return l.mutate(func(s *fileFormat) error {
		if _, ok := l.index[t.Name]; ok {
			return fmt.Errorf("create topic %s: %w", t.Name, ErrTopicExists)
		}
		s.Topics = append(s.Topics, t.Clone())
		return nil
	})
}

func (l *Local) find(s *fileFormat, name string) (*Topic, error) {
	i, ok := l.index[name]
	if !ok {
		return nil, fmt.Errorf("topic %s: %w", name, ErrNoSuchTopic)
	}
	return &s.Topics[i], nil
}

// DeleteTopic implements Store.
func (l *Local) DeleteTopic(name string) error {
	return l.mutate(func(s *fileFormat) error {
		i, ok := l.index[name]
		if !ok {
			return fmt.Errorf("delete topic %s: %w", name, ErrNoSuchTopic)
		}
		s.Topics = append(s.Topics[:i], s.Topics[i+1:]...)
		return nil
	})
}

// SetTopicConfigs implements Store: configs replaces the overrides.
func (l *Local) SetTopicConfigs(name string, configs map[string]string) error {
	return l.mutate(func(s *fileFormat) error {
		t, err := l.find(s, name)
		if err != nil {
			return err
		}
		t.Configs = map[string]string{}
		for k, v := range configs {
			t.Configs[k] = v
		}
		return nil
	})
}

// SetPartitions implements Store.
func (l *Local) SetPartitions(name string, n int32) error {
	return l.mutate(func(s *fileFormat) error {
		t, err := l.find(s, name)
		if err != nil {
			return err
		}
		if n < t.Partitions {
			return fmt.Errorf("topic %s: %w (has %d, asked %d)", name, ErrBadPartition, t.Partitions, n)
		}
		t.Partitions = n
		return nil
	})
}

// AllocateProducerIDs implements Store.
func (l *Local) AllocateProducerIDs(n int) (int64, error) {
	var first int64
	err := l.mutate(func(s *fileFormat) error {
		first = s.NextProducerID
		s.NextProducerID += int64(n)
		return nil
	})
	return first, err
}
