package apiserver

import (
	"testing"
	"time"
)

// A server's default webhook limit takes a bulk edit upstream at once (a
// delivery per item of a 10,000-item catalog) and sustains what one server
// ingests; beyond that, 429.
func TestWebhookRateLimitDefault(t *testing.T) {
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	l := newRateLimiter(0, 0, DefaultWebhookRateLimit, DefaultWebhookRateBurst, c.Now)
	for i := range 10_000 {
		if ok, _ := l.allow("acme/products"); !ok {
			t.Fatalf("delivery %d of a burst of 10,000 refused", i+1)
		}
	}
	if ok, _ := l.allow("acme/products"); ok {
		t.Fatal("a delivery beyond the burst was taken")
	}
	// A second later: 5,000 more (a 2-core server ingests about that many).
	c.Add(time.Second)
	for i := range 5000 {
		if ok, _ := l.allow("acme/products"); !ok {
			t.Fatalf("delivery %d of the next second refused", i+1)
		}
	}
	if ok, wait := l.allow("acme/products"); ok || wait <= 0 {
		t.Fatalf("beyond 5,000 a second: %t, wait %s", ok, wait)
	}
}
