package apiserver

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Rate limiting: a token bucket per API key, and per tenant and integration
// for webhooks, which have no key. The key defaults let a script or a
// dashboard run freely and stop a runaway client before it starves the other
// tenants. Webhooks get more: one bulk edit upstream (a price change on a
// whole catalog) sends a delivery per item at once, each is cheap and
// durable, and senders retry a 429 later anyway.
const (
	// DefaultRateLimit is the sustained requests per second of one key.
	DefaultRateLimit = 50
	// DefaultRateBurst is how many requests a key may send at once.
	DefaultRateBurst = 100
	// DefaultWebhookRateLimit and DefaultWebhookRateBurst are a webhook's
	// (one integration of one tenant), per server. The limit is about what
	// one 2-core server ingests (BenchmarkWebhookIngest), so it never stops
	// deliveries the server could store, yet one integration flooded (its
	// URL is public) cannot take a larger server from the others. The
	// burst, two seconds of it, takes a bulk edit of 10,000 items at once.
	DefaultWebhookRateLimit = 5000
	DefaultWebhookRateBurst = 10_000
	// maxRateBuckets bounds the limiter's memory (~150 bytes a bucket).
	maxRateBuckets = 100_000
	// rateSweepEvery is how often idle buckets are dropped.
	rateSweepEvery = time.Minute

	probRateLimited = "rate-limited"
)

// rateLimiter keeps one token bucket per key, created on first use. A bucket
// left idle until it is full again is exactly a new bucket, so dropping it
// changes nothing: that is what bounds the memory of well-behaved traffic.
// Against a flood of distinct keys (webhook paths are unauthenticated) the
// map is capped; over the cap, arbitrary buckets are dropped, which at worst
// gives their owners one more burst.
type rateLimiter struct {
	limit rate.Limit
	burst int
	now   func() time.Time
	idle  time.Duration // a bucket idle this long is full

	mu        sync.Mutex
	buckets   map[string]*rateBucket
	lastSweep time.Time
}

type rateBucket struct {
	lim  *rate.Limiter
	last time.Time
}

// newRateLimiter returns nil (no limit) when perSecond is negative; 0 and
// burst 0 take the defaults.
func newRateLimiter(perSecond float64, burst int, defRate float64, defBurst int, now func() time.Time) *rateLimiter {
	if perSecond < 0 {
		return nil
	}
	if perSecond == 0 {
		perSecond = defRate
	}
	if burst <= 0 {
		burst = defBurst
	}
	idle := time.Duration(float64(burst) / perSecond * float64(time.Second))
	return &rateLimiter{limit: rate.Limit(perSecond), burst: burst, now: now, idle: idle,
		buckets: map[string]*rateBucket{}, lastSweep: now()}
}

// allow takes one token of key's bucket. When there is none, it returns how
// long until there is.
func (l *rateLimiter) allow(key string) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= rateSweepEvery || len(l.buckets) >= maxRateBuckets {
		l.sweep(now)
	}
	b := l.buckets[key]
	if b == nil {
		b = &rateBucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.buckets[key] = b
	}
	b.last = now
	r := b.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now) // a refused request costs no token
		return false, d
	}
	return true, 0
}

// peek is allow without taking a token: whether key's bucket has one, and
// when not, how long until it has. It creates no bucket: a missing one is full.
func (l *rateLimiter) peek(key string) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		return true, 0
	}
	if tokens := b.lim.TokensAt(now); tokens < 1 {
		return false, time.Duration((1 - tokens) / float64(l.limit) * float64(time.Second))
	}
	return true, 0
}

func (l *rateLimiter) sweep(now time.Time) {
	l.lastSweep = now
	for k, b := range l.buckets {
		if now.Sub(b.last) >= l.idle {
			delete(l.buckets, k)
		}
	}
	for k := range l.buckets {
		if len(l.buckets) < maxRateBuckets*9/10 {
			break
		}
		delete(l.buckets, k)
	}
}

// rateLimited answers 429 when the request's bucket is empty. Requests with
// a key draw from the key's bucket, webhooks from their tenant's
// integration's; other public routes (health, metrics, documentation) are
// not limited.
//
// Authenticated requests are limited after authentication, by the key's id:
// a key id is public (lists, the audit log), so limiting by the id a request
// merely claims would let anyone exhaust another tenant's bucket.
func (s *Server) rateLimited(w http.ResponseWriter, rt Route, r *http.Request, p *Principal) bool {
	l, key, who := s.keyLimiter, "", "this API key"
	switch t, i := r.PathValue("tenant"), r.PathValue("integration"); {
	case p != nil:
		key = p.KeyID
	case rt.Roles == nil && t != "" && i != "":
		l, key, who = s.webhookLimiter, t+"/"+i, "this webhook"
	}
	if l == nil || key == "" {
		return false
	}
	ok, wait := l.allow(key)
	if ok {
		return false
	}
	secs := retryAfter(w, wait)
	writeProblem(w, newProblem(http.StatusTooManyRequests, probRateLimited,
		"%s sent more than %d requests at once or %g a second; retry after %d s", who, l.burst, float64(l.limit), secs))
	return true
}

// retryAfter sets Retry-After for a wait and returns it in seconds: whole
// seconds (RFC 9110), rounded up, never 0, so a client that honours it is
// not refused again.
func retryAfter(w http.ResponseWriter, wait time.Duration) int {
	secs := max(1, int(math.Ceil(wait.Seconds())))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	return secs
}
