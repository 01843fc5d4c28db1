package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func newConsumeCmd() *cobra.Command {
	var cf clientFlags
	var from, format, group string
	var partitions []int32
	var follow bool
	var count int
	cmd := &cobra.Command{
		Use:   "consume TOPIC",
		Short: "Print a topic's records",
		Long: `Print a topic's records, from the beginning (default), the end, an offset or a
time. Without --follow it stops at the end the topic had when it started.

--from takes: beginning, end, an offset (e.g. 42), or a time (RFC 3339, or
Unix milliseconds prefixed with @, e.g. @1700000000000).
--format takes: value (the value only), text (partition, offset, time, key,
value), or json (one object per line, with headers).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			topic := args[0]
			pos, err := parseFrom(from)
			if err != nil {
				return err
			}
			pr, err := newPrinter(cmd.OutOrStdout(), format)
			if err != nil {
				return err
			}
			if group != "" {
				return consumeGroup(cmd, &cf, topic, group, pos, pr, follow, count)
			}
			ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer cancel()
			adm, done, err := cf.admin()
			if err != nil {
				return err
			}
			defer done()
			// Resolve where each partition starts and ends now.
			actx, acancel := context.WithTimeout(ctx, 30*time.Second)
			ends, err := adm.ListEndOffsets(actx, topic)
			var starts kadm.ListedOffsets
			if err == nil {
				switch {
				case pos.start:
					starts, err = adm.ListStartOffsets(actx, topic)
				case pos.end:
					starts = ends
				case pos.hasTime:
					starts, err = adm.ListOffsetsAfterMilli(actx, pos.ms, topic)
				}
			}
			acancel()
			if err != nil {
				return err
			}
			if err := ends.Error(); err != nil {
				return fmt.Errorf("topic %s: %w", topic, err)
			}
			want := map[int32]kgo.Offset{}
			remaining := map[int32]int64{} // partition -> end offset still to reach
			ends.Each(func(e kadm.ListedOffset) {
				if len(partitions) > 0 && !containsPart(partitions, e.Partition) {
					return
				}
				at := pos.offset
				if starts != nil {
					s, _ := starts.Lookup(topic, e.Partition)
					at = s.Offset
					if at < 0 { // nothing at or after that time yet
						at = e.Offset
					}
				}
				want[e.Partition] = kgo.NewOffset().At(at)
				if at < e.Offset {
					remaining[e.Partition] = e.Offset
				}
			})
			if len(want) == 0 {
				return fmt.Errorf("topic %s has none of the partitions asked for", topic)
			}
			cl, err := cf.client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: want}))
			if err != nil {
				return err
			}
			defer cl.Close()
			defer pr.flush()
			printed := 0
			for follow || len(remaining) > 0 {
				fs := cl.PollFetches(ctx)
				if ctx.Err() != nil {
					return nil
				}
				var ferr error
				fs.EachError(func(t string, p int32, err error) { ferr = fmt.Errorf("fetch %s/%d: %w", t, p, err) })
				if ferr != nil {
					return ferr
				}
				for it := fs.RecordIter(); !it.Done(); {
					r := it.Next()
					if !follow {
						end, ok := remaining[r.Partition]
						if !ok || r.Offset >= end {
							continue
						}
						if r.Offset+1 >= end {
							delete(remaining, r.Partition)
						}
					}
					pr.print(r)
					printed++
					if count > 0 && printed >= count {
						return nil
					}
				}
				if follow {
					pr.flush()
				}
			}
			return nil
		},
	}
	cf.add(cmd)
	cmd.Flags().StringVar(&from, "from", "beginning", "where to start: beginning, end, an offset, or a time")
	cmd.Flags().StringVar(&format, "format", "value", "value, text or json")
	cmd.Flags().Int32SliceVarP(&partitions, "partition", "p", nil, "partitions to read (default all)")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep waiting for new records")
	cmd.Flags().IntVarP(&count, "count", "n", 0, "stop after this many records")
	cmd.Flags().StringVarP(&group, "group", "g", "", "consume as a member of this group, committing offsets (needs --count or --follow)")
	return cmd
}

// consumeGroup reads as a group member: partitions come from the group,
// the start from the group's committed offsets (or --from for partitions
// without one), and what was printed is committed on the way out.
func consumeGroup(cmd *cobra.Command, cf *clientFlags, topic, group string, pos position, pr *printer, follow bool, count int) error {
	if !follow && count <= 0 {
		return fmt.Errorf("with --group, give --count N or --follow: a group member has no end to stop at")
	}
	reset := kgo.NewOffset().AtStart()
	switch {
	case pos.end:
		reset = kgo.NewOffset().AtEnd()
	case pos.hasTime:
		reset = kgo.NewOffset().AfterMilli(pos.ms)
	case !pos.start:
		reset = kgo.NewOffset().At(pos.offset)
	}
	cl, err := cf.client(kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(reset),
		kgo.AutoCommitMarks(), kgo.OnPartitionsRevoked(func(ctx context.Context, c *kgo.Client, _ map[string][]int32) {
			c.CommitMarkedOffsets(ctx)
		}))
	if err != nil {
		return err
	}
	defer cl.Close()
	defer pr.flush()
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	printed := 0
	for follow || printed < count {
		fs := cl.PollRecords(ctx, max(count-printed, 0))
		if ctx.Err() != nil {
			break
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) { ferr = fmt.Errorf("fetch %s/%d: %w", t, p, err) })
		if ferr != nil {
			return ferr
		}
		for it := fs.RecordIter(); !it.Done(); {
			r := it.Next()
			pr.print(r)
			cl.MarkCommitRecords(r)
			printed++
		}
		pr.flush()
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	if err := cl.CommitMarkedOffsets(cctx); err != nil {
		return fmt.Errorf("commit offsets of group %s: %w", group, err)
	}
	return nil
}

func containsPart(ps []int32, p int32) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// position is where --from says to start.
type position struct {
	start, end, hasTime bool
	ms                  int64 // with hasTime
	offset              int64 // otherwise
}

func parseFrom(s string) (position, error) {
	switch {
	case s == "beginning" || s == "start":
		return position{start: true}, nil
	case s == "end":
		return position{end: true}, nil
	case strings.HasPrefix(s, "@"):
		ms, err := strconv.ParseInt(s[1:], 10, 64)
		if err != nil {
			return position{}, fmt.Errorf("--from %q: want @<unix milliseconds>", s)
		}
		return position{hasTime: true, ms: ms}, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
		return position{offset: n}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return position{hasTime: true, ms: t.UnixMilli()}, nil
	}
	return position{}, fmt.Errorf("--from %q: want beginning, end, an offset, an RFC 3339 time or @<unix ms>", s)
}

type printer struct {
	w      *bufio.Writer
	format string
	enc    *json.Encoder
}

func newPrinter(w io.Writer, format string) (*printer, error) {
	switch format {
	case "value", "text", "json":
	default:
		return nil, fmt.Errorf("--format %q: want value, text or json", format)
	}
	bw := bufio.NewWriter(w)
	return &printer{w: bw, format: format, enc: json.NewEncoder(bw)}, nil
}

func (p *printer) flush() { p.w.Flush() }

type jsonRecord struct {
	Topic       string            `json:"topic"`
	Partition   int32             `json:"partition"`
	Offset      int64             `json:"offset"`
	Timestamp   string            `json:"timestamp"`
	Key         *string           `json:"key,omitempty"`
	KeyBase64   *string           `json:"key_base64,omitempty"`
	Value       *string           `json:"value,omitempty"`
	ValueBase64 *string           `json:"value_base64,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
}

func textOrBase64(b []byte) (*string, *string) {
	if b == nil {
		return nil, nil
	}
	if utf8.Valid(b) {
		s := string(b)
		return &s, nil
	}
	s := base64.StdEncoding.EncodeToString(b)
	return nil, &s
}

func (p *printer) print(r *kgo.Record) {
	switch p.format {
	case "value":
		p.w.Write(r.Value)
		p.w.WriteByte('\n')
	case "text":
		fmt.Fprintf(p.w, "%d\t%d\t%s\t%s\t%s\n", r.Partition, r.Offset, r.Timestamp.UTC().Format(time.RFC3339Nano), r.Key, r.Value)
	case "json":
		jr := jsonRecord{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp.UTC().Format(time.RFC3339Nano)}
		jr.Key, jr.KeyBase64 = textOrBase64(r.Key)
		jr.Value, jr.ValueBase64 = textOrBase64(r.Value)
		if len(r.Headers) > 0 {
			jr.Headers = map[string]string{}
			for _, h := range r.Headers {
				jr.Headers[h.Key] = string(h.Value)
			}
		}
		p.enc.Encode(jr)
	}
}
