// Package eddy is the root of Eddy, a Kafka-compatible streaming broker
// built as an edge appliance. The code lives below: appliance (the broker
// node), transport (Kafka framing, QUIC, TLS identity), plugins (the
// WebAssembly plugin contract and host), sdk (client and plugin SDKs) and
// cmd/eddy (the one binary). This package holds only the architecture tests
// that keep those parts in their dependency order.
package eddy
