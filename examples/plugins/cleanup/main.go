// Command cleanup is a log-cleanup policy plugin: it drops debug records
// once they are older than an hour and leaves everything else to the
// topic's own retention and compaction.
//
// The segment pass asks for a rewrite only of closed segments that hold
// records older than the cut-off; the records pass drops old records whose
// JSON level (or "level" header) is in the list, and answers DEFAULT for
// the rest, so Kafka's rules still apply to them.
//
// Configuration (plugin.cleanup config), all optional:
//
//	{"max_age_ms": 3600000, "level_field": "level", "levels": ["debug"]}
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o cleanup.wasm .
package main

import (
	"encoding/json"
	"fmt"

	"github.com/eddybroker/eddy/sdk/plugin"
)

type config struct {
	MaxAgeMs   int64    `json:"max_age_ms"`
	LevelField string   `json:"level_field"`
	Levels     []string `json:"levels"`
}

func defaults() config {
	return config{MaxAgeMs: 3600_000, LevelField: "level", Levels: []string{"debug"}}
}

var cfg = defaults()

func init() {
	plugin.OnInit(configure)
	plugin.Cleanup(segment, records)
}

func configure(raw []byte) error {
	c := defaults()
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &c); err != nil {
			return fmt.Errorf("%w: %v", plugin.ErrConfig, err)
		}
	}
	if c.MaxAgeMs <= 0 {
		return fmt.Errorf("%w: max_age_ms %d must be positive", plugin.ErrConfig, c.MaxAgeMs)
	}
	cfg = c
	return nil
}

func segment(m plugin.SegmentMeta) (plugin.SegmentDecision, error) {
	if m.Active() || m.MinTimestamp >= m.NowMs-cfg.MaxAgeMs {
		return plugin.SegmentDefault, nil
	}
	return plugin.SegmentRewrite, nil
}

func records(r plugin.Record) (plugin.KeepDecision, error) {
	if r.Timestamp() >= r.Batch().NowMs()-cfg.MaxAgeMs {
		return plugin.CleanupDefault, nil
	}
	level, ok := r.Header("level")
	if !ok {
		level, ok = plugin.JSONString(r.Value(), cfg.LevelField)
	}
	if ok {
		for _, l := range cfg.Levels {
			if string(level) == l {
				return plugin.CleanupDrop, nil
			}
		}
	}
	return plugin.CleanupDefault, nil
}

func main() {}
