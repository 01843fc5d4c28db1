package plugins

import (
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/eddybroker/eddy/plugins/abi"
	"github.com/eddybroker/eddy/sdk/plugin/plugintest"
)

// The AssemblyScript filter scans JSON strings 16 bytes at a time and
// finishes short ones and the text's last bytes differently: random
// values of every length up to a few windows, with quotes, escapes and
// the members it looks for at every position, must come out of it exactly
// as out of the Go filter.
func TestASFilterMatchesGoFilterOnRandomJSON(t *testing.T) {
	goFilter := plugintest.Load(t, plugintest.BuildGo(t, "filter"))
	asFilter := plugintest.Load(t, asPlugin(t, "as-filter"))
	rng := rand.New(rand.NewPCG(7, 11))
	keys := []string{"level", "password", "pass\\u0077ord", "lev\\\"el", "msg", "l", "passwords", "", "levels", "x\\\\"}
	strs := []string{"", "debug", "info", "a\\\"b", "\\\\", "p\\u0041ss", strings.Repeat("y", 15), strings.Repeat("z", 16), strings.Repeat("w", 17), "\\n\\t"}
	value := func() string {
		var b strings.Builder
		b.WriteString(strings.Repeat(" ", rng.IntN(3)) + "{")
		for m := range rng.IntN(6) {
			if m > 0 {
				b.WriteString(",")
			}
			b.WriteString(strings.Repeat(" ", rng.IntN(2)) + `"` + keys[rng.IntN(len(keys))] + `":`)
			switch rng.IntN(4) {
			case 0:
				b.WriteString(`"` + strs[rng.IntN(len(strs))] + strings.Repeat("q", rng.IntN(20)) + `"`)
			case 1:
				b.WriteString(`{"level":"debug","a":["x\"]",` + `"` + strs[rng.IntN(len(strs))] + `"]}`)
			case 2:
				b.WriteString(`"debug"`)
			default:
				b.WriteString("12.5")
			}
		}
		b.WriteString("}")
		s := b.String()
		if rng.IntN(8) == 0 { // cut short: malformed text
			s = s[:rng.IntN(len(s)+1)]
		}
		return s
	}
	for round := range 40 {
		var batch plugintest.Batch
		batch.Topic, batch.PartitionCount = "t", 1
		for range 50 {
			v := []byte(value())
			r := plugintest.Rec{Value: v, Timestamp: int64(round)}
			if rng.IntN(10) == 0 {
				r.Headers = []plugintest.Header{{Key: "eddy-drop"}}
			}
			if rng.IntN(20) == 0 {
				r.Value = nil
			}
			batch.Records = append(batch.Records, r)
		}
		want, err := goFilter.Transform(abi.StageProduce, batch, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := asFilter.Transform(abi.StageProduce, batch, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.Decisions, want.Decisions) || len(got.Outputs) != len(want.Outputs) {
			t.Fatalf("round %d: decisions %v, the Go filter's %v", round, got.Decisions, want.Decisions)
		}
		for i := range want.Outputs {
			if g, w := got.Outputs[i], want.Outputs[i]; g.Source != w.Source || string(g.Value) != string(w.Value) || string(g.Key) != string(w.Key) {
				t.Fatalf("round %d, output %d: %d %q, the Go filter's %d %q", round, i, g.Source, g.Value, w.Source, w.Value)
			}
		}
	}
}
