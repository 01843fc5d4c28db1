package main

import (
	"context"
	"errors"
	"fmt"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// benchOpts are the flags of the bench commands; each command registers
// the ones it uses.
type benchOpts struct {
	cf clientFlags

	topic       string
	partitions  int32
	records     int64
	duration    time.Duration
	recordSize  string
	payload     string
	keys        int
	producers   int
	consumers   int
	acks        string
	linger      time.Duration
	batchMax    int
	compression string
	partitioner string
	maxBuffered int
	rate        float64
	assign      string
	group       string
	timeout     time.Duration
	jsonOut     bool
	quiet       bool

	// Derived by validate.
	mode           string
	sizes          sizeDist
	codec          kgo.CompressionCodec
	partitionsSet  bool
	recordsSet     bool
	durationSet    bool
	transport      string
	brokers        string
	groupGenerated bool
}

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure produce, consume and end-to-end throughput and latency",
		Long: `Measure a broker: throughput (records/s, MB/s) and latency percentiles from
an HDR histogram (p50, p90, p99, p99.9, max), with error counts.

  eddy bench produce   producers write records; latency is send to acknowledgement
  eddy bench consume   consumers read what the topic holds (or --records N)
  eddy bench e2e       producers and consumers together; latency is from the
                       intended send time to consumption

Over --transport tcp only the Kafka protocol is used, so any Kafka-compatible
broker can be measured. With --rate the producers are open-loop: sends are
scheduled at fixed intervals and latency is measured from the scheduled time,
so a stalled broker shows in the percentiles (no coordinated omission).
Without --rate they send as fast as the client accepts. --json prints one
document with every figure, for scripts.`,
		Example: `  eddy bench produce --records 1000000 --record-size 1KiB --producers 4
  eddy bench produce --transport tcp --brokers kafka-1:9092 --rate 50000 --duration 30s --json
  eddy bench consume --consumers 4 --assign group
  eddy bench e2e --rate 10000 --record-size 100-1000 --keys 1000 --partitions 8 --consumers 2`,
	}
	cmd.AddCommand(newBenchModeCmd("produce"), newBenchModeCmd("consume"), newBenchModeCmd("e2e"))
	return cmd
}

func newBenchModeCmd(mode string) *cobra.Command {
	o := &benchOpts{mode: mode}
	short := map[string]string{
		"produce": "Produce records as fast as possible or at --rate; report throughput and ack latency",
		"consume": "Consume a topic's records (or --records N); report throughput",
		"e2e":     "Produce and consume at once; report produce and end-to-end latency",
	}[mode]
	cmd := &cobra.Command{
		Use:   mode,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(cmd); err != nil {
				return err
			}
			ctx, cancel := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer cancel()
			res, runErr := runBench(ctx, cmd, o)
			if res != nil {
				if err := writeResult(cmd.OutOrStdout(), res, o.jsonOut); err != nil {
					return fmt.Errorf("write result: %w", err)
				}
			}
			return runErr
		},
	}
	o.cf.add(cmd)
	// The admin API is Eddy's own; the benchmarks use the Kafka protocol only.
	cmd.PersistentFlags().MarkHidden("admin")
	fl := cmd.Flags()
	fl.StringVar(&o.topic, "topic", "eddy-bench", "topic to use")
	if mode == "consume" {
		fl.Int64Var(&o.records, "records", 0, "records to read (default: all the topic holds when the run starts)")
		fl.DurationVar(&o.duration, "duration", 0, "read for this long instead, following new records")
	} else {
		fl.Int64Var(&o.records, "records", 0, "records to send over all producers")
		fl.DurationVar(&o.duration, "duration", 0, "send for this long instead of a record count (default 10s)")
	}
	fl.BoolVar(&o.jsonOut, "json", false, "print one JSON document with every figure")
	fl.BoolVarP(&o.quiet, "quiet", "q", false, "no progress line")
	timeoutUsage := "give up on a record not acknowledged, or on consumers making no progress, after this long"
	if mode == "consume" {
		timeoutUsage = "give up when the consumers read nothing for this long"
	}
	fl.DurationVar(&o.timeout, "timeout", 30*time.Second, timeoutUsage)
	if mode != "produce" {
		fl.IntVar(&o.consumers, "consumers", 1, "consumer clients")
		fl.StringVar(&o.assign, "assign", "direct", "how consumers get partitions: direct (split evenly, no group) or group (a consumer group)")
		fl.StringVar(&o.group, "group", "", "consumer group name with --assign group (default a new one per run)")
	}
	if mode != "consume" {
		fl.Int32Var(&o.partitions, "partitions", 1, "partitions of the topic when it is created; an existing topic must have as many when given")
		fl.StringVar(&o.recordSize, "record-size", "1024", "value size: bytes (1024, 1KiB), a uniform range (100-1000) or normal:MEAN,STDDEV")
		fl.StringVar(&o.payload, "payload", "random", "value bytes: random (incompressible) or text (compressible words)")
		fl.IntVar(&o.keys, "keys", 0, "number of distinct keys, drawn uniformly; 0 sends no keys")
		fl.IntVar(&o.producers, "producers", 1, "producer clients")
		fl.StringVar(&o.acks, "acks", "all", "all (idempotent), 1 or 0")
		fl.DurationVar(&o.linger, "linger", 0, "how long a partition's batch waits for more records (0: batches form while a request is in flight)")
		fl.IntVar(&o.batchMax, "batch-max-bytes", 1000012, "largest record batch per partition")
		fl.StringVar(&o.compression, "compression", "none", "none, gzip, snappy, lz4 or zstd")
		fl.StringVar(&o.partitioner, "partitioner", "default", "default (keys hashed, otherwise sticky batches) or round-robin (one record per partition in turn)")
		fl.IntVar(&o.maxBuffered, "max-buffered-records", 10000, "records a producer holds unacknowledged before sends block")
		fl.Float64Var(&o.rate, "rate", 0, "target records/s over all producers, sent at fixed intervals (0: as fast as possible)")
	}
	return cmd
}

// validate checks the flags and derives the settings, naming the flag and
// value of each problem.
func (o *benchOpts) validate(cmd *cobra.Command) error {
	fl := cmd.Flags()
	o.recordsSet, o.durationSet = fl.Changed("records"), fl.Changed("duration")
	o.partitionsSet = fl.Changed("partitions")
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	o.transport = envOr(o.cf.transport, "EDDY_TRANSPORT")
	if o.transport == "" {
		o.transport = "quic"
	}
	if o.transport != "quic" && o.transport != "tcp" {
		bad("--transport %q: want quic or tcp", o.transport)
	}
	o.brokers = envOr(o.cf.brokers, "EDDY_BROKERS")
	if o.brokers == "" {
		o.brokers = map[string]string{"quic": "127.0.0.1:9093", "tcp": "127.0.0.1:9092"}[o.transport]
	}
	if o.topic == "" {
		bad("--topic: empty")
	}
	if o.recordsSet && o.durationSet {
		bad("--records %d and --duration %s: give one, not both", o.records, o.duration)
	}
	if o.recordsSet && o.records <= 0 {
		bad("--records %d: want at least 1", o.records)
	}
	if o.durationSet && o.duration <= 0 {
		bad("--duration %s: want more than 0", o.duration)
	}
	if o.mode != "consume" && !o.recordsSet && !o.durationSet {
		o.duration = 10 * time.Second
	}
	if o.timeout <= 0 {
		bad("--timeout %s: want more than 0", o.timeout)
	}
	if o.mode != "produce" {
		if o.consumers < 1 {
			bad("--consumers %d: want at least 1", o.consumers)
		}
		switch o.assign {
		case "direct":
			if fl.Changed("group") {
				bad("--group %q: only with --assign group", o.group)
			}
		case "group":
			if o.group == "" {
				o.group = fmt.Sprintf("eddy-bench-%d", time.Now().UnixNano())
				o.groupGenerated = true
			}
		default:
			bad("--assign %q: want direct or group", o.assign)
		}
	}
	if o.mode != "consume" {
		if o.partitions < 1 {
			bad("--partitions %d: want at least 1", o.partitions)
		}
		if o.producers < 1 {
			bad("--producers %d: want at least 1", o.producers)
		}
		if o.keys < 0 {
			bad("--keys %d: want 0 (no keys) or more", o.keys)
		}
		var err error
		if o.sizes, err = parseSizeDist(o.recordSize); err != nil {
			errs = append(errs, err)
		}
		if o.payload != "random" && o.payload != "text" {
			bad("--payload %q: want random or text", o.payload)
		}
		switch o.acks {
		case "all", "-1", "1", "0":
		default:
			bad("--acks %q: want all, 1 or 0", o.acks)
		}
		if o.linger < 0 {
			bad("--linger %s: want 0 or more", o.linger)
		}
		if o.batchMax < 1024 {
			bad("--batch-max-bytes %d: want at least 1024", o.batchMax)
		} else if o.sizes.max()+benchRecordOverhead > o.batchMax {
			bad("--record-size %q: records of up to %d bytes do not fit --batch-max-bytes %d", o.recordSize, o.sizes.max(), o.batchMax)
		}
		o.codec = kgo.NoCompression()
		if o.compression != "none" {
			if o.codec, err = parseCodec(o.compression); err != nil {
				errs = append(errs, err)
			}
		}
		if o.partitioner != "default" && o.partitioner != "round-robin" {
			bad("--partitioner %q: want default or round-robin", o.partitioner)
		}
		if o.maxBuffered < 1 {
			bad("--max-buffered-records %d: want at least 1", o.maxBuffered)
		}
		if o.rate < 0 {
			bad("--rate %g: want 0 (as fast as possible) or a positive records/s", o.rate)
		}
		if o.recordsSet && o.records < int64(o.producers) {
			bad("--records %d: fewer than --producers %d", o.records, o.producers)
		}
	}
	return errors.Join(errs...)
}

// benchRecordOverhead bounds a record's framing, key and bench header in a
// batch, beyond its value.
const benchRecordOverhead = 256

func (o *benchOpts) config(partitions int32) benchConfig {
	c := benchConfig{Transport: o.transport, Brokers: o.brokers, Topic: o.topic, Partitions: partitions}
	if o.recordsSet {
		c.Records = o.records
	} else {
		c.DurationSec = o.duration.Seconds()
	}
	if o.mode != "produce" {
		c.Consumers, c.Assign = o.consumers, o.assign
		if o.assign == "group" {
			c.Group = o.group
		}
	}
	if o.mode != "consume" {
		c.Producers, c.RecordSize, c.Payload, c.Keys = o.producers, o.sizes.String(), o.payload, o.keys
		c.Acks, c.LingerMs, c.BatchMaxBytes = o.acks, float64(o.linger)/float64(time.Millisecond), o.batchMax
		c.Compression, c.Partitioner, c.MaxBuffered, c.Rate = o.compression, o.partitioner, o.maxBuffered, o.rate
	}
	return c
}

// runBench prepares the topic and runs the mode. It returns the result
// even when the run failed part way, with the error.
func runBench(ctx context.Context, cmd *cobra.Command, o *benchOpts) (*result, error) {
	cl, err := o.cf.client()
	if err != nil {
		return nil, err
	}
	adm := kadm.NewClient(cl)
	defer cl.Close()
	partitions, err := prepareTopic(ctx, cl, o)
	if err != nil {
		return nil, err
	}
	res := &result{Mode: o.mode, Config: o.config(partitions)}
	begin := time.Now()
	switch o.mode {
	case "produce":
		err = benchProduce(ctx, cmd, o, res)
	case "consume":
		err = benchConsume(ctx, cmd, o, adm, res)
	case "e2e":
		err = benchE2E(ctx, cmd, o, adm, partitions, res)
	}
	res.ElapsedSec = time.Since(begin).Seconds()
	for _, s := range []*sideResult{res.Produce, res.Consume} {
		if err == nil && s != nil && s.Errors > 0 {
			err = fmt.Errorf("%d errors; the first: %s", s.Errors, s.FirstError)
		}
	}
	return res, err
}

// prepareTopic finds the topic, creating it for produce and e2e when it
// is missing, and returns its partition count once every partition has a
// leader.
func prepareTopic(ctx context.Context, cl *kgo.Client, o *benchOpts) (int32, error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	n, leaderless, err := topicMetadata(ctx, cl, o.topic)
	switch {
	case err == nil:
	case !errors.Is(err, kerr.UnknownTopicOrPartition):
		return 0, err
	case o.mode == "consume":
		return 0, fmt.Errorf("topic %s does not exist: produce to it first (eddy bench produce --topic %s)", o.topic, o.topic)
	default:
		// A create that outlives the request timeout is retried by the
		// client and then finds the topic it made.
		resp, err := kadm.NewClient(cl).CreateTopic(ctx, o.partitions, -1, nil, o.topic)
		if errors.Is(err, kerr.TopicAlreadyExists) {
			err = nil
		} else if err != nil && resp.ErrMessage != "" {
			err = fmt.Errorf("%w%s", err, detail(resp.ErrMessage))
		}
		if err != nil {
			return 0, fmt.Errorf("create topic %s with %d partitions: %w", o.topic, o.partitions, err)
		}
		leaderless = -1
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for leaderless != 0 {
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("topic %s: %d partitions without a leader after %s", o.topic, leaderless, o.timeout)
		case <-tick.C:
		}
		n, leaderless, err = topicMetadata(ctx, cl, o.topic)
		if err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) && !errors.Is(err, kerr.LeaderNotAvailable) {
			return 0, err
		}
		if err != nil || n == 0 {
			leaderless = -1
		}
	}
	if o.partitionsSet && o.mode != "consume" && n != o.partitions {
		return 0, fmt.Errorf("--partitions %d: topic %s exists with %d partitions (delete it or choose another --topic)", o.partitions, o.topic, n)
	}
	return n, nil
}

// topicMetadata asks a broker for the topic's partitions, bypassing the
// client's metadata cache, and counts those without a leader.
func topicMetadata(ctx context.Context, cl *kgo.Client, topic string) (partitions int32, leaderless int, err error) {
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return 0, 0, fmt.Errorf("look up topic %s: %w", topic, err)
	}
	for _, t := range resp.Topics {
		if t.Topic == nil || *t.Topic != topic {
			continue
		}
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			return 0, 0, fmt.Errorf("look up topic %s: %w", topic, err)
		}
		for _, p := range t.Partitions {
			if p.Leader < 0 || p.ErrorCode != 0 {
				leaderless++
			}
		}
		return int32(len(t.Partitions)), leaderless, nil
	}
	return 0, 0, fmt.Errorf("look up topic %s: %w", topic, kerr.UnknownTopicOrPartition)
}

// producerOpts are the kgo options of every producer client.
func (o *benchOpts) producerOpts() []kgo.Opt {
	opts := []kgo.Opt{
		kgo.DefaultProduceTopic(o.topic),
		kgo.ProducerLinger(o.linger),
		kgo.ProducerBatchMaxBytes(int32(o.batchMax)),
		kgo.MaxBufferedRecords(o.maxBuffered),
		kgo.ProducerBatchCompression(o.codec),
		kgo.RecordDeliveryTimeout(o.timeout),
	}
	switch o.acks {
	case "all", "-1":
		opts = append(opts, kgo.RequiredAcks(kgo.AllISRAcks()))
	case "1":
		opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
	case "0":
		opts = append(opts, kgo.RequiredAcks(kgo.NoAck()), kgo.DisableIdempotentWrite())
	}
	if o.partitioner == "round-robin" {
		opts = append(opts, kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	}
	return opts
}

// clients returns n connected clients with the options, named what 0,
// what 1, ... in errors; on error it closes those it made.
func (o *benchOpts) clients(ctx context.Context, n int, what string, opts ...kgo.Opt) ([]*kgo.Client, error) {
	var cls []*kgo.Client
	for i := 0; i < n; i++ {
		c, err := o.connect(ctx, fmt.Sprintf("%s %d", what, i), opts...)
		if err != nil {
			closeClients(cls)
			return nil, err
		}
		cls = append(cls, c)
	}
	return cls, nil
}

// connect returns a client that has reached a broker.
func (o *benchOpts) connect(ctx context.Context, name string, opts ...kgo.Opt) (*kgo.Client, error) {
	c, err := o.cf.client(opts...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	pctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if err := c.Ping(pctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("%s: connect to %s: %w", name, o.brokers, err)
	}
	return c, nil
}

func closeClients(cls []*kgo.Client) {
	for _, c := range cls {
		c.Close()
	}
}

// progressEnabled reports whether a live progress line is wanted.
func (o *benchOpts) progressEnabled() bool { return !o.jsonOut && !o.quiet }
