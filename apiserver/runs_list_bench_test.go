package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/ferryhq/ferry/engine"
	"github.com/ferryhq/ferry/runtime"
)

// benchRuns is the run history BenchmarkListRuns lists.
const benchRuns = 10_000

// BenchmarkListRuns: GET /v1/runs over benchRuns runs of one tenant, across
// four integrations, stored as the server stores them (a run record each;
// its request stored when it started and removed when it ended). Reports
// the p50 and p99 latency of the handler (no HTTP client or network).
func BenchmarkListRuns(b *testing.B) {
	s, key := benchRunHistory(b)
	h := s.Handler()
	for _, c := range []struct{ name, query string }{
		{"first_page", ""},
		{"page_5", "?page=5"},
		{"integration", "?integration=int2"},
		{"status", "?status=failed"},
		{"integration_status_page_2", "?integration=int1&status=succeeded&page=2"},
	} {
		b.Run(c.name, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				req := httptest.NewRequest("GET", "/v1/runs"+c.query, nil)
				req.Header.Set("Authorization", "ApiKey "+key)
				rec := httptest.NewRecorder()
				t0 := time.Now()
				h.ServeHTTP(rec, req)
				lat = append(lat, time.Since(t0))
				if rec.Code != http.StatusOK {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
			b.StopTimer()
			slices.Sort(lat)
			pct := func(p float64) float64 {
				return float64(lat[min(len(lat)-1, int(float64(len(lat))*p))].Microseconds()) / 1000
			}
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
		})
	}
}

// benchRunHistory opens a server with benchRuns ended runs of tenant acme
// and returns it with a viewer key.
func benchRunHistory(b *testing.B) (*Server, string) {
	b.Helper()
	ctx := context.Background()
	rt, err := runtime.Open(ctx, runtime.Options{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rt.Close() })
	s, err := New(rt, Options{AdminKey: testAdminKey, MasterKey: bytes.Repeat([]byte{7}, 32), RateLimit: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_ = s.Close(c)
	})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/v1/tenants", bytes.NewReader([]byte(`{"name":"acme"}`)))
	req.Header.Set("Authorization", "ApiKey "+testAdminKey)
	req.Header.Set("Content-Type", "application/json")
	s.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusCreated {
		b.Fatalf("creating the tenant: %d %s", rec.Code, rec.Body)
	}
	key, err := s.CreateKey(ctx, "acme", "bench", string(RoleViewer))
	if err != nil {
		b.Fatal(err)
	}
	seedRuns(b, s, "acme", benchRuns)
	return s, key
}

// seedRuns stores n ended runs of tenant as a server leaves them: the
// run's request was stored and removed (runManager.finish), its record is
// in the runtime's bucket. Ids are the server's (newRunID), one a second.
func seedRuns(tb testing.TB, s *Server, tenant string, n int) {
	tb.Helper()
	ctx := context.Background()
	runs, err := s.js.KeyValue(ctx, runtime.BucketRuns)
	if err != nil {
		tb.Fatal(err)
	}
	statuses := []engine.RunStatus{engine.RunSucceeded, engine.RunSucceeded, engine.RunSucceeded, engine.RunSucceeded,
		engine.RunSucceeded, engine.RunSucceeded, engine.RunSucceeded, engine.RunPartial, engine.RunFailed, engine.RunCancelled}
	triggers := []string{"api", "webhook", "schedule"}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		at := t0.Add(time.Duration(i) * time.Second)
		id := newRunID(at)
		rr := runRequest{RunID: id, Tenant: tenant, Integration: fmt.Sprintf("int%d", i%4), Trigger: triggers[i%3], Revision: 1, Queued: at}
		b, _ := json.Marshal(rr)
		if _, err := s.runs.reqs.Create(ctx, requestKey(tenant, id), b); err != nil {
			tb.Fatal(err)
		}
		run := runtime.Run{ID: id, Tenant: tenant, Integration: rr.Integration, Trigger: rr.Trigger, Revision: "1",
			Status: statuses[i%len(statuses)], Counts: engine.Counts{Total: 100, Success: 97, Failed: 3},
			Queued: at.Add(3 * time.Millisecond), Started: at.Add(5 * time.Millisecond), Ended: at.Add(900 * time.Millisecond),
			Batches: 1, IngestDone: true}
		if run.Status == engine.RunFailed {
			run.Error = "read source: connection refused"
		}
		v, _ := json.Marshal(run)
		if _, err := runs.Put(ctx, tenant+"."+id, v); err != nil {
			tb.Fatal(err)
		}
		s.runs.finish(ctx, rr)
	}
}
