package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhq/ferry/apiserver/webhook"
	"github.com/ferryhq/ferry/runtime"
	"github.com/zclconf/go-cty/cty"
)

// BenchmarkWebhookIngest: verified Shopify deliveries (the 6 KB
// products/update fixture, each with its own X-Shopify-Event-Id) POSTed from
// concurrent senders over loopback, each answered 202 once its records and
// its delivery id are stored in JetStream, in the integration's open run
// with the deliveries that arrived meanwhile (group commit, one write per
// flush). The runs execute meanwhile on the same cores, as they would in
// production: one at a time per integration (the next one filling up), or up
// to MaxConcurrentRuns with allow_parallel_runs. Reports req/s, the p50/p99
// latency a sender sees, and deliveries per run. Sender, server, NATS and
// runs share GOMAXPROCS: on 2 cores the HTTP client is a good part of it.
func BenchmarkWebhookIngest(b *testing.B) {
	for _, c := range []struct {
		perProc      int // senders per GOMAXPROCS
		parallelRuns bool
	}{{1, false}, {16, false}, {16, true}} {
		name := fmt.Sprintf("senders=%d/parallel_runs=%t", c.perProc*goruntime.GOMAXPROCS(0), c.parallelRuns)
		b.Run(name, func(b *testing.B) { benchWebhookIngest(b, c.perProc, c.parallelRuns) })
	}
}

func benchWebhookIngest(b *testing.B, perProc int, parallelRuns bool) {
	ctx := context.Background()
	rt, err := runtime.Open(ctx, runtime.Options{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close()
	// Ingest capacity is measured, not the per-webhook rate limit.
	// The runs write to the tenant's directory (relative paths: a server
	// confines connectors to it).
	out := b.TempDir()
	s, err := New(rt, Options{AdminKey: testAdminKey, MasterKey: bytes.Repeat([]byte{7}, 32), WebhookRateLimit: -1,
		TenantDirs: map[string]string{"acme": out}})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	defer func() {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_ = s.Close(c) // queued runs stay stored; they are not the benchmark
	}()
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256}}
	call := func(method, path, key string, body any, want int, headers ...string) {
		j, _ := json.Marshal(body)
		req, _ := http.NewRequest(method, srv.URL+path, bytes.NewReader(j))
		req.Header.Set("Authorization", "ApiKey "+key)
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		res, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		out, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != want {
			b.Fatalf("%s %s: %d %s", method, path, res.StatusCode, out)
		}
	}
	call("POST", "/v1/tenants", testAdminKey, map[string]any{"name": "acme"}, 201)
	user, err := s.CreateKey(ctx, "acme", "bench", string(RoleUser))
	if err != nil {
		b.Fatal(err)
	}
	call("PUT", "/v1/secrets/shopify_webhook_secret", user, map[string]any{"value": shopSecret}, 201)
	call("PUT", "/v1/secrets/hook_secret", user, map[string]any{"value": "x"}, 201)
	cfg := webhookConfig(out)
	files := cfg["files"].(map[string]string)
	files["main.hcl"] = strings.ReplaceAll(files["main.hcl"], `"`+filepath.ToSlash(out)+`"`, `"."`)
	if parallelRuns {
		files["main.hcl"] = string(bytes.Replace([]byte(files["main.hcl"]), []byte("  webhook {\n    verify = \"shopify\""), []byte("  allow_parallel_runs = true\n  webhook {\n    verify = \"shopify\""), 1))
	}
	call("PUT", "/v1/config", user, cfg, 200, "If-Match", "0")

	lat, runs := sendWebhooks(b, client, srv.URL+"/v1/webhooks/acme/products", productsFixture(b), perProc)
	if len(lat) > 0 {
		b.ReportMetric(float64(len(lat))/float64(len(runs)), "deliveries/run")
	}
}

// BenchmarkWebhookIngestFloor is the ceiling BenchmarkWebhookIngest can
// reach on this machine: the same load generator and HTTP stack against a
// handler doing only what no ingest can skip (read the body, verify its
// Shopify HMAC, answer 202 with a body like the real one's). Whatever
// separates the two is the cost of the durable enqueue.
func BenchmarkWebhookIngestFloor(b *testing.B) {
	for _, perProc := range []int{1, 16} {
		b.Run(fmt.Sprintf("senders=%d", perProc*goruntime.GOMAXPROCS(0)), func(b *testing.B) {
			ep, err := webhook.New(webhook.ModeShopify, map[string]cty.Value{"secret": cty.StringVal(shopSecret)})
			if err != nil {
				b.Fatal(err)
			}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, err := readBody(w, r, WebhookMaxBodyBytes)
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
				if err := ep.Verify(r, body); err != nil {
					http.Error(w, err.Error(), http.StatusUnauthorized)
					return
				}
				w.Header().Set("Location", "/v1/runs/20250101T000000000Z-0123456789abcdef")
				writeJSON(w, r, http.StatusAccepted, webhookResponse{RunID: "20250101T000000000Z-0123456789abcdef", Records: 1, Topic: ep.Topic(r)})
			}))
			defer srv.Close()
			client := &http.Client{Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256}}
			sendWebhooks(b, client, srv.URL+"/v1/webhooks/acme/products", productsFixture(b), perProc)
		})
	}
}

// sendWebhooks POSTs body as Shopify products/update deliveries, each with
// its own event id, from perProc senders per GOMAXPROCS until b.N, each
// expecting 202; it reports req/s, p50-ms and p99-ms and returns the
// latencies and the distinct Location headers (runs).
func sendWebhooks(b *testing.B, client *http.Client, url string, body []byte, perProc int) ([]time.Duration, map[string]bool) {
	var seq atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	runs := map[string]bool{}
	b.SetBytes(int64(len(body)))
	b.SetParallelism(perProc)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		myRuns := map[string]bool{}
		for pb.Next() {
			req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Shopify-Topic", "products/update")
			req.Header.Set("X-Shopify-Hmac-Sha256", productsHMAC)
			req.Header.Set("X-Shopify-Event-Id", fmt.Sprintf("bench-%d", seq.Add(1)))
			t0 := time.Now()
			res, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			mine = append(mine, time.Since(t0))
			if res.StatusCode != http.StatusAccepted {
				b.Errorf("status %d", res.StatusCode)
				return
			}
			myRuns[res.Header.Get("Location")] = true
		}
		mu.Lock()
		lat = append(lat, mine...)
		maps.Copy(runs, myRuns)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	if len(lat) == 0 {
		return nil, runs
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(float64(len(lat))*p))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "req/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	return lat, runs
}
