// Command jsonfield is a partitioner plugin that places records by a field
// of their JSON value, so that every record of one site (or device, or
// tenant) lands in the same partition whatever its key.
//
// Configuration (plugin.partitioner.config), all optional:
//
//	{"field": "site_id", "fallback": "key"}
//
// field names the top-level member to hash (default "site_id"); its text
// (a string without its quotes, or a number as written) is hashed with
// Kafka's murmur2. When the value is not JSON or lacks the field, fallback
// decides: "key" (the default) uses the record key like Kafka's default
// partitioner, "reject" refuses the record.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o jsonfield.wasm .
package main

import (
	"encoding/json"
	"fmt"

	"github.com/eddybroker/eddy/sdk/plugin"
)

type config struct {
	Field    string `json:"field"`
	Fallback string `json:"fallback"`
}

var cfg = config{Field: "site_id", Fallback: "key"}

func init() {
	plugin.OnInit(configure)
	plugin.Partitioner(partition)
}

func configure(raw []byte) error {
	c := config{Field: "site_id", Fallback: "key"}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &c); err != nil {
			return fmt.Errorf("%w: %v", plugin.ErrConfig, err)
		}
	}
	if c.Field == "" {
		return fmt.Errorf("%w: field is empty", plugin.ErrConfig)
	}
	if c.Fallback != "key" && c.Fallback != "reject" {
		return fmt.Errorf("%w: fallback %q, want \"key\" or \"reject\"", plugin.ErrConfig, c.Fallback)
	}
	cfg = c
	return nil
}

func partition(r plugin.Record, n int32) (int32, error) {
	if v, ok := fieldText(r.Value(), cfg.Field); ok {
		return plugin.KafkaPartition(v, n), nil
	}
	if cfg.Fallback == "reject" {
		return plugin.RejectRecord, nil
	}
	return plugin.KafkaPartition(r.Key(), n), nil
}

// fieldText returns the text of a string member (unquoted) or of a
// number, true or false.
func fieldText(doc []byte, name string) ([]byte, bool) {
	if s, ok := plugin.JSONString(doc, name); ok {
		return s, true
	}
	raw, ok := plugin.JSONField(doc, name)
	if !ok || len(raw) == 0 || raw[0] == '{' || raw[0] == '[' || string(raw) == "null" {
		return nil, false
	}
	return raw, true
}

func main() {}
