package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	quicgo "github.com/quic-go/quic-go"

	"github.com/eddybroker/eddy/transport/quic"
	"github.com/eddybroker/eddy/transport/tlsid"
)

// chunk is the write size of every ceiling: 1 MiB.
const chunk = 1 << 20

// diskCeiling writes 1 MiB chunks sequentially to a new file in dir, each
// followed by fdatasync, for d: the bandwidth of durable appends on that
// disk, and the latency of each write with its sync.
func diskCeiling(dir string, d time.Duration) (measure, error) {
	path := filepath.Join(dir, "ceiling.dat")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return measure{}, fmt.Errorf("disk ceiling: %w", err)
	}
	defer os.Remove(path)
	defer f.Close()
	buf := make([]byte, chunk)
	rand.Read(buf)
	var n int64
	lats := newLatencyHist() // each write with its fdatasync
	start := time.Now()
	for time.Since(start) < d {
		t := time.Now()
		if _, err := f.Write(buf); err != nil {
			return measure{}, fmt.Errorf("disk ceiling: write %s: %w", path, err)
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return measure{}, fmt.Errorf("disk ceiling: fdatasync %s: %w", path, err)
		}
		recordLatency(lats, time.Since(t))
		n += chunk
	}
	el := time.Since(start).Seconds()
	return histMeasure(lats, float64(n)/el/1e6, float64(n/chunk)/el), nil
}

// ceilingIdentity is a TLS identity like a node's, made once per run.
func (h *harness) ceilingIdentity() (*tlsid.Identity, error) {
	id, err := tlsid.Load(tlsid.Options{Dir: filepath.Join(h.work, "ceiling-tls")})
	if err != nil {
		return nil, fmt.Errorf("TLS identity: %w", err)
	}
	return id, nil
}

// bulk sends 1 MiB writes on w for d, then closes the sending side with
// closeWrite and waits for the receiver's one-byte confirmation that all
// arrived: the bandwidth of the stream.
func bulk(w io.Writer, r io.Reader, closeWrite func() error, d time.Duration) (measure, error) {
	buf := make([]byte, chunk)
	rand.Read(buf)
	var n int64
	start := time.Now()
	for time.Since(start) < d {
		if _, err := w.Write(buf); err != nil {
			return measure{}, fmt.Errorf("write: %w", err)
		}
		n += chunk
	}
	if err := closeWrite(); err != nil {
		return measure{}, fmt.Errorf("close: %w", err)
	}
	one := make([]byte, 1)
	if _, err := io.ReadFull(r, one); err != nil {
		return measure{}, fmt.Errorf("wait for the receiver: %w", err)
	}
	el := time.Since(start).Seconds()
	return measure{MBps: float64(n) / el / 1e6, RecPerS: float64(n/chunk) / el}, nil
}

// drain reads a stream to its end, then confirms with one byte.
func drain(rw io.ReadWriter) error {
	if _, err := io.Copy(io.Discard, rw); err != nil {
		return err
	}
	_, err := rw.Write([]byte{1})
	return err
}

// tlsCeiling is one TCP connection with TLS 1.3 on loopback carrying 1
// MiB writes for d.
func tlsCeiling(id *tlsid.Identity, d time.Duration) (measure, error) {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", id.ServerConfig("bench-bulk"))
	if err != nil {
		return measure{}, fmt.Errorf("TCP+TLS ceiling: listen: %w", err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		drain(c)
	}()
	conf, err := tlsid.ClientConfig(tlsid.ClientOptions{CAPEM: id.CAPEM, NextProtos: []string{"bench-bulk"}, ServerName: "127.0.0.1"})
	if err != nil {
		return measure{}, fmt.Errorf("TCP+TLS ceiling: %w", err)
	}
	c, err := tls.Dial("tcp", ln.Addr().String(), conf)
	if err != nil {
		return measure{}, fmt.Errorf("TCP+TLS ceiling: dial: %w", err)
	}
	defer c.Close()
	m, err := bulk(c, c, c.CloseWrite, d)
	if err != nil {
		return measure{}, fmt.Errorf("TCP+TLS ceiling: %w", err)
	}
	return m, nil
}

// quicCeiling is one quic-go stream on loopback, with the node's default
// QUIC flow-control windows and TLS, carrying 1 MiB writes for d: what
// the QUIC transport can give one Kafka connection.
func quicCeiling(id *tlsid.Identity, d time.Duration) (measure, error) {
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return measure{}, fmt.Errorf("QUIC ceiling: listen: %w", err)
	}
	cfg := quic.DefaultConfig()
	srv, err := quic.NewServer(udp, id.ServerConfig(), cfg)
	if err != nil {
		udp.Close()
		return measure{}, fmt.Errorf("QUIC ceiling: %w", err)
	}
	srv.Handle("bench-bulk", func(ctx context.Context, c *quicgo.Conn) {
		s, err := c.AcceptStream(ctx)
		if err != nil {
			return
		}
		drain(s)
		s.Close()
		<-ctx.Done()
	})
	sctx, scancel := context.WithCancel(context.Background())
	go srv.Serve(sctx)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		scancel()
	}()
	conf, err := tlsid.ClientConfig(tlsid.ClientOptions{CAPEM: id.CAPEM, NextProtos: []string{"bench-bulk"}, ServerName: "127.0.0.1"})
	if err != nil {
		return measure{}, fmt.Errorf("QUIC ceiling: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := quicgo.DialAddr(ctx, srv.Addr().String(), conf, &quicgo.Config{
		InitialStreamReceiveWindow: cfg.InitialStreamWindow, MaxStreamReceiveWindow: cfg.MaxStreamWindow,
		InitialConnectionReceiveWindow: cfg.InitialConnWindow, MaxConnectionReceiveWindow: cfg.MaxConnWindow,
	})
	if err != nil {
		return measure{}, fmt.Errorf("QUIC ceiling: dial: %w", err)
	}
	defer conn.CloseWithError(0, "")
	s, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return measure{}, fmt.Errorf("QUIC ceiling: open stream: %w", err)
	}
	m, err := bulk(s, s, s.Close, d)
	if err != nil {
		return measure{}, fmt.Errorf("QUIC ceiling: %w", err)
	}
	return m, nil
}
