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

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"
)

func newProduceCmd() *cobra.Command {
	var cf clientFlags
	var key, keySep, acks, compression string
	var headers []string
	var partition int32
	var maxLine int
	cmd := &cobra.Command{
		Use:   "produce TOPIC [FILE...]",
		Short: "Produce one record per line from stdin or files",
		Long: `Produce one record per line of stdin (or of each FILE, "-" meaning stdin).

Without --partition, records go where the broker's default partitioner puts
them (by key, or spread when there is none), as Kafka clients do.`,
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
			if partition >= 0 {
				opts = append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))
			}
			cl, err := cf.client(opts...)
			if err != nil {
				return err
			}
			defer cl.Close()
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
				cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
					if err != nil {
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
	cmd.Flags().StringVar(&acks, "acks", "all", "all, 1 or 0")
	cmd.Flags().StringVarP(&compression, "compression", "z", "", "none, gzip, snappy, lz4 or zstd")
	cmd.Flags().IntVar(&maxLine, "max-line-bytes", 16<<20, "longest line accepted")
	return cmd
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
