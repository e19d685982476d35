package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/runtime"
)

const testAdminKey = "test-admin-key-0123456789abcdef"

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type env struct {
	t     *testing.T
	s     *Server
	rt    *runtime.Runtime
	srv   *httptest.Server
	clock *clock
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	rt, err := runtime.Open(ctx, runtime.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	// Its tests point file connections at absolute temporary directories,
	// and other connections at httptest servers and databases on loopback.
	s, err := New(rt, Options{AdminKey: testAdminKey, MasterKey: bytes.Repeat([]byte{7}, 32), MaxBodyBytes: 64 << 10, Now: c.Now, HostFiles: true, AllowNetworks: loopbackNetworks})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &env{t: t, s: s, rt: rt, srv: srv, clock: c}
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not a JSON object: %v\n%s", err, r.body)
	}
	return m
}

// do sends a request. body is a string (sent as is) or a value (JSON).
// headers are name, value pairs.
func (e *env) do(method, path, key string, body any, headers ...string) resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "ApiKey "+key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{status: res.StatusCode, header: res.Header, body: b}
}

func (e *env) expect(r resp, status int) resp {
	e.t.Helper()
	if r.status != status {
		e.t.Fatalf("status %d, want %d\n%s", r.status, status, r.body)
	}
	return r
}

// tenantWithKey creates a tenant and a key of role for it.
func (e *env) tenantWithKey(tenant string, role Role) string {
	e.t.Helper()
	r := e.do("POST", "/v1/tenants", testAdminKey, map[string]any{"name": tenant})
	if r.status != 201 && r.status != 409 {
		e.t.Fatalf("creating tenant: %d %s", r.status, r.body)
	}
	return e.key(tenant, role)
}

func (e *env) key(tenant string, role Role) string {
	e.t.Helper()
	r := e.expect(e.do("POST", "/v1/api-keys", testAdminKey, map[string]any{"name": "k-" + string(role), "role": role, "tenant": tenant}), 201)
	return r.json(e.t)["key"].(string)
}

func config(tenant, field string) map[string]any {
	return map[string]any{"files": map[string]string{
		"main.hcl": "ferry {\n  tenant = \"" + tenant + "\"\n}\n\nmapping \"m\" {\n  key    = \"string(id)\"\n  fields = {\n    " + field + " = \"id\"\n  }\n}\n",
	}}
}

// applyConfig applies config(tenant, field) on top of revision ifMatch.
func (e *env) apply(key, tenant, field, ifMatch string) resp {
	e.t.Helper()
	return e.do("PUT", "/v1/config", key, config(tenant, field), "If-Match", ifMatch)
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

var refRe = regexp.MustCompile(`"\$ref":"#/components/schemas/([^"]+)"`)
