package admin

import (
	"encoding/json"
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
	srv := httptest.NewServer(Handler(src))
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
