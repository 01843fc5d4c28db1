package admin

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

type fakeSource struct {
	ready bool
	why   string
}

func (f *fakeSource) Ready() (bool, string) { return f.ready, f.why }
func (f *fakeSource) Status() Status        { return Status{NodeID: 3, Ready: f.ready, Reason: f.why} }
func (f *fakeSource) Partitions(topic string) any {
	return []map[string]any{{"topic": topic, "partition": 0}}
}
func (f *fakeSource) Metrics() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("eddy_up 1\n")) })
}

func TestEndpoints(t *testing.T) {
	src := &fakeSource{why: "recovering 3/10 partitions"}
	srv := httptest.NewServer(Handler(src, Options{}))
	defer srv.Close()
	get := func(path string) (*http.Response, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		buf := make([]byte, 4096)
		n, _ := resp.Body.Read(buf)
		return resp, string(buf[:n])
	}
	if resp, _ := get("/healthz"); resp.StatusCode != 200 {
		t.Fatalf("healthz %d", resp.StatusCode)
	}
	if resp, body := get("/readyz"); resp.StatusCode != 503 || body != "not ready: recovering 3/10 partitions\n" {
		t.Fatalf("readyz while recovering: %d %q", resp.StatusCode, body)
	}
	src.ready, src.why = true, ""
	if resp, _ := get("/readyz"); resp.StatusCode != 200 {
		t.Fatalf("readyz when ready: %d", resp.StatusCode)
	}
	if resp, body := get("/v1/partitions?topic=orders"); resp.StatusCode != 200 || !strings.Contains(body, `"topic": "orders"`) {
		t.Fatalf("partitions: %d %q", resp.StatusCode, body)
	}
	if resp, body := get("/metrics"); resp.StatusCode != 200 || body != "eddy_up 1\n" {
		t.Fatalf("metrics: %d %q", resp.StatusCode, body)
	}
	resp, body := get("/v1/status")
	var st Status
	if err := json.Unmarshal([]byte(body), &st); err != nil || resp.StatusCode != 200 || st.NodeID != 3 || !st.Ready {
		t.Fatalf("status: %d %q %v", resp.StatusCode, body, err)
	}
}

// TestPprofOnlyWhenEnabled: the runtime profiles are served when the option
// is on and are absent otherwise.
func TestPprofOnlyWhenEnabled(t *testing.T) {
	for _, on := range []bool{false, true} {
		srv := httptest.NewServer(Handler(&fakeSource{ready: true}, Options{Pprof: on}))
		for path, want := range map[string]string{
			"/debug/pprof/":                   "goroutine",
			"/debug/pprof/heap?debug=1":       "heap profile:",
			"/debug/pprof/goroutine?debug=1":  "goroutine profile:",
			"/debug/pprof/profile?seconds=1":  "", // a binary CPU profile
			"/debug/pprof/trace?seconds=0.05": "",
		} {
			resp, err := http.Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case !on && resp.StatusCode != http.StatusNotFound:
				t.Errorf("pprof off: %s answered %d", path, resp.StatusCode)
			case on && (resp.StatusCode != http.StatusOK || len(body) == 0 || !strings.Contains(string(body), want)):
				t.Errorf("pprof on: %s answered %d with %d bytes (want %q in them)", path, resp.StatusCode, len(body), want)
			}
		}
		srv.Close()
	}
}
