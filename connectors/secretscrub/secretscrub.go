// Package secretscrub keeps the values of secrets out of error messages. A
// Scrubber resolves secret("name") for one run or connection check and
// remembers every value it handed out; the errors of the connectors that got
// those values pass through it and come out with each value, and each form
// the value takes once encoded, replaced by Mask.
//
// A connector may quote what it was given in an error (a URL with its token,
// a DSN, a request it echoes): scrubbing where the values are resolved, the
// only place that knows them, is what keeps them out of run records, the DLQ,
// events, logs and API answers. The API server and ferry run both use it.
package secretscrub

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ferryhq/ferry/connectors"
)

// Mask replaces a secret value in a message.
const Mask = "[secret]"

// MinLen is the shortest value scrubbed: replacing every "a" or "1" would
// garble every message, and a value that short protects nothing.
const MinLen = 4

// minBase64Core is the shortest base64 fragment scrubbed (see base64Cores):
// a shorter one would match ordinary words by chance. A value of 5 bytes or
// more has fragments of at least this length at every alignment.
const minBase64Core = 6

// ErrNoSecrets is returned by Resolve of a Scrubber made without a resolver.
var ErrNoSecrets = errors.New("no secrets are available here")

// Scrubber resolves secrets and scrubs their values from messages. It is
// safe for concurrent use: the sinks of a run write from several goroutines.
type Scrubber struct {
	resolve func(string) (string, error)

	mu   sync.Mutex          // serialises Resolve's updates of seen and forms
	seen map[string]struct{} // values whose forms are in forms
	// forms are what Scrub reads, without a lock: Resolve publishes new ones,
	// never changes them.
	forms atomic.Pointer[formSet]
}

type formSet struct {
	// all is every form of every value seen, longest first so a form that
	// contains another is replaced whole.
	all []string
	// minimal are the forms that contain no other form: a message holding
	// none of them holds no form at all, which is all most messages need to
	// be checked for.
	minimal []string
}

// New returns a Scrubber resolving names with resolve.
func New(resolve func(name string) (string, error)) *Scrubber {
	return &Scrubber{resolve: resolve, seen: map[string]struct{}{}}
}

// Resolve is a secret("name") resolver that remembers the value.
func (sc *Scrubber) Resolve(name string) (string, error) {
	if sc.resolve == nil {
		return "", fmt.Errorf("secret %q: %w", name, ErrNoSecrets)
	}
	v, err := sc.resolve(name)
	if err != nil || len(v) < MinLen {
		return v, err
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if _, ok := sc.seen[v]; ok {
		return v, nil // resolved again for another connection: nothing new
	}
	sc.seen[v] = struct{}{}
	var all []string
	if p := sc.forms.Load(); p != nil {
		all = slices.Clone(p.all)
	}
	for _, f := range Forms(v) {
		if !slices.Contains(all, f) {
			all = append(all, f)
		}
	}
	slices.SortStableFunc(all, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	set := &formSet{all: all}
	for i, f := range all {
		contains := false
		for _, g := range all[i+1:] { // the shorter ones
			if strings.Contains(f, g) {
				contains = true
				break
			}
		}
		if !contains {
			set.minimal = append(set.minimal, f)
		}
	}
	sc.forms.Store(set)
	return v, nil
}

// Forms are the strings Scrub replaces for value v: v as written; escaped in
// a URL query or path, a Go or JSON string (with and without JSON's HTML
// escapes); base64 encoded (standard and URL alphabets, padded or not); and
// the fragments of base64 that v's bytes alone determine wherever v sits in
// a base64 text, which is how a password travels in HTTP Basic auth:
// base64("user:" + password). Values shorter than MinLen have none.
func Forms(v string) []string {
	if len(v) < MinLen {
		return nil
	}
	goQuoted := strconv.Quote(v)
	jsonQuoted, _ := json.Marshal(v) // a string always marshals
	var raw bytes.Buffer
	enc := json.NewEncoder(&raw)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	jsonRaw := strings.TrimSuffix(raw.String(), "\n")
	candidates := []string{v,
		url.QueryEscape(v), url.PathEscape(v),
		goQuoted[1 : len(goQuoted)-1], string(jsonQuoted[1 : len(jsonQuoted)-1]), jsonRaw[1 : len(jsonRaw)-1],
		base64.StdEncoding.EncodeToString([]byte(v)), base64.RawStdEncoding.EncodeToString([]byte(v)),
		base64.URLEncoding.EncodeToString([]byte(v)), base64.RawURLEncoding.EncodeToString([]byte(v)),
	}
	candidates = append(candidates, base64Cores(v)...)
	var out []string
	for _, f := range candidates {
		if len(f) >= MinLen && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

// base64Cores: in base64, each character holds 6 bits, so v's bytes encode
// differently depending on their offset modulo 3 in the encoded text. For
// each of the 3 offsets, the characters made only of v's bits are the same
// whatever precedes and follows v; replacing them leaves at most the few
// bits of v that share a character with its neighbours.
func base64Cores(v string) []string {
	var out []string
	for k := range 3 {
		buf := make([]byte, k+len(v))
		copy(buf[k:], v)
		start := (8*k + 5) / 6      // the first character without bits of the k bytes before
		end := 8 * (k + len(v)) / 6 // past the last character made only of v's bits
		if end-start < minBase64Core {
			continue
		}
		for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
			out = append(out, enc.EncodeToString(buf)[start:end])
		}
	}
	return out
}

// Scrub returns msg with the remembered values replaced by Mask. It runs on
// every connector error: a message holding no value costs a substring
// search per minimal form and allocates nothing.
func (sc *Scrubber) Scrub(msg string) string {
	set := sc.forms.Load()
	if set == nil || !slices.ContainsFunc(set.minimal, func(f string) bool { return strings.Contains(msg, f) }) {
		return msg
	}
	for _, f := range set.all {
		msg = strings.ReplaceAll(msg, f, Mask)
	}
	return msg
}

// Err returns err with the remembered values scrubbed from its message. An
// error that holds none is returned as is; one that does keeps its chain
// (errors.Is and As see the category, a Retry-After, context.Canceled), only
// its message changes.
func (sc *Scrubber) Err(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if clean := sc.Scrub(msg); clean != msg {
		return &scrubbedError{msg: clean, err: err}
	}
	return err
}

type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

// OpenSource wraps a source opener: its error and the source's are scrubbed.
func (sc *Scrubber) OpenSource(open func(context.Context) (connectors.Source, error)) func(context.Context) (connectors.Source, error) {
	return func(ctx context.Context) (connectors.Source, error) {
		src, err := open(ctx)
		if err != nil {
			return nil, sc.Err(err)
		}
		return sc.Source(src), nil
	}
}

// OpenSink wraps a sink opener: its error and the sink's are scrubbed.
func (sc *Scrubber) OpenSink(open func(context.Context, connectors.SinkOptions) (connectors.Sink, error)) func(context.Context, connectors.SinkOptions) (connectors.Sink, error) {
	return func(ctx context.Context, opts connectors.SinkOptions) (connectors.Sink, error) {
		sink, err := open(ctx, opts)
		if err != nil {
			return nil, sc.Err(err)
		}
		return sc.Sink(sink), nil
	}
}

// Source returns src with its errors scrubbed; it closes src when src has a
// Close() error, as runs look for.
func (sc *Scrubber) Source(src connectors.Source) connectors.Source {
	return &source{src: src, sc: sc}
}

// Sink returns sink with its errors scrubbed, keeping the optional interfaces
// runs look for (connectors.Flusher, connectors.ConcurrentSink).
func (sc *Scrubber) Sink(sink connectors.Sink) connectors.Sink {
	return &sinkWrapper{sink: sink, sc: sc}
}

type source struct {
	src connectors.Source
	sc  *Scrubber
}

func (s *source) Read(ctx context.Context, req connectors.ReadRequest, emit func(connectors.Record) error) error {
	return s.sc.Err(s.src.Read(ctx, req, emit))
}

func (s *source) Close() error {
	if c, ok := s.src.(interface{ Close() error }); ok {
		return s.sc.Err(c.Close())
	}
	return nil
}

type sinkWrapper struct {
	sink connectors.Sink
	sc   *Scrubber
}

var (
	_ connectors.Flusher        = (*sinkWrapper)(nil)
	_ connectors.ConcurrentSink = (*sinkWrapper)(nil)
)

func (s *sinkWrapper) Write(ctx context.Context, writes []connectors.Write) []error {
	errs := s.sink.Write(ctx, writes)
	if errs == nil {
		return nil
	}
	out := make([]error, len(errs))
	for i, err := range errs {
		out[i] = s.sc.Err(err)
	}
	return out
}

func (s *sinkWrapper) Close(ctx context.Context) error { return s.sc.Err(s.sink.Close(ctx)) }

func (s *sinkWrapper) Flush(ctx context.Context) error {
	if f, ok := s.sink.(connectors.Flusher); ok {
		return s.sc.Err(f.Flush(ctx))
	}
	return nil
}

func (s *sinkWrapper) ConcurrentWrites() bool {
	cs, ok := s.sink.(connectors.ConcurrentSink)
	return ok && cs.ConcurrentWrites()
}
