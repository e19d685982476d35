package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ---- shopify ----

// ShopifyVerifier checks X-Shopify-Hmac-Sha256: the standard base64 of
// HMAC-SHA256(client secret, raw body). Previous secrets are accepted too,
// while a secret is being rotated.
type ShopifyVerifier struct {
	keys [][]byte
}

func newShopify(a *attrReader) (*ShopifyVerifier, error) {
	k, err := a.secret("secret", true, ModeShopify)
	if err != nil {
		return nil, err
	}
	v := &ShopifyVerifier{keys: [][]byte{k}}
	if old, err := a.secret("previous_secret", false, ModeShopify); err != nil {
		return nil, err
	} else if old != nil {
		v.keys = append(v.keys, old)
	}
	return v, nil
}

// Verify implements Verifier.
func (v *ShopifyVerifier) Verify(r *http.Request, body []byte) error {
	name := ShopifyHMACHeader
	h := r.Header.Get(name)
	if h == "" {
		name = "Shopify-Hmac-Sha256" // Events deliveries
		h = r.Header.Get(name)
	}
	if h == "" {
		return fmt.Errorf("%w: the %s header is missing", ErrUnauthorized, ShopifyHMACHeader)
	}
	sig, err := base64.StdEncoding.Strict().DecodeString(h)
	if err != nil {
		return fmt.Errorf("%w: the %s header is not base64", ErrUnauthorized, name)
	}
	if !macMatches(sha256.New, v.keys, sig, body) {
		return fmt.Errorf("%w: the %s header does not match the body (signed with another secret, or the body was changed)", ErrUnauthorized, name)
	}
	return nil
}

// macMatches reports whether sig is the MAC of the parts under one of keys.
func macMatches(h func() hash.Hash, keys [][]byte, sig []byte, parts ...[]byte) bool {
	ok := false
	for _, k := range keys {
		m := hmac.New(h, k)
		for _, p := range parts {
			m.Write(p)
		}
		if hmac.Equal(m.Sum(nil), sig) {
			ok = true
		}
	}
	return ok
}

// ---- hmac ----

// HMACVerifier checks a configurable HMAC signature header, optionally over a
// signed timestamp that must lie within a tolerance of now (replay
// protection).
type HMACVerifier struct {
	keys      [][]byte
	hash      func() hash.Hash
	header    string
	base64    bool
	prefix    string
	tsHeader  string
	tolerance time.Duration
	// signed is the template of the signed message, split into literal text
	// and the {timestamp} and {body} placeholders.
	signed []part
	now    func() time.Time
}

type part struct {
	kind partKind
	text string
}

type partKind int

const (
	partText partKind = iota
	partTimestamp
	partBody
)

func newHMAC(a *attrReader, now func() time.Time) (*HMACVerifier, error) {
	k, err := a.secret("secret", true, ModeHMAC)
	if err != nil {
		return nil, err
	}
	v := &HMACVerifier{keys: [][]byte{k}, now: now}
	if old, err := a.secret("previous_secret", false, ModeHMAC); err != nil {
		return nil, err
	} else if old != nil {
		v.keys = append(v.keys, old)
	}
	h, ok, err := a.header("header")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: verify = \"hmac\" needs header, the request header holding the signature (e.g. \"X-Signature\")", ErrConfig)
	}
	v.header = h
	alg, err := a.oneOf("algorithm", "sha256", "sha256", "sha512")
	if err != nil {
		return nil, err
	}
	v.hash = sha256.New
	if alg == "sha512" {
		v.hash = sha512.New
	}
	enc, err := a.oneOf("encoding", "hex", "hex", "base64")
	if err != nil {
		return nil, err
	}
	v.base64 = enc == "base64"
	if v.prefix, _, err = a.str("prefix"); err != nil {
		return nil, err
	}
	ts, hasTS, err := a.header("timestamp_header")
	if err != nil {
		return nil, err
	}
	if hasTS {
		v.tsHeader = ts
		if v.tolerance, err = a.duration("tolerance", DefaultTolerance); err != nil {
			return nil, err
		}
	} else if _, ok := a.attrs["tolerance"]; ok {
		return nil, fmt.Errorf("%w: tolerance needs timestamp_header, the request header holding the signed timestamp", ErrConfig)
	}
	tmpl, ok, err := a.str("signed")
	if err != nil {
		return nil, err
	}
	if !ok {
		tmpl = "{body}"
		if hasTS {
			tmpl = "{timestamp}.{body}"
		}
	}
	if v.signed, err = parseSigned(tmpl, hasTS); err != nil {
		return nil, err
	}
	return v, nil
}

// parseSigned splits a signed template into parts: exactly one {body}, and
// exactly one {timestamp} when there is a timestamp header (a timestamp that
// is not signed protects against nothing) and none otherwise.
func parseSigned(tmpl string, hasTS bool) ([]part, error) {
	var parts []part
	bodies, stamps := 0, 0
	rest := tmpl
	for rest != "" {
		i := strings.IndexByte(rest, '{')
		switch {
		case i < 0:
			parts = append(parts, part{kind: partText, text: rest})
			rest = ""
		case strings.HasPrefix(rest[i:], "{body}"):
			if i > 0 {
				parts = append(parts, part{kind: partText, text: rest[:i]})
			}
			parts = append(parts, part{kind: partBody})
			bodies++
			rest = rest[i+len("{body}"):]
		case strings.HasPrefix(rest[i:], "{timestamp}"):
			if i > 0 {
				parts = append(parts, part{kind: partText, text: rest[:i]})
			}
			parts = append(parts, part{kind: partTimestamp})
			stamps++
			rest = rest[i+len("{timestamp}"):]
		default:
			parts = append(parts, part{kind: partText, text: rest[:i+1]})
			rest = rest[i+1:]
		}
	}
	switch {
	case bodies != 1:
		return nil, fmt.Errorf("%w: signed = %q must contain {body} exactly once", ErrConfig, tmpl)
	case hasTS && stamps != 1:
		return nil, fmt.Errorf("%w: signed = %q must contain {timestamp} exactly once when timestamp_header is set: an unsigned timestamp does not stop replays", ErrConfig, tmpl)
	case !hasTS && stamps != 0:
		return nil, fmt.Errorf("%w: signed = %q contains {timestamp}, but timestamp_header is not set", ErrConfig, tmpl)
	}
	return parts, nil
}

// Verify implements Verifier.
func (v *HMACVerifier) Verify(r *http.Request, body []byte) error {
	h := r.Header.Get(v.header)
	if h == "" {
		return fmt.Errorf("%w: the %s header is missing", ErrUnauthorized, v.header)
	}
	enc, ok := strings.CutPrefix(h, v.prefix)
	if !ok {
		return fmt.Errorf("%w: the %s header does not start with %q", ErrUnauthorized, v.header, v.prefix)
	}
	var (
		sig []byte
		err error
	)
	if v.base64 {
		sig, err = base64.StdEncoding.Strict().DecodeString(enc)
		if err != nil {
			sig, err = base64.RawStdEncoding.Strict().DecodeString(enc)
		}
	} else {
		sig, err = hex.DecodeString(enc)
	}
	if err != nil {
		return fmt.Errorf("%w: the %s header is not %s", ErrUnauthorized, v.header, map[bool]string{true: "base64", false: "hex"}[v.base64])
	}
	var ts string
	var at time.Time
	if v.tsHeader != "" {
		ts = r.Header.Get(v.tsHeader)
		if ts == "" {
			return fmt.Errorf("%w: the %s header is missing", ErrUnauthorized, v.tsHeader)
		}
		if at, err = parseTimestamp(ts); err != nil {
			return fmt.Errorf("%w: the %s header %w", ErrUnauthorized, v.tsHeader, err)
		}
	}
	msg := make([][]byte, len(v.signed))
	for i, p := range v.signed {
		switch p.kind {
		case partText:
			msg[i] = []byte(p.text)
		case partTimestamp:
			msg[i] = []byte(ts)
		case partBody:
			msg[i] = body
		}
	}
	if !macMatches(v.hash, v.keys, sig, msg...) {
		return fmt.Errorf("%w: the %s header does not match the body (signed with another secret, or the body was changed)", ErrUnauthorized, v.header)
	}
	if v.tsHeader != "" {
		if d := v.now().Sub(at); d > v.tolerance || d < -v.tolerance {
			return fmt.Errorf("%w: the %s header is %s from now, more than the tolerance of %s (a replayed delivery, or a clock off)", ErrUnauthorized, v.tsHeader, d.Abs().Round(time.Second), v.tolerance)
		}
	}
	return nil
}

// parseTimestamp reads Unix seconds, Unix milliseconds (13 digits and more)
// or RFC 3339.
func parseTimestamp(s string) (time.Time, error) {
	if s != "" && strings.Trim(s, "0123456789") == "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("is not a time")
		}
		if len(s) >= 13 {
			return time.UnixMilli(n), nil
		}
		return time.Unix(n, 0), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("is neither Unix seconds nor an RFC 3339 time")
	}
	return t, nil
}

// ---- token ----

// TokenVerifier checks a shared token in a header (by default
// Authorization: Bearer <token>).
type TokenVerifier struct {
	header string
	prefix string
	sum    [32]byte
}

func newToken(a *attrReader) (*TokenVerifier, error) {
	tok, err := a.secret("token", true, ModeToken)
	if err != nil {
		return nil, err
	}
	v := &TokenVerifier{header: "Authorization", sum: sha256.Sum256(tok)}
	if h, ok, err := a.header("header"); err != nil {
		return nil, err
	} else if ok {
		v.header = h
	}
	p, ok, err := a.str("prefix")
	if err != nil {
		return nil, err
	}
	switch {
	case ok:
		v.prefix = p
	case strings.EqualFold(v.header, "Authorization"):
		v.prefix = "Bearer "
	}
	return v, nil
}

// Verify implements Verifier.
func (v *TokenVerifier) Verify(r *http.Request, _ []byte) error {
	h := r.Header.Get(v.header)
	if h == "" {
		return fmt.Errorf("%w: the %s header is missing", ErrUnauthorized, v.header)
	}
	// The scheme of Authorization is case-insensitive (RFC 9110).
	if len(h) < len(v.prefix) || !strings.EqualFold(h[:len(v.prefix)], v.prefix) {
		return fmt.Errorf("%w: the %s header does not start with %q", ErrUnauthorized, v.header, v.prefix)
	}
	got := sha256.Sum256([]byte(h[len(v.prefix):]))
	if subtle.ConstantTimeCompare(got[:], v.sum[:]) != 1 {
		return fmt.Errorf("%w: the token in %s is wrong", ErrUnauthorized, v.header)
	}
	return nil
}

// ---- basic ----

// BasicVerifier checks HTTP basic authentication.
type BasicVerifier struct {
	user, pass [32]byte
}

func newBasic(a *attrReader) (*BasicVerifier, error) {
	u, err := a.secret("username", true, ModeBasic)
	if err != nil {
		return nil, err
	}
	p, err := a.secret("password", true, ModeBasic)
	if err != nil {
		return nil, err
	}
	return &BasicVerifier{user: sha256.Sum256(u), pass: sha256.Sum256(p)}, nil
}

// Verify implements Verifier.
func (v *BasicVerifier) Verify(r *http.Request, _ []byte) error {
	u, p, ok := r.BasicAuth()
	if !ok {
		return fmt.Errorf("%w: basic authentication is missing", ErrUnauthorized)
	}
	us, ps := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
	// Both compared, always: which one is wrong must not show in the timing.
	if subtle.ConstantTimeCompare(us[:], v.user[:])&subtle.ConstantTimeCompare(ps[:], v.pass[:]) != 1 {
		return fmt.Errorf("%w: wrong username or password", ErrUnauthorized)
	}
	return nil
}

// ---- none ----

type noneVerifier struct{}

func (noneVerifier) Verify(*http.Request, []byte) error { return nil }
