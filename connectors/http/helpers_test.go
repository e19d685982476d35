package httpconn

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/ferryhq/ferry/connectors"
)

func decodeHCL(t testing.TB, spec hcldec.Spec, src string) cty.Value {
	t.Helper()
	f, diags := hclsyntax.ParseConfig([]byte(src), "test.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("parse %q: %s", src, diags)
	}
	v, diags := hcldec.Decode(f.Body, spec, nil)
	if diags.HasErrors() {
		t.Fatalf("decode %q: %s", src, diags)
	}
	return v
}

// openConn opens an http connection through the registry.
func openConn(t testing.TB, dir, src string) *Connection {
	t.Helper()
	c, ok := connectors.Lookup(Type)
	if !ok {
		t.Fatal(`connector "http" is not registered`)
	}
	conn, err := c.Open(connectors.Env{Dir: dir}, decodeHCL(t, c.Connection, src))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return conn.(*Connection)
}

func newSource(t testing.TB, conn *Connection, src string) *source {
	t.Helper()
	s, err := conn.Source(decodeHCL(t, SourceSpec, src))
	if err != nil {
		t.Fatalf("source %q: %v", src, err)
	}
	return s.(*source)
}

func newSink(t testing.TB, conn *Connection, src string) *sink {
	t.Helper()
	s, err := conn.Sink(decodeHCL(t, TargetSpec, src))
	if err != nil {
		t.Fatalf("sink %q: %v", src, err)
	}
	return s.(*sink)
}

func readAll(t testing.TB, s connectors.Source, cursor string) ([]connectors.Record, error) {
	t.Helper()
	var recs []connectors.Record
	err := s.Read(context.Background(), connectors.ReadRequest{Cursor: cursor}, func(r connectors.Record) error {
		if err := r.Decode(); err != nil {
			return err
		}
		recs = append(recs, r)
		return nil
	})
	return recs, err
}

func ids(recs []connectors.Record) []int64 {
	var out []int64
	for _, r := range recs {
		out = append(out, r.Data["id"].(int64))
	}
	return out
}

// fakeClock is a clock whose sleeps advance it instead of waiting.
type fakeClock struct {
	mu     sync.Mutex
	t      time.Time
	sleeps []time.Duration
}

func (f *fakeClock) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeClock) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.t = f.t.Add(d)
}

func (f *fakeClock) sleep(ctx context.Context, d time.Duration) error {
	if d > 0 {
		f.mu.Lock()
		f.sleeps = append(f.sleeps, d)
		f.t = f.t.Add(d)
		f.mu.Unlock()
	}
	return ctx.Err()
}

func useFakeClock(c *Connection) *fakeClock {
	fc := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c.now, c.sleep = fc.now, fc.sleep
	return fc
}

// request is what a test server received.
type request struct {
	Method, URI string
	Header      http.Header
	Body        string
}

func (r request) query(name string) string {
	u, _ := url.ParseRequestURI(r.URI)
	return u.Query().Get(name)
}

// api is a test server that records every request and answers with handle,
// which gets the request's number (from 1) and its body.
type api struct {
	*httptest.Server
	mu     sync.Mutex
	reqs   []request
	handle func(w http.ResponseWriter, r *http.Request, n int, body string)
}

func newAPI(t testing.TB, handle func(w http.ResponseWriter, r *http.Request, n int, body string)) *api {
	t.Helper()
	a := &api{handle: handle}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		a.reqs = append(a.reqs, request{Method: r.Method, URI: r.RequestURI, Header: r.Header.Clone(), Body: string(b)})
		n := len(a.reqs)
		a.mu.Unlock()
		a.handle(w, r, n, string(b))
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *api) requests() []request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]request(nil), a.reqs...)
}

// uris lists the request URIs the server received, in order.
func (a *api) uris() []string {
	var out []string
	for _, r := range a.requests() {
		out = append(out, r.URI)
	}
	return out
}

// connTo opens a connection to a with a fake clock and extra connection attributes.
func connTo(t testing.TB, a *api, extra string) (*Connection, *fakeClock) {
	t.Helper()
	conn := openConn(t, "", fmt.Sprintf("base_url = %q\n%s", a.URL, extra))
	return conn, useFakeClock(conn)
}

func (f *fakeClock) waits() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Duration(nil), f.sleeps...)
}
