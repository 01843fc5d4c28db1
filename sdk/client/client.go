// Package client is Eddy's Go client: franz-go's kgo over QUIC.
//
// New returns an ordinary *kgo.Client: producers, consumer groups,
// transactions and admin requests work as franz-go documents them. Only the
// connections differ: every connection kgo opens to a broker is a stream of
// one QUIC connection per broker, dialled with TLS 1.3 to Eddy's QUIC port
// (ALPN eddy-kafka/1, default port 9093).
//
//	cl, err := client.New(
//		client.Brokers("edge-1.example:9093"),
//		client.CAFile("/var/lib/eddy/tls/ca.pem"),
//		client.KgoOpts(kgo.ConsumeTopics("telemetry")),
//	)
//	...
//	defer cl.Close() // also closes the QUIC connections
//
// Trust comes from CAPEM or CAFile (Eddy's local CA, <data>/tls/ca.pem on
// the node), from PinSHA256 (the SPKI fingerprint of the node or of its
// CA), from a complete TLSConfig, or else from the system roots.
//
// Transport("tcp") returns plain kgo over TCP without TLS, for Eddy's Kafka
// TCP listener and any stock Kafka broker.
//
// # Partitioner plugins
//
// A topic may bind a partitioner plugin (topic config plugin.partitioner,
// see docs/PLUGINS.md). With PluginPartitioner, the client places the
// records of such topics by running the plugin locally, in the sandbox the
// broker uses, and keeps kgo's default partitioning for the others:
//
//	p := client.NewPartitioner(client.PartitionerConfig{Topics: []string{"telemetry"}})
//	cl, err := client.New(client.Brokers(addr), client.PluginPartitioner(p))
//
// A topic's binding (its configs, read with DescribeConfigs, and its
// module, read from the registry topic __eddy_plugins and compiled once per
// digest) is loaded by New for the topics in PartitionerConfig.Topics, and
// for any other topic by its first Produce call, which waits for it; kgo's
// partitioner callback never waits for I/O. Bindings are read again every
// RefreshInterval and on Partitioner.Refresh. A record the plugin rejects,
// or that cannot be placed, fails in its promise; RecordError gives the
// cause (ErrRecordRejected, ErrPartitionerFailed, ErrBindingUnavailable).
package client

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddybroker/eddy/transport/quic"
	"github.com/eddybroker/eddy/transport/tlsid"
)

// DefaultQUICPort is the port assumed for a QUIC broker address without
// one.
const DefaultQUICPort = "9093"

// Option configures New.
type Option func(*options)

type options struct {
	brokers    []string
	caPEM      []byte
	caFile     string
	pin        string
	serverName string
	tlsConf    *tls.Config
	quicConf   quic.Config
	transport  string
	kgoOpts    []kgo.Opt

	partitioner *Partitioner // PluginPartitioner, see partitioner.go
}

// Brokers sets the seed brokers, "host:port". A QUIC address without a
// port gets DefaultQUICPort. Without Brokers, New uses 127.0.0.1:9093
// (QUIC) or kgo's default (TCP).
func Brokers(addrs ...string) Option {
	return func(o *options) { o.brokers = append(o.brokers, addrs...) }
}

// CAPEM trusts the CA certificates in pem (QUIC only).
func CAPEM(pem []byte) Option { return func(o *options) { o.caPEM = pem } }

// CAFile trusts the CA certificates in the PEM file at path (QUIC only).
func CAFile(path string) Option { return func(o *options) { o.caFile = path } }

// PinSHA256 accepts brokers whose certificate, or a CA in whose chain,
// has this SPKI fingerprint ("sha256:<hex>", as `eddy` prints it) (QUIC
// only). See tlsid.ClientOptions.PinSHA256.
func PinSHA256(fp string) Option { return func(o *options) { o.pin = fp } }

// ServerName sets the name verified in the brokers' certificates, instead
// of the dialled host (QUIC only).
func ServerName(name string) Option { return func(o *options) { o.serverName = name } }

// TLSConfig uses c as it is, instead of CAPEM, CAFile, PinSHA256 and
// ServerName (QUIC only). Its NextProtos default to eddy-kafka/1.
func TLSConfig(c *tls.Config) Option { return func(o *options) { o.tlsConf = c } }

// QUICConfig tunes the QUIC connections; zero fields take
// quic.DefaultConfig values.
func QUICConfig(c quic.Config) Option { return func(o *options) { o.quicConf = c } }

// Transport selects "quic" (the default) or "tcp" (plain kgo, no TLS).
func Transport(kind string) Option { return func(o *options) { o.transport = kind } }

// KgoOpts passes options to kgo.NewClient, after the ones New sets: a
// kgo.SeedBrokers or kgo.Dialer here replaces New's.
func KgoOpts(opts ...kgo.Opt) Option {
	return func(o *options) { o.kgoOpts = append(o.kgoOpts, opts...) }
}

// New returns a kgo client for Eddy.
//
// Over QUIC, New creates a quic.Dialer that keeps one QUIC connection per
// broker, and registers a kgo.HookClientClosed that closes the Dialer, and
// with it every QUIC connection and the UDP socket, when the client is
// closed. Nothing else needs closing.
func New(opts ...Option) (*kgo.Client, error) {
	o := options{transport: "quic"}
	for _, opt := range opts {
		opt(&o)
	}
	if o.partitioner != nil {
		o.kgoOpts = append(o.kgoOpts, o.partitioner.KgoOpts()...)
	}
	var cl *kgo.Client
	var err error
	switch o.transport {
	case "tcp":
		cl, err = newTCP(o)
	case "quic":
		cl, err = newQUIC(o)
	default:
		return nil, fmt.Errorf("client: transport %q: want \"quic\" or \"tcp\"", o.transport)
	}
	if err != nil || o.partitioner == nil {
		return cl, err
	}
	// Load the partitioner's topics now, so that a broken binding fails
	// here rather than on the first records.
	if err := o.partitioner.preload(); err != nil {
		cl.Close()
		return nil, err // names each topic that failed
	}
	return cl, nil
}

func newTCP(o options) (*kgo.Client, error) {
	if len(o.caPEM) > 0 || o.caFile != "" || o.pin != "" || o.serverName != "" || o.tlsConf != nil {
		return nil, errors.New("client: TLS options apply to the quic transport; the tcp transport is plain TCP")
	}
	var kopts []kgo.Opt
	if len(o.brokers) > 0 {
		kopts = append(kopts, kgo.SeedBrokers(o.brokers...))
	}
	cl, err := kgo.NewClient(append(kopts, o.kgoOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return cl, nil
}

func newQUIC(o options) (*kgo.Client, error) {
	conf, err := quicTLS(o)
	if err != nil {
		return nil, err
	}
	seeds := []string{"127.0.0.1:" + DefaultQUICPort}
	if len(o.brokers) > 0 {
		seeds = make([]string, len(o.brokers))
		for i, b := range o.brokers {
			if seeds[i], err = withPort(b); err != nil {
				return nil, err
			}
		}
	}
	d := quic.NewDialer(conf, o.quicConf)
	kopts := []kgo.Opt{
		kgo.SeedBrokers(seeds...),
		kgo.Dialer(d.DialContext),
		kgo.WithHooks(closeDialer{d}),
	}
	cl, err := kgo.NewClient(append(kopts, o.kgoOpts...)...)
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("client: %w", err)
	}
	return cl, nil
}

// quicTLS builds the TLS configuration for the QUIC dialer.
func quicTLS(o options) (*tls.Config, error) {
	if o.tlsConf != nil {
		if len(o.caPEM) > 0 || o.caFile != "" || o.pin != "" || o.serverName != "" {
			return nil, errors.New("client: TLSConfig excludes CAPEM, CAFile, PinSHA256 and ServerName")
		}
		return o.tlsConf, nil
	}
	conf, err := tlsid.ClientConfig(tlsid.ClientOptions{
		CAPEM:      o.caPEM,
		CAFile:     o.caFile,
		PinSHA256:  o.pin,
		ServerName: o.serverName,
		NextProtos: []string{quic.ALPNKafka},
	})
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return conf, nil
}

// withPort adds DefaultQUICPort to an address without a port.
func withPort(addr string) (string, error) {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr, nil
	}
	host := strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]")
	if host == "" || strings.HasPrefix(addr, "[") != strings.HasSuffix(addr, "]") || strings.ContainsAny(host, "[]") {
		return "", fmt.Errorf("client: broker address %q is not host or host:port", addr)
	}
	return net.JoinHostPort(host, DefaultQUICPort), nil
}

// closeDialer closes the QUIC dialer once kgo has closed its client.
type closeDialer struct{ d *quic.Dialer }

var _ kgo.HookClientClosed = closeDialer{}

func (h closeDialer) OnClientClosed(*kgo.Client) { h.d.Close() }
