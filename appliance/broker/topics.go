package broker

import (
	"errors"
	"fmt"
	"strings"

	"github.com/eddybroker/eddy/appliance/metadata"
	"github.com/eddybroker/eddy/appliance/storage"
)

// maxPartitions bounds one topic's partition count.
const maxPartitions = 100_000

// validTopicName applies Kafka's rules: 1-249 characters of [a-zA-Z0-9._-],
// and not "." or "..".
func validTopicName(name string) error {
	switch {
	case name == "":
		return errors.New("topic name is empty")
	case name == "." || name == "..":
		return fmt.Errorf("topic name %q is not allowed", name)
	case len(name) > 249:
		return fmt.Errorf("topic name is %d characters, longer than 249", len(name))
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("topic name %q has %q; only letters, digits, '.', '_' and '-' are allowed", name, c)
		}
	}
	return nil
}

// createTopic creates a topic durably (metadata first, then its logs). With
// validateOnly it checks everything and changes nothing.
func (b *Broker) createTopic(name string, partitions int32, configs map[string]string, validateOnly bool) (int16, error) {
	if err := validTopicName(name); err != nil {
		return codeInvalidTopic, err
	}
	if partitions <= 0 || partitions > maxPartitions {
		return codeInvalidPartitions, fmt.Errorf("partition count %d is outside 1..%d", partitions, maxPartitions)
	}
	tc, err := buildTopicConfig(name, b.cfg.LogBase, b.cfg.TopicDefaults, configs)
	if err != nil {
		return codeInvalidConfig, err
	}
	b.adminMu.Lock()
	defer b.adminMu.Unlock()
	if _, ok := b.topic(name); ok {
		return codeTopicExists, fmt.Errorf("topic %s already exists", name)
	}
	bp, err := b.bindPlugins(name, tc)
	if err != nil {
		return codeInvalidConfig, err
	}
	if validateOnly {
		return codeNone, nil
	}
	mt := metadata.Topic{Name: name, ID: metadata.NewTopicID(), Partitions: partitions, ReplicationFactor: 1, Configs: configs}
	if err := b.meta.CreateTopic(mt); err != nil {
		if errors.Is(err, metadata.ErrTopicExists) {
			return codeTopicExists, err
		}
		return codeStorageError, err
	}
	t, err := b.openTopic(mt)
	if err != nil {
		return codeStorageError, err
	}
	t.plugins = bp
	b.putTopic(t)
	b.log.Info("created topic", "topic", name, "partitions", partitions)
	return codeNone, nil
}

func (b *Broker) putTopic(t *topic) {
	b.mu.Lock()
	b.mu.topics[t.meta.Name] = t
	b.mu.byID[t.meta.ID] = t
	b.mu.Unlock()
	b.groups.topicsChanged()
}

// deleteTopic removes a topic: it stops serving it, deletes its metadata,
// then its logs.
func (b *Broker) deleteTopic(t *topic) error {
	b.adminMu.Lock()
	defer b.adminMu.Unlock()
	b.mu.Lock()
	if cur, ok := b.mu.topics[t.meta.Name]; !ok || cur != t {
		b.mu.Unlock()
		return fmt.Errorf("topic %s: %w", t.meta.Name, metadata.ErrNoSuchTopic)
	}
	delete(b.mu.topics, t.meta.Name)
	delete(b.mu.byID, t.meta.ID)
	b.mu.Unlock()
	if err := b.meta.DeleteTopic(t.meta.Name); err != nil {
		b.putTopic(t)
		return err
	}
	var errs []error
	for i := range t.parts {
		if err := b.store.DeleteLog(storage.TopicPartition{Topic: t.meta.Name, Partition: int32(i)}); err != nil {
			errs = append(errs, err)
		}
	}
	b.wake() // long polls on the topic end now
	b.groups.topicsChanged()
	b.log.Info("deleted topic", "topic", t.meta.Name)
	return errors.Join(errs...)
}

// addPartitions grows a topic to count partitions.
func (b *Broker) addPartitions(name string, count int32, validateOnly bool) (int16, error) {
	b.adminMu.Lock()
	defer b.adminMu.Unlock()
	t, ok := b.topic(name)
	if !ok {
		return codeUnknownTopicOrPart, fmt.Errorf("topic %s does not exist", name)
	}
	have := int32(len(t.parts))
	switch {
	case count < have:
		return codeInvalidPartitions, fmt.Errorf("topic %s has %d partitions; the count can only grow", name, have)
	case count == have:
		return codeInvalidPartitions, fmt.Errorf("topic %s already has %d partitions", name, have)
	case count > maxPartitions:
		return codeInvalidPartitions, fmt.Errorf("partition count %d is above %d", count, maxPartitions)
	}
	if validateOnly {
		return codeNone, nil
	}
	if err := b.meta.SetPartitions(name, count); err != nil {
		return codeStorageError, err
	}
	nt := &topic{meta: t.meta, cfg: t.cfg, parts: append([]*partition(nil), t.parts...), plugins: t.plugins}
	nt.meta.Partitions = count
	for i := have; i < count; i++ {
		p, err := b.openPartition(storage.TopicPartition{Topic: name, Partition: i}, t.cfg)
		if err != nil {
			return codeStorageError, err
		}
		nt.parts = append(nt.parts, p)
	}
	b.putTopic(nt)
	return codeNone, nil
}

// setTopicConfigs replaces a topic's config overrides and applies them to
// its logs.
func (b *Broker) setTopicConfigs(name string, overrides map[string]string, validateOnly bool) (int16, error) {
	b.adminMu.Lock()
	defer b.adminMu.Unlock()
	t, ok := b.topic(name)
	if !ok {
		return codeUnknownTopicOrPart, fmt.Errorf("topic %s does not exist", name)
	}
	tc, err := buildTopicConfig(name, b.cfg.LogBase, b.cfg.TopicDefaults, overrides)
	if err != nil {
		return codeInvalidConfig, err
	}
	if t.meta.Internal && tc.plugins.any() {
		return codeInvalidConfig, fmt.Errorf("topic %s is internal: no plugin binds to it", name)
	}
	// Bind the new plugins before anything changes: a module that is not
	// registered or refuses its configuration fails the request. The
	// produce path picks the new topic up at its next request, so
	// replacing a transform neither loses nor repeats a batch.
	bp, err := b.bindPlugins(name, tc)
	if err != nil {
		return codeInvalidConfig, err
	}
	if validateOnly {
		return codeNone, nil
	}
	if err := b.meta.SetTopicConfigs(name, overrides); err != nil {
		return codeStorageError, err
	}
	nt := &topic{meta: t.meta.Clone(), cfg: tc, parts: t.parts, plugins: bp}
	nt.meta.Configs = overrides
	for _, p := range nt.parts {
		cfg := tc.log
		cfg.Name = p.tp.String()
		if err := p.log.SetConfig(cfg); err != nil {
			return codeInvalidConfig, err
		}
	}
	b.putTopic(nt)
	return codeNone, nil
}

// configsOf converts a request's config list to a map, refusing duplicates
// and null values.
func configsOf(names []string, values []*string) (map[string]string, error) {
	m := map[string]string{}
	for i, n := range names {
		if values[i] == nil {
			return nil, fmt.Errorf("config %s has a null value", n)
		}
		if _, dup := m[n]; dup {
			return nil, fmt.Errorf("config %s is given twice", n)
		}
		m[n] = strings.TrimSpace(*values[i])
	}
	return m, nil
}
