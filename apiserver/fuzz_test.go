package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/runtime"
)

// The API fuzz targets drive the real handler (JetStream store, run manager,
// schedules) with arbitrary request bodies and query strings. One server per
// fuzz process is reused across inputs, so state accumulates as it would on
// a live server. Its properties: no 5xx, every 4xx is a problem+json body
// with a type, the status and a detail, and every 2xx body is JSON.
//
// Two tenants keep the fuzzer's writes away from anything that runs:
// "fz" takes the configuration and subscription writes but is never
// triggered (the clock is frozen, so its schedules never fire, and
// subscriptions are recorded but never delivered); "fr" has a fixed
// configuration whose file connection stays in a temporary directory and
// takes the sync events and DLQ replays.

// fuzzServer is the server of one fuzz process and the names it set up.
type fuzzServer struct {
	h   http.Handler
	log *lockedBuffer // the server's log: what a 5xx logged
	// keys by tenant and role: "fz/user", "fr/trigger", ...
	keys     map[string]string
	runID    string // a finished run of fr with DLQ entries
	entryID  string // one of its DLQ entries
	subID    string // a subscription of fz
	schedule string // a schedule of fz
}

const fuzzConfigFZ = `ferry {
  tenant = "fz"
}

table "colors" {
  values  = { r = "red" }
  default = "none"
}

connection "files" {
  type = "file"
  path = "data"
}

mapping "m" {
  key    = "string(id)"
  filter = "status != 'archived'"
  fields = {
    id    = "id"
    name  = "upper(name)"
    color = "lookup('colors', c)"
  }
}

integration "items" {
  source {
    connection = connection.files
    path       = "in.json"
  }
  transform {
    mapping = mapping.m
  }
  target {
    connection = connection.files
    path       = "out.ndjson"
    format     = "ndjson"
  }
}

schedule "nightly" {
  integration = integration.items
  cron        = "0 3 * * *"
  timezone    = "Europe/Amsterdam"
}
`

func fuzzConfigFR(dir string) string {
	return `ferry {
  tenant = "fr"
}

connection "files" {
  type = "file"
  path = "` + filepath.ToSlash(dir) + `"
}

mapping "m" {
  key = "string(id)"
  fields = {
    id   = "id"
    name = "upper(name)"
  }
}

integration "items" {
  source {
    connection = connection.files
    path       = "in.json"
  }
  normalize {
    require = ["id", "name"]
  }
  transform {
    mapping = mapping.m
  }
  target {
    connection = connection.files
    path       = "out.ndjson"
    format     = "ndjson"
  }
  retry {
    max_attempts = 1
  }
}
`
}

type fuzzResp struct {
	status int
	header http.Header
	body   []byte
}

// do serves one request in process. body nil sends none.
func (fs *fuzzServer) do(method, target, key string, body []byte, headers ...string) fuzzResp {
	var rd io.Reader = http.NoBody
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req := httptest.NewRequest(method, "http://ferry.test/", rd)
	req.URL, _ = url.Parse(target) // the caller checked it parses
	req.RequestURI = target
	req.RemoteAddr = "192.0.2.1:1234"
	if key != "" {
		req.Header.Set("Authorization", "ApiKey "+key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	fs.h.ServeHTTP(rec, req)
	return fuzzResp{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

// must fails setup unless the response has status want, and decodes it.
func (fs *fuzzServer) must(f *testing.F, r fuzzResp, want int) map[string]any {
	f.Helper()
	if r.status != want {
		f.Fatalf("setup: status %d, want %d\n%s", r.status, want, r.body)
	}
	var m map[string]any
	if len(r.body) > 0 {
		if err := json.Unmarshal(r.body, &m); err != nil {
			f.Fatalf("setup: %v\n%s", err, r.body)
		}
	}
	return m
}

func newFuzzServer(f *testing.F) *fuzzServer {
	f.Helper()
	rt, err := runtime.Open(context.Background(), runtime.Options{DataDir: f.TempDir()})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { rt.Close() })
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} // frozen: no schedule fires
	log := &lockedBuffer{}
	// Confined, as ferry serve runs: fr's files are FilesDir/fr/data.
	s, err := New(rt, Options{AdminKey: testAdminKey, MasterKey: bytes.Repeat([]byte{7}, 32), MaxBodyBytes: 64 << 10,
		Now: c.Now, FilesDir: f.TempDir(), Events: EventOptions{NoDispatch: true}, AllowNetworks: loopbackNetworks,
		Logger: slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelError}))})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Close(ctx)
	})
	fs := &fuzzServer{h: s.Handler(), log: log, keys: map[string]string{"admin": testAdminKey}, schedule: "nightly"}
	jsonOf := func(v any) []byte { b, _ := json.Marshal(v); return b }
	for _, tenant := range []string{"fz", "fr"} {
		fs.must(f, fs.do("POST", "/v1/tenants", testAdminKey, jsonOf(map[string]any{"name": tenant})), 201)
		for _, role := range []Role{RoleUser, RoleViewer, RoleTrigger} {
			m := fs.must(f, fs.do("POST", "/v1/api-keys", testAdminKey, jsonOf(map[string]any{"name": "fuzz", "role": role, "tenant": tenant})), 201)
			fs.keys[tenant+"/"+string(role)] = m["key"].(string)
		}
	}
	apply := func(tenant, src string) {
		fs.must(f, fs.do("PUT", "/v1/config", fs.keys[tenant+"/user"], jsonOf(map[string]any{"files": map[string]string{"main.hcl": src}}), "If-Match", "0"), 200)
	}
	apply("fz", fuzzConfigFZ)
	apply("fr", fuzzConfigFR("data"))
	// A finished run of fr with two records in the DLQ (they lack "name").
	in := []map[string]any{{"id": 1, "name": "a"}, {"id": 2}, {"id": 3}}
	run := fs.must(f, fs.do("POST", "/v1/sync-events", fs.keys["fr/trigger"], jsonOf(map[string]any{"integration": "items", "input": in, "wait": "30s"})), 200)
	fs.runID = run["id"].(string)
	list := fs.must(f, fs.do("GET", "/v1/dlq?run="+fs.runID, fs.keys["fr/viewer"], nil), 200)
	items, _ := list["items"].([]any)
	if len(items) != 2 {
		f.Fatalf("setup: DLQ %v", list)
	}
	fs.entryID = items[0].(map[string]any)["id"].(string)
	sub := fs.must(f, fs.do("POST", "/v1/subscriptions", fs.keys["fz/user"], jsonOf(map[string]any{"url": "http://127.0.0.1:9/hook", "types": []string{"run.completed"}})), 201)
	fs.subID = sub["id"].(string)
	return fs
}

// lockedBuffer keeps the last lines of the server's log.
type lockedBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	if len(l.b) > 8<<10 {
		l.b = l.b[len(l.b)-4<<10:]
	}
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}

// check asserts the properties every response has.
func (fs *fuzzServer) check(t *testing.T, r fuzzResp, what string) {
	t.Helper()
	if r.status >= 500 {
		t.Fatalf("%s: %d\n%s\nserver log:\n%s", what, r.status, r.body, fs.log)
	}
	if r.status >= 400 {
		mt, _, _ := mime.ParseMediaType(r.header.Get("Content-Type"))
		if mt != "application/problem+json" {
			t.Fatalf("%s: %d with Content-Type %q, want application/problem+json\n%s", what, r.status, r.header.Get("Content-Type"), r.body)
		}
		var p Problem
		if err := json.Unmarshal(r.body, &p); err != nil || p.Status != r.status || p.Detail == "" || !strings.HasPrefix(p.Type, "urn:ferry:problem:") {
			t.Fatalf("%s: %d with a problem that lacks type, status or detail (%v)\n%s", what, r.status, err, r.body)
		}
		return
	}
	if len(r.body) > 0 && strings.HasPrefix(r.header.Get("Content-Type"), "application/json") && !json.Valid(r.body) {
		t.Fatalf("%s: %d with invalid JSON\n%s", what, r.status, r.body)
	}
}

// fuzzBodyRoute is a write route: key names fs.keys, path may hold {sub},
// {entry}; headers are name, value pairs.
type fuzzBodyRoute struct {
	method, path, key string
	headers           []string
	seed              string // a body the route accepts
}

var fuzzBodyRoutes = []fuzzBodyRoute{
	{"POST", "/v1/tenants", "admin", nil, `{"name":"acme"}`},
	{"PATCH", "/v1/tenants/fz", "admin", []string{"Content-Type", "application/merge-patch+json"}, `{"settings":{"restConfigWrites":true}}`},
	{"POST", "/v1/api-keys", "fz/user", nil, `{"name":"ci","role":"viewer","expiresAt":"2027-01-01T00:00:00Z","allowedIps":["10.0.0.0/8","::1"]}`},
	{"POST", "/v1/api-keys", "admin", nil, `{"name":"ops","role":"trigger","tenant":"fz"}`},
	{"POST", "/v1/config/plan", "fz/user", nil, `{"files":{"main.hcl":"ferry {\n  tenant = \"fz\"\n}\n"}}`},
	{"PUT", "/v1/connections/files", "fz/user", []string{"If-Match", "*"}, `{"name":"files","type":"file","path":"data2"}`},
	{"PATCH", "/v1/mappings/m", "fz/user", []string{"If-Match", "*", "Content-Type", "application/json-patch+json"}, `[{"op":"replace","path":"/fields/name","value":"lower(name)"},{"op":"add","path":"/fields/x","value":"1"}]`},
	{"PATCH", "/v1/integrations/items", "fz/user", []string{"If-Match", "*", "Content-Type", "application/merge-patch+json"}, `{"workers":2,"retry":{"max_attempts":3}}`},
	{"PUT", "/v1/schedules/nightly", "fz/user", []string{"If-Match", "*"}, `{"name":"nightly","integration":"integration.items","cron":"0 4 * * *","timezone":"UTC"}`},
	{"POST", "/v1/mappings", "fz/user", nil, `{"name":"m2","fields":{"a":"id * 2"},"defaults":{"b":1}}`},
	{"POST", "/v1/mappings/test", "fz/user", nil, `{"mapping":{"fields":{"a":"upper(name)"}},"input":{"name":"x"}}`},
	{"POST", "/v1/mappings/m/test", "fz/viewer", nil, `{"input":{"id":1,"name":"a","c":"r"}}`},
	{"PUT", "/v1/settings", "fz/user", nil, `{"restConfigWrites":true}`},
	{"PUT", "/v1/secrets/token", "fz/user", []string{"If-Match", "*"}, `{"value":"s3cret"}`},
	{"POST", "/v1/subscriptions", "fz/user", nil, `{"url":"https://example.com/hook","types":["run.failed","dlq.added"],"integration":"items","description":"x"}`},
	{"PUT", "/v1/subscriptions/{sub}", "fz/user", []string{"If-Match", "*"}, `{"url":"https://example.com/h2","types":["config.applied"],"enabled":false}`},
	{"POST", "/v1/sync-events", "fr/trigger", nil, `{"integration":"items","input":[{"id":7,"name":"g"},{"id":8}],"wait":"5s"}`},
	{"POST", "/v1/dlq/{entry}/replay", "fr/user", nil, `{"record":{"id":2,"name":"fixed"},"reason":"edited"}`},
	{"POST", "/v1/dlq/replay", "fr/user", nil, `{"integration":"items","category":"permanent","reason":"bulk"}`},
}

// FuzzAPIBody sends arbitrary bodies to the write routes.
func FuzzAPIBody(f *testing.F) {
	for i, rt := range fuzzBodyRoutes {
		for _, b := range []string{rt.seed, `{}`, `null`, `[]`, `{"name":1}`, `{"a":`, "\xff", `{"x":{"y":[1e999]}}`, ``} {
			f.Add(uint8(i), []byte(b))
		}
	}
	fs := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, op uint8, body []byte) {
		rt := fuzzBodyRoutes[int(op)%len(fuzzBodyRoutes)]
		path := strings.NewReplacer("{sub}", fs.subID, "{entry}", fs.entryID).Replace(rt.path)
		headers := rt.headers
		if !hasHeader(headers, "Content-Type") {
			headers = append([]string{"Content-Type", "application/json"}, headers...)
		}
		r := fs.do(rt.method, path, fs.keys[rt.key], body, headers...)
		fs.check(t, r, fmt.Sprintf("%s %s %q", rt.method, path, body))
	})
}

func hasHeader(kv []string, name string) bool {
	for i := 0; i < len(kv); i += 2 {
		if kv[i] == name {
			return true
		}
	}
	return false
}

// fuzzQueryRoute is a route whose query string is fuzzed.
type fuzzQueryRoute struct {
	method, path, key string
	seed              string
}

var fuzzQueryRoutes = []fuzzQueryRoute{
	{"GET", "/v1/tenants", "admin", "page=1&pageSize=10&filter=name[like]f%25&order=createdAt[desc]"},
	{"GET", "/v1/api-keys", "fz/user", "filter=role[in]user,viewer&order=createdAt,name[desc]"},
	{"GET", "/v1/api-keys", "admin", "tenant=fz&filter=status[eq]active"},
	{"GET", "/v1/revisions", "fz/viewer", "filter=revision[gte]1&order=appliedAt[desc]"},
	{"GET", "/v1/secrets", "fz/user", "filter=updatedAt[lt]2027-01-01T00:00:00Z"},
	{"GET", "/v1/audit", "fz/user", "filter=action[eq]config.apply&order=seq[desc]&page=2&pageSize=1"},
	{"GET", "/v1/audit", "admin", "tenant=fr&filter=time[gte]2026-03-01T00:00:00Z"},
	{"GET", "/v1/connections", "fz/viewer", "filter=type[eq]file&order=name"},
	{"GET", "/v1/mappings", "fz/viewer", "filter=key[like]%25id%25"},
	{"GET", "/v1/integrations", "fz/viewer", "filter=active[eq]true"},
	{"GET", "/v1/schedules", "fz/viewer", "filter=cron[ne]x&order=timezone"},
	{"GET", "/v1/schedules/{schedule}/next", "fz/viewer", "count=5"},
	{"GET", "/v1/runs", "fr/viewer", "integration=items&status=partial&trigger=api&from=2026-01-01T00:00:00Z&to=2027-01-01T00:00:00Z&order=queued[desc]"},
	{"GET", "/v1/runs/{run}/errors", "fr/viewer", "filter=stage[eq]normalize&order=key"},
	{"GET", "/v1/sync-events/{run}", "fr/trigger", "wait=1s"},
	{"GET", "/v1/dlq", "fr/viewer", "integration=items&run={run}&category=permanent&status=pending&filter=key[in]2,3&order=created"},
	{"GET", "/v1/subscriptions", "fz/viewer", "filter=enabled[eq]true&order=createdAt"},
	{"GET", "/v1/subscriptions/{sub}/deliveries", "fz/viewer", "filter=status[eq]pending&order=updatedAt[desc]"},
	{"GET", "/v1/revisions/1/diff/1", "fz/viewer", "context=3"},
}

// FuzzAPIQuery sends arbitrary query strings to the list routes (page,
// pageSize, filter, order and each route's own parameters).
func FuzzAPIQuery(f *testing.F) {
	for i, rt := range fuzzQueryRoutes {
		for _, q := range []string{rt.seed, "", "page=0", "pageSize=501", "page=9223372036854775807&pageSize=500", "filter=x", "order=nope", "from=yesterday", "status=%ff", "run=a.b&integration=%00"} {
			f.Add(uint8(i), q)
		}
	}
	fs := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, op uint8, query string) {
		rt := fuzzQueryRoutes[int(op)%len(fuzzQueryRoutes)]
		repl := strings.NewReplacer("{sub}", fs.subID, "{run}", fs.runID, "{schedule}", fs.schedule)
		target := repl.Replace(rt.path) + "?" + repl.Replace(query)
		if _, err := url.Parse(target); err != nil {
			return // no HTTP client sends it, no server reads it
		}
		r := fs.do(rt.method, target, fs.keys[rt.key], nil)
		fs.check(t, r, rt.method+" "+target)
	})
}

// Found by FuzzAPIQuery: every GET /v1/audit left an ephemeral consumer on
// the audit stream for 5 minutes, so polling the log hit JetStream's
// consumer limit and every read became a 500. A read leaves none behind.
func TestAuditReadLeavesNoConsumer(t *testing.T) {
	e := newEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	for range 3 {
		e.expect(e.do("GET", "/v1/audit", testAdminKey, nil), 200)
		e.expect(e.do("GET", "/v1/audit?filter=action[eq]tenant.create", user, nil), 200)
	}
	st, err := e.rt.JetStream().Stream(t.Context(), AuditStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Consumers != 0 {
		t.Fatalf("%d consumers left on %s after reading the log", info.State.Consumers, AuditStream)
	}
}
