// Command misbehave is a transform and cleanup plugin that fails on
// purpose, as its configuration says, for the broker's containment tests:
//
//	keep    keep every record (a well-behaved transform)
//	upper   replace every value by its upper-case form
//	panic   panic in the handler
//	loop    spin forever
//	oom     allocate far past the memory cap
//	error   return an error
//
// As a cleanup policy it asks to rewrite every segment and then panics
// (mode panic) or drops every record (mode drop).
package main

import (
	"bytes"
	"errors"

	"github.com/eddybroker/eddy/sdk/plugin"
)

var mode string

var sink [][]byte

func init() {
	plugin.OnInit(func(cfg []byte) error {
		mode = string(cfg)
		return nil
	})
	plugin.Transform(func(r plugin.Record, w *plugin.Writer) (plugin.Decision, error) {
		switch mode {
		case "upper":
			w.WriteWithValue(r, bytes.ToUpper(r.Value()))
			return plugin.Replace, nil
		case "panic":
			panic("plugin bug")
		case "loop":
			for i := 0; ; i++ {
				if i < 0 {
					return plugin.Keep, nil
				}
			}
		case "oom":
			for {
				sink = append(sink, make([]byte, 1<<20))
			}
		case "error":
			return plugin.Keep, errors.New("cannot transform")
		}
		return plugin.Keep, nil
	})
	plugin.Cleanup(func(m plugin.SegmentMeta) (plugin.SegmentDecision, error) {
		return plugin.SegmentRewrite, nil
	}, func(r plugin.Record) (plugin.KeepDecision, error) {
		if mode == "panic" {
			panic("cleanup bug")
		}
		if mode == "drop" {
			return plugin.CleanupDrop, nil
		}
		return plugin.CleanupDefault, nil
	})
}

func main() {}
