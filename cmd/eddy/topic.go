package main

import (
	"context"
	"io"
	"net/url"
	"time"

	"fmt"
	"github.com/eddybroker/eddy/appliance/broker"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// parseConfigs turns repeated key=value flags into a config map.
func parseConfigs(kvs []string) (map[string]*string, error) {
	m := map[string]*string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--config %q: want key=value", kv)
		}
		m[k] = &v
	}
	return m, nil
}

func newTopicCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{Use: "topic", Short: "Create, list, describe, alter and delete topics"}
	cf.add(cmd)

	var partitions int32
	var rf int16
	var configs []string
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a topic",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfgs, err := parseConfigs(configs)
			if err != nil {
				return err
			}
			return cf.withAdmin(func(ctx context.Context, adm *kadm.Client) error {
				resp, err := adm.CreateTopic(ctx, partitions, rf, cfgs, args[0])
				if err == nil {
					err = resp.Err
				}
				if err != nil {
					return fmt.Errorf("create topic %s: %w%s", args[0], err, detail(resp.ErrMessage))
				}
				fmt.Fprintf(cmd.OutOrStdout(), "created topic %s with %d partitions\n", resp.Topic, resp.NumPartitions)
				return nil
			})
		},
	}
	create.Flags().Int32VarP(&partitions, "partitions", "p", -1, "number of partitions (default: the broker's)")
	create.Flags().Int16VarP(&rf, "replication-factor", "r", -1, "replicas per partition (default: the broker's)")
	create.Flags().StringArrayVarP(&configs, "config", "c", nil, "topic config key=value (repeatable)")

	list := &cobra.Command{
		Use:   "list",
		Short: "List topics",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cf.withAdmin(func(ctx context.Context, adm *kadm.Client) error {
				details, err := adm.ListTopics(ctx)
				if err != nil {
					return err
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "TOPIC\tPARTITIONS\tREPLICAS")
				for _, name := range details.Names() {
					d := details[name]
					fmt.Fprintf(w, "%s\t%d\t%d\n", name, len(d.Partitions), d.Partitions.NumReplicas())
				}
				return w.Flush()
			})
		},
	}

	describe := &cobra.Command{
		Use:   "describe NAME",
		Short: "Describe a topic: partitions, offsets and configs",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return cf.withAdmin(func(ctx context.Context, adm *kadm.Client) error {
				if err := describeTopic(ctx, cmd, adm, args[0]); err != nil {
					return err
				}
				return describeStorage(cmd.OutOrStdout(), &cf, args[0])
			})
		},
	}

	var deleteConfigs []string
	var alterConfigs []string
	alter := &cobra.Command{
		Use:   "alter NAME",
		Short: "Change a topic's configs",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sets, err := parseConfigs(alterConfigs)
			if err != nil {
				return err
			}
			var ops []kadm.AlterConfig
			for k, v := range sets {
				ops = append(ops, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: v})
			}
			for _, k := range deleteConfigs {
				ops = append(ops, kadm.AlterConfig{Op: kadm.DeleteConfig, Name: k})
			}
			if len(ops) == 0 {
				return fmt.Errorf("nothing to change: give --config key=value or --delete-config key")
			}
			return cf.withAdmin(func(ctx context.Context, adm *kadm.Client) error {
				rs, err := adm.AlterTopicConfigs(ctx, ops, args[0])
				if err == nil && len(rs) == 1 {
					err = rs[0].Err
					if err != nil {
						err = fmt.Errorf("%w%s", err, detail(rs[0].ErrMessage))
					}
				}
				if err != nil {
					return fmt.Errorf("alter topic %s: %w", args[0], err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "altered topic %s\n", args[0])
				return nil
			})
		},
	}
	alter.Flags().StringArrayVarP(&alterConfigs, "config", "c", nil, "set a topic config key=value (repeatable)")
	alter.Flags().StringArrayVar(&deleteConfigs, "delete-config", nil, "remove an override, back to the default (repeatable)")

	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a topic and all its records",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return cf.withAdmin(func(ctx context.Context, adm *kadm.Client) error {
				resp, err := adm.DeleteTopic(ctx, args[0])
				if err == nil {
					err = resp.Err
				}
				if err != nil {
					return fmt.Errorf("delete topic %s: %w%s", args[0], err, detail(resp.ErrMessage))
				}
				fmt.Fprintf(cmd.OutOrStdout(), "deleted topic %s\n", args[0])
				return nil
			})
		},
	}
	cmd.AddCommand(create, list, describe, alter, del)
	return cmd
}

func detail(msg string) string {
	if msg == "" {
		return ""
	}
	return ": " + msg
}

func describeTopic(ctx context.Context, cmd *cobra.Command, adm *kadm.Client, name string) error {
	details, err := adm.ListTopics(ctx, name)
	if err != nil {
		return err
	}
	d, ok := details[name]
	if !ok || d.Err != nil {
		return fmt.Errorf("topic %s: %v", name, d.Err)
	}
	starts, err := adm.ListStartOffsets(ctx, name)
	if err != nil {
		return err
	}
	ends, err := adm.ListEndOffsets(ctx, name)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "topic %s  id %s  partitions %d\n\n", name, d.ID, len(d.Partitions))
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "PARTITION\tLEADER\tREPLICAS\tISR\tSTART\tEND\tRECORDS")
	for _, p := range d.Partitions.Sorted() {
		s, _ := starts.Lookup(name, p.Partition)
		e, _ := ends.Lookup(name, p.Partition)
		fmt.Fprintf(w, "%d\t%d\t%v\t%v\t%d\t%d\t%d\n", p.Partition, p.Leader, p.Replicas, p.ISR, s.Offset, e.Offset, e.Offset-s.Offset)
	}
	w.Flush()
	rcs, err := adm.DescribeTopicConfigs(ctx, name)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "\nCONFIGS")
	w = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	for _, rc := range rcs {
		cfgs := rc.Configs
		sort.Slice(cfgs, func(i, j int) bool { return cfgs[i].Key < cfgs[j].Key })
		for _, c := range cfgs {
			src := "default"
			if c.Source == kmsg.ConfigSourceDynamicTopicConfig {
				src = "topic"
			} else if c.Source == kmsg.ConfigSourceStaticBrokerConfig {
				src = "broker"
			}
			fmt.Fprintf(w, "%s\t%s\t(%s)\n", c.Key, c.MaybeValue(), src)
		}
	}
	return w.Flush()
}

// describeStorage prints what the node's admin API knows of a topic's
// partitions: size, segments and, for compacted topics, the cleaner.
func describeStorage(out io.Writer, cf *clientFlags, name string) error {
	var parts []broker.PartitionStatus
	if err := cf.adminGet("/v1/partitions?topic="+url.QueryEscape(name), &parts); err != nil {
		fmt.Fprintf(out, "\nstorage details unavailable (%v)\n", err)
		return nil
	}
	fmt.Fprintln(out, "\nSTORAGE")
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	compacted := false
	fmt.Fprintln(w, "PARTITION\tSIZE\tSEGMENTS\tSTATUS")
	for _, p := range parts {
		status := "ok"
		if p.Failed != "" {
			status = "failed: " + p.Failed
		}
		fmt.Fprintf(w, "%d\t%d\t%d\t%s\n", p.Partition, p.Size, p.Segments, status)
		compacted = compacted || p.Cleaner != nil
	}
	w.Flush()
	if !compacted {
		return nil
	}
	fmt.Fprintln(out, "\nCLEANER")
	w = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "PARTITION\tSTATE\tDIRTY\tCLEANED TO\tLAST CLEANED\tRUNS\tREMOVED\tFAILURES\tLAST ERROR")
	for _, p := range parts {
		c := p.Cleaner
		if c == nil {
			continue
		}
		last := "never"
		if !c.LastCleaned.IsZero() {
			last = c.LastCleaned.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(w, "%d\t%s\t%.0f%%\t%d\t%s\t%d\t%d\t%d\t%s\n", p.Partition, c.State, 100*c.DirtyRatio, c.CleanerOffset, last, c.Runs, c.RecordsRemoved, c.Failures, c.LastError)
	}
	return w.Flush()
}
