package telemetry

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

// parseAppName splits pyroscope-go's "app.type{k=v,k=v}" name.
func parseAppName(name string) (app string, labels map[string]string) {
	labels = map[string]string{}
	app, rest, ok := strings.Cut(name, "{")
	if !ok {
		return app, labels
	}
	for _, kv := range strings.Split(strings.TrimSuffix(rest, "}"), ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			labels[k] = v
		}
	}
	return app, labels
}

// upload is one request the fake ingest endpoint received.
type upload struct {
	path  string
	name  string
	bytes int
}

func TestProfilesReachTheIngestEndpointWithTags(t *testing.T) {
	// The ad-hoc variable would redirect uploads away from the fake server.
	t.Setenv("PYROSCOPE_ADHOC_SERVER_ADDRESS", "")
	os.Unsetenv("PYROSCOPE_ADHOC_SERVER_ADDRESS")

	uploads := make(chan upload, 64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		select {
		case uploads <- upload{path: r.URL.Path, name: r.URL.Query().Get("name"), bytes: len(body)}:
		default:
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()

	stop, err := Start(ProfilingConfig{
		Enabled:         true,
		ServerAddress:   srv.URL,
		ApplicationName: "eddy",
		Tags:            map[string]string{"site": "edge-7", "version": "1.4.2", "slot": "b", "node": "3", "empty": ""},
		ProfileTypes:    []string{"cpu", "inuse_space"},
		UploadRate:      200 * time.Millisecond,
		DisableGCRuns:   true,
	})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()

	// Burn a little CPU so the CPU profile has samples, until both profile
	// types arrived or the deadline passed.
	deadline := time.After(20 * time.Second)
	seen := map[string]bool{}
	x := 0
	for !(seen["go"] && seen["godeltaprof"]) {
		select {
		case u := <-uploads:
			if u.path != "/ingest" {
				t.Fatalf("upload to %s, want /ingest", u.path)
			}
			if u.bytes == 0 {
				t.Fatalf("empty upload for %s", u.name)
			}
			app, labels := parseAppName(u.name)
			for k, v := range map[string]string{"site": "edge-7", "version": "1.4.2", "slot": "b", "node": "3"} {
				if labels[k] != v {
					t.Fatalf("upload %q: tag %s=%q, want %q", u.name, k, labels[k], v)
				}
			}
			if _, ok := labels["empty"]; ok {
				t.Fatalf("upload %q carries the empty tag", u.name)
			}
			if app != "eddy" {
				t.Fatalf("upload %q: application %q, want eddy", u.name, app)
			}
			// pyroscope-go v1.4 sends CPU profiles under the "go" scope and
			// heap profiles (godeltaprof) under their own.
			scope := labels["otel.scope.name"]
			seen[scope[strings.LastIndexByte(scope, '/')+1:]] = true
		case <-deadline:
			t.Fatalf("profile scopes received within the deadline: %v; want the CPU (go) and heap (godeltaprof) profiles", seen)
		default:
			for i := range 200000 {
				x ^= i * 31
			}
		}
	}
	_ = x
	stop()
	stopped = true
}

func TestProfilingOffAndInvalid(t *testing.T) {
	stop, err := Start(ProfilingConfig{ServerAddress: "http://127.0.0.1:1"})
	if err != nil || stop == nil {
		t.Fatalf("disabled profiling: stop %v err %v; want a no-op stop", stop != nil, err)
	}
	stop()

	_, err = Start(ProfilingConfig{
		Enabled:      true,
		ProfileTypes: []string{"cpu", "heap"},
		Tags:         map[string]string{"9site": "x", "ok_tag": "y"},
		UploadRate:   -time.Second,
	})
	if err == nil {
		t.Fatal("invalid profiling config accepted")
	}
	for _, want := range []string{"without a server address", `unknown profile type "heap"`, `tag name "9site"`, "negative"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "ok_tag") {
		t.Errorf("error %q complains about a valid tag", err)
	}
}
