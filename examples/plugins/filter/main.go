// Command filter is a transform plugin that drops and redacts records on
// their way into (or out of) a topic:
//
//   - a record carrying the drop header (default "eddy-drop") is dropped;
//   - a record whose JSON value has a level (default field "level") in the
//     drop list (default ["debug"]) is dropped;
//   - the listed JSON fields (default ["password"]) of the remaining
//     records are replaced by "***".
//
// Configuration (plugin.produce.transforms, with its config), all optional:
//
//	{"drop_header": "eddy-drop", "level_field": "level",
//	 "drop_levels": ["debug", "trace"], "redact": ["password", "card"]}
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o filter.wasm .
package main

import (
	"encoding/json"
	"fmt"

	"github.com/eddybroker/eddy/sdk/plugin"
)

type config struct {
	DropHeader string   `json:"drop_header"`
	LevelField string   `json:"level_field"`
	DropLevels []string `json:"drop_levels"`
	Redact     []string `json:"redact"`
}

func defaults() config {
	return config{DropHeader: "eddy-drop", LevelField: "level", DropLevels: []string{"debug"}, Redact: []string{"password"}}
}

var cfg = defaults()

var masked = []byte(`"***"`)

func init() {
	plugin.OnInit(configure)
	plugin.Transform(transform)
}

func configure(raw []byte) error {
	c := defaults()
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &c); err != nil {
			return fmt.Errorf("%w: %v", plugin.ErrConfig, err)
		}
	}
	cfg = c
	return nil
}

func transform(r plugin.Record, w *plugin.Writer) (plugin.Decision, error) {
	if cfg.DropHeader != "" {
		if _, ok := r.Header(cfg.DropHeader); ok {
			return plugin.Drop, nil
		}
	}
	v := r.Value()
	// One pass over the top-level members finds the level and the fields
	// to redact.
	var spans [8][2]int
	n, drop := 0, false
	plugin.JSONEach(v, func(key []byte, start, end int) bool {
		if string(key) == cfg.LevelField {
			level := v[start:end]
			if len(level) >= 2 && level[0] == '"' {
				level = level[1 : len(level)-1]
			}
			for _, l := range cfg.DropLevels {
				if string(level) == l {
					drop = true
					return false
				}
			}
		}
		for _, f := range cfg.Redact {
			if string(key) == f && n < len(spans) {
				spans[n] = [2]int{start, end}
				n++
			}
		}
		return true
	})
	if drop {
		return plugin.Drop, nil
	}
	if n == 0 {
		return plugin.Keep, nil
	}
	size := len(v)
	for _, s := range spans[:n] {
		size += len(masked) - (s[1] - s[0])
	}
	out, prev := w.Alloc(size)[:0], 0
	for _, s := range spans[:n] {
		out = append(append(out, v[prev:s[0]]...), masked...)
		prev = s[1]
	}
	out = append(out, v[prev:]...)
	w.WriteWithValue(r, out)
	return plugin.Replace, nil
}

func main() {}
