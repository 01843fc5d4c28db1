package main

import (
	"bytes"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/eddybroker/eddy/appliance/broker"
	"github.com/spf13/cobra"
)

func newPluginCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "plugin",
		Short: "Register, list, inspect and remove WebAssembly plugins",
		Long: `Manage the node's WebAssembly plugins through its admin API (--admin).

A registered module is validated and compiled once, stored by its sha256
digest, and bound to topics with topic configs such as
plugin.produce.transforms=NAME@sha256:... (see docs/PLUGINS.md).`,
	}
	cf.add(cmd)

	var name string
	add := &cobra.Command{
		Use:   "add FILE.wasm",
		Short: "Validate, compile and store a module under a name",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			wasm, err := os.ReadFile(args[0])
			if err != nil {
				return fmt.Errorf("read plugin: %w", err)
			}
			if name == "" {
				name = strings.TrimSuffix(filepath.Base(args[0]), filepath.Ext(args[0]))
			}
			var info broker.PluginInfo
			if err := cf.adminDo("POST", "/v1/plugins?name="+url.QueryEscape(name), bytes.NewReader(wasm), &info); err != nil {
				return fmt.Errorf("add plugin %s: %w", name, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "registered %s@%s (%s, %d bytes)\nbind it with a topic config, e.g. --config plugin.produce.transforms=%s@%s\n",
				name, info.Digest, info.Kinds, info.Size, name, info.Digest)
			return nil
		},
	}
	add.Flags().StringVar(&name, "name", "", "name for the module (default: the file name without .wasm)")

	list := &cobra.Command{
		Use:   "list",
		Short: "List registered modules and their state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var infos []broker.PluginInfo
			if err := cf.adminGet("/v1/plugins", &infos); err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAMES\tDIGEST\tKINDS\tSIZE\tABI\tSTATE\tCALLS\tFAILURES\tTOPICS")
			for _, p := range infos {
				fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%d\t%d\t%s\n", orDash(strings.Join(p.Names, ",")), p.Digest, p.Kinds, p.Size,
					p.ABIVersion, p.State, p.Counters.Calls, p.Counters.Failures, orDash(strings.Join(p.Topics, ",")))
			}
			return w.Flush()
		},
	}

	show := &cobra.Command{
		Use:   "show NAME|DIGEST",
		Short: "Show a module's state, counters, uses, last error and recent log lines",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var p broker.PluginInfo
			if err := cf.adminGet("/v1/plugins/"+url.PathEscape(args[0]), &p); err != nil {
				return err
			}
			return printPlugin(cmd.OutOrStdout(), p)
		},
	}

	remove := &cobra.Command{
		Use:   "remove NAME|DIGEST",
		Short: "Remove a name, or a module (refused while a topic binds it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := cf.adminDo("DELETE", "/v1/plugins/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return fmt.Errorf("remove plugin %s: %w", args[0], err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(add, list, show, remove)
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func printPlugin(out io.Writer, p broker.PluginInfo) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "DIGEST\t%s\n", p.Digest)
	fmt.Fprintf(w, "NAMES\t%s\n", orDash(strings.Join(p.Names, ", ")))
	fmt.Fprintf(w, "KINDS\t%s\n", p.Kinds)
	fmt.Fprintf(w, "SIZE\t%d bytes\n", p.Size)
	fmt.Fprintf(w, "ABI\t%s\n", p.ABIVersion)
	fmt.Fprintf(w, "REGISTERED\t%s\n", p.Registered.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "STATE\t%s\n", p.State)
	fmt.Fprintf(w, "TOPICS\t%s\n", orDash(strings.Join(p.Topics, ", ")))
	c := p.Counters
	fmt.Fprintf(w, "CALLS\t%d (%d records, %s)\n", c.Calls, c.Records, c.Duration)
	fmt.Fprintf(w, "FAILURES\t%d (timeouts %d, traps %d, invalid output %d, error status %d; refused while open %d)\n",
		c.Failures, c.Timeouts, c.Traps, c.InvalidOutputs, c.ErrorStatuses, c.BreakerRejections)
	if p.LastError != "" {
		fmt.Fprintf(w, "LAST ERROR\t%s\n", p.LastError)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if len(p.Pools) > 0 {
		fmt.Fprintln(out, "\nUSES")
		w = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "CONFIG\tTRUSTED\tSTATE\tCALLS\tFAILURES\tLAST ERROR")
		for _, pl := range p.Pools {
			fmt.Fprintf(w, "%s\t%v\t%s\t%d\t%d\t%s\n", shortHex(pl.ConfigDigest), pl.Trusted, pl.State, pl.Counters.Calls, pl.Counters.Failures, pl.LastError)
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	if len(p.Logs) > 0 {
		fmt.Fprintln(out, "\nRECENT LOG LINES")
		for _, l := range p.Logs {
			fmt.Fprintf(out, "%s %-5s %-6s %s\n", l.Time.UTC().Format(time.RFC3339), l.Level, l.Source, l.Text)
		}
	}
	return nil
}

func shortHex(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}
