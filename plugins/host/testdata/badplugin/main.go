// Command badplugin misbehaves on purpose, as its configuration says, so
// the sandbox's and the broker's containment can be tested with a real Go
// guest. It is a partitioner, a transform and a cleanup policy:
//
//	ok      partition 0 for every record; keep every record
//	panic   panic in the handler (recovered by the SDK: ERR_PLUGIN)
//	loop    spin forever in the handler
//	oom     allocate far past the memory cap
//	error   return an error
//	retry   return ErrRetry
//	noisy   log and print a lot, then partition 0
//	badinit refuse the configuration
//	upper   (transform) replace every value by its upper-case form
//	double  (transform) replace every record by two copies of it
//	drop    (cleanup) drop every record of every closed segment
package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"github.com/eddybroker/eddy/sdk/plugin"
)

var mode string

var sink [][]byte

func init() {
	plugin.OnInit(func(cfg []byte) error {
		mode = string(cfg)
		if mode == "badinit" {
			return fmt.Errorf("%w: mode badinit", plugin.ErrConfig)
		}
		return nil
	})
	plugin.Partitioner(func(r plugin.Record, n int32) (int32, error) {
		if err := misbehave(); err != nil {
			return 0, err
		}
		return 0, nil
	})
	plugin.Transform(func(r plugin.Record, w *plugin.Writer) (plugin.Decision, error) {
		switch mode {
		case "upper":
			w.WriteWithValue(r, bytes.ToUpper(r.Value()))
			return plugin.Replace, nil
		case "double":
			w.WriteWithValue(r, r.Value())
			w.WriteWithValue(r, r.Value())
			return plugin.Replace, nil
		}
		if err := misbehave(); err != nil {
			return plugin.Keep, err
		}
		return plugin.Keep, nil
	})
	plugin.Cleanup(func(plugin.SegmentMeta) (plugin.SegmentDecision, error) {
		return plugin.SegmentRewrite, nil
	}, func(r plugin.Record) (plugin.KeepDecision, error) {
		if mode == "drop" {
			return plugin.CleanupDrop, nil
		}
		if err := misbehave(); err != nil {
			return plugin.CleanupDefault, err
		}
		return plugin.CleanupDefault, nil
	})
}

// misbehave does what the mode says, for every kind.
func misbehave() error {
	switch mode {
	case "panic":
		panic("plugin bug")
	case "loop":
		for i := 0; ; i++ {
			if i < 0 {
				return nil
			}
		}
	case "oom":
		for {
			sink = append(sink, make([]byte, 1<<20))
		}
	case "error":
		return errors.New("cannot place record")
	case "retry":
		return fmt.Errorf("busy: %w", plugin.ErrRetry)
	case "noisy":
		for i := 0; i < 50; i++ {
			plugin.Logf(plugin.LevelInfo, "log line %d", i)
			fmt.Fprintf(os.Stderr, "stderr line %d\n", i)
		}
	}
	return nil
}

func main() {}
