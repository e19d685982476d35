package apiserver

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// countingKV counts the reads of a bucket.
type countingKV struct {
	jetstream.KeyValue
	gets atomic.Int64
}

func (kv *countingKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	kv.gets.Add(1)
	return kv.KeyValue.Get(ctx, key)
}

// from sends GET /v1/config with key as if from ip.
func (e *env) from(ip, key string) *httptest.ResponseRecorder {
	e.t.Helper()
	req := httptest.NewRequest("GET", "/v1/config", nil)
	req.RemoteAddr = hostPort(ip)
	req.Header.Set("Authorization", "ApiKey "+key)
	rec := httptest.NewRecorder()
	e.s.Handler().ServeHTTP(rec, req)
	return rec
}

func hostPort(ip string) string {
	if strings.Contains(ip, ":") {
		return "[" + ip + "]:40000"
	}
	return ip + ":40000"
}

// TestAuthFailureThrottle: a burst of bad keys from one address gets 429
// with Retry-After, and from then on costs no read of the key store; a good
// key still works, from there and from elsewhere; the limit recovers with
// time. Key ids are limited across addresses, IPv6 per /64.
func TestAuthFailureThrottle(t *testing.T) {
	e := newEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	fresh := e.key("acme", RoleViewer) // valid, never used yet
	userID, _ := parseKeyID(user)
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	e.s.authThrottle = newAuthThrottle(1, 3, c.Now) // 1 failure/s, 3 at once
	kv := &countingKV{KeyValue: e.s.st.keys}
	e.s.st.keys = kv
	status := func(ip, key string, want int) *httptest.ResponseRecorder {
		t.Helper()
		r := e.from(ip, key)
		if r.Code != want {
			t.Fatalf("from %s: status %d, want %d\n%s", ip, r.Code, want, r.Body)
		}
		return r
	}
	unknown := "fy_" + strings.Repeat("Z", keyIDLen) + "_" + strings.Repeat("a", keySecretLen)
	wrongSecret := user[:len(user)-4] + "zzzz"
	if wrongSecret == user {
		wrongSecret = user[:len(user)-4] + "yyyy"
	}

	const a = "203.0.113.7"
	status(a, user, 200) // the user's key worked from a before the attack
	status(a, unknown, 401)
	status(a, "not-a-key", 401)
	before := kv.gets.Load()
	status(a, unknown, 401)
	if kv.gets.Load() == before {
		t.Fatal("the count of key store reads does not see authentication: the test proves nothing")
	}
	r := status(a, unknown, 429)
	if ct := r.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("content type %q", ct)
	}
	if ra, err := strconv.Atoi(r.Header().Get("Retry-After")); err != nil || ra != 1 {
		t.Errorf("Retry-After %q, want 1 (one failure a second)", r.Header().Get("Retry-After"))
	}
	if d := r.Body.String(); !strings.Contains(d, "too many failed authentications from "+a) || !strings.Contains(d, "rate-limited") {
		t.Errorf("body %s", d)
	}
	// Throttled: no more reads of the store, whatever the key.
	before = kv.gets.Load()
	for _, k := range []string{unknown, wrongSecret, "not-a-key", fresh} {
		status(a, k, 429)
	}
	if n := kv.gets.Load() - before; n != 0 {
		t.Errorf("throttled requests read the key store %d times", n)
	}
	// Successful requests are unaffected: the key known to work, from a; the
	// fresh key from elsewhere, and then from a too.
	status(a, user, 200)
	status("198.51.100.1", fresh, 200)
	status(a, fresh, 200)
	status(a, wrongSecret, 429)

	// One failure a second comes back.
	c.Add(time.Second)
	status(a, unknown, 401)
	status(a, unknown, 429)
	c.Add(3 * time.Second)
	for range 3 {
		status(a, unknown, 401)
	}
	status(a, unknown, 429)

	// A key id is limited across addresses: a distributed guess at user's
	// secret stops, the user's key does not.
	for i := range 3 {
		status("192.0.2."+strconv.Itoa(10+i), wrongSecret, 401)
	}
	r = status("192.0.2.20", wrongSecret, 429)
	if d := r.Body.String(); !strings.Contains(d, "API key id "+userID) {
		t.Errorf("body %s", d)
	}
	other := "fy_" + strings.Repeat("Y", keyIDLen) + "_" + strings.Repeat("a", keySecretLen)
	status("192.0.2.21", other, 401) // another id from a fresh address
	status("192.0.2.22", user, 200)

	// IPv6: one /64 is one host. (Malformed keys: no key id to limit.)
	for i := range 3 {
		status("2001:db8:1:2::"+strconv.Itoa(i+1), "not-a-key", 401)
	}
	status("2001:db8:1:2:ffff::9", "not-a-key", 429)
	status("2001:db8:1:3::1", "not-a-key", 401)

	// A key that worked and was revoked counts again: a script retrying with
	// it is throttled like any other.
	k2 := e.key("acme", RoleViewer)
	status("198.51.100.50", k2, 200)
	id2, _ := parseKeyID(k2)
	e.expect(e.do("DELETE", "/v1/api-keys/"+id2, testAdminKey, nil, "If-Match", "*"), 200)
	for range 3 {
		status("198.51.100.50", k2, 401)
	}
	status("198.51.100.50", k2, 429)

	// The admin key is checked before the throttle and the store.
	status(a, testAdminKey, 403) // authenticated; GET /v1/config is a tenant's
}

// TestAuthFailureThrottleOptions: the limits come from Options, with
// defaults; negative turns the throttle off; NaN is refused.
func TestAuthFailureThrottleOptions(t *testing.T) {
	e := newEnv(t)
	if l := e.s.authThrottle.lim; float64(l.limit) != DefaultAuthFailureLimit || l.burst != DefaultAuthFailureBurst {
		t.Errorf("defaults: %v/s, burst %d", l.limit, l.burst)
	}
	s, err := New(e.rt, Options{AuthFailureLimit: 5, AuthFailureBurst: 7})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	if l := s.authThrottle.lim; l.limit != 5 || l.burst != 7 {
		t.Errorf("options: %v/s, burst %d", l.limit, l.burst)
	}
	if _, err := New(e.rt, Options{AuthFailureLimit: math.NaN()}); err == nil {
		t.Error("NaN accepted")
	}

	e.s.authThrottle = newAuthThrottle(-1, 0, time.Now)
	if e.s.authThrottle != nil {
		t.Fatal("a negative limit did not turn the throttle off")
	}
	for range DefaultAuthFailureBurst + 5 {
		if r := e.from("203.0.113.9", "fy_bad"); r.Code != http.StatusUnauthorized {
			t.Fatalf("unthrottled: %d", r.Code)
		}
	}
}
