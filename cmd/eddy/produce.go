package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddybroker/eddy/sdk/client"
)

func newProduceCmd() *cobra.Command {
	var cf clientFlags
	var key, keySep, acks, compression string
	var headers []string
	var partition int32
	var maxLine int
	var noPlugin bool
	cmd := &cobra.Command{
		Use:   "produce TOPIC [FILE...]",
		Short: "Produce one record per line from stdin or files",
		Long: `Produce one record per line of stdin (or of each FILE, "-" meaning stdin).

Without --partition, records go where the topic's partitioner plugin puts
them when the topic binds one (topic config plugin.partitioner): the plugin
runs here, in the same sandbox the broker uses, after its module is read
from the broker's plugin registry (cached under the user cache directory).
A record the plugin rejects, or that it fails to place when the topic's
plugin.partitioner.on.error is reject, is not produced and the command
fails. --no-plugin ignores the plugin. Topics without one get Kafka's
default placement: by murmur2 of the key, or spread when there is none.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			topic := args[0]
			var hdrs []kgo.RecordHeader
			for _, h := range headers {
				k, v, ok := strings.Cut(h, "=")
				if !ok || k == "" {
					return fmt.Errorf("--header %q: want key=value", h)
				}
				hdrs = append(hdrs, kgo.RecordHeader{Key: k, Value: []byte(v)})
			}
			opts := []kgo.Opt{kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0)}
			switch acks {
			case "all", "-1":
				opts = append(opts, kgo.RequiredAcks(kgo.AllISRAcks()))
			case "1":
				opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
			case "0":
				opts = append(opts, kgo.RequiredAcks(kgo.NoAck()), kgo.DisableIdempotentWrite())
			default:
				return fmt.Errorf("--acks %q: want all, 1 or 0", acks)
			}
			if compression != "" && compression != "none" {
				codec, err := parseCodec(compression)
				if err != nil {
					return err
				}
				opts = append(opts, kgo.ProducerBatchCompression(codec))
			}
			var plugins *client.Partitioner
			switch {
			case partition >= 0:
				opts = append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))
			case !noPlugin:
				plugins = client.NewPartitioner(client.PartitionerConfig{CacheDir: client.DefaultCacheDir()})
				opts = append(opts, plugins.KgoOpts()...)
			}
			cl, err := cf.client(opts...)
			if err != nil {
				return err
			}
			defer cl.Close()
			if plugins != nil {
				if err := loadPartitioner(cmd, plugins, topic); err != nil {
					return err
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var produced atomic.Int64
			var mu sync.Mutex
			var firstErr error
			send := func(line string) {
				r := &kgo.Record{Value: []byte(line), Headers: hdrs, Partition: partition}
				if key != "" {
					r.Key = []byte(key)
				}
				if keySep != "" {
					if k, v, ok := strings.Cut(line, keySep); ok {
						r.Key, r.Value = []byte(k), []byte(v)
					}
				}
				cl.Produce(ctx, r, func(r *kgo.Record, err error) {
					if err != nil {
						err = client.RecordError(r, err)
						mu.Lock()
						if firstErr == nil {
							firstErr = err
							cancel()
						}
						mu.Unlock()
						return
					}
					produced.Add(1)
				})
			}
			files := args[1:]
			if len(files) == 0 {
				files = []string{"-"}
			}
			for _, f := range files {
				if err := eachLine(cmd.InOrStdin(), f, maxLine, send); err != nil {
					return err
				}
			}
			if err := cl.Flush(context.Background()); err != nil && firstErr == nil {
				firstErr = err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "produced %d records to %s\n", produced.Load(), topic)
			if firstErr != nil {
				return fmt.Errorf("produce to %s: %w", topic, firstErr)
			}
			return nil
		},
	}
	cf.add(cmd)
	cmd.Flags().StringVarP(&key, "key", "k", "", "key for every record")
	cmd.Flags().StringVarP(&keySep, "key-separator", "K", "", "split each line into key and value at the first SEP")
	cmd.Flags().StringArrayVarP(&headers, "header", "H", nil, "header key=value for every record (repeatable)")
	cmd.Flags().Int32VarP(&partition, "partition", "p", -1, "partition to produce to (default: the partitioner chooses)")
	cmd.Flags().BoolVar(&noPlugin, "no-plugin", false, "ignore the topic's partitioner plugin: place records as Kafka's default partitioner does")
	cmd.Flags().StringVar(&acks, "acks", "all", "all, 1 or 0")
	cmd.Flags().StringVarP(&compression, "compression", "z", "", "none, gzip, snappy, lz4 or zstd")
	cmd.Flags().IntVar(&maxLine, "max-line-bytes", 16<<20, "longest line accepted")
	return cmd
}

// loadPartitioner loads the partitioner binding of topic before the first
// record, so that a broken binding fails the command at once, and says
// which plugin places the records.
func loadPartitioner(cmd *cobra.Command, p *client.Partitioner, topic string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Refresh(ctx, topic); err != nil {
		return fmt.Errorf("load the partitioner plugin of %s (--no-plugin produces without it): %w", topic, err)
	}
	if b, ok := p.Binding(topic); ok && b.Plugin != "" {
		fmt.Fprintf(cmd.ErrOrStderr(), "partitioner plugin %s places the records (on error: %s)\n", b.Plugin, b.OnError)
	}
	return nil
}

func parseCodec(s string) (kgo.CompressionCodec, error) {
	switch s {
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.NoCompression(), fmt.Errorf("--compression %q: want none, gzip, snappy, lz4 or zstd", s)
}

// eachLine calls fn for each line of a file ("-" is stdin), without the
// line ending.
func eachLine(stdin io.Reader, name string, maxLine int, fn func(string)) error {
	r := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	for sc.Scan() {
		fn(strings.TrimSuffix(sc.Text(), "\r"))
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	return nil
}
