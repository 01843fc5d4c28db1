// Package admin is the node's HTTP admin API: liveness (/healthz),
// readiness (/readyz), Prometheus metrics (/metrics) and JSON endpoints
// under /v1/ for the CLI and operators. It listens on 127.0.0.1:9644 by
// default.
package admin

import (
	"encoding/json"
	"net/http"
)

// Status is what /v1/status reports.
type Status struct {
	NodeID     int32  `json:"node_id"`
	ClusterID  string `json:"cluster_id"`
	Version    string `json:"version"`
	Ready      bool   `json:"ready"`
	Reason     string `json:"reason,omitempty"`
	Topics     int    `json:"topics"`     // user topics, not internal ones
	Partitions int    `json:"partitions"` // of user topics
	DataDir    string `json:"data_dir"`
	CleanStart bool   `json:"clean_start"`
}

// Source supplies the node's state to the handlers.
type Source interface {
	// Ready reports whether the node serves clients, and why not.
	Ready() (bool, string)
	Status() Status
	// Partitions describes the storage of a topic's partitions (every
	// topic's when the name is empty), as JSON-encodable values.
	Partitions(topic string) any
	// Metrics serves /metrics; nil leaves the route out.
	Metrics() http.Handler
}

// Handler returns the admin API's routes.
func Handler(src Source) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if ok, why := src.Ready(); !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("not ready: " + why + "\n"))
			return
		}
		w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, src.Status())
	})
	mux.HandleFunc("GET /v1/partitions", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, src.Partitions(r.URL.Query().Get("topic")))
	})
	if m := src.Metrics(); m != nil {
		mux.Handle("GET /metrics", m)
	}
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
