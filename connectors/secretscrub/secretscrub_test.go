package secretscrub

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/connectors"
)

var errNotFound = errors.New("secret not found")

func scrubberOf(values map[string]string) *Scrubber {
	return New(func(name string) (string, error) {
		if v, ok := values[name]; ok {
			return v, nil
		}
		return "", errNotFound
	})
}

// TestScrubber: a resolved value is scrubbed; an error keeps its chain
// (category, Retry-After, context errors) and one without a secret is
// returned as is.
func TestScrubber(t *testing.T) {
	values := map[string]string{"tok": `a/b+c"d"`, "short": "abc"}
	sc := scrubberOf(values)
	if _, err := sc.Resolve("nope"); !errors.Is(err, errNotFound) {
		t.Fatal(err)
	}
	for _, n := range []string{"tok", "short", "tok"} {
		if v, err := sc.Resolve(n); err != nil || v != values[n] {
			t.Fatalf("%s: %q %v", n, v, err)
		}
	}
	if got := sc.Scrub("abc is too short to be scrubbed"); got != "abc is too short to be scrubbed" {
		t.Errorf("short value scrubbed: %s", got)
	}
	v := values["tok"]
	plain := connectors.Permanent(errors.New("no secret here"))
	if sc.Err(plain) != plain {
		t.Error("an error without a secret was replaced")
	}
	if sc.Err(nil) != nil {
		t.Error("nil error became non-nil")
	}
	base := connectors.Transient(fmt.Errorf("token %s: %w", v, context.DeadlineExceeded), 3*time.Second)
	err := fmt.Errorf("execute: %w", sc.Err(base))
	if strings.Contains(err.Error(), v) || !strings.Contains(err.Error(), "token "+Mask) {
		t.Errorf("message %q", err)
	}
	if connectors.CategoryOf(err) != connectors.CategoryTransient || connectors.RetryAfterOf(err) != 3*time.Second || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the chain was lost: %v %v %v", connectors.CategoryOf(err), connectors.RetryAfterOf(err), errors.Is(err, context.DeadlineExceeded))
	}
	if _, err := New(nil).Resolve("x"); !errors.Is(err, ErrNoSecrets) || !strings.Contains(err.Error(), `"x"`) {
		t.Errorf("no resolver: %v", err)
	}
}

// TestScrubEncodedForms: each form a planted secret takes once encoded -
// URL query and path escaping, Go and JSON strings, base64 in both
// alphabets padded or not, and HTTP Basic auth's base64("user:password") for
// users of every length modulo 3 - is scrubbed from an error.
func TestScrubEncodedForms(t *testing.T) {
	// Characters every encoding treats differently: '/', '+', '"', '&', '<',
	// a space, a non-ASCII letter, a control character; base64 of it has '+'
	// and '/'.
	v := `pa ss/wo+rd"&<é>?~` + "\x01"
	sc := scrubberOf(map[string]string{"pw": v})
	if _, err := sc.Resolve("pw"); err != nil {
		t.Fatal(err)
	}
	const before, after = "POST https://api.example.com failed: ", " (HTTP 401)"
	scrub := func(form string) string {
		t.Helper()
		got := sc.Err(errors.New(before + form + after)).Error()
		if !strings.Contains(got, Mask) {
			t.Errorf("nothing scrubbed from %s", got)
		}
		return strings.TrimSuffix(strings.TrimPrefix(got, before), after)
	}

	jsonHTML, _ := json.Marshal(v)
	jsonRaw := strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&").Replace(string(jsonHTML))
	texts := map[string]string{
		"as is":              v,
		"query escaped":      url.QueryEscape(v),
		"path escaped":       url.PathEscape(v),
		"form values":        url.Values{"password": {v}}.Encode(),
		"url userinfo":       (&url.URL{Scheme: "https", User: url.UserPassword("me", v), Host: "h"}).String(),
		"go quoted":          strconv.Quote(v),
		"json, HTML escaped": string(jsonHTML),
		"json, HTML as is":   jsonRaw,
	}
	// inner is a piece of an encoding of the value no scrubbed text may hold.
	inner := func(s string) string { return s[2 : len(s)-2] }
	for name, form := range texts {
		got := scrub(form)
		for _, enc := range []string{v, url.QueryEscape(v), url.PathEscape(v), string(jsonHTML[1 : len(jsonHTML)-1])} {
			if strings.Contains(got, inner(enc)) {
				t.Errorf("%s: %q is still in %s", name, inner(enc), got)
			}
		}
	}

	// base64: the value encoded alone, in a JSON body, or as Basic auth's
	// password after users of every length modulo 3. What may remain is the
	// encoding of what surrounds the value, and at each of its edges one
	// character sharing bits with it (padding aside).
	type b64 struct{ prefix, suffix string }
	cases := map[string]b64{"alone": {}, "in a JSON body": {`{"password":"`, `","ok":true}`}}
	for _, user := range []string{"", "a", "ab", "abc", "api-user"} {
		cases["basic auth, user "+strconv.Quote(user)] = b64{prefix: user + ":"}
	}
	for name, c := range cases {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			got := scrub(enc.EncodeToString([]byte(c.prefix + v + c.suffix)))
			left := len(strings.TrimRight(strings.ReplaceAll(got, Mask, ""), "="))
			if max := (len(c.prefix)*8+5)/6 + (len(c.suffix)*8+5)/6 + 2; left > max {
				t.Errorf("%s: %d characters of base64 are left in %s, at most %d may", name, left, got, max)
			}
		}
	}
}

// TestForms: short values have no forms; base64 fragments too short to be
// told from ordinary words are left out; forms are unique.
func TestForms(t *testing.T) {
	if f := Forms("abc"); f != nil {
		t.Errorf("Forms(abc) = %q", f)
	}
	f := Forms("abcd") // base64 "YWJjZA==": its fragments are 4 or 5 characters
	for _, s := range f {
		if len(s) < MinLen {
			t.Errorf("form %q is shorter than MinLen", s)
		}
	}
	seen := map[string]bool{}
	for _, s := range Forms(`x/y+z "long enough"`) {
		if seen[s] {
			t.Errorf("form %q twice", s)
		}
		seen[s] = true
	}
	if len(base64Cores("abcd")) != 0 {
		t.Errorf("fragments of a 4-byte value: %q", base64Cores("abcd"))
	}
	if n := len(base64Cores("abcde")); n != 6 {
		t.Errorf("a 5-byte value has %d fragments, want 2 alphabets x 3 alignments", n)
	}
}

// TestScrubLongestFirst: a value that contains another is replaced whole.
func TestScrubLongestFirst(t *testing.T) {
	sc := scrubberOf(map[string]string{"a": "token", "b": "token-and-more"})
	for _, n := range []string{"a", "b"} {
		if _, err := sc.Resolve(n); err != nil {
			t.Fatal(err)
		}
	}
	if got := sc.Scrub("x token-and-more y token z"); got != "x "+Mask+" y "+Mask+" z" {
		t.Errorf("got %q", got)
	}
}

// TestWrappers: the source and sink wrappers scrub every error and keep the
// optional interfaces runs use.
func TestWrappers(t *testing.T) {
	v := `a/b+c"d"`
	sc := scrubberOf(map[string]string{"tok": v})
	if _, err := sc.Resolve("tok"); err != nil {
		t.Fatal(err)
	}
	fs := &flushingSink{}
	w := sc.Sink(fs)
	if !w.(connectors.ConcurrentSink).ConcurrentWrites() {
		t.Error("ConcurrentWrites lost")
	}
	if err := w.(connectors.Flusher).Flush(t.Context()); err == nil || strings.Contains(err.Error(), v) || !fs.flushed {
		t.Errorf("Flush: %v (flushed %t)", err, fs.flushed)
	}
	if errs := w.Write(t.Context(), []connectors.Write{{Key: "1"}, {Key: "2"}}); errs[0] != nil || strings.Contains(errs[1].Error(), v) {
		t.Errorf("Write: %v", errs)
	}
	if err := w.Close(t.Context()); err == nil || strings.Contains(err.Error(), v) {
		t.Errorf("Close: %v", err)
	}
	if sc.Sink(plainSink{}).(connectors.ConcurrentSink).ConcurrentWrites() {
		t.Error("a sink that is not concurrent became so")
	}
	if err := sc.Sink(plainSink{}).(connectors.Flusher).Flush(t.Context()); err != nil {
		t.Errorf("Flush of a sink without one: %v", err)
	}

	src := sc.Source(echoSource{v})
	if err := src.Read(t.Context(), connectors.ReadRequest{}, nil); err == nil || strings.Contains(err.Error(), v) {
		t.Errorf("Read: %v", err)
	}
	if err := src.(interface{ Close() error }).Close(); err == nil || strings.Contains(err.Error(), v) {
		t.Errorf("Close: %v", err)
	}

	open := sc.OpenSource(func(context.Context) (connectors.Source, error) { return nil, errors.New("dial " + v) })
	if _, err := open(t.Context()); err == nil || strings.Contains(err.Error(), v) {
		t.Errorf("OpenSource: %v", err)
	}
	openSink := sc.OpenSink(func(context.Context, connectors.SinkOptions) (connectors.Sink, error) { return fs, nil })
	if s, err := openSink(t.Context(), connectors.SinkOptions{}); err != nil || s.Close(t.Context()) == nil || strings.Contains(s.Close(t.Context()).Error(), v) {
		t.Errorf("OpenSink: %v", err)
	}
}

type flushingSink struct{ flushed bool }

func (s *flushingSink) Write(_ context.Context, ws []connectors.Write) []error {
	return []error{nil, errors.New(`rejected with a/b+c"d"`)}
}
func (s *flushingSink) Close(context.Context) error { return errors.New(`close a/b+c"d"`) }
func (s *flushingSink) Flush(context.Context) error {
	s.flushed = true
	return errors.New(`flush with a/b+c"d" failed`)
}
func (s *flushingSink) ConcurrentWrites() bool { return true }

type plainSink struct{}

func (plainSink) Write(context.Context, []connectors.Write) []error { return nil }
func (plainSink) Close(context.Context) error                       { return nil }

type echoSource struct{ v string }

func (s echoSource) Read(context.Context, connectors.ReadRequest, func(connectors.Record) error) error {
	return errors.New("read " + s.v)
}
func (s echoSource) Close() error { return errors.New("close " + s.v) }

// benchScrubber has three secrets, as a run with a token, a password and a
// DSN has.
func benchScrubber(b *testing.B) *Scrubber {
	sc := scrubberOf(map[string]string{
		"token": "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",
		"pw":    `S3cr3t/pa+ss"word&`,
		"dsn":   "postgres://app:hunter2hunter2@db.internal:5432/erp?sslmode=require",
	})
	for _, n := range []string{"token", "pw", "dsn"} {
		if _, err := sc.Resolve(n); err != nil {
			b.Fatal(err)
		}
	}
	return sc
}

// BenchmarkScrub: the cost Scrub adds to every connector error, for a
// typical error without a secret (the common case) and one with.
func BenchmarkScrub(b *testing.B) {
	sc := benchScrubber(b)
	clean := `shopify: HTTP 422 from acme-apparel.myshopify.com: POST /admin/api/2024-07/products.json: {"errors":{"title":["can't be blank"],"handle":["has already been taken"]}} (request id 4f1c2a9e-7b3d)`
	leaky := clean + " Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(`app:S3cr3t/pa+ss"word&`))
	b.Run("clean", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if sc.Scrub(clean) != clean {
				b.Fatal("changed")
			}
		}
	})
	b.Run("secret", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if sc.Scrub(leaky) == leaky {
				b.Fatal("not scrubbed")
			}
		}
	})
}

// TestScrubConcurrent: sinks scrub from several goroutines while another
// connection resolves a new secret (run with -race).
func TestScrubConcurrent(t *testing.T) {
	values := map[string]string{}
	for i := range 20 {
		values[fmt.Sprint("s", i)] = fmt.Sprintf("value-number-%02d", i)
	}
	sc := scrubberOf(values)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 20 {
			if _, err := sc.Resolve(fmt.Sprint("s", i)); err != nil {
				t.Error(err)
			}
		}
	}()
	for range 200 {
		_ = sc.Scrub("error with value-number-07 in it")
	}
	<-done
	for i := range 20 {
		if got := sc.Scrub("x " + values[fmt.Sprint("s", i)]); got != "x "+Mask {
			t.Errorf("after all resolved: %q", got)
		}
	}
}
