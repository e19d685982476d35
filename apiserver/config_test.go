package apiserver

import (
	"strings"
	"sync"
	"testing"
)

func TestConfigApplyETagIfMatch(t *testing.T) {
	e := newEnv(t)
	user := e.tenantWithKey("acme", RoleUser)

	g := e.expect(e.do("GET", "/v1/config", user, nil), 200)
	if g.header.Get("ETag") != `"0"` {
		t.Fatalf("ETag of nothing applied: %q", g.header.Get("ETag"))
	}
	// Missing If-Match: 428; stale: 412.
	e.expect(e.do("PUT", "/v1/config", user, config("acme", "a")), 428)
	e.expect(e.apply(user, "acme", "a", "3"), 412)
	a := e.expect(e.apply(user, "acme", "a", "0"), 200)
	if a.header.Get("ETag") != `"1"` || a.json(t)["revision"].(float64) != 1 {
		t.Fatalf("apply: %s %s", a.header.Get("ETag"), a.body)
	}
	g = e.expect(e.do("GET", "/v1/config", user, nil), 200)
	if g.header.Get("ETag") != `"1"` || !strings.Contains(g.json(t)["files"].(map[string]any)["main.hcl"].(string), "a = \"id\"") {
		t.Fatalf("GET after apply: %s %s", g.header.Get("ETag"), g.body)
	}
	// If-None-Match with the ETag: 304.
	e.expect(e.do("GET", "/v1/config", user, nil, "If-None-Match", `"1"`), 304)
	// Planned against 0, now 1: stale.
	e.expect(e.apply(user, "acme", "b", "0"), 412)
	e.expect(e.apply(user, "acme", "b", `"1"`), 200)
	// The same files again: no new revision.
	r := e.expect(e.apply(user, "acme", "b", "2"), 200).json(t)
	if r["revision"].(float64) != 2 || r["changed"] != false {
		t.Errorf("unchanged apply: %v", r)
	}
	// Another tenant's files: 422.
	p := e.expect(e.apply(user, "other", "c", "2"), 422).json(t)
	if !strings.Contains(p["detail"].(string), "tenant") {
		t.Errorf("detail %v", p["detail"])
	}
}

func TestConfigInvalidIs422WithDiagnostics(t *testing.T) {
	e := newEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	e.expect(e.apply(user, "acme", "a", "0"), 200)
	bad := map[string]any{"files": map[string]string{"main.hcl": "ferry {\n  tenant = \"acme\"\n}\n\nmapping \"m\" {\n  key    = \"string(id)\"\n  fields = {\n    a = \"id +\"\n  }\n}\n"}}
	for _, path := range []string{"/v1/config/plan", "/v1/config"} {
		method := "POST"
		if path == "/v1/config" {
			method = "PUT"
		}
		r := e.expect(e.do(method, path, user, bad, "If-Match", "1"), 422)
		if r.header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("content type %q", r.header.Get("Content-Type"))
		}
		p := r.json(t)
		errs, _ := p["errors"].([]any)
		if len(errs) == 0 {
			t.Fatalf("%s: no diagnostics: %s", path, r.body)
		}
		d := errs[0].(map[string]any)
		rg := d["range"].(map[string]any)
		if rg["filename"] != "main.hcl" || rg["start"].(map[string]any)["line"].(float64) != 8 {
			t.Errorf("%s: diagnostic at %v, want main.hcl:8", path, rg)
		}
	}
	g := e.expect(e.do("GET", "/v1/config", user, nil), 200)
	if g.header.Get("ETag") != `"1"` {
		t.Errorf("revision changed to %s", g.header.Get("ETag"))
	}
	// Syntax error too.
	p := e.expect(e.do("PUT", "/v1/config", user, map[string]any{"files": map[string]string{"x.hcl": "ferry {"}}, "If-Match", "1"), 422).json(t)
	if p["errors"] == nil {
		t.Error("no diagnostics for a syntax error")
	}
	// No files, bad names.
	e.expect(e.do("PUT", "/v1/config", user, map[string]any{"files": map[string]string{}}, "If-Match", "1"), 422)
	e.expect(e.do("PUT", "/v1/config", user, map[string]any{"files": map[string]string{"../main.hcl": "x"}}, "If-Match", "1"), 422)
}

func TestConfigFileFunctionIsSandboxed(t *testing.T) {
	e := newEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	mk := func(arg string, extra map[string]string) map[string]any {
		files := map[string]string{"main.hcl": "ferry {\n  tenant = \"acme\"\n}\n\nlocals {\n  x = file(" + arg + ")\n}\n"}
		for k, v := range extra {
			files[k] = v
		}
		return map[string]any{"files": files}
	}
	for _, arg := range []string{`"/etc/passwd"`, `"../../etc/passwd"`, `"${"/etc"}/passwd"`, `local.y`} {
		p := e.expect(e.do("POST", "/v1/config/plan", user, mk(arg, nil)), 422).json(t)
		if !strings.Contains(string(mustJSON(p)), "literal relative path") && !strings.Contains(string(mustJSON(p)), "local") {
			t.Errorf("file(%s): %v", arg, p)
		}
	}
	// A file sent along is readable.
	e.expect(e.do("POST", "/v1/config/plan", user, mk(`"testdata/p.json"`, map[string]string{"testdata/p.json": `{"id":1}`})), 200)
}

func TestPlanHash(t *testing.T) {
	e := newEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	p := e.expect(e.do("POST", "/v1/config/plan", user, config("acme", "a")), 200).json(t)
	hash := p["planHash"].(string)
	if p["priorRevision"].(float64) != 0 || p["hasChanges"] != true || hash == "" {
		t.Fatalf("plan: %v", p)
	}
	if pl := mustJSON(p["plan"]); !strings.Contains(pl, `"address":"mapping.m"`) || !strings.Contains(pl, `"plan_hash":"`+hash+`"`) {
		t.Errorf("plan body: %s", pl)
	}
	body := config("acme", "a")
	body["planHash"] = "deadbeef"
	e.expect(e.do("PUT", "/v1/config", user, body, "If-Match", "0"), 412)
	// A hash of other files: 412.
	other := e.expect(e.do("POST", "/v1/config/plan", user, config("acme", "zzz")), 200).json(t)["planHash"].(string)
	body["planHash"] = other
	e.expect(e.do("PUT", "/v1/config", user, body, "If-Match", "0"), 412)
	body["planHash"] = hash
	body["message"] = "first"
	r := e.expect(e.do("PUT", "/v1/config", user, body, "If-Match", "0"), 200).json(t)
	if r["planHash"] != hash {
		t.Errorf("apply hash %v", r["planHash"])
	}
	// The same plan hash after the revision moved on: 412.
	e.expect(e.apply(user, "acme", "b", "1"), 200)
	body["planHash"] = hash
	e.expect(e.do("PUT", "/v1/config", user, body, "If-Match", "2"), 412)
}

func TestConcurrentAppliesOneWins(t *testing.T) {
	e := newEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	var wg sync.WaitGroup
	codes := make([]int, 8)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = e.do("PUT", "/v1/config", user, config("acme", "f"+string(rune('a'+i))), "If-Match", "0").status
		}()
	}
	wg.Wait()
	won := 0
	for _, c := range codes {
		switch c {
		case 200:
			won++
		case 412:
		default:
			t.Errorf("status %d", c)
		}
	}
	if won != 1 {
		t.Fatalf("%d applies won: %v", won, codes)
	}
}

func TestRevisions(t *testing.T) {
	e := newEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	for i, f := range []string{"a", "b", "c"} {
		e.expect(e.do("PUT", "/v1/config", user, map[string]any{"files": config("acme", f)["files"], "message": "set " + f}, "If-Match", itoa(i)), 200)
	}
	l := e.expect(e.do("GET", "/v1/revisions", user, nil), 200).json(t)
	items := l["items"].([]any)
	if l["total"].(float64) != 3 || items[0].(map[string]any)["revision"].(float64) != 3 {
		t.Fatalf("list: %s", mustJSON(l))
	}
	if _, ok := items[0].(map[string]any)["files"]; ok {
		t.Error("the list carries file contents")
	}
	l = e.expect(e.do("GET", "/v1/revisions?order=revision&pageSize=2&page=2", user, nil), 200).json(t)
	if got := l["items"].([]any); len(got) != 1 || got[0].(map[string]any)["revision"].(float64) != 3 {
		t.Errorf("page 2: %s", mustJSON(l))
	}
	r := e.expect(e.do("GET", "/v1/revisions/2", user, nil), 200)
	if r.header.Get("ETag") != `"2"` || r.json(t)["message"] != "set b" {
		t.Errorf("rev 2: %s", r.body)
	}
	e.expect(e.do("GET", "/v1/revisions/9", user, nil), 404)
	e.expect(e.do("GET", "/v1/revisions/abc", user, nil), 404)
	d := e.expect(e.do("GET", "/v1/revisions/1/diff/3", user, nil), 200).json(t)
	diff := d["diff"].(string)
	if !strings.Contains(diff, "--- a/main.hcl") || !strings.Contains(diff, "-    a = \"id\"") || !strings.Contains(diff, "+    c = \"id\"") || !strings.Contains(diff, "@@ ") {
		t.Errorf("diff:\n%s", diff)
	}
	// Rollback to 1 makes revision 4 with 1's files.
	e.expect(e.do("POST", "/v1/revisions/1/rollback", user, nil, "If-Match", "2"), 412)
	rb := e.expect(e.do("POST", "/v1/revisions/1/rollback", user, nil), 200).json(t)
	if rb["revision"].(float64) != 4 {
		t.Fatalf("rollback: %v", rb)
	}
	cur := e.expect(e.do("GET", "/v1/revisions/4", user, nil), 200).json(t)
	one := e.expect(e.do("GET", "/v1/revisions/1", user, nil), 200).json(t)
	if mustJSON(cur["files"]) != mustJSON(one["files"]) || cur["rollbackOf"].(float64) != 1 {
		t.Errorf("rollback files/rollbackOf: %v", cur)
	}
	prog, n, err := e.s.CurrentProgram(t.Context(), "acme")
	if err != nil || n != 4 || prog.Mappings["m"] == nil {
		t.Fatalf("CurrentProgram: %v %d %v", prog, n, err)
	}
	if _, _, err := e.s.CurrentProgram(t.Context(), "nobody"); err != ErrNoConfig {
		t.Errorf("CurrentProgram of nothing: %v", err)
	}
}

func TestDiffUnified(t *testing.T) {
	got := unified(splitLines("a\nb\nc\nd\ne\nf\ng\nh\ni\n"), splitLines("a\nb\nc\nD\ne\nf\ng\nh\ni\nj\n"), 1)
	want := "@@ -3,3 +3,3 @@\n c\n-d\n+D\n e\n@@ -9,1 +9,2 @@\n i\n+j\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
