package main

import (
	"fmt"
	"os"

	"github.com/eddybroker/eddy/transport/tlsid"
	"github.com/spf13/cobra"
)

func newTLSCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "tls", Short: "The node's TLS identity"}
	var dataDir string
	ca := &cobra.Command{
		Use:   "ca",
		Short: "Print the node's CA certificate (PEM) for remote clients to trust",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dirs := []string{dataDir}
			if dataDir == "" {
				dirs = defaultDataDirs()
			}
			pem, path, err := tlsid.FindLocalCA(dirs...)
			if err != nil {
				return fmt.Errorf("no CA found (is the node started, and is --data-dir right?): %w", err)
			}
			fmt.Fprintf(os.Stderr, "# %s\n", path)
			_, err = cmd.OutOrStdout().Write(pem)
			return err
		},
	}
	ca.Flags().StringVar(&dataDir, "data-dir", "", "the node's data directory (env EDDY_DATA_DIR)")
	cmd.AddCommand(ca)
	return cmd
}

// defaultDataDirs are where a node on this host keeps its data: the
// EDDY_DATA_DIR variable, the default ./eddy-data, and the systemd state
// directory.
func defaultDataDirs() []string {
	var dirs []string
	if d := os.Getenv("EDDY_DATA_DIR"); d != "" {
		dirs = append(dirs, d)
	}
	return append(dirs, "./eddy-data", "/var/lib/eddy")
}
