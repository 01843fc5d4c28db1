// Package admin is the node's HTTP admin API: liveness (/healthz),
// readiness (/readyz), Prometheus metrics (/metrics), JSON endpoints
// under /v1/ for the CLI and operators, and, when enabled, Go's runtime
// profiles under /debug/pprof/. It listens on 127.0.0.1:9644 by default.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
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

// PluginSource is implemented by a node that runs plugins: the registry
// behind /v1/plugins.
type PluginSource interface {
	Plugins() any
	Plugin(ref string) (any, error)
	AddPlugin(ctx context.Context, name string, wasm []byte) (any, error)
	RemovePlugin(ctx context.Context, ref string) error
}

// ErrNotFound marks an unknown plugin (404); other plugin errors are 400
// (bad module) or 409 (still in use), as the source says with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
)

// maxModuleBody bounds an uploaded module (the host refuses more than
// 16 MiB with a clearer message).
const maxModuleBody = 17 << 20

// Options choose the optional routes.
type Options struct {
	// Pprof serves net/http/pprof's profiles under /debug/pprof/.
	Pprof bool
}

// Handler returns the admin API's routes.
func Handler(src Source, o Options) http.Handler {
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
	if ps, ok := src.(PluginSource); ok {
		pluginRoutes(mux, ps)
	}
	if o.Pprof {
		// The index serves every named profile (heap, allocs, goroutine,
		// block, mutex, ...) under its name; the others need handlers.
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

func pluginRoutes(mux *http.ServeMux, ps PluginSource) {
	mux.HandleFunc("GET /v1/plugins", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, ps.Plugins())
	})
	mux.HandleFunc("GET /v1/plugins/{ref}", func(w http.ResponseWriter, r *http.Request) {
		info, err := ps.Plugin(r.PathValue("ref"))
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, info)
	})
	mux.HandleFunc("POST /v1/plugins", func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("name")
		if name == "" {
			writeError(w, fmt.Errorf("a plugin needs a name: POST /v1/plugins?name=NAME"))
			return
		}
		wasm, err := io.ReadAll(io.LimitReader(r.Body, maxModuleBody+1))
		if err != nil {
			writeError(w, fmt.Errorf("read the module: %w", err))
			return
		}
		if len(wasm) > maxModuleBody {
			writeError(w, fmt.Errorf("module of more than %d bytes refused", maxModuleBody))
			return
		}
		info, err := ps.AddPlugin(r.Context(), name, wasm)
		if err != nil {
			writeError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(info)
	})
	mux.HandleFunc("DELETE /v1/plugins/{ref}", func(w http.ResponseWriter, r *http.Request) {
		if err := ps.RemovePlugin(r.Context(), r.PathValue("ref")); err != nil {
			writeError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// writeError answers {"error": "..."} with the status the error calls for.
func writeError(w http.ResponseWriter, err error) {
	code := http.StatusBadRequest
	switch {
	case errors.Is(err, ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, ErrConflict):
		code = http.StatusConflict
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
