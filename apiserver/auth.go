package apiserver

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Principal is the caller: the key's tenant, id and role.
type Principal struct {
	Tenant   string
	KeyID    string
	Role     Role
	SourceIP string
}

// bootstrapKeyID is the actor id of Options.AdminKey in the audit log.
const bootstrapKeyID = "bootstrap-admin"

// Key format: fy_<id: 8 base62>_<secret: 32 base62>. The id is the key's
// public prefix: it names the key in lists and the audit log and finds its
// record; the secret part carries 32×log2(62) ≈ 190 bits of randomness.
const (
	keyPrefix    = "fy_"
	keyIDLen     = 8
	keySecretLen = 32
	base62       = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

func randomBase62(n int) string {
	b := make([]byte, n)
	// Rejection sampling keeps the characters uniform.
	buf := make([]byte, 1)
	for i := 0; i < n; {
		if _, err := rand.Read(buf); err != nil {
			panic(err) // crypto/rand never fails on supported platforms
		}
		if buf[0] >= 248 { // 248 = 4×62
			continue
		}
		b[i] = base62[buf[0]%62]
		i++
	}
	return string(b)
}

func newKeyID() string { return randomBase62(keyIDLen) }

func newKey(id string) string { return keyPrefix + id + "_" + randomBase62(keySecretLen) }

// hashKey is the stored form of a key. Keys are high-entropy random strings
// (≈190 bits), not passwords, so a fast hash is right: no dictionary or brute
// force attack applies, and a slow KDF would only cost every request.
func hashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// parseKeyID returns the id part of a well-formed key.
func parseKeyID(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, keyPrefix)
	if !ok || len(rest) != keyIDLen+1+keySecretLen || rest[keyIDLen] != '_' {
		return "", false
	}
	for _, c := range rest[:keyIDLen] + rest[keyIDLen+1:] {
		if !strings.ContainsRune(base62, c) {
			return "", false
		}
	}
	return rest[:keyIDLen], true
}

func isKeyID(id string) bool {
	if len(id) != keyIDLen {
		return false
	}
	for _, c := range id {
		if !strings.ContainsRune(base62, c) {
			return false
		}
	}
	return true
}

// bearer extracts the key from `Authorization: ApiKey <key>` or `Bearer <key>`.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, key, ok := strings.Cut(h, " ")
	if !ok || (!strings.EqualFold(scheme, "ApiKey") && !strings.EqualFold(scheme, "Bearer")) {
		return "", false
	}
	key = strings.TrimSpace(key)
	return key, key != ""
}

// sourceIP is the peer address. X-Forwarded-For is not trusted.
func sourceIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// authenticate checks the key of a request against the store on every
// request, so expiry, rotation and revocation take effect at once. Failed
// attempts are throttled (authThrottle): once a source or a key id failed
// too often, 429 answers before the store is read.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (*Principal, *Problem) {
	key, ok := bearer(r)
	if !ok {
		return nil, newProblem(http.StatusUnauthorized, probUnauthorized, "send an API key: Authorization: ApiKey <key> (or Bearer <key>)")
	}
	ip := sourceIP(r)
	sum := hashKey(key)
	// Hashes, not the keys, are compared: ConstantTimeCompare returns at
	// once on a length mismatch, which would tell the admin key's length.
	if s.opts.AdminKey != "" && subtle.ConstantTimeCompare([]byte(sum), []byte(hashKey(s.opts.AdminKey))) == 1 {
		return &Principal{Tenant: SystemTenant, KeyID: bootstrapKeyID, Role: RoleAdmin, SourceIP: ip}, nil
	}
	id, _ := parseKeyID(key) // "" when the key is malformed
	if wait, who := s.authThrottle.check(ip, id, sum); wait > 0 {
		secs := retryAfter(w, wait)
		return nil, newProblem(http.StatusTooManyRequests, probRateLimited,
			"too many failed authentications %s; retry after %d s with a valid API key", who, secs)
	}
	p, prob := s.checkKey(r.Context(), key, id, sum, ip)
	switch {
	case p != nil:
		s.authThrottle.succeeded(id, sum)
	case prob.Status != http.StatusServiceUnavailable: // the store failing is not the caller's failure
		s.authThrottle.failed(ip, id, sum)
	}
	return p, prob
}

// checkKey authenticates a key that is not the admin key; id is its id, ""
// when the key is malformed.
func (s *Server) checkKey(ctx context.Context, key, id, sum, ip string) (*Principal, *Problem) {
	invalid := newProblem(http.StatusUnauthorized, probUnauthorized, "invalid API key")
	if id == "" {
		return nil, invalid
	}
	rec, _, found, err := s.lookupKey(ctx, id)
	if err != nil {
		s.log.Error("looking up an API key", "id", id, "error", err)
		return nil, newProblem(http.StatusServiceUnavailable, probUnavailable, "the key store is unavailable; retry")
	}
	stored := rec.Hash
	if !found {
		stored = strings.Repeat("0", len(sum)) // compare anyway: same timing for unknown ids
	}
	if subtle.ConstantTimeCompare([]byte(sum), []byte(stored)) != 1 || !found {
		return nil, invalid
	}
	now := s.now()
	if rec.RevokedAt != nil {
		return nil, newProblem(http.StatusUnauthorized, probUnauthorized, "API key %s was revoked", id)
	}
	if rec.ExpiresAt != nil && !now.Before(*rec.ExpiresAt) {
		return nil, newProblem(http.StatusUnauthorized, probUnauthorized, "API key %s expired at %s", id, rec.ExpiresAt.Format(time.RFC3339))
	}
	if len(rec.AllowedIPs) > 0 && !ipAllowed(ip, rec.AllowedIPs) {
		return nil, newProblem(http.StatusForbidden, probForbidden, "API key %s may not be used from %s", id, ip)
	}
	return &Principal{Tenant: rec.Tenant, KeyID: rec.ID, Role: rec.Role, SourceIP: ip}, nil
}

// Failed authentications: every request with a wrong, unknown, revoked or
// expired key costs up to two reads of the key store, so a client hammering
// the API with bad keys (a brute force, a script with a revoked key in a
// retry loop) would load the store for everyone. Guessing a key is hopeless
// (≈190 bits); what the throttle bounds is that load.
const (
	// DefaultAuthFailureLimit is the failed authentications per second a
	// source address, or a key id, may sustain; DefaultAuthFailureBurst how
	// many may come at once. A person mistyping a key, or a script started
	// with a stale one, stays well under them.
	DefaultAuthFailureLimit = 0.2
	DefaultAuthFailureBurst = 20
	// maxKnownKeys bounds the memory of authThrottle.good (~150 bytes a key).
	maxKnownKeys = 100_000
)

// authThrottle limits failed authentications per source address (IPv6 per
// /64, what one host usually holds) and per key id. A key id is public (it
// is in lists and the audit log): throttling every request naming it would
// let anyone lock its owner out. So a request whose key already
// authenticated on this server is never throttled - it still goes through
// the full check - and only keys never seen to work count against the
// limits. Successful requests are thus unaffected; a valid key used for the
// first time from a throttled address waits like the failures.
type authThrottle struct {
	lim *rateLimiter

	mu   sync.Mutex
	good map[string]string // key id → hash of the key last seen to authenticate
}

// newAuthThrottle returns nil (no throttling) when perSecond is negative.
func newAuthThrottle(perSecond float64, burst int, now func() time.Time) *authThrottle {
	lim := newRateLimiter(perSecond, burst, DefaultAuthFailureLimit, DefaultAuthFailureBurst, now)
	if lim == nil {
		return nil
	}
	return &authThrottle{lim: lim, good: map[string]string{}}
}

// sourceKey is the throttle's bucket of an address: an IPv6 host gets a
// whole /64 from its provider and could pick a new address per request.
func sourceKey(ip string) string {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return "ip " + ip
	}
	if addr = addr.Unmap(); addr.Is6() {
		p, _ := addr.Prefix(64)
		return "ip " + p.String()
	}
	return "ip " + addr.String()
}

// check returns how long a request must wait (0: go ahead) and whom the
// limit applies to, for the answer.
func (t *authThrottle) check(ip, id, sum string) (time.Duration, string) {
	if t == nil || t.known(id, sum) {
		return 0, ""
	}
	if ok, wait := t.lim.peek(sourceKey(ip)); !ok {
		return wait, "from " + ip
	}
	if id != "" {
		if ok, wait := t.lim.peek("key " + id); !ok {
			return wait, "with API key id " + id
		}
	}
	return 0, ""
}

func (t *authThrottle) known(id, sum string) bool {
	if id == "" {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.good[id] == sum
}

func (t *authThrottle) succeeded(id, sum string) {
	if t == nil || id == "" {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.good) >= maxKnownKeys {
		// Only keys that work get here, so this takes as many live keys;
		// forgetting them costs nothing but a throttle they may meet.
		clear(t.good)
	}
	t.good[id] = sum
}

// failed counts a failure against the source and the key id. A key that
// worked and now fails (revoked, expired, rotated) is no longer known.
func (t *authThrottle) failed(ip, id, sum string) {
	if t == nil {
		return
	}
	t.lim.allow(sourceKey(ip))
	if id == "" {
		return
	}
	t.lim.allow("key " + id)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.good[id] == sum {
		delete(t.good, id)
	}
}

func ipAllowed(ip string, ranges []string) bool {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	addr = addr.Unmap()
	for _, c := range ranges {
		p, err := netip.ParsePrefix(c)
		if err == nil && p.Contains(addr) {
			return true
		}
	}
	return false
}
