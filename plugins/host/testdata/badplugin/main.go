// Command badplugin misbehaves on purpose, as its configuration says, so
// the sandbox's containment can be tested with a real Go guest:
//
//	ok      partition 0 for every record
//	panic   panic in the handler (recovered by the SDK: ERR_PLUGIN)
//	loop    spin forever in the handler
//	oom     allocate far past the memory cap
//	error   return an error
//	retry   return ErrRetry
//	noisy   log and print a lot, then partition 0
//	badinit refuse the configuration
package main

import (
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
		switch mode {
		case "panic":
			panic("plugin bug")
		case "loop":
			for i := 0; ; i++ {
				if i < 0 {
					return 0, nil
				}
			}
		case "oom":
			for {
				sink = append(sink, make([]byte, 1<<20))
			}
		case "error":
			return 0, errors.New("cannot place record")
		case "retry":
			return 0, fmt.Errorf("busy: %w", plugin.ErrRetry)
		case "noisy":
			for i := 0; i < 50; i++ {
				plugin.Logf(plugin.LevelInfo, "log line %d", i)
				fmt.Fprintf(os.Stderr, "stderr line %d\n", i)
			}
		}
		return 0, nil
	})
}

func main() {}
