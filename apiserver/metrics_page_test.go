package apiserver

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// After a run, /metrics parses as the Prometheus text format and carries the
// run's series with bounded labels.
func TestMetricsPageAfterRun(t *testing.T) {
	e := newRunEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	e.expect(e.do("PUT", "/v1/config", user, fileConfig(t.TempDir()), "If-Match", "0"), 200)
	in := []map[string]any{{"id": 1, "name": "a"}, {"id": 2}} // 2 fails normalize
	m := e.expect(e.do("POST", "/v1/sync-events", user, map[string]any{"integration": "items", "input": in, "wait": "30s"}), 200).json(t)
	runID := m["correlationId"].(string)

	page := e.expect(e.do("GET", "/metrics", "", nil), 200)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(page.body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	value := func(name string, labels map[string]string) (float64, bool) {
		f, ok := fams[name]
		if !ok {
			return 0, false
		}
	next:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue(), true
			case m.Gauge != nil:
				return m.Gauge.GetValue(), true
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount()), true
			}
		}
		return 0, false
	}
	acme := map[string]string{"tenant": "acme", "integration": "items"}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"ferry_records_total", map[string]string{"tenant": "acme", "integration": "items", "outcome": "success"}, 1},
		{"ferry_records_total", map[string]string{"tenant": "acme", "integration": "items", "outcome": "failed", "stage": "normalize"}, 1},
		{"ferry_runs_total", map[string]string{"tenant": "acme", "integration": "items", "status": "partial"}, 1},
		{"ferry_run_duration_seconds", acme, 1},
		{"ferry_dlq_entries", acme, 1},
		{"ferry_http_requests_total", map[string]string{"method": "POST", "route": "POST /v1/sync-events", "code": "200"}, 1},
	} {
		if got, ok := value(c.name, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if strings.Contains(string(page.body), runID) {
		t.Error("/metrics carries a run id")
	}
}

// Every series the example Grafana dashboard queries is one ferry defines.
func TestDashboardUsesDefinedSeries(t *testing.T) {
	dash, err := os.ReadFile("../examples/monitoring/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	defined := map[string]bool{}
	nameRe := regexp.MustCompile(`Name:\s+"(ferry_[a-z_]+)"`)
	for _, dir := range []string{".", "../runtime", "../runtime/scheduler"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		for _, f := range files {
			src, _ := os.ReadFile(f)
			for _, m := range nameRe.FindAllSubmatch(src, -1) {
				defined[string(m[1])] = true
			}
			for _, m := range regexp.MustCompile(`NewDesc\("(ferry_[a-z_]+)"`).FindAllSubmatch(src, -1) {
				defined[string(m[1])] = true
			}
		}
	}
	used := regexp.MustCompile(`ferry_[a-z_]+`).FindAllString(string(dash), -1)
	if len(used) < 10 {
		t.Fatalf("dashboard uses only %d series", len(used))
	}
	for _, u := range used {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(u, "_bucket"), "_sum"), "_count")
		if !defined[base] {
			t.Errorf("dashboard queries %s, which ferry does not define", u)
		}
	}
}
