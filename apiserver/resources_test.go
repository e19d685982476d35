package apiserver

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	_ "github.com/ferryhq/ferry/connectors/file"
	"github.com/ferryhq/ferry/engine"
	"github.com/ferryhq/ferry/lang"
)

// baseFiles is a configuration with comments that REST writes must keep.
func baseFiles(dir string) map[string]string {
	return map[string]string{
		"main.hcl": `ferry {
  tenant = "acme"
}

# Where the files live.
connection "files" {
  type = "file"
  path = "` + dir + `"
}

table "colors" {
  values = { r = "red" }
}

# Products to items.
mapping "m" {
  key    = "string(id)"
  filter = "id != 0"
  fields = {
    sku  = "string(id)" # the sku
    name = "trim(title)"
  }
}

integration "i" {
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
  }
}

# Every five minutes.
schedule "s" {
  integration = integration.i
  cron        = "*/5 * * * *"
}
`,
	}
}

func (e *env) applyBase(key string) map[string]string {
	e.t.Helper()
	files := baseFiles(e.t.TempDir())
	e.expect(e.do("PUT", "/v1/config", key, map[string]any{"files": files}, "If-Match", "0"), 200)
	return files
}

func loadFiles(t *testing.T, files map[string]string) *lang.Config {
	t.Helper()
	cfg, diags := lang.LoadSources(t.TempDir(), filesBytes(files), lang.LoadOptions{})
	if diags.HasErrors() {
		t.Fatalf("loading: %v", diags)
	}
	return cfg
}

// driftOf is the plan from the applied files to the current revision's.
func (e *env) driftOf(key string, applied map[string]string) (*engine.Plan, map[string]string) {
	e.t.Helper()
	var cur Revision
	if err := json.Unmarshal(e.expect(e.do("GET", "/v1/config", key, nil), 200).body, &cur); err != nil {
		e.t.Fatal(err)
	}
	return engine.Diff(loadFiles(e.t, applied), loadFiles(e.t, cur.Files)), cur.Files
}

func onlyChange(t *testing.T, plan *engine.Plan, addr, action string, paths ...string) {
	t.Helper()
	if len(plan.Changes) != 1 || plan.Changes[0].Address != addr || plan.Changes[0].Action != action {
		t.Fatalf("drift: want only %s %s, got %s", action, addr, mustJSON(plan.Changes))
	}
	if len(paths) == 0 {
		return
	}
	var got []string
	for _, a := range plan.Changes[0].Attributes {
		got = append(got, a.Path)
	}
	if strings.Join(got, ",") != strings.Join(paths, ",") {
		t.Errorf("drift of %s: attributes %v, want %v", addr, got, paths)
	}
}

func TestResourceGetAndList(t *testing.T) {
	e := newEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	viewer := e.key("acme", RoleViewer)
	// Nothing applied: empty lists, 404s.
	l := e.expect(e.do("GET", "/v1/connections", viewer, nil), 200).json(t)
	if l["total"].(float64) != 0 || len(l["items"].([]any)) != 0 {
		t.Errorf("empty list: %v", l)
	}
	e.expect(e.do("GET", "/v1/connections/files", viewer, nil), 404)
	e.applyBase(user)

	for _, c := range []struct{ path, want string }{
		{"/v1/connections/files", `"type":"file"`},
		{"/v1/mappings/m", `"fields":{"name":"trim(title)","sku":"string(id)"}`},
		{"/v1/integrations/i", `"active":true`},
		{"/v1/schedules/s", `"integration":"integration.i"`},
	} {
		r := e.expect(e.do("GET", c.path, viewer, nil), 200)
		if !strings.Contains(string(r.body), c.want) || !strings.Contains(string(r.body), `"name":"`) {
			t.Errorf("GET %s: %s", c.path, r.body)
		}
		etag := r.header.Get("ETag")
		if !strings.HasPrefix(etag, `"r`) {
			t.Errorf("GET %s: ETag %q", c.path, etag)
		}
		e.expect(e.do("GET", c.path, viewer, nil, "If-None-Match", etag), 304)
	}
	e.expect(e.do("GET", "/v1/mappings/nope", viewer, nil), 404)
	// A viewer may not write.
	e.expect(e.do("POST", "/v1/mappings", viewer, map[string]any{"name": "x", "fields": map[string]any{"a": "id"}}), 403)
}

func TestResourceListQuery(t *testing.T) {
	e := newEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	e.applyBase(user)
	for _, n := range []string{"c", "a", "b"} {
		e.expect(e.do("POST", "/v1/mappings", user, map[string]any{"name": n, "key": "string(id)", "fields": map[string]any{"x": "id"}}), 201)
	}
	l := e.expect(e.do("GET", "/v1/mappings?pageSize=2&page=2", user, nil), 200).json(t)
	items := l["items"].([]any)
	if l["total"].(float64) != 4 || l["pageSize"].(float64) != 2 || len(items) != 2 || items[0].(map[string]any)["name"] != "c" || items[1].(map[string]any)["name"] != "m" {
		t.Errorf("page 2: %s", mustJSON(l))
	}
	l = e.expect(e.do("GET", "/v1/mappings?order=name[desc]&filter=name[ne]m", user, nil), 200).json(t)
	var names []string
	for _, it := range l["items"].([]any) {
		names = append(names, it.(map[string]any)["name"].(string))
	}
	if strings.Join(names, ",") != "c,b,a" {
		t.Errorf("ordered, filtered: %v", names)
	}
	e.expect(e.do("GET", "/v1/mappings?filter=nope[eq]1", user, nil), 400)
	e.expect(e.do("GET", "/v1/mappings?pageSize=501", user, nil), 400)
	l = e.expect(e.do("GET", "/v1/connections?filter=type[eq]file", user, nil), 200).json(t)
	if l["total"].(float64) != 1 {
		t.Errorf("filter type: %s", mustJSON(l))
	}
}

func TestResourceReplaceIsDriftWithIfMatch(t *testing.T) {
	e := newEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	applied := e.applyBase(user)

	g := e.expect(e.do("GET", "/v1/mappings/m", user, nil), 200)
	etag := g.header.Get("ETag")
	m := g.json(t)
	m["fields"].(map[string]any)["price"] = "float(price)"

	e.expect(e.do("PUT", "/v1/mappings/m", user, m), 428)
	e.expect(e.do("PUT", "/v1/mappings/m", user, m, "If-Match", `"rstale"`), 412)
	r := e.expect(e.do("PUT", "/v1/mappings/m", user, m, "If-Match", etag), 200)
	if r.header.Get("Ferry-Revision") != "2" || r.header.Get("ETag") == etag || !strings.Contains(string(r.body), `"price":"float(price)"`) {
		t.Fatalf("PUT: %v %s", r.header, r.body)
	}
	// The old ETag is now stale.
	e.expect(e.do("PUT", "/v1/mappings/m", user, m, "If-Match", etag), 412)

	plan, files := e.driftOf(user, applied)
	onlyChange(t, plan, "mapping.m", engine.ActionUpdate, "fields.price")
	main := files["main.hcl"]
	for _, want := range []string{"# Products to items.", "# Every five minutes.", "# Where the files live.", `price = "float(price)"`} {
		if !strings.Contains(main, want) {
			t.Errorf("main.hcl lacks %q:\n%s", want, main)
		}
	}
	rev := e.expect(e.do("GET", "/v1/revisions/2", user, nil), 200).json(t)
	if msg := rev["message"].(string); !strings.HasPrefix(msg, "REST: update mapping.m (key ") {
		t.Errorf("message %q", msg)
	}
	// Audited.
	found := false
	for _, a := range mustAudit(t, e, "acme") {
		if a.Action == "mapping.update" && a.Resource == "mapping.m" && a.Revision == 2 {
			found = true
		}
	}
	if !found {
		t.Error("no audit entry for the REST write")
	}
	// The same body again changes nothing: no new revision.
	r = e.expect(e.do("PUT", "/v1/mappings/m", user, m, "If-Match", r.header.Get("ETag")), 200)
	if r.header.Get("Ferry-Revision") != "2" {
		t.Errorf("unchanged PUT made revision %s", r.header.Get("Ferry-Revision"))
	}
	// A write to another resource does not conflict with this one's ETag,
	// but a concurrent apply does (CAS on the revision): tested via a stale
	// configuration in TestResourceWriteRacesApply.
	e.expect(e.do("PUT", "/v1/mappings/nope", user, m, "If-Match", "*"), 404)
}

func TestResourceWriteRacesApply(t *testing.T) {
	e := newEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	files := e.applyBase(user)
	g := e.expect(e.do("GET", "/v1/connections/files", user, nil), 200)
	cur, _, err := e.s.currentConfig(t.Context(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	// An apply lands between the read and the write.
	files["extra.hcl"] = "table \"t2\" {\n  values = {}\n}\n"
	e.expect(e.do("PUT", "/v1/config", user, map[string]any{"files": files}, "If-Match", "1"), 200)
	p := &Principal{Tenant: "acme", KeyID: "k", Role: RoleUser}
	_, _, err = e.s.restWrite(t.Context(), p, cur, resourceKinds[0], "files", "update", map[string]any{"type": "file", "path": "/tmp"})
	if prob, ok := err.(*Problem); !ok || prob.Status != 412 {
		t.Fatalf("write against a stale revision: %v", err)
	}
	// Through HTTP the resource's ETag still matches (the apply did not
	// change it), and the write goes on top of revision 2.
	r := e.expect(e.do("PATCH", "/v1/connections/files", user, `{"path": "/tmp"}`, "If-Match", g.header.Get("ETag"), "Content-Type", mediaMergePatch), 200)
	if r.header.Get("Ferry-Revision") != "3" {
		t.Errorf("revision %s", r.header.Get("Ferry-Revision"))
	}
}

func TestResourceCreateAndDelete(t *testing.T) {
	e := newEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	applied := e.applyBase(user)

	body := map[string]any{"name": "hourly", "integration": "integration.i", "cron": "@hourly", "enabled": false}
	r := e.expect(e.do("POST", "/v1/schedules", user, body), 201)
	if r.header.Get("Location") != "/v1/schedules/hourly" || r.header.Get("Ferry-Revision") != "2" || r.header.Get("ETag") == "" {
		t.Errorf("create: %v", r.header)
	}
	e.expect(e.do("POST", "/v1/schedules", user, body), 409)
	plan, files := e.driftOf(user, applied)
	onlyChange(t, plan, "schedule.hourly", engine.ActionCreate)
	if !strings.Contains(files[lang.RESTFile], `schedule "hourly"`) {
		t.Errorf("%s:\n%s", lang.RESTFile, files[lang.RESTFile])
	}

	// Delete needs If-Match; others depending on it: 409 naming them.
	g := e.expect(e.do("GET", "/v1/connections/files", user, nil), 200)
	e.expect(e.do("DELETE", "/v1/connections/files", user, nil), 428)
	p := e.expect(e.do("DELETE", "/v1/connections/files", user, nil, "If-Match", g.header.Get("ETag")), 409).json(t)
	if d := p["detail"].(string); !strings.Contains(d, "integration.i") || !strings.Contains(d, "schedule.s") {
		t.Errorf("dependents: %s", d)
	}
	g = e.expect(e.do("GET", "/v1/schedules/s", user, nil), 200)
	e.expect(e.do("DELETE", "/v1/schedules/s", user, nil, "If-Match", `"rold"`), 412)
	d := e.expect(e.do("DELETE", "/v1/schedules/s", user, nil, "If-Match", g.header.Get("ETag")), 204)
	if d.header.Get("Ferry-Revision") != "3" {
		t.Errorf("delete revision %q", d.header.Get("Ferry-Revision"))
	}
	e.expect(e.do("GET", "/v1/schedules/s", user, nil), 404)
	_, files = e.driftOf(user, applied)
	if strings.Contains(files["main.hcl"], `schedule "s"`) || strings.Contains(files["main.hcl"], "# Every five minutes.") || !strings.Contains(files["main.hcl"], "# Products to items.") {
		t.Errorf("after delete:\n%s", files["main.hcl"])
	}

	// A tenant with nothing applied: the first create starts the configuration.
	other := e.tenantWithKey("beta", RoleUser)
	e.expect(e.do("POST", "/v1/mappings", other, map[string]any{"name": "first", "fields": map[string]any{"a": "id"}}), 201)
	cfg := e.expect(e.do("GET", "/v1/config", other, nil), 200).json(t)
	if src := cfg["files"].(map[string]any)[lang.RESTFile].(string); !strings.Contains(src, `tenant = "beta"`) || !strings.Contains(src, `mapping "first"`) {
		t.Errorf("first create:\n%s", src)
	}
}

func TestResourceInvalidBodies(t *testing.T) {
	e := newEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	e.applyBase(user)
	etag := e.expect(e.do("GET", "/v1/mappings/m", user, nil), 200).header.Get("ETag")

	// An expression error: 422 with diagnostics at file:line.
	p := e.expect(e.do("PUT", "/v1/mappings/m", user, map[string]any{"fields": map[string]any{"a": "id +"}}, "If-Match", etag), 422).json(t)
	errs, _ := p["errors"].([]any)
	if len(errs) == 0 || !strings.Contains(mustJSON(errs), `"filename":"main.hcl"`) {
		t.Errorf("diagnostics: %s", mustJSON(p))
	}
	// Unknown attribute: 422 naming it.
	p = e.expect(e.do("PUT", "/v1/mappings/m", user, map[string]any{"fields": map[string]any{"a": "id"}, "filed": 1}, "If-Match", etag), 422).json(t)
	if !strings.Contains(p["detail"].(string), `"filed"`) {
		t.Errorf("unknown attribute: %v", p["detail"])
	}
	p = e.expect(e.do("POST", "/v1/connections", user, map[string]any{"name": "c2", "type": "file", "pathx": "/tmp"}), 422).json(t)
	if !strings.Contains(mustJSON(p), "pathx") {
		t.Errorf("unknown connector attribute: %s", mustJSON(p))
	}
	// Wrong types, malformed JSON, not an object: 4xx, never 500.
	e.expect(e.do("PUT", "/v1/mappings/m", user, map[string]any{"fields": "nope"}, "If-Match", etag), 422)
	e.expect(e.do("PUT", "/v1/schedules/s", user, map[string]any{"integration": "integration.i", "cron": 5}, "If-Match", "*"), 422)
	e.expect(e.do("PUT", "/v1/mappings/m", user, `{"fields":`, "If-Match", etag), 400)
	e.expect(e.do("PUT", "/v1/mappings/m", user, `[1]`, "If-Match", etag), 400)
	e.expect(e.do("POST", "/v1/mappings", user, `null`), 400)
	e.expect(e.do("POST", "/v1/mappings", user, map[string]any{"name": "bad name", "fields": map[string]any{}}), 422)
	e.expect(e.do("POST", "/v1/mappings", user, map[string]any{"fields": map[string]any{}}), 422)
	// A reference to nothing.
	e.expect(e.do("POST", "/v1/schedules", user, map[string]any{"name": "x", "integration": "integration.nope", "cron": "@hourly"}), 422)
	// Rename by PUT: 422; active is read-only.
	e.expect(e.do("PUT", "/v1/mappings/m", user, map[string]any{"name": "m2", "fields": map[string]any{"a": "id"}}, "If-Match", etag), 422)
	ig := e.expect(e.do("GET", "/v1/integrations/i", user, nil), 200)
	body := ig.json(t)
	body["active"] = false
	e.expect(e.do("PUT", "/v1/integrations/i", user, body, "If-Match", ig.header.Get("ETag")), 422)
	// Nothing changed.
	if g := e.expect(e.do("GET", "/v1/config", user, nil), 200); g.header.Get("ETag") != `"1"` {
		t.Errorf("revision moved to %s", g.header.Get("ETag"))
	}
}

func TestResourcePatch(t *testing.T) {
	e := newEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	applied := e.applyBase(user)
	etag := e.expect(e.do("GET", "/v1/integrations/i", user, nil), 200).header.Get("ETag")

	// Neither patch type: 415.
	r := e.expect(e.do("PATCH", "/v1/integrations/i", user, `{"workers": 4}`, "If-Match", etag), 415)
	if !strings.Contains(r.header.Get("Accept-Patch"), mediaMergePatch) {
		t.Errorf("Accept-Patch %q", r.header.Get("Accept-Patch"))
	}
	e.expect(e.do("PATCH", "/v1/integrations/i", user, `{"workers": 4}`, "Content-Type", mediaMergePatch), 428)

	// Merge patch.
	r = e.expect(e.do("PATCH", "/v1/integrations/i", user, `{"workers": 4, "target": {"batch_size": 10}}`, "If-Match", etag, "Content-Type", mediaMergePatch), 200)
	if !strings.Contains(string(r.body), `"workers":4`) || !strings.Contains(string(r.body), `"batch_size":10`) {
		t.Errorf("merge patch: %s", r.body)
	}
	plan, _ := e.driftOf(user, applied)
	onlyChange(t, plan, "integration.i", engine.ActionUpdate, "target.batch_size", "workers")
	etag = r.header.Get("ETag")

	// JSON Patch.
	jp := `[{"op":"test","path":"/workers","value":4},{"op":"replace","path":"/workers","value":2},{"op":"remove","path":"/target/batch_size"}]`
	r = e.expect(e.do("PATCH", "/v1/integrations/i", user, jp, "If-Match", etag, "Content-Type", mediaJSONPatch), 200)
	if !strings.Contains(string(r.body), `"workers":2`) || strings.Contains(string(r.body), "batch_size") {
		t.Errorf("json patch: %s", r.body)
	}
	etag = r.header.Get("ETag")
	// A failing test op: 422, nothing applied; a malformed patch: 400.
	e.expect(e.do("PATCH", "/v1/integrations/i", user, `[{"op":"test","path":"/workers","value":9}]`, "If-Match", etag, "Content-Type", mediaJSONPatch), 422)
	e.expect(e.do("PATCH", "/v1/integrations/i", user, `{"op":"x"}`, "If-Match", etag, "Content-Type", mediaJSONPatch), 400)
	e.expect(e.do("PATCH", "/v1/integrations/i", user, `[{`, "If-Match", etag, "Content-Type", mediaJSONPatch), 400)
	// Renaming by patch: 422.
	p := e.expect(e.do("PATCH", "/v1/integrations/i", user, `[{"op":"replace","path":"/name","value":"j"}]`, "If-Match", etag, "Content-Type", mediaJSONPatch), 422).json(t)
	if !strings.Contains(p["detail"].(string), "clone") {
		t.Errorf("rename: %v", p["detail"])
	}
	e.expect(e.do("PATCH", "/v1/integrations/i", user, `{"name": null}`, "If-Match", etag, "Content-Type", mediaMergePatch), 422)
	// An unknown attribute through a patch: 422 naming it.
	p = e.expect(e.do("PATCH", "/v1/integrations/i", user, `{"wrokers": 3}`, "If-Match", etag, "Content-Type", mediaMergePatch), 422).json(t)
	if !strings.Contains(p["detail"].(string), "wrokers") {
		t.Errorf("unknown attribute: %v", p["detail"])
	}
	// Secrets stay references: a patch may set one, and it reads back as a reference.
	cg := e.expect(e.do("GET", "/v1/connections/files", user, nil), 200)
	e.expect(e.do("PATCH", "/v1/connections/files", user, `{"format": {"hcl": "\"json\""}}`, "If-Match", cg.header.Get("ETag"), "Content-Type", mediaMergePatch), 200)
}

func TestRESTWritesDisabled(t *testing.T) {
	e := newEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	viewer := e.key("acme", RoleViewer)
	e.applyBase(user)
	s := e.expect(e.do("GET", "/v1/settings", viewer, nil), 200).json(t)
	if s["restConfigWrites"] != true {
		t.Fatalf("default settings: %v", s)
	}
	e.expect(e.do("PUT", "/v1/settings", viewer, map[string]any{"restConfigWrites": false}), 403)
	e.expect(e.do("PUT", "/v1/settings", user, map[string]any{"restConfigWrites": "no"}), 400)
	e.expect(e.do("PUT", "/v1/settings", user, map[string]any{"restConfigWrites": false}), 200)
	etag := e.expect(e.do("GET", "/v1/mappings/m", user, nil), 200).header.Get("ETag")
	for _, c := range []struct {
		method, path string
		body         any
		headers      []string
	}{
		{"POST", "/v1/mappings", map[string]any{"name": "x", "fields": map[string]any{"a": "id"}}, nil},
		{"PUT", "/v1/mappings/m", map[string]any{"fields": map[string]any{"a": "id"}}, []string{"If-Match", etag}},
		{"PATCH", "/v1/mappings/m", `{"key": null}`, []string{"If-Match", etag, "Content-Type", mediaMergePatch}},
		{"DELETE", "/v1/schedules/s", nil, []string{"If-Match", "*"}},
		{"POST", "/v1/integrations/i/clone", map[string]any{"name": "j"}, nil},
	} {
		p := e.expect(e.do(c.method, c.path, user, c.body, c.headers...), 409).json(t)
		if !strings.Contains(p["detail"].(string), "REST configuration writes are disabled for this tenant: change the HCL in git and run ferry apply") {
			t.Errorf("%s %s: %v", c.method, c.path, p["detail"])
		}
	}
	// Reads, tests and activation still work; so does ferry apply.
	e.expect(e.do("POST", "/v1/integrations/i/deactivate", user, nil), 200)
	e.expect(e.do("POST", "/v1/mappings/m/test", user, map[string]any{"input": map[string]any{"id": 1, "title": "x"}}), 200)
	e.expect(e.do("PUT", "/v1/config", user, map[string]any{"files": baseFiles(t.TempDir())}, "If-Match", "1"), 200)

	// The admin sees and changes the setting on the tenant.
	tn := e.expect(e.do("GET", "/v1/tenants/acme", testAdminKey, nil), 200).json(t)
	if tn["settings"].(map[string]any)["restConfigWrites"] != false {
		t.Errorf("tenant: %v", tn)
	}
	e.expect(e.do("PATCH", "/v1/tenants/acme", user, map[string]any{"settings": map[string]any{"restConfigWrites": true}}), 403)
	e.expect(e.do("PATCH", "/v1/tenants/acme", testAdminKey, map[string]any{"settings": map[string]any{"restConfigWritez": true}}), 400)
	e.expect(e.do("PATCH", "/v1/tenants/nobody", testAdminKey, map[string]any{"settings": map[string]any{"restConfigWrites": true}}), 404)
	tn = e.expect(e.do("PATCH", "/v1/tenants/acme", testAdminKey, map[string]any{"settings": map[string]any{"restConfigWrites": true}}), 200).json(t)
	if tn["settings"].(map[string]any)["restConfigWrites"] != true {
		t.Errorf("patched tenant: %v", tn)
	}
	e.expect(e.do("POST", "/v1/mappings", user, map[string]any{"name": "x", "fields": map[string]any{"a": "id"}}), 201)
}

func TestIntegrationExtras(t *testing.T) {
	e := newEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	applied := e.applyBase(user)

	// Template: the block as HCL.
	r := e.expect(e.do("GET", "/v1/integrations/i/template", user, nil), 200)
	if !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") || !strings.HasPrefix(string(r.body), `integration "i" {`) || !strings.Contains(string(r.body), "connection = connection.files") {
		t.Errorf("template: %s %s", r.header.Get("Content-Type"), r.body)
	}
	// Dependencies.
	d := e.expect(e.do("GET", "/v1/integrations/i/dependencies", user, nil), 200).json(t)
	if mustJSON(d["dependsOn"]) != `["connection.files","mapping.m"]` || mustJSON(d["dependents"]) != `["schedule.s"]` {
		t.Errorf("dependencies: %v", d)
	}
	d = e.expect(e.do("GET", "/v1/connections/files/dependencies", user, nil), 200).json(t)
	if mustJSON(d["dependsOn"]) != `[]` || mustJSON(d["dependents"]) != `["integration.i","schedule.s"]` {
		t.Errorf("connection dependencies: %v", d)
	}

	// Activate / deactivate: server state, not HCL, audited.
	g := e.expect(e.do("GET", "/v1/integrations/i", user, nil), 200)
	r = e.expect(e.do("POST", "/v1/integrations/i/deactivate", user, nil), 200)
	if r.json(t)["active"] != false || r.header.Get("ETag") == g.header.Get("ETag") {
		t.Errorf("deactivate: %s", r.body)
	}
	if ok, _ := e.s.IntegrationActive(t.Context(), "acme", "i"); ok {
		t.Error("IntegrationActive after deactivate")
	}
	l := e.expect(e.do("GET", "/v1/integrations?filter=active[eq]false", user, nil), 200).json(t)
	if l["total"].(float64) != 1 {
		t.Errorf("filter active: %v", l)
	}
	if g := e.expect(e.do("GET", "/v1/config", user, nil), 200); g.header.Get("ETag") != `"1"` {
		t.Errorf("deactivate made a revision: %s", g.header.Get("ETag"))
	}
	// The inactive integration's JSON round-trips through PUT.
	ig := e.expect(e.do("GET", "/v1/integrations/i", user, nil), 200)
	e.expect(e.do("PUT", "/v1/integrations/i", user, ig.json(t), "If-Match", ig.header.Get("ETag")), 200)
	e.expect(e.do("POST", "/v1/integrations/i/activate", user, nil), 200)
	if ok, _ := e.s.IntegrationActive(t.Context(), "acme", "i"); !ok {
		t.Error("IntegrationActive after activate")
	}
	var actions []string
	for _, a := range mustAudit(t, e, "acme") {
		actions = append(actions, a.Action)
	}
	if !strings.Contains(strings.Join(actions, ","), "integration.deactivate,integration.activate") {
		t.Errorf("audit: %v", actions)
	}
	e.expect(e.do("POST", "/v1/integrations/nope/activate", user, nil), 404)

	// Clone: a new block, a REST write.
	e.expect(e.do("POST", "/v1/integrations/i/clone", user, map[string]any{"name": "bad name"}), 422)
	e.expect(e.do("POST", "/v1/integrations/i/clone", user, map[string]any{"name": "i"}), 409)
	e.expect(e.do("POST", "/v1/integrations/nope/clone", user, map[string]any{"name": "k"}), 404)
	r = e.expect(e.do("POST", "/v1/integrations/i/clone", user, map[string]any{"name": "i_copy"}), 201)
	if r.header.Get("Location") != "/v1/integrations/i_copy" || r.json(t)["active"] != true {
		t.Errorf("clone: %v %s", r.header, r.body)
	}
	plan, _ := e.driftOf(user, applied)
	onlyChange(t, plan, "integration.i_copy", engine.ActionCreate)
	a := e.expect(e.do("GET", "/v1/integrations/i", user, nil), 200).json(t)
	b := e.expect(e.do("GET", "/v1/integrations/i_copy", user, nil), 200).json(t)
	delete(a, "name")
	delete(b, "name")
	if mustJSON(a) != mustJSON(b) {
		t.Errorf("clone differs:\n%s\n%s", mustJSON(a), mustJSON(b))
	}
}

func TestMappingTestEndpoints(t *testing.T) {
	e := newEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	viewer := e.key("acme", RoleViewer)
	e.applyBase(user)

	r := e.expect(e.do("POST", "/v1/mappings/m/test", viewer, map[string]any{"input": map[string]any{"id": 7, "title": "  Shirt "}}), 200).json(t)
	if r["key"] != "7" || r["skipped"] != false || mustJSON(r["output"]) != `{"name":"Shirt","sku":"7"}` || len(r["errors"].([]any)) != 0 {
		t.Errorf("named: %v", r)
	}
	r = e.expect(e.do("POST", "/v1/mappings/m/test", viewer, map[string]any{"input": map[string]any{"id": 0, "title": "x"}}), 200).json(t)
	if r["skipped"] != true {
		t.Errorf("filtered: %v", r)
	}
	e.expect(e.do("POST", "/v1/mappings/nope/test", viewer, map[string]any{"input": map[string]any{}}), 404)
	e.expect(e.do("POST", "/v1/mappings/m/test", viewer, map[string]any{}), 422)
	e.expect(e.do("POST", "/v1/mappings/m/test", viewer, map[string]any{"input": 5}), 400)

	// Inline, with the tenant's table for lookup(); two failing fields are
	// both reported.
	inline := map[string]any{
		"mapping": map[string]any{
			"key": "string(id)",
			"fields": map[string]any{
				"color": `lookup("colors", c)`,
				"bad1":  "title + 1",
				"bad2":  "id / title",
				"ok":    "id * 2",
			},
		},
		"input": map[string]any{"id": 2, "title": "x", "c": "r"},
	}
	r = e.expect(e.do("POST", "/v1/mappings/test", viewer, inline), 200).json(t)
	errs := r["errors"].([]any)
	var fields []string
	for _, fe := range errs {
		fields = append(fields, fe.(map[string]any)["field"].(string))
		if fe.(map[string]any)["message"] == "" {
			t.Errorf("no message: %v", fe)
		}
	}
	if strings.Join(fields, ",") != "bad1,bad2" || r["output"] != nil {
		t.Errorf("per-field errors: %s", mustJSON(r))
	}
	delete(inline["mapping"].(map[string]any)["fields"].(map[string]any), "bad1")
	delete(inline["mapping"].(map[string]any)["fields"].(map[string]any), "bad2")
	r = e.expect(e.do("POST", "/v1/mappings/test", viewer, inline), 200).json(t)
	if mustJSON(r["output"]) != `{"color":"red","ok":4}` || r["key"] != "2" {
		t.Errorf("inline: %s", mustJSON(r))
	}
	// Named like an existing mapping: the inline one replaces it (try an edit).
	inline["mapping"].(map[string]any)["name"] = "m"
	r = e.expect(e.do("POST", "/v1/mappings/test", viewer, inline), 200).json(t)
	if mustJSON(r["output"]) != `{"color":"red","ok":4}` {
		t.Errorf("inline replacing m: %s", mustJSON(r))
	}
	// A compile error: 422 with diagnostics; an unknown attribute: 422.
	bad := map[string]any{"mapping": map[string]any{"fields": map[string]any{"a": "id +"}}, "input": map[string]any{}}
	p := e.expect(e.do("POST", "/v1/mappings/test", viewer, bad), 422).json(t)
	if len(p["errors"].([]any)) == 0 {
		t.Errorf("no diagnostics: %v", p)
	}
	p = e.expect(e.do("POST", "/v1/mappings/test", viewer, map[string]any{"mapping": map[string]any{"feilds": map[string]any{}}, "input": map[string]any{}}), 422).json(t)
	if !strings.Contains(p["detail"].(string), "feilds") {
		t.Errorf("unknown attribute: %v", p)
	}
	// Nothing was stored.
	if g := e.expect(e.do("GET", "/v1/config", user, nil), 200); g.header.Get("ETag") != `"1"` {
		t.Errorf("a mapping test made a revision: %s", g.header.Get("ETag"))
	}
}

func TestConnectionTestAndConnectorTypes(t *testing.T) {
	e := newEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	viewer := e.key("acme", RoleViewer)
	e.applyBase(user)

	r := e.expect(e.do("POST", "/v1/connections/files/test", user, nil), 200).json(t)
	if r["ok"] != true || r["error"] != nil {
		t.Errorf("ok: %v", r)
	}
	e.expect(e.do("POST", "/v1/connections/files/test", viewer, nil), 403)
	e.expect(e.do("POST", "/v1/connections/nope/test", user, nil), 404)
	missing := t.TempDir() + "/missing"
	e.expect(e.do("POST", "/v1/connections", user, map[string]any{"name": "gone", "type": "file", "path": missing}), 201)
	r = e.expect(e.do("POST", "/v1/connections/gone/test", user, nil), 200).json(t)
	if r["ok"] != false || !strings.Contains(fmt.Sprint(r["error"]), "does not exist") {
		t.Errorf("missing dir: %v", r)
	}
	// Secrets are resolved from the tenant's store; a missing one fails the check.
	e.expect(e.do("POST", "/v1/connections", user, map[string]any{"name": "sec", "type": "file", "path": map[string]any{"secret": "files_dir"}}), 201)
	g := e.expect(e.do("GET", "/v1/connections/sec", user, nil), 200)
	if !strings.Contains(string(g.body), `"path":{"secret":"files_dir"}`) {
		t.Errorf("secret reference: %s", g.body)
	}
	r = e.expect(e.do("POST", "/v1/connections/sec/test", user, nil), 200).json(t)
	if r["ok"] != false || !strings.Contains(fmt.Sprint(r["error"]), "files_dir") {
		t.Errorf("missing secret: %v", r)
	}
	dir := t.TempDir()
	e.expect(e.do("PUT", "/v1/secrets/files_dir", user, map[string]any{"value": dir}), 201)
	r = e.expect(e.do("POST", "/v1/connections/sec/test", user, nil), 200).json(t)
	if r["ok"] != true {
		t.Errorf("with the secret: %v", r)
	}
	// The secret's value never appears.
	for _, path := range []string{"/v1/connections/sec", "/v1/connections", "/v1/config", "/v1/connections/sec/template"} {
		if b := e.expect(e.do("GET", path, user, nil), 200).body; strings.Contains(string(b), dir) {
			t.Errorf("%s shows the secret's value", path)
		}
	}

	types := e.expect(e.do("GET", "/v1/connector-types", viewer, nil), 200)
	var list []connectorType
	if err := json.Unmarshal(types.body, &list); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, ct := range list {
		if ct.Type == "file" {
			found = true
			s := mustJSON(ct.Schemas)
			if ct.Description == "" || !strings.Contains(s, `"connection"`) || !strings.Contains(s, `"source"`) || !strings.Contains(s, `"target"`) || !strings.Contains(s, `"path"`) {
				t.Errorf("file: %s %s", ct.Description, s)
			}
		}
	}
	if !found {
		t.Errorf("no file connector: %s", types.body)
	}
}

func TestConcurrentRESTWritesOneWinsPerRevision(t *testing.T) {
	e := newEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	e.applyBase(user)
	// Writes to different resources, all read at revision 1: their ETags do
	// not conflict; the CAS on the revision lets one win at a time and the
	// losers are redone on the new revision (a few times; after that 412).
	// Never a lost update, never a 500.
	names := []string{"a", "b", "c", "d", "e", "f"}
	codes := make([]int, len(names))
	done := make(chan struct{})
	for i, n := range names {
		go func() {
			defer func() { done <- struct{}{} }()
			codes[i] = e.do("POST", "/v1/mappings", user, map[string]any{"name": n, "fields": map[string]any{"x": "id"}}).status
		}()
	}
	for range names {
		<-done
	}
	won := 0
	for _, c := range codes {
		switch c {
		case 201:
			won++
		case 412:
		default:
			t.Errorf("status %d", c)
		}
	}
	l := e.expect(e.do("GET", "/v1/mappings", user, nil), 200).json(t)
	cur := e.expect(e.do("GET", "/v1/config", user, nil), 200)
	if won < 2 || int(l["total"].(float64)) != 1+won || cur.header.Get("ETag") != fmt.Sprintf(`"%d"`, 1+won) {
		t.Errorf("%d won (%v), %v mappings, revision %s", won, codes, l["total"], cur.header.Get("ETag"))
	}
}
