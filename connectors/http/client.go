package httpconn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/time/rate"

	"github.com/ferryhq/ferry/connectors"
)

// errorBodyLimit is how much of a failed response's body an error message quotes.
const errorBodyLimit = 512

// maxBodySize bounds one response body read into memory (one page of a source).
const maxBodySize = 256 << 20

type hostLimit struct {
	limiter      *rate.Limiter // nil = unlimited
	blockedUntil time.Time     // the server asked not to be called before this
}

func (h *hostLimits) get(host string) *hostLimit {
	h.mu.Lock()
	defer h.mu.Unlock()
	l, ok := h.hosts[host]
	if !ok {
		l = &hostLimit{}
		if h.perSecond > 0 {
			// Burst 1: requests are spaced evenly, never more than rate_limit in any second.
			l.limiter = rate.NewLimiter(rate.Limit(h.perSecond), 1)
		}
		h.hosts[host] = l
	}
	return l
}

// delay reserves the next request slot of host and says how long to wait for
// it. When the server asked for a wait beyond maxInlineWait, it reserves
// nothing and reports tooLong: the caller gives up and retries later, and a
// slot it never used must not push back everyone else's.
func (h *hostLimits) delay(host string) (d time.Duration, tooLong bool) {
	l := h.get(host)
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if l.blockedUntil.After(now) {
		d = l.blockedUntil.Sub(now)
	}
	if d > maxInlineWait {
		return d, true
	}
	if l.limiter != nil {
		at := now.Add(d)
		if rd := l.limiter.ReserveN(at, 1).DelayFrom(at); rd > 0 {
			d += rd
		}
	}
	return d, false
}

// block keeps requests to host waiting until the given time.
func (h *hostLimits) block(host string, until time.Time) {
	l := h.get(host)
	h.mu.Lock()
	defer h.mu.Unlock()
	if until.After(l.blockedUntil) {
		l.blockedUntil = until
	}
}

// httpError is a response with a status of 400 or more.
type httpError struct {
	method, url string
	status      int
	body        string
	header      http.Header
}

func (e *httpError) Error() string {
	msg := fmt.Sprintf("%s %s: %d %s", e.method, e.url, e.status, http.StatusText(e.status))
	if e.body != "" {
		msg += ": " + e.body
	}
	return msg
}

// StatusOf returns the HTTP status of a failed request's error, or 0.
func StatusOf(err error) int {
	var he *httpError
	if errors.As(err, &he) {
		return he.status
	}
	return 0
}

// transientStatus says whether a status is worth retrying.
func transientStatus(status int) bool {
	return status >= 500 || status == http.StatusRequestTimeout || status == http.StatusTooManyRequests
}

// do sends one request, waiting for the host's rate limit first, and returns the
// response of a status below 400 (the caller closes its body). Other statuses
// come back as a categorised *httpError; network failures and timeouts as
// transient errors. A 401 under OAuth2 drops the cached token and retries once.
func (c *Connection) do(ctx context.Context, method, rawURL string, body []byte, hdr http.Header) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		resp, err := c.doOnce(ctx, method, rawURL, body, hdr)
		if err != nil && attempt == 0 && StatusOf(err) == http.StatusUnauthorized && c.auth != nil && c.auth.invalidate() {
			continue
		}
		return resp, err
	}
}

func (c *Connection) doOnce(ctx context.Context, method, rawURL string, body []byte, hdr http.Header) (*http.Response, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, connectors.Permanent(fmt.Errorf("%s %s: invalid URL: %w", method, c.redact(rawURL), err))
	}
	if d, tooLong := c.limits.delay(u.Host); tooLong {
		// Sleeping this long would hold a worker for minutes; hand the wait
		// to the caller's retry (the runtime's backoff honours RetryAfter).
		return nil, connectors.Transient(fmt.Errorf("%s %s: the server asked not to be called for another %s (429 or an exhausted rate limit); retry later", method, c.redact(rawURL), d.Round(time.Second)), d)
	} else if err := c.sleep(ctx, d); err != nil {
		return nil, err
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, connectors.Permanent(fmt.Errorf("%s %s: %w", method, c.redact(rawURL), err))
	}
	req.Header.Set("User-Agent", "ferry")
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range c.headers {
		req.Header[k] = v
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if c.auth != nil {
		if err := c.auth.apply(ctx, req); err != nil {
			return nil, err
		}
	}
	// The URL for messages, secrets redacted: only errors need it.
	shown := func() string { return c.redact(req.URL.String()) }
	resp, err := c.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var denied *connectors.DeniedAddressError
		if errors.As(err, &denied) {
			where := shown()
			if ue := (*url.Error)(nil); errors.As(err, &ue) && c.redact(ue.URL) != where {
				where += " (redirected to " + c.redact(ue.URL) + ")"
			}
			return nil, connectors.Permanent(fmt.Errorf("%s %s: %w", method, where, denied))
		}
		if isTimeout(err) {
			return nil, connectors.Transient(fmt.Errorf("%s %s: no response within %s: %w", method, shown(), c.timeout, unwrapURLError(err)), 0)
		}
		return nil, connectors.Transient(fmt.Errorf("%s %s: %w", method, shown(), unwrapURLError(err)), 0)
	}
	if resp.StatusCode < 400 {
		// The last request of a quota window: wait for the reset before the
		// next one rather than be answered 429.
		if strings.TrimSpace(resp.Header.Get("X-RateLimit-Remaining")) == "0" {
			if d := rateLimitReset(resp.Header, c.now()); d > 0 {
				c.limits.block(u.Host, c.now().Add(d))
			}
		}
		return resp, nil
	}
	defer resp.Body.Close()
	he := &httpError{method: method, url: shown(), status: resp.StatusCode, body: readSnippet(resp.Body), header: resp.Header}
	if !transientStatus(resp.StatusCode) {
		return nil, connectors.Permanent(he)
	}
	wait := retryAfter(resp.Header, resp.StatusCode, c.now())
	if resp.StatusCode == http.StatusTooManyRequests && wait > 0 {
		c.limits.block(u.Host, c.now().Add(wait))
	}
	return nil, connectors.Transient(he, wait)
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// readSnippet reads the start of an error response's body for the message,
// and drains a little more so the connection can be reused.
func readSnippet(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, errorBodyLimit))
	_, _ = io.Copy(io.Discard, io.LimitReader(r, 64<<10))
	s := strings.TrimSpace(string(b))
	if len(b) == errorBodyLimit {
		for len(s) > 0 && !utf8.ValidString(s) { // don't end inside a rune
			s = s[:len(s)-1]
		}
		s += "…"
	}
	return s
}

// maxInlineWait is the longest a request waits in-line for its host's rate
// limit or a server-given delay; longer waits fail the request as transient.
const maxInlineWait = 2 * time.Minute

// maxRetryAfter caps server-given delays: a bogus huge value must neither
// overflow time.Duration nor park a record for days.
const maxRetryAfter = 24 * time.Hour

// retryAfter returns the delay a 429 or 5xx response asks for: Retry-After in
// seconds or as an HTTP date, else (429 or an exhausted quota) X-RateLimit-Reset.
func retryAfter(h http.Header, status int, now time.Time) time.Duration {
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if n, err := strconv.ParseFloat(v, 64); err == nil && n >= 0 {
			return seconds(n)
		}
		if t, err := http.ParseTime(v); err == nil {
			return min(max(t.Sub(now), 0), maxRetryAfter)
		}
	}
	if status != http.StatusTooManyRequests && strings.TrimSpace(h.Get("X-RateLimit-Remaining")) != "0" {
		return 0
	}
	return rateLimitReset(h, now)
}

// rateLimitReset reads X-RateLimit-Reset (or RateLimit-Reset) as a Unix time
// or, when small, as seconds from now, and returns the time until then.
func rateLimitReset(h http.Header, now time.Time) time.Duration {
	for _, name := range []string{"X-RateLimit-Reset", "RateLimit-Reset"} {
		v := strings.TrimSpace(h.Get(name))
		if v == "" {
			continue
		}
		n, err := strconv.ParseFloat(v, 64)
		if err != nil || n < 0 || math.IsInf(n, 0) {
			continue
		}
		if n > 1e9 { // a Unix time
			sec, frac := math.Modf(n)
			if sec > 1e12 { // beyond year 33000: nonsense, not a reason to wait
				return maxRetryAfter
			}
			return min(max(time.Unix(int64(sec), int64(frac*1e9)).Sub(now), 0), maxRetryAfter)
		}
		return seconds(n)
	}
	return 0
}

func seconds(n float64) time.Duration {
	if n >= maxRetryAfter.Seconds() {
		return maxRetryAfter
	}
	return time.Duration(n * float64(time.Second))
}

// secretParam says whether a query parameter probably carries a secret.
func secretParam(name string) bool {
	n := strings.ToLower(name)
	for _, s := range []string{"key", "token", "secret", "password", "signature", "sig", "auth"} {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

// redact returns u for messages, with the values of secret query parameters
// (the API key's, and any whose name suggests a secret) and user info removed.
func (c *Connection) redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	u.User = nil
	if u.RawQuery != "" {
		q := u.Query()
		changed := false
		for k := range q {
			if secretParam(k) || (c.auth != nil && c.auth.queryParam() == k) {
				q[k] = []string{"REDACTED"}
				changed = true
			}
		}
		if changed {
			u.RawQuery = q.Encode()
		}
	}
	return u.String()
}

// ioCopyLimit discards up to 1 MiB of a body so the connection can be reused.
func ioCopyLimit(resp *http.Response) (int64, error) {
	return io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
}
