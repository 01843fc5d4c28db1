package config

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Validate checks every key against its own rules and the rules between
// keys, and returns every problem found, each a *KeyError reading
// "key: problem", joined with errors.Join; nil means the config is usable.
func (c *Config) Validate() error {
	var errs []error
	for _, ke := range c.problems() {
		errs = append(errs, ke)
	}
	return errors.Join(errs...)
}

// problems returns every problem in key order.
func (c *Config) problems() []*KeyError {
	var out []*KeyError
	add := func(key string, format string, args ...any) {
		out = append(out, &KeyError{Key: key, Origin: c.annotation(key), Err: fmt.Errorf(format, args...)})
	}
	for _, l := range schema {
		if err := l.check(l.field(c)); err != nil {
			out = append(out, &KeyError{Key: l.key, Origin: c.annotation(l.key), Err: err})
		}
	}

	q := &c.Listeners.QUIC
	if q.Addr == "" && q.Advertised != "" {
		add("listeners.quic.advertised", "is set but the QUIC listener is disabled (listeners.quic.addr is empty)")
	}
	if q.MaxStreamWindow > 0 && q.MaxStreamWindow < q.InitialStreamWindow {
		add("listeners.quic.max_stream_window", "%s is below listeners.quic.initial_stream_window (%s)", q.MaxStreamWindow, q.InitialStreamWindow)
	}
	if q.MaxConnWindow > 0 && q.MaxConnWindow < q.InitialConnWindow {
		add("listeners.quic.max_conn_window", "%s is below listeners.quic.initial_conn_window (%s)", q.MaxConnWindow, q.InitialConnWindow)
	}
	if q.Keepalive > 0 && q.IdleTimeout > 0 && q.Keepalive >= q.IdleTimeout {
		add("listeners.quic.keepalive", "%s is not below listeners.quic.idle_timeout (%s); idle connections would close between keep-alives", q.Keepalive, q.IdleTimeout)
	}
	if gr := &c.Groups; gr.MaxSessionTimeout < gr.MinSessionTimeout {
		add("groups.max_session_timeout", "%s is below groups.min_session_timeout (%s)", gr.MaxSessionTimeout, gr.MinSessionTimeout)
	}
	if clash(c.Listeners.Kafka.Addr, c.Admin.Addr) {
		add("admin.addr", "%q takes the same TCP port as listeners.kafka.addr (%q)", c.Admin.Addr, c.Listeners.Kafka.Addr)
	}

	t := &c.TLS
	if t.CertFile != "" && t.KeyFile == "" {
		add("tls.key_file", "must be set when tls.cert_file is set")
	}
	if t.KeyFile != "" && t.CertFile == "" {
		add("tls.cert_file", "must be set when tls.key_file is set")
	}

	if c.Kafka.MaxFrameSize > 0 && c.Log.MaxMessageBytes > c.Kafka.MaxFrameSize {
		add("log.max_message_bytes", "%s is above kafka.max_frame_size (%s); no request could carry such a batch", c.Log.MaxMessageBytes, c.Kafka.MaxFrameSize)
	}
	if c.Log.SegmentBytes > 0 && c.Log.PreallocateBytes > c.Log.SegmentBytes && c.Source("log.preallocate_bytes") > IOProfile {
		// A derived preallocation is clamped to the segment size instead.
		add("log.preallocate_bytes", "%s is above log.segment_bytes (%s)", c.Log.PreallocateBytes, c.Log.SegmentBytes)
	}
	if d := &c.Disk; d.SoftWatermark > d.HardWatermark {
		add("disk.soft_watermark", "%d%% is above disk.hard_watermark (%d%%); produces could never resume", d.SoftWatermark, d.HardWatermark)
	}
	if p := &c.Profiling; p.Server != "" {
		if u, err := url.Parse(p.Server); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("profiling.server", "%q is not an http(s) URL", p.Server)
		}
	}
	for _, tag := range c.Profiling.Tags {
		if k, _, ok := strings.Cut(tag, "="); !ok || k == "" {
			add("profiling.tags", "%q is not name=value", tag)
		}
	}
	for _, typ := range c.Profiling.Types {
		if !slices.Contains(ProfileTypes, typ) {
			add("profiling.types", "%q is not a profile type (%s)", typ, strings.Join(ProfileTypes, ", "))
		}
	}
	if strings.ContainsFunc(c.Kafka.ClusterID, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		add("kafka.cluster_id", "%q holds spaces or control characters", c.Kafka.ClusterID)
	}

	order := make(map[string]int, len(schema))
	for i, l := range schema {
		order[l.key] = i
	}
	slices.SortStableFunc(out, func(a, b *KeyError) int { return cmp.Compare(order[a.Key], order[b.Key]) })
	return out
}

// ProfileTypes are the profile names profiling.types accepts.
var ProfileTypes = []string{"cpu", "inuse_space", "inuse_objects", "alloc_space", "alloc_objects",
	"goroutines", "mutex_count", "mutex_duration", "block_count", "block_duration"}

// annotation is the origin Validate adds to a problem: where the value came
// from, unless it is the built-in default.
func (c *Config) annotation(key string) string {
	if c.Source(key) == BuiltIn {
		return ""
	}
	return c.origin(key)
}

// checkAddr checks a host:port. A listen address may have an empty or
// wildcard host (all interfaces) and port 0 (any free port); an address
// advertised to clients needs a concrete host and port.
func checkAddr(s string, advertised bool) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port", s)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return fmt.Errorf("%q has port %q; want a number from 0 to 65535", s, port)
	}
	if strings.ContainsFunc(host, func(r rune) bool { return r <= ' ' || r == '/' }) {
		return fmt.Errorf("%q has a malformed host %q", s, host)
	}
	if advertised {
		if isWildcard(host) {
			return fmt.Errorf("%q has no concrete host; clients need a name or address they can reach", s)
		}
		if p == 0 {
			return fmt.Errorf("%q has port 0; clients need the real port", s)
		}
	}
	return nil
}

func isWildcard(host string) bool {
	if host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

// clash reports whether two TCP listen addresses would take the same port:
// same port (not 0), and the same host or either on all interfaces.
func clash(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	na, errPA := strconv.ParseUint(pa, 10, 16)
	nb, errPB := strconv.ParseUint(pb, 10, 16)
	if errors.Join(errA, errB, errPA, errPB) != nil || na != nb || na == 0 {
		return false
	}
	return isWildcard(ha) || isWildcard(hb) || canonicalHost(ha) == canonicalHost(hb)
}

func canonicalHost(h string) string {
	if strings.EqualFold(h, "localhost") {
		return "127.0.0.1"
	}
	if ip := net.ParseIP(h); ip != nil {
		return ip.String()
	}
	return strings.ToLower(h)
}
