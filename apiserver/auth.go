package apiserver

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net"
	"net/http"
	"net/netip"
	"strings"
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
// request, so expiry, rotation and revocation take effect at once.
func (s *Server) authenticate(r *http.Request) (*Principal, *Problem) {
	key, ok := bearer(r)
	if !ok {
		return nil, newProblem(http.StatusUnauthorized, probUnauthorized, "send an API key: Authorization: ApiKey <key> (or Bearer <key>)")
	}
	ip := sourceIP(r)
	// Hashes, not the keys, are compared: ConstantTimeCompare returns at
	// once on a length mismatch, which would tell the admin key's length.
	if s.opts.AdminKey != "" && subtle.ConstantTimeCompare([]byte(hashKey(key)), []byte(hashKey(s.opts.AdminKey))) == 1 {
		return &Principal{Tenant: SystemTenant, KeyID: bootstrapKeyID, Role: RoleAdmin, SourceIP: ip}, nil
	}
	invalid := newProblem(http.StatusUnauthorized, probUnauthorized, "invalid API key")
	id, ok := parseKeyID(key)
	if !ok {
		return nil, invalid
	}
	rec, _, found, err := s.lookupKey(r.Context(), id)
	if err != nil {
		s.log.Error("looking up an API key", "id", id, "error", err)
		return nil, newProblem(http.StatusServiceUnavailable, probUnavailable, "the key store is unavailable; retry")
	}
	sum := hashKey(key)
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
