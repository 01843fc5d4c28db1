package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

func newGroupCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{Use: "group", Short: "List, describe, delete consumer groups and reset their offsets"}
	cf.add(cmd)

	list := &cobra.Command{
		Use:   "list",
		Short: "List consumer groups",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cf.withAdmin(func(ctx context.Context, adm *kadm.Client) error {
				groups, err := adm.ListGroups(ctx)
				if err != nil {
					return err
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "GROUP\tSTATE\tPROTOCOL TYPE")
				for _, name := range groups.Sorted() {
					fmt.Fprintf(w, "%s\t%s\t%s\n", name.Group, name.State, name.ProtocolType)
				}
				return w.Flush()
			})
		},
	}

	describe := &cobra.Command{
		Use:   "describe GROUP",
		Short: "Show a group's members, assignments, committed offsets and lag",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return cf.withAdmin(func(ctx context.Context, adm *kadm.Client) error {
				return describeGroup(ctx, cmd.OutOrStdout(), adm, args[0])
			})
		},
	}

	del := &cobra.Command{
		Use:   "delete GROUP",
		Short: "Delete an empty group and its committed offsets",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return cf.withAdmin(func(ctx context.Context, adm *kadm.Client) error {
				resp, err := adm.DeleteGroup(ctx, args[0])
				if err == nil {
					err = resp.Err
				}
				if errors.Is(err, kerr.NonEmptyGroup) {
					return fmt.Errorf("delete group %s: it still has members; stop them first", args[0])
				}
				if err != nil {
					return fmt.Errorf("delete group %s: %w", args[0], err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "deleted group %s\n", args[0])
				return nil
			})
		},
	}

	var topic, to string
	var partitions []int32
	var execute bool
	reset := &cobra.Command{
		Use:   "reset-offsets GROUP --topic TOPIC --to earliest|latest|TIME|OFFSET",
		Short: "Move a stopped group's committed offsets (a dry run unless --execute)",
		Long: `Move a group's committed offsets for a topic. The group must have no active
members. --to takes earliest, latest, an offset, or a time (RFC 3339, or @
followed by Unix milliseconds). Without --execute the plan is printed and
nothing changes.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if topic == "" || to == "" {
				return fmt.Errorf("reset-offsets needs --topic and --to")
			}
			return cf.withAdmin(func(ctx context.Context, adm *kadm.Client) error {
				return resetOffsets(ctx, cmd.OutOrStdout(), adm, args[0], topic, partitions, to, execute)
			})
		},
	}
	reset.Flags().StringVarP(&topic, "topic", "t", "", "topic whose offsets to move")
	reset.Flags().Int32SliceVarP(&partitions, "partition", "p", nil, "partitions (default all)")
	reset.Flags().StringVar(&to, "to", "", "earliest, latest, an offset, or a time")
	reset.Flags().BoolVar(&execute, "execute", false, "apply the plan (default: dry run)")
	cmd.AddCommand(list, describe, del, reset)
	return cmd
}

func describeGroup(ctx context.Context, out io.Writer, adm *kadm.Client, group string) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	type member struct{ id, client, host, assigned string }
	var members []member
	state, kind := "", "classic"
	dg, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return err
	}
	g := dg[group]
	switch {
	case g.Err == nil:
		state = g.State
		for _, m := range g.Members {
			a := ""
			if ca, ok := m.Assigned.AsConsumer(); ok {
				var parts []string
				for _, t := range ca.Topics {
					parts = append(parts, fmt.Sprintf("%s%v", t.Topic, t.Partitions))
				}
				a = strings.Join(parts, " ")
			}
			members = append(members, member{m.MemberID, m.ClientID, m.ClientHost, a})
		}
	case errors.Is(g.Err, kerr.GroupIDNotFound):
		cg, err := adm.DescribeConsumerGroups(ctx, group)
		if err != nil {
			return fmt.Errorf("describe group %s: %w", group, err)
		}
		c := cg[group]
		if c.Err != nil {
			return fmt.Errorf("describe group %s: %w", group, c.Err)
		}
		state, kind = c.State, "consumer (KIP-848)"
		for _, m := range c.Members {
			var parts []string
			for t, ps := range m.Assignment {
				var list []int32
				for p := range ps {
					list = append(list, p)
				}
				sort.Slice(list, func(i, j int) bool { return list[i] < list[j] })
				parts = append(parts, fmt.Sprintf("%s%v", t, list))
			}
			sort.Strings(parts)
			members = append(members, member{m.MemberID, m.ClientID, m.ClientHost, strings.Join(parts, " ")})
		}
	default:
		return fmt.Errorf("describe group %s: %w", group, g.Err)
	}
	fmt.Fprintf(out, "group %s  state %s  protocol %s  members %d\n\n", group, state, kind, len(members))
	if len(members) > 0 {
		fmt.Fprintln(w, "MEMBER\tCLIENT\tHOST\tASSIGNED")
		for _, m := range members {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", m.id, m.client, m.host, m.assigned)
		}
		w.Flush()
		fmt.Fprintln(out)
	}
	offs, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return fmt.Errorf("fetch committed offsets of %s: %w", group, err)
	}
	var topics []string
	offs.Each(func(o kadm.OffsetResponse) {
		if !containsString(topics, o.Topic) {
			topics = append(topics, o.Topic)
		}
	})
	sort.Strings(topics)
	if len(topics) == 0 {
		fmt.Fprintln(out, "no committed offsets")
		return nil
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "TOPIC\tPARTITION\tCOMMITTED\tEND\tLAG")
	for _, o := range offs.Sorted() {
		end := int64(-1)
		if e, ok := ends.Lookup(o.Topic, o.Partition); ok {
			end = e.Offset
		}
		lag := "-"
		if end >= 0 && o.At >= 0 {
			lag = strconv.FormatInt(end-o.At, 10)
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%s\n", o.Topic, o.Partition, o.At, end, lag)
	}
	return w.Flush()
}

func containsString(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// resetOffsets computes new committed offsets for a stopped group and, with
// execute, commits them.
func resetOffsets(ctx context.Context, out io.Writer, adm *kadm.Client, group, topic string, only []int32, to string, execute bool) error {
	dg, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return err
	}
	if g := dg[group]; g.Err == nil && len(g.Members) > 0 {
		return fmt.Errorf("group %s has %d active members; stop them before moving its offsets", group, len(g.Members))
	}
	var target kadm.ListedOffsets
	switch {
	case to == "earliest":
		target, err = adm.ListStartOffsets(ctx, topic)
	case to == "latest":
		target, err = adm.ListEndOffsets(ctx, topic)
	default:
		var ms int64 = -1
		if strings.HasPrefix(to, "@") {
			ms, err = strconv.ParseInt(to[1:], 10, 64)
		} else if tm, perr := time.Parse(time.RFC3339, to); perr == nil {
			ms = tm.UnixMilli()
		} else if n, perr := strconv.ParseInt(to, 10, 64); perr == nil && n >= 0 {
			target, err = adm.ListEndOffsets(ctx, topic)
			if err == nil {
				target.Each(func(o kadm.ListedOffset) {
					target[o.Topic][o.Partition] = kadm.ListedOffset{Topic: o.Topic, Partition: o.Partition, Offset: min(n, o.Offset)}
				})
			}
		} else {
			return fmt.Errorf("--to %q: want earliest, latest, an offset, an RFC 3339 time or @<unix ms>", to)
		}
		if err == nil && ms >= 0 {
			target, err = adm.ListOffsetsAfterMilli(ctx, ms, topic)
		}
	}
	if err != nil {
		return err
	}
	if err := target.Error(); err != nil {
		return fmt.Errorf("topic %s: %w", topic, err)
	}
	current, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return err
	}
	plan := kadm.Offsets{}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TOPIC\tPARTITION\tCURRENT\tNEW")
	ends, _ := adm.ListEndOffsets(ctx, topic)
	var rows []kadm.ListedOffset
	target.Each(func(o kadm.ListedOffset) { rows = append(rows, o) })
	sort.Slice(rows, func(i, j int) bool { return rows[i].Partition < rows[j].Partition })
	for _, o := range rows {
		if len(only) > 0 && !containsPart(only, o.Partition) {
			continue
		}
		at := o.Offset
		if at < 0 { // nothing after that time: the end
			if e, ok := ends.Lookup(topic, o.Partition); ok {
				at = e.Offset
			}
		}
		cur := "-"
		if c, ok := current.Lookup(topic, o.Partition); ok && c.At >= 0 {
			cur = strconv.FormatInt(c.At, 10)
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%d\n", topic, o.Partition, cur, at)
		plan.AddOffset(topic, o.Partition, at, -1)
	}
	w.Flush()
	if !execute {
		fmt.Fprintln(out, "dry run: nothing changed (add --execute to apply)")
		return nil
	}
	if err := adm.CommitAllOffsets(ctx, group, plan); err != nil {
		return fmt.Errorf("commit the new offsets of %s: %w", group, err)
	}
	fmt.Fprintln(out, "offsets moved")
	return nil
}
