package node

import (
	"fmt"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddybroker/eddy/sdk/plugin/plugintest"
)

// jsonValue is a 1 KiB JSON log line the example filter keeps (level
// info) and redacts (its password field).
func jsonValue(i int) []byte {
	head := fmt.Sprintf(`{"site_id":"site-%d","level":"info","password":"p%d","msg":"`, i%50, i)
	const tail = `"}`
	return []byte(head + strings.Repeat("x", 1024-len(head)-len(tail)) + tail)
}

// BenchmarkProduceFilter measures what a produce transform costs the
// broker: franz-go over TCP producing 1 KiB JSON records with acks=all to
// 8 partitions, as fast as it can, to a topic without a transform and to
// topics bound to the example filter (guarded, the default, and trusted)
// and to its AssemblyScript twin (guarded).
func BenchmarkProduceFilter(b *testing.B) {
	for _, filter := range []string{"none", "guarded", "trusted", "as-guarded"} {
		var (
			n       *Node
			c       *kgo.Client
			configs map[string]string
		)
		vals := make([][]byte, 1024)
		for i := range vals {
			vals[i] = jsonValue(i)
		}
		b.Run("filter="+filter, func(sb *testing.B) {
			if c == nil {
				t := lasting{sb, b}
				n = startNode(t, testConfig(t, t.TempDir()))
				configs = map[string]string{}
				if filter != "none" {
					wasm := "../../examples/plugins/testdata/as-filter.wasm"
					if !strings.HasPrefix(filter, "as-") {
						wasm = plugintest.BuildGo(t, "../../examples/plugins/filter")
					}
					configs["plugin.produce.transforms"] = addPlugin(t, n, "filter", wasm)
					configs["plugin.produce.trusted"] = fmt.Sprint(filter == "trusted")
				}
				createTopic(t, n, "bench", 8, configs)
				c = throughputClient(t, n, "tcp", "bench")
			}
			sb.SetBytes(1024)
			produceAll(sb, c, func(i int) *kgo.Record { return &kgo.Record{Value: vals[i%len(vals)], Partition: int32(i % 8)} })
			sb.StopTimer()
			// A filter that timed out or failed turned produces into
			// retries, which the rate then reflects: say so.
			if filter != "none" {
				if c := pluginInfo(sb, n, configs["plugin.produce.transforms"][len("filter@"):]).Counters; c.Failures+c.Timeouts+c.BreakerRejections > 0 {
					sb.Logf("the filter failed during the run: %+v", c)
				}
			}
			// The filter ran: the last record stored is redacted.
			if filter != "none" {
				vals, _, _ := logValues(sb, n, "bench")
				if len(vals) == 0 || strings.Contains(vals[len(vals)-1], `"password":"p`) {
					sb.Fatalf("the filter did not redact the stored records: %+v", pluginInfo(sb, n, configs["plugin.produce.transforms"][len("filter@"):]))
				}
			}
		})
	}
}
