package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/eddybroker/eddy/sdk/client"
	"github.com/eddybroker/eddy/transport/tlsid"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// clientFlags are the connection flags of every client command.
type clientFlags struct {
	brokers   string
	transport string
	caFile    string
	pin       string
	dataDir   string
	adminAddr string
}

func (f *clientFlags) add(cmd *cobra.Command) {
	fl := cmd.PersistentFlags()
	fl.StringVar(&f.brokers, "brokers", "", "comma-separated broker addresses (env EDDY_BROKERS; default 127.0.0.1:9093 over QUIC, 127.0.0.1:9092 over TCP)")
	fl.StringVar(&f.transport, "transport", "", "quic or tcp (env EDDY_TRANSPORT; default quic)")
	fl.StringVar(&f.caFile, "ca", "", "CA certificate (PEM) to trust over QUIC (env EDDY_CA; default: the local node's, found through --data-dir)")
	fl.StringVar(&f.pin, "pin", "", "trust exactly the broker whose key has this fingerprint, sha256:<hex>")
	fl.StringVar(&f.dataDir, "data-dir", "", "data directory of a node on this host, to find its CA (env EDDY_DATA_DIR)")
	fl.StringVar(&f.adminAddr, "admin", "", "the node's admin API host:port, for storage details (env EDDY_ADMIN_ADDR; default 127.0.0.1:9644)")
}

// adminGet fetches a JSON document from the node's admin API into v.
func (f *clientFlags) adminGet(path string, v any) error {
	return f.adminDo(http.MethodGet, path, nil, v)
}

// adminDo sends a request to the node's admin API and decodes a JSON
// answer into v (when not nil). An error answer becomes an error with the
// API's message.
func (f *clientFlags) adminDo(method, path string, body io.Reader, v any) error {
	addr := envOr(f.adminAddr, "EDDY_ADMIN_ADDR")
	if addr == "" {
		addr = "127.0.0.1:9644"
	}
	req, err := http.NewRequest(method, "http://"+addr+path, body)
	if err != nil {
		return err
	}
	c := http.Client{Timeout: 60 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("admin API at %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		if json.NewDecoder(resp.Body).Decode(&e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("admin API at %s: %s", addr, resp.Status)
	}
	if v == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func envOr(v, env string) string {
	if v != "" {
		return v
	}
	return os.Getenv(env)
}

// client returns a kgo client over the chosen transport.
func (f *clientFlags) client(extra ...kgo.Opt) (*kgo.Client, error) {
	transport := envOr(f.transport, "EDDY_TRANSPORT")
	if transport == "" {
		transport = "quic"
	}
	if transport != "quic" && transport != "tcp" {
		return nil, fmt.Errorf("--transport: %q is not quic or tcp", transport)
	}
	brokers := envOr(f.brokers, "EDDY_BROKERS")
	if brokers == "" {
		brokers = "127.0.0.1:9093"
		if transport == "tcp" {
			brokers = "127.0.0.1:9092"
		}
	}
	opts := []client.Option{client.Brokers(strings.Split(brokers, ",")...), client.Transport(transport), client.KgoOpts(extra...)}
	if transport == "quic" {
		switch ca := envOr(f.caFile, "EDDY_CA"); {
		case f.pin != "":
			opts = append(opts, client.PinSHA256(f.pin))
		case ca != "":
			opts = append(opts, client.CAFile(ca))
		default:
			dirs := defaultDataDirs()
			if f.dataDir != "" {
				dirs = []string{f.dataDir}
			}
			pem, _, err := tlsid.FindLocalCA(dirs...)
			if err != nil {
				return nil, fmt.Errorf("no CA to trust for QUIC: pass --ca (from `eddy tls ca` on the broker's host), --pin, or --transport tcp: %w", err)
			}
			opts = append(opts, client.CAPEM(pem))
		}
	}
	return client.New(opts...)
}

// admin returns a kadm client over the chosen transport.
func (f *clientFlags) admin() (*kadm.Client, func(), error) {
	c, err := f.client()
	if err != nil {
		return nil, nil, err
	}
	return kadm.NewClient(c), c.Close, nil
}

// withAdmin runs fn with an admin client and a 30 s deadline.
func (f *clientFlags) withAdmin(fn func(ctx context.Context, adm *kadm.Client) error) error {
	adm, done, err := f.admin()
	if err != nil {
		return err
	}
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return fn(ctx, adm)
}
