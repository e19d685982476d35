package apiserver

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRateLimitPerKey: a key's burst passes, the next request is 429 with
// Retry-After in whole seconds; other keys are unaffected; tokens come back
// with time.
func TestRateLimitPerKey(t *testing.T) {
	e := newEnv(t)
	a := e.tenantWithKey("acme", RoleUser)
	b := e.key("acme", RoleViewer)
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	e.s.keyLimiter = newRateLimiter(2, 3, DefaultRateLimit, DefaultRateBurst, c.Now) // 2/s, burst 3

	for range 3 {
		e.expect(e.do("GET", "/v1/config", a, nil), 200)
	}
	r := e.expect(e.do("GET", "/v1/config", a, nil), 429)
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("content type %q", ct)
	}
	ra, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || ra < 1 {
		t.Errorf("Retry-After %q: want whole seconds >= 1", r.header.Get("Retry-After"))
	}
	if d := r.json(t)["detail"].(string); !strings.Contains(d, "API key") || !strings.Contains(d, "retry after") {
		t.Errorf("detail %q", d)
	}
	// Refused requests cost nothing: still 429, not a growing debt.
	e.expect(e.do("GET", "/v1/config", a, nil), 429)

	// Another key of the same tenant has its own bucket; so do public routes
	// (none), and a wrong key is 401, not 429.
	for range 3 {
		e.expect(e.do("GET", "/v1/config", b, nil), 200)
	}
	e.expect(e.do("GET", "/healthz", "", nil), 200)
	wrong := a[:len(a)-1] + "x"
	if wrong == a { // the key ended in x already
		wrong = a[:len(a)-1] + "y"
	}
	e.expect(e.do("GET", "/v1/config", wrong, nil), 401)

	// Half a second gives one token back (2/s), a whole burst after 1.5 s.
	c.Add(500 * time.Millisecond)
	e.expect(e.do("GET", "/v1/config", a, nil), 200)
	e.expect(e.do("GET", "/v1/config", a, nil), 429)
	c.Add(1500 * time.Millisecond)
	for range 3 {
		e.expect(e.do("GET", "/v1/config", a, nil), 200)
	}
	e.expect(e.do("GET", "/v1/config", a, nil), 429)

	// Rate-limited requests are visible in /metrics.
	if m := string(e.expect(e.do("GET", "/metrics", "", nil), 200).body); !strings.Contains(m, `code="429"`) {
		t.Error("/metrics has no 429s")
	}
}

// TestRateLimitWebhooks: webhooks (no key) are limited per tenant and
// integration, before anything else is done for them.
func TestRateLimitWebhooks(t *testing.T) {
	e := newEnv(t)
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	e.s.webhookLimiter = newRateLimiter(1, 2, DefaultWebhookRateLimit, DefaultWebhookRateBurst, c.Now)
	e.expect(e.do("POST", "/v1/webhooks/acme/orders", "", "{}"), 404)
	e.expect(e.do("POST", "/v1/webhooks/acme/orders", "", "{}"), 404)
	r := e.expect(e.do("POST", "/v1/webhooks/acme/orders", "", "{}"), 429)
	if r.header.Get("Retry-After") != "1" {
		t.Errorf("Retry-After %q, want 1", r.header.Get("Retry-After"))
	}
	if d := r.json(t)["detail"].(string); !strings.Contains(d, "webhook") {
		t.Errorf("detail %q", d)
	}
	// Another integration, another tenant: their own buckets.
	e.expect(e.do("POST", "/v1/webhooks/acme/products", "", "{}"), 404)
	e.expect(e.do("POST", "/v1/webhooks/beta/orders", "", "{}"), 404)
	c.Add(time.Second)
	e.expect(e.do("POST", "/v1/webhooks/acme/orders", "", "{}"), 404)
}

func TestRateLimiterDefaultsAndOff(t *testing.T) {
	l := newRateLimiter(0, 0, DefaultRateLimit, DefaultRateBurst, time.Now)
	if float64(l.limit) != DefaultRateLimit || l.burst != DefaultRateBurst {
		t.Errorf("defaults: %v/s burst %d", l.limit, l.burst)
	}
	if newRateLimiter(-1, 0, DefaultRateLimit, DefaultRateBurst, time.Now) != nil {
		t.Error("a negative rate does not turn limiting off")
	}
	e := newEnv(t)
	if _, err := New(e.rt, Options{RateLimit: math.NaN()}); err == nil {
		t.Error("a NaN rate limit is accepted")
	}
}

// TestRateLimiterMemoryBounded: idle buckets are dropped once they would be
// full again, and a flood of distinct keys never holds more than the cap.
func TestRateLimiterMemoryBounded(t *testing.T) {
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	l := newRateLimiter(10, 20, DefaultRateLimit, DefaultRateBurst, c.Now) // full again after 2 s idle
	for i := range 1000 {
		l.allow(fmt.Sprint("k", i))
	}
	if len(l.buckets) != 1000 {
		t.Fatalf("%d buckets", len(l.buckets))
	}
	// A minute later (the sweep interval), one request sweeps the idle ones.
	c.Add(rateSweepEvery)
	l.allow("fresh")
	if len(l.buckets) != 1 {
		t.Errorf("%d buckets after the sweep, want 1", len(l.buckets))
	}
	// Busy buckets survive a sweep with their state: an emptied bucket stays
	// empty.
	for range 20 {
		l.allow("busy")
	}
	if ok, _ := l.allow("busy"); ok {
		t.Fatal("burst exceeded")
	}
	c.Add(rateSweepEvery - 50*time.Millisecond)
	for range 30 { // keep it busy: refill 10/s
		l.allow("busy")
	}
	c.Add(50 * time.Millisecond)
	if ok, _ := l.allow("busy"); ok {
		t.Error("a busy bucket was reset by the sweep")
	}

	// A flood of distinct keys within one sweep interval: capped.
	for i := range maxRateBuckets + 5000 {
		l.allow(fmt.Sprint("flood", i))
	}
	if n := len(l.buckets); n > maxRateBuckets {
		t.Errorf("%d buckets, more than the cap of %d", n, maxRateBuckets)
	}
}

// BenchmarkRateLimiterAllow: the limiter's cost per request, 1000 keys
// from concurrent callers (one lock for all buckets).
func BenchmarkRateLimiterAllow(b *testing.B) {
	l := newRateLimiter(1e9, 1e9, DefaultRateLimit, DefaultRateBurst, time.Now)
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprint("key:", i)
	}
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l.allow(keys[i%len(keys)])
			i++
		}
	})
}
