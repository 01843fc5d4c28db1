package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Show and check the configuration"}
	var file string
	print := &cobra.Command{
		Use:   "print",
		Short: "Print the effective configuration as TOML, with where each value came from",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd, file)
			if err != nil {
				return fmt.Errorf("invalid configuration:\n%w", err)
			}
			return cfg.WriteTOML(cmd.OutOrStdout())
		},
	}
	addConfigFlags(print, &file)
	var efile string
	explain := &cobra.Command{
		Use:   "explain [section]",
		Short: "Explain each setting: its value, its source and what it does",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(cmd, efile)
			if err != nil {
				return fmt.Errorf("invalid configuration:\n%w", err)
			}
			section := ""
			if len(args) == 1 {
				section = args[0]
			}
			return cfg.Explain(cmd.OutOrStdout(), section)
		},
	}
	addConfigFlags(explain, &efile)
	var vfile string
	validate := &cobra.Command{
		Use:   "validate",
		Short: "Check the configuration and list every problem",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := loadConfig(cmd, vfile); err != nil {
				return fmt.Errorf("invalid configuration:\n%w", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "configuration is valid")
			return nil
		},
	}
	addConfigFlags(validate, &vfile)
	cmd.AddCommand(print, explain, validate)
	return cmd
}
