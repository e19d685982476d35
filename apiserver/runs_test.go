package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/connectors"
	"github.com/ferryhq/ferry/runtime"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

// The "testgate" connector: an in-memory source and sink named by the
// connection's name, whose source can pause after some records until the
// test opens its gate, and whose sink records what it wrote.
type testGate struct {
	mu      sync.Mutex
	records []map[string]any // what the source reads
	pauseAt int              // the source pauses before record pauseAt (0: never)
	paused  chan struct{}    // closed when the source paused
	open    chan struct{}    // closed by the test to let the source go on
	written []map[string]any
	// sinkHold, when set, makes Write wait for it (or the context).
	sinkHold chan struct{}
	writing  chan struct{} // closed at the first held Write
	once     sync.Once
}

var testGates sync.Map // name → *testGate

func newGate(t *testing.T, name string, records []map[string]any) *testGate {
	g := &testGate{records: records, paused: make(chan struct{}), open: make(chan struct{}), writing: make(chan struct{})}
	testGates.Store(name, g)
	t.Cleanup(func() { testGates.Delete(name) })
	return g
}

func (g *testGate) Written() []map[string]any {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]map[string]any(nil), g.written...)
}

type gateConn struct{ name string }

func (c gateConn) gate() (*testGate, error) {
	v, ok := testGates.Load(c.name)
	if !ok {
		return nil, fmt.Errorf("no test gate %q", c.name)
	}
	return v.(*testGate), nil
}

func (c gateConn) Source(cty.Value) (connectors.Source, error) {
	g, err := c.gate()
	return gateSource{g}, err
}

func (c gateConn) Sink(cty.Value) (connectors.Sink, error) {
	g, err := c.gate()
	return gateSink{g}, err
}

type gateSource struct{ g *testGate }

func (s gateSource) Read(ctx context.Context, _ connectors.ReadRequest, emit func(connectors.Record) error) error {
	for i, rec := range s.g.records {
		if s.g.pauseAt > 0 && i == s.g.pauseAt {
			select {
			case <-s.g.paused:
			default:
				close(s.g.paused)
			}
			select {
			case <-s.g.open:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		b, _ := json.Marshal(rec)
		if err := emit(connectors.Record{Raw: b, Position: fmt.Sprintf("gate[%d]", i)}); err != nil {
			return err
		}
	}
	return nil
}

type gateSink struct{ g *testGate }

func (s gateSink) Write(ctx context.Context, ws []connectors.Write) []error {
	if h := s.g.sinkHold; h != nil {
		s.g.once.Do(func() { close(s.g.writing) })
		select {
		case <-h:
		case <-ctx.Done():
			errs := make([]error, len(ws))
			for i := range errs {
				errs[i] = ctx.Err()
			}
			return errs
		}
	}
	s.g.mu.Lock()
	defer s.g.mu.Unlock()
	for _, w := range ws {
		s.g.written = append(s.g.written, w.Record)
	}
	return nil
}

func (s gateSink) Close(context.Context) error { return nil }

func init() {
	connectors.Register(&connectors.Connector{
		Type:        "testgate",
		Description: "apiserver tests: in-memory source and sink",
		Connection:  hcldec.ObjectSpec{"name": &hcldec.AttrSpec{Name: "name", Type: cty.String, Required: true}},
		Source:      hcldec.ObjectSpec{},
		Target:      hcldec.ObjectSpec{},
		Open: func(_ connectors.Env, cfg cty.Value) (connectors.Connection, error) {
			return gateConn{name: cfg.GetAttr("name").AsString()}, nil
		},
	})
}

// runEnv is an env whose server is closed (runs stopped) before the runtime.
func newRunEnv(t *testing.T) *env {
	e := newEnv(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		e.s.Close(ctx)
	})
	return e
}

// gateConfig is tenant acme's configuration with integration "items" from
// and to the test gate gate; marker is a mapped constant (which revision
// mapped a record).
func gateConfig(gate, marker string) map[string]any {
	return map[string]any{"files": map[string]string{"main.hcl": `ferry {
  tenant = "acme"
}

connection "g" {
  type = "testgate"
  name = "` + gate + `"
}

mapping "m" {
  key = "string(id)"
  fields = {
    id     = "id"
    name   = "name"
    marker = "'` + marker + `'"
  }
}

integration "items" {
  source {
    connection = connection.g
  }
  normalize {
    require = ["id", "name"]
  }
  transform {
    mapping = mapping.m
  }
  target {
    connection = connection.g
  }
  retry {
    max_attempts = 1
  }
}
`}}
}

// fileConfig: integration "items" reads dir/in.json and writes dir/out.ndjson.
func fileConfig(dir string) map[string]any {
	return map[string]any{"files": map[string]string{"main.hcl": `ferry {
  tenant = "acme"
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
`}}
}

func records(n int, from int) []map[string]any {
	out := make([]map[string]any, n)
	for i := range out {
		out[i] = map[string]any{"id": from + i, "name": fmt.Sprintf("item-%d", from+i)}
	}
	return out
}

func counts(t *testing.T, m map[string]any) (total, success, failed, skipped int) {
	t.Helper()
	c, ok := m["counts"].(map[string]any)
	if !ok {
		t.Fatalf("no counts in %v", m)
	}
	n := func(k string) int { v, _ := c[k].(float64); return int(v) }
	total, success, failed, skipped = n("total"), n("success"), n("failed"), n("skipped")
	if total != success+failed+skipped {
		t.Errorf("counts do not add up: %v", c)
	}
	return
}

func readLines(t *testing.T, p string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, l := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// pollRun polls GET path until the run ended.
func (e *env) pollRun(key, id string) map[string]any {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		m := e.expect(e.do("GET", "/v1/sync-events/"+id, key, nil), 200).json(e.t)
		if m["outcome"] != nil && m["outcome"] != "" {
			return m
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("run %s did not end: %v", id, m)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestSyncEventWithInputAndWait(t *testing.T) {
	e := newRunEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	dir := t.TempDir()
	e.expect(e.do("PUT", "/v1/config", user, fileConfig(dir), "If-Match", "0"), 200)

	in := []map[string]any{{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 3}} // 3 lacks name
	r := e.expect(e.do("POST", "/v1/sync-events", user, map[string]any{"integration": "items", "input": in, "wait": "30s"}), 200)
	m := r.json(t)
	if m["status"] != "partial" || m["outcome"] != "partial" || m["correlationId"] == "" || m["correlationId"] != m["id"] {
		t.Fatalf("answer %v", m)
	}
	total, success, failed, _ := counts(t, m)
	if total != 3 || success != 2 || failed != 1 {
		t.Errorf("counts %v", m["counts"])
	}
	id := m["correlationId"].(string)
	links := m["links"].(map[string]any)
	if links["self"] != "/v1/sync-events/"+id || links["run"] != "/v1/runs/"+id || links["errors"] != "/v1/runs/"+id+"/errors" {
		t.Errorf("links %v", links)
	}
	if r.header.Get("Location") != "/v1/sync-events/"+id {
		t.Errorf("Location %q", r.header.Get("Location"))
	}
	out := readLines(t, filepath.Join(dir, "out.ndjson"))
	if len(out) != 2 || out[0]["name"] != "A" || out[1]["name"] != "B" {
		t.Errorf("target has %v", out)
	}
	// The run's revision and trigger; its input is gone once it ended.
	run, err := e.rt.Runs().Get(t.Context(), "acme", id)
	if err != nil || run.Revision != "1" || run.Trigger != "api" {
		t.Fatalf("run %+v %v", run, err)
	}
	// (The request is removed just after the run ended.)
	for i := 0; ; i++ {
		if _, err := e.s.runs.reqs.Get(t.Context(), requestKey("acme", id)); err != nil {
			break
		}
		if i == 100 {
			t.Fatal("the request of an ended run is still stored")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Input without source: a file that does not exist is not read.
	if _, err := os.Stat(filepath.Join(dir, "in.json")); err == nil {
		t.Fatal("in.json exists")
	}
}

func TestSyncEventPollAndIdempotency(t *testing.T) {
	e := newRunEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	trigger := e.key("acme", RoleTrigger)
	viewer := e.key("acme", RoleViewer)
	dir := t.TempDir()
	b, _ := json.Marshal(records(5, 1))
	if err := os.WriteFile(filepath.Join(dir, "in.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	e.expect(e.do("PUT", "/v1/config", user, fileConfig(dir), "If-Match", "0"), 200)

	// Without wait: 202 at once, then poll (the trigger key reads it too).
	m := e.expect(e.do("POST", "/v1/sync-events", trigger, map[string]any{"integration": "items"}, "Idempotency-Key", "order-42"), 202).json(t)
	id := m["correlationId"].(string)
	switch m["status"] {
	case "queued", "running", "succeeded":
	default:
		t.Fatalf("status %v", m["status"])
	}
	final := e.pollRun(trigger, id)
	if final["status"] != "succeeded" || final["outcome"] != "succeeded" {
		t.Fatalf("final %v", final)
	}
	if total, success, _, _ := counts(t, final); total != 5 || success != 5 {
		t.Errorf("counts %v", final["counts"])
	}
	e.expect(e.do("GET", "/v1/sync-events/"+id, viewer, nil), 200)

	// The same Idempotency-Key: the same run, none started.
	m2 := e.expect(e.do("POST", "/v1/sync-events", user, map[string]any{"integration": "items", "wait": "5s"}, "Idempotency-Key", "order-42"), 200).json(t)
	if m2["correlationId"] != id {
		t.Fatalf("a retried trigger got run %v, want %s", m2["correlationId"], id)
	}
	list := e.expect(e.do("GET", "/v1/runs", user, nil), 200).json(t)
	if list["total"].(float64) != 1 {
		t.Fatalf("%v runs, want 1", list["total"])
	}
	if got := len(readLines(t, filepath.Join(dir, "out.ndjson"))); got != 5 {
		t.Errorf("%d records written, want 5", got)
	}
	// Another key is another run.
	m3 := e.expect(e.do("POST", "/v1/sync-events", user, map[string]any{"integration": "items", "wait": "30s"}, "Idempotency-Key", "order-43"), 200).json(t)
	if m3["correlationId"] == id {
		t.Fatal("another key returned the same run")
	}
	// A wait with nothing left to wait for.
	e.expect(e.do("GET", "/v1/sync-events/"+id+"?wait=1s", user, nil), 200)
}

func TestSyncEventRefusals(t *testing.T) {
	e := newRunEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	trigger := e.key("acme", RoleTrigger)

	// No configuration yet.
	e.expect(e.do("POST", "/v1/sync-events", user, map[string]any{"integration": "items"}), 409)
	e.expect(e.do("PUT", "/v1/config", user, fileConfig(t.TempDir()), "If-Match", "0"), 200)
	e.expect(e.do("POST", "/v1/sync-events", user, map[string]any{"integration": "nope"}), 404)
	e.expect(e.do("POST", "/v1/sync-events", user, map[string]any{"integration": "bad.name"}), 404)
	e.expect(e.do("POST", "/v1/sync-events", user, map[string]any{}), 422)
	e.expect(e.do("POST", "/v1/sync-events", user, map[string]any{"integration": "items", "input": []any{1}}), 422)
	e.expect(e.do("POST", "/v1/sync-events", user, map[string]any{"integration": "items", "wait": "1h"}), 400)
	e.expect(e.do("POST", "/v1/sync-events", user, map[string]any{"integration": "items", "nope": 1}), 400)
	e.expect(e.do("GET", "/v1/sync-events/nope", user, nil), 404)

	e.expect(e.do("POST", "/v1/integrations/items/deactivate", user, nil), 200)
	p := e.expect(e.do("POST", "/v1/sync-events", trigger, map[string]any{"integration": "items", "input": []any{}}), 409).json(t)
	if !strings.Contains(p["detail"].(string), "deactivated") {
		t.Errorf("detail %v", p["detail"])
	}
	if _, err := e.s.StartRun(t.Context(), TriggerRequest{Tenant: "acme", Integration: "items", Trigger: "schedule"}); err == nil {
		t.Error("StartRun started a run of a deactivated integration")
	}
	// Nothing was stored by the refusals.
	if keys, _ := keysOf(t.Context(), e.s.runs.reqs, ">"); len(keys) != 0 {
		t.Errorf("stored requests: %v", keys)
	}
	list := e.expect(e.do("GET", "/v1/runs", user, nil), 200).json(t)
	if list["total"].(float64) != 0 {
		t.Errorf("runs: %v", list)
	}
}

func TestTriggerRoleOnlySyncEvents(t *testing.T) {
	e := newRunEnv(t)
	trigger := e.tenantWithKey("acme", RoleTrigger)
	for _, rt := range e.s.Routes() {
		if rt.Roles == nil {
			continue
		}
		allowed := containsRole(rt.Roles, RoleTrigger)
		if allowed != strings.HasPrefix(rt.Pattern, "/v1/sync-events") {
			t.Errorf("%s %s: trigger allowed = %v", rt.Method, rt.Pattern, allowed)
		}
		if allowed {
			continue
		}
		path := fillParams(rt.Pattern, map[string]string{"n": "1", "other": "1", "tenant": "acme"})
		if r := e.do(rt.Method, path, trigger, nil); r.status != 403 {
			t.Errorf("trigger %s %s: %d, want 403", rt.Method, path, r.status)
		}
	}
	viewer := e.key("acme", RoleViewer)
	e.expect(e.do("POST", "/v1/sync-events", viewer, map[string]any{"integration": "items"}), 403)
	e.expect(e.do("GET", "/v1/runs", viewer, nil), 200)
	e.expect(e.do("GET", "/v1/dlq", viewer, nil), 200)
	e.expect(e.do("POST", "/v1/dlq/replay", viewer, nil), 403)
}

func TestRunsListGetErrors(t *testing.T) {
	e := newRunEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	viewer := e.key("acme", RoleViewer)
	newGate(t, "runs", nil)
	e.expect(e.do("PUT", "/v1/config", user, gateConfig("runs", "r1"), "If-Match", "0"), 200)

	in := []map[string]any{{"id": 1, "name": "a"}, {"id": 2}, {"id": 3, "name": "c"}, {"id": 4}}
	bad := e.expect(e.do("POST", "/v1/sync-events", user, map[string]any{"integration": "items", "input": in, "wait": "30s"}), 200).json(t)
	good := e.expect(e.do("POST", "/v1/sync-events", user, map[string]any{"integration": "items", "input": in[:1], "wait": "30s"}), 200).json(t)
	badID, goodID := bad["id"].(string), good["id"].(string)
	id3, err := e.s.StartRun(t.Context(), TriggerRequest{Tenant: "acme", Integration: "items", Trigger: "schedule", Input: nil})
	if err != nil {
		t.Fatal(err)
	}
	e.pollRun(user, id3)

	get := func(q string) []any {
		t.Helper()
		m := e.expect(e.do("GET", "/v1/runs"+q, viewer, nil), 200).json(t)
		return m["items"].([]any)
	}
	if n := len(get("")); n != 3 {
		t.Fatalf("%d runs, want 3", n)
	}
	if items := get("?status=partial"); len(items) != 1 || items[0].(map[string]any)["id"] != badID {
		t.Errorf("status=partial: %v", items)
	}
	if items := get("?trigger=schedule"); len(items) != 1 || items[0].(map[string]any)["id"] != id3 {
		t.Errorf("trigger=schedule: %v", items)
	}
	if items := get("?trigger=api&integration=items"); len(items) != 2 {
		t.Errorf("trigger=api: %v", items)
	}
	if items := get("?integration=other"); len(items) != 0 {
		t.Errorf("integration=other: %v", items)
	}
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	if items := get("?from=" + future); len(items) != 0 {
		t.Errorf("from the future: %v", items)
	}
	if items := get("?from=" + past + "&to=" + future); len(items) != 3 {
		t.Errorf("from..to: %v", items)
	}
	if m := e.expect(e.do("GET", "/v1/runs?pageSize=2&page=2", viewer, nil), 200).json(t); m["total"].(float64) != 3 || len(m["items"].([]any)) != 1 {
		t.Errorf("page 2: %v", m)
	}
	e.expect(e.do("GET", "/v1/runs?from=yesterday", viewer, nil), 400)
	e.expect(e.do("GET", "/v1/runs?status=weird", viewer, nil), 400)
	if items := get("?filter=status[eq]succeeded"); len(items) != 2 {
		t.Errorf("filter=status[eq]succeeded: %v", items)
	}

	r := e.expect(e.do("GET", "/v1/runs/"+goodID, viewer, nil), 200).json(t)
	if r["status"] != "succeeded" || r["revision"] != "1" {
		t.Errorf("run %v", r)
	}
	e.expect(e.do("GET", "/v1/runs/nope", viewer, nil), 404)

	errs := e.expect(e.do("GET", "/v1/runs/"+badID+"/errors", viewer, nil), 200).json(t)
	items := errs["items"].([]any)
	if len(items) != 2 {
		t.Fatalf("errors %v", errs)
	}
	for _, it := range items {
		f := it.(map[string]any)
		if f["stage"] != "normalize" || f["category"] != "permanent" || f["attempts"].(float64) != 1 ||
			!strings.Contains(f["message"].(string), "name") || f["entry"] == "" || f["entryStatus"] != "pending" {
			t.Errorf("error %v", f)
		}
	}
	if k := items[0].(map[string]any)["key"]; k != "2" {
		t.Errorf("first failed key %v", k)
	}
	e.expect(e.do("GET", "/v1/runs/nope/errors", viewer, nil), 404)
}

func TestDLQOverREST(t *testing.T) {
	e := newRunEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	viewer := e.key("acme", RoleViewer)
	g := newGate(t, "dlq", nil)
	e.expect(e.do("PUT", "/v1/config", user, gateConfig("dlq", "r1"), "If-Match", "0"), 200)
	in := []map[string]any{{"id": 1, "name": "a"}, {"id": 2}, {"id": 3}, {"id": 4}, {"id": 5, "name": "e"}}
	run := e.expect(e.do("POST", "/v1/sync-events", user, map[string]any{"integration": "items", "input": in, "wait": "30s"}), 200).json(t)
	runID := run["id"].(string)
	if _, _, failed, _ := counts(t, run); failed != 3 {
		t.Fatalf("run %v", run)
	}

	list := e.expect(e.do("GET", "/v1/dlq?run="+runID+"&status=pending", viewer, nil), 200).json(t)
	if list["total"].(float64) != 3 {
		t.Fatalf("dlq %v", list)
	}
	entries := list["items"].([]any)
	id := func(i int) string { return entries[i].(map[string]any)["id"].(string) }
	if m := e.expect(e.do("GET", "/v1/dlq?category=transient", viewer, nil), 200).json(t); m["total"].(float64) != 0 {
		t.Errorf("transient: %v", m)
	}
	if m := e.expect(e.do("GET", "/v1/dlq?integration=items&filter=key[eq]3", viewer, nil), 200).json(t); m["total"].(float64) != 1 {
		t.Errorf("key 3: %v", m)
	}
	e.expect(e.do("GET", "/v1/dlq?status=weird", viewer, nil), 400)

	got := e.expect(e.do("GET", "/v1/dlq/"+id(0), viewer, nil), 200)
	entry := got.json(t)
	if entry["key"] != "2" || entry["stage"] != "normalize" || entry["record"].(map[string]any)["id"].(float64) != 2 {
		t.Errorf("entry %v", entry)
	}
	e.expect(e.do("GET", "/v1/dlq/nope", viewer, nil), 404)
	e.expect(e.do("POST", "/v1/dlq/"+id(0)+"/replay", viewer, nil), 403)

	// Replay as is: fails again, stays pending.
	rp := e.expect(e.do("POST", "/v1/dlq/"+id(0)+"/replay", user, nil), 200).json(t)
	if rp["result"] != "failed" || rp["entry"].(map[string]any)["status"] != "pending" {
		t.Errorf("replay as is: %v", rp)
	}
	// Replay with an edited record: succeeds.
	rp = e.expect(e.do("POST", "/v1/dlq/"+id(0)+"/replay", user, map[string]any{"record": map[string]any{"id": 2, "name": "fixed"}, "reason": "name added"}), 200).json(t)
	if rp["result"] != "success" || rp["entry"].(map[string]any)["status"] != "replayed" {
		t.Errorf("edited replay: %v", rp)
	}
	e.expect(e.do("POST", "/v1/dlq/"+id(0)+"/replay", user, nil), 409)

	// Discard: a stale If-Match is refused.
	e.expect(e.do("DELETE", "/v1/dlq/"+id(1), user, nil, "If-Match", `"stale"`), 412)
	etag := e.expect(e.do("GET", "/v1/dlq/"+id(1), viewer, nil), 200).header.Get("ETag")
	d := e.expect(e.do("DELETE", "/v1/dlq/"+id(1)+"?reason=test", user, nil, "If-Match", etag), 200).json(t)
	if d["status"] != "discarded" {
		t.Errorf("discard %v", d)
	}
	e.expect(e.do("DELETE", "/v1/dlq/"+id(1), user, nil), 409)

	// Replay by filter: the last pending one, after a configuration that
	// no longer requires name (replays run through the current revision).
	cfg := gateConfig("dlq", "r2")
	cfg["files"].(map[string]string)["main.hcl"] = strings.Replace(cfg["files"].(map[string]string)["main.hcl"], `require = ["id", "name"]`, `require = ["id"]`, 1)
	e.expect(e.do("PUT", "/v1/config", user, cfg, "If-Match", "1"), 200)
	sum := e.expect(e.do("POST", "/v1/dlq/replay", user, map[string]any{"run": runID}), 200).json(t)
	if sum["matched"].(float64) != 1 || sum["replayed"].(float64) != 1 {
		t.Errorf("replay by filter: %v", sum)
	}
	// The run's counts still add up: 2 + 2 replayed success, 1 discarded failed.
	final := e.expect(e.do("GET", "/v1/runs/"+runID, viewer, nil), 200).json(t)
	if total, success, failed, _ := counts(t, final); total != 5 || success != 4 || failed != 1 {
		t.Errorf("run after replays: %v", final["counts"])
	}
	if m := e.expect(e.do("GET", "/v1/dlq?status=pending", viewer, nil), 200).json(t); m["total"].(float64) != 0 {
		t.Errorf("pending left: %v", m)
	}
	// The sink got 2 from the run and 2 from replays; the last with revision 2.
	w := g.Written()
	if len(w) != 4 || w[2]["name"] != "fixed" || w[3]["marker"] != "r2" {
		t.Errorf("written %v", w)
	}
}

// A run keeps the revision it started on while another is applied; the next
// run uses the new one.
func TestRunKeepsItsRevision(t *testing.T) {
	e := newRunEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	g := newGate(t, "rev", records(10, 1))
	g.pauseAt = 5
	e.expect(e.do("PUT", "/v1/config", user, gateConfig("rev", "r1"), "If-Match", "0"), 200)

	id := e.expect(e.do("POST", "/v1/sync-events", user, map[string]any{"integration": "items"}), 202).json(t)["id"].(string)
	select {
	case <-g.paused:
	case <-time.After(30 * time.Second):
		t.Fatal("the source did not start")
	}
	e.expect(e.do("PUT", "/v1/config", user, gateConfig("rev", "r2"), "If-Match", "1"), 200)
	close(g.open)
	m := e.pollRun(user, id)
	if m["status"] != "succeeded" || m["revision"] != "1" {
		t.Fatalf("run %v", m)
	}
	w := g.Written()
	if len(w) != 10 {
		t.Fatalf("%d written, want 10", len(w))
	}
	for _, r := range w {
		if r["marker"] != "r1" {
			t.Fatalf("a record of the run that started on revision 1 was mapped by %v", r["marker"])
		}
	}

	g2 := newGate(t, "rev", records(3, 100))
	id2 := e.expect(e.do("POST", "/v1/sync-events", user, map[string]any{"integration": "items", "wait": "30s"}), 200).json(t)
	if id2["revision"] != "2" {
		t.Errorf("the next run is on revision %v", id2["revision"])
	}
	for _, r := range g2.Written() {
		if r["marker"] != "r2" {
			t.Fatalf("the next run mapped with %v", r["marker"])
		}
	}
}

func TestCloseWaitsForRuns(t *testing.T) {
	e := newEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	g := newGate(t, "close", records(3, 1))
	g.sinkHold = make(chan struct{})
	e.expect(e.do("PUT", "/v1/config", user, gateConfig("close", "r1"), "If-Match", "0"), 200)
	id, err := e.s.StartRun(t.Context(), TriggerRequest{Tenant: "acme", Integration: "items"})
	if err != nil {
		t.Fatal(err)
	}
	<-g.writing
	closed := make(chan error)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		closed <- e.s.Close(ctx)
	}()
	// Close stops new runs at once...
	time.Sleep(100 * time.Millisecond)
	if _, err := e.s.StartRun(t.Context(), TriggerRequest{Tenant: "acme", Integration: "items"}); err != ErrShuttingDown {
		t.Errorf("StartRun while closing: %v", err)
	}
	e.expect(e.do("POST", "/v1/sync-events", user, map[string]any{"integration": "items"}), 503)
	select {
	case err := <-closed:
		t.Fatalf("Close returned while a run was in flight: %v", err)
	default:
	}
	// ...and waits for the run in flight.
	close(g.sinkHold)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	run, err := e.rt.Runs().Get(t.Context(), "acme", id)
	if err != nil || run.Status != "succeeded" || len(g.Written()) != 3 {
		t.Fatalf("run %+v %v; written %d", run, err, len(g.Written()))
	}
}

// A run interrupted by Close (its deadline passed) is resumed by a new
// server on the same data and completes with nothing missing.
func TestRunResumedAfterRestart(t *testing.T) {
	dataDir := t.TempDir()
	open := func() (*runtime.Runtime, *Server) {
		rt, err := runtime.Open(context.Background(), runtime.Options{DataDir: dataDir})
		if err != nil {
			t.Fatal(err)
		}
		s, err := New(rt, Options{AdminKey: testAdminKey, MasterKey: bytes.Repeat([]byte{7}, 32)})
		if err != nil {
			t.Fatal(err)
		}
		return rt, s
	}
	rt, s := open()
	ctx := t.Context()
	if err := s.CreateTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	p := &Principal{Tenant: "acme", KeyID: "test", Role: RoleUser}
	files := gateConfig("resume", "r1")["files"].(map[string]string)
	if _, err := s.apply(ctx, p, applyArgs{planned: 0, files: files}); err != nil {
		t.Fatal(err)
	}
	g := newGate(t, "resume", nil)
	g.sinkHold = make(chan struct{})
	in := make([]json.RawMessage, 2500) // several work messages
	for i := range in {
		in[i] = json.RawMessage(fmt.Sprintf(`{"id": %d, "name": "n%d"}`, i, i))
	}
	id, err := s.StartRun(ctx, TriggerRequest{Tenant: "acme", Integration: "items", Input: in, Trigger: "webhook"})
	if err != nil {
		t.Fatal(err)
	}
	<-g.writing
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	if err := s.Close(cctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	run, err := rt.Runs().Get(ctx, "acme", id)
	if err != nil || run.Finished() {
		t.Fatalf("the run should be unfinished: %+v %v", run, err)
	}
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}

	// A new process: the run resumes with its input and revision.
	close(g.sinkHold)
	rt, s = open()
	defer rt.Close()
	defer s.Close(context.Background())
	// A new revision applied before the run resumed does not change it.
	if _, err := s.apply(ctx, p, applyArgs{planned: 1, files: gateConfig("resume", "r2")["files"].(map[string]string)}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		run, err = rt.Runs().Get(ctx, "acme", id)
		if err == nil && run.Finished() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the run did not resume: %+v %v", run, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if run.Status != "succeeded" || run.Counts.Total != 2500 || run.Counts.Success != 2500 || run.Resumes < 1 || run.Trigger != "webhook" {
		t.Fatalf("resumed run %+v", run)
	}
	seen := map[string]bool{}
	for _, r := range g.Written() {
		seen[fmt.Sprint(r["id"])] = true
		if r["marker"] != "r1" {
			t.Fatalf("resumed on another revision: %v", r["marker"])
		}
	}
	if len(seen) != 2500 {
		t.Fatalf("%d distinct records written, want 2500", len(seen))
	}
	// The request and the input are gone (just after the run ended).
	for i := 0; ; i++ {
		keys, _ := keysOf(ctx, s.runs.reqs, ">")
		info, err := s.runs.inputs.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) == 0 && info.State.Msgs == 0 {
			break
		}
		if i == 100 {
			t.Fatalf("left: requests %v, %d input messages", keys, info.State.Msgs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An Idempotency-Key whose StartRun died before storing its run does not
// point at a run that never comes.
func TestIdempotencyKeyOfALostRun(t *testing.T) {
	e := newRunEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	newGate(t, "lost", nil)
	e.expect(e.do("PUT", "/v1/config", user, gateConfig("lost", "r1"), "If-Match", "0"), 200)
	if _, err := e.s.runs.idem.Put(t.Context(), idempotencyKey("acme", "items", "lost"), []byte("lostrun")); err != nil {
		t.Fatal(err)
	}
	body := map[string]any{"integration": "items", "input": []any{map[string]any{"id": 1, "name": "a"}}, "wait": "30s"}
	m := e.expect(e.do("POST", "/v1/sync-events", user, body, "Idempotency-Key", "lost"), 200).json(t)
	if m["id"] == "lostrun" || m["status"] != "succeeded" {
		t.Fatalf("answer %v", m)
	}
	m2 := e.expect(e.do("POST", "/v1/sync-events", user, body, "Idempotency-Key", "lost"), 200).json(t)
	if m2["id"] != m["id"] {
		t.Fatalf("retry got %v, want %v", m2["id"], m["id"])
	}
}

// Runs of one integration wait, queued, for the one in flight; they all run.
func TestRunsQueueBehindEachOther(t *testing.T) {
	e := newRunEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	g := newGate(t, "queue", nil)
	g.sinkHold = make(chan struct{})
	e.expect(e.do("PUT", "/v1/config", user, gateConfig("queue", "r1"), "If-Match", "0"), 200)
	var ids []string
	for i := range 3 {
		body := map[string]any{"integration": "items", "input": []any{map[string]any{"id": i, "name": "n"}}}
		ids = append(ids, e.expect(e.do("POST", "/v1/sync-events", user, body), 202).json(t)["id"].(string))
		if i == 0 {
			<-g.writing
		}
	}
	time.Sleep(200 * time.Millisecond)
	if st := e.expect(e.do("GET", "/v1/runs/"+ids[0], user, nil), 200).json(t)["status"]; st != "running" {
		t.Errorf("first run: %v", st)
	}
	for _, id := range ids[1:] {
		if st := e.expect(e.do("GET", "/v1/runs/"+id, user, nil), 200).json(t)["status"]; st != "queued" {
			t.Errorf("run %s: %v, want queued", id, st)
		}
	}
	if m := e.expect(e.do("GET", "/v1/runs?status=queued", user, nil), 200).json(t); m["total"].(float64) != 2 {
		t.Errorf("queued runs: %v", m)
	}
	close(g.sinkHold)
	for _, id := range ids {
		if m := e.pollRun(user, id); m["status"] != "succeeded" {
			t.Errorf("run %s: %v", id, m["status"])
		}
	}
	if n := len(g.Written()); n != 3 {
		t.Errorf("%d written", n)
	}
}
