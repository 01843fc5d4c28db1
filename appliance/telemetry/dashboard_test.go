package telemetry

import (
	"encoding/json"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/eddybroker/eddy/appliance/disk"
	dto "github.com/prometheus/client_model/go"
)

const dashboardPath = "../../examples/grafana/eddy-dashboard.json"

// exposedNames returns every sample name the registry exposes: counters
// and gauges by name, histograms and summaries with their suffixes.
func exposedNames(t *testing.T, m *Metrics) map[string]bool {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	names := map[string]bool{}
	for _, f := range fams {
		n := f.GetName()
		names[n] = true
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			names[n+"_bucket"], names[n+"_sum"], names[n+"_count"] = true, true, true
		case dto.MetricType_SUMMARY:
			names[n+"_sum"], names[n+"_count"] = true, true
		}
	}
	return names
}

// expressions collects every "expr" and query string in the dashboard.
func expressions(v any, out *[]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && (k == "expr" || k == "definition") {
				*out = append(*out, s)
			}
			if k == "query" {
				if q, ok := x.(map[string]any); ok {
					if s, ok := q["query"].(string); ok {
						*out = append(*out, s)
					}
				}
			}
			expressions(x, out)
		}
	case []any:
		for _, x := range v {
			expressions(x, out)
		}
	}
}

// metricRef matches metric names in PromQL: our namespace and the runtime
// and process collectors'.
var metricRef = regexp.MustCompile(`\b(?:eddy|go|process)_[a-zA-Z0-9_]+\b`)

func TestDashboardReferencesRegisteredMetrics(t *testing.T) {
	raw, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var dash map[string]any
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	if dash["uid"] != "eddy-broker" || dash["title"] == "" {
		t.Errorf("dashboard uid %v title %v", dash["uid"], dash["title"])
	}
	panels, _ := dash["panels"].([]any)
	for _, p := range panels {
		p := p.(map[string]any)
		if p["type"] == "row" {
			continue
		}
		if targets, _ := p["targets"].([]any); len(targets) == 0 {
			t.Errorf("panel %q has no queries", p["title"])
		}
	}

	// A registry with every series present: the API driven, a partition
	// source, an io-profile, and a host with a cgroup limit.
	m := New(Options{DataDir: t.TempDir(), Root: fakeHost(t)})
	drive(m)
	m.SetIOProfile(disk.Profile{
		Kind: disk.KindSSD, Basis: disk.BasisMeasured,
		Measurements: &disk.Measurements{
			SeqWriteBytesPerSec: 4e8,
			Sync:                []disk.SyncPoint{{Bytes: 4096, Samples: 10, P99: disk.Latency(time.Millisecond)}},
			RandRead:            disk.ReadPoint{IOPS: 9000},
		},
	})
	have := exposedNames(t, m)

	var exprs []string
	expressions(dash, &exprs)
	if len(exprs) < 30 {
		t.Fatalf("found only %d expressions", len(exprs))
	}
	used := map[string]bool{}
	for _, e := range exprs {
		refs := metricRef.FindAllString(e, -1)
		if len(refs) == 0 {
			t.Errorf("expression references no Eddy metric: %s", e)
		}
		for _, r := range refs {
			used[r] = true
			if !have[r] {
				t.Errorf("expression uses %s, which the registry does not expose: %s", r, e)
			}
		}
	}
	// Every Eddy family is charted somewhere, so new metrics reach the
	// dashboard.
	fams, _ := m.Registry().Gather()
	var missing []string
	for _, f := range fams {
		n := f.GetName()
		if !strings.HasPrefix(n, Namespace+"_") {
			continue
		}
		if !used[n] && !used[n+"_bucket"] && !used[n+"_sum"] && !used[n+"_count"] {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("metrics not on the dashboard: %s", strings.Join(missing, ", "))
	}
}
