package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version and commit are set at build time with -ldflags "-X
// main.version=... -X main.commit=..."; without a commit, the VCS stamp
// of the build (when Go recorded one) names it.
var (
	version = "dev"
	commit  = ""
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "eddy",
		Short:         "Eddy: a Kafka-compatible streaming broker for the edge",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newVersionCmd(), newServeCmd(), newConfigCmd(), newTLSCmd(), newTopicCmd(), newProduceCmd(), newConsumeCmd(), newGroupCmd(), newTuneCmd(), newBenchCmd(), newPluginCmd())
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of this binary",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			commit := commit
			if bi, ok := debug.ReadBuildInfo(); ok && commit == "" {
				for _, s := range bi.Settings {
					if s.Key == "vcs.revision" {
						commit = s.Value
					}
				}
			}
			if commit == "" {
				commit = "unknown"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "eddy %s (commit %s, %s %s/%s)\n", version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}
