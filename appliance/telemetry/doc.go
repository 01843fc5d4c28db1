// Package telemetry is the node's observability: a Prometheus registry with
// the broker's metrics and a small API to update them, a host collector
// (CPU, memory, the data disk's usage and I/O counters, via gopsutil), the
// Go runtime and process collectors, the /metrics handler, and continuous
// profiling with Pyroscope (Start), off unless configured.
//
// Nothing here is global: New builds a private registry, so tests and
// several nodes in one process do not collide, and nothing logs except
// through the *slog.Logger given in Options.
//
// The update methods are safe for concurrent use and cheap enough for the
// request path: per-API series are resolved once and kept in an array
// indexed by API key. Metric names and labels are listed in docs/TUNING.md
// ("Metrics"); examples/grafana/eddy-dashboard.json charts them.
package telemetry
