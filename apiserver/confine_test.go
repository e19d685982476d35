package apiserver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/ferryhq/ferry/connectors/file"
)

// newConfinedEnv is newEnv with the tenants' files in files/<tenant>,
// confined there, but those of tenantDirs.
func newConfinedEnv(t *testing.T, tenantDirs map[string]string) (e *env, files string) {
	t.Helper()
	return newEnvWith(t, func(o *Options) { o.TenantDirs = tenantDirs })
}

// confinedConfig is acme's integration "items" from source path src to
// target path dst of connection "files" at path (an HCL expression).
func confinedConfig(path, src, dst string) map[string]any {
	return map[string]any{"files": map[string]string{"main.hcl": `ferry {
  tenant = "acme"
}

connection "files" {
  type = "file"
  path = ` + path + `
}

mapping "m" {
  key = "string(id)"
  fields = {
    id   = "id"
    name = "name"
  }
}

integration "items" {
  source {
    connection = connection.files
    path       = "` + src + `"
  }
  transform {
    mapping = mapping.m
  }
  target {
    connection = connection.files
    path       = "` + dst + `"
  }
  retry {
    max_attempts = 1
  }
}
`}}
}

func TestTenantFilesConfined(t *testing.T) {
	e, files := newConfinedEnv(t, nil)
	acme := e.tenantWithKey("acme", RoleUser)
	e.tenantWithKey("beta", RoleUser)
	acmeDir, betaDir := filepath.Join(files, "acme"), filepath.Join(files, "beta")
	write := func(p, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(acmeDir, "in.json"), `[{"id":1,"name":"acme-item"}]`)
	write(filepath.Join(betaDir, "secret.json"), `[{"id":99,"name":"beta-secret"}]`)
	write(filepath.Join(betaDir, "out.ndjson"), "beta's own\n")

	// Paths known when the files are sent are refused at plan and apply,
	// naming the path and where it must be.
	for _, tt := range []struct{ path, src, dst, want string }{
		{`"/etc"`, "passwd", "out.ndjson", `path \"/etc\" is absolute`},
		{`"../beta"`, "secret.json", "out.ndjson", `path \"../beta\" leads out of the tenant's files directory`},
		{`"."`, "../beta/secret.json", "out.ndjson", `path \"../beta/secret.json\" leads out`},
		{`"."`, "../*/secret.json", "out.ndjson", `leads out`},
		{`"."`, "in.json", "/tmp/stolen.ndjson", `path \"/tmp/stolen.ndjson\" is absolute`},
		{`"data"`, "in.json", "../../beta/out.ndjson", `leads out`},
	} {
		cfg := confinedConfig(tt.path, tt.src, tt.dst)
		for _, r := range []resp{e.do("POST", "/v1/config/plan", acme, cfg), e.do("PUT", "/v1/config", acme, cfg, "If-Match", "0")} {
			body := string(r.body)
			if r.status != 422 || !strings.Contains(body, tt.want) || !strings.Contains(body, "relative to the tenant's files directory") || !strings.Contains(body, "main.hcl") {
				t.Errorf("path %s, source %s, target %s: %d %s\nwant 422 with %q", tt.path, tt.src, tt.dst, r.status, body, tt.want)
			}
		}
	}

	// Inside its directory, a tenant reads and writes as before.
	e.expect(e.do("PUT", "/v1/config", acme, confinedConfig(`"."`, "in.json", "out/items.ndjson"), "If-Match", "0"), 200)
	m := e.expect(e.do("POST", "/v1/sync-events", acme, map[string]any{"integration": "items", "wait": "30s"}), 200).json(t)
	if m["status"] != "succeeded" {
		t.Fatalf("run inside the tenant's directory: %v", m)
	}
	if got := readLines(t, filepath.Join(acmeDir, "out", "items.ndjson")); len(got) != 1 || got[0]["name"] != "acme-item" {
		t.Fatalf("written: %v", got)
	}

	// A symbolic link planted in acme's directory (its path is fine when
	// applied) does not lead a run to beta's files: reading fails, and so
	// does writing, with the reason in the run.
	if err := os.Symlink("../beta/secret.json", filepath.Join(acmeDir, "planted.json")); err != nil {
		t.Skipf("symlinks unavailable: %v", err)
	}
	if err := os.Symlink("../../beta/out.ndjson", filepath.Join(acmeDir, "out", "planted.ndjson")); err != nil {
		t.Fatal(err)
	}
	runFails := func(what string, rev string, cfg map[string]any, want string) {
		t.Helper()
		e.expect(e.do("PUT", "/v1/config", acme, cfg, "If-Match", rev), 200)
		m := e.expect(e.do("POST", "/v1/sync-events", acme, map[string]any{"integration": "items", "wait": "30s"}), 200).json(t)
		run := e.expect(e.do("GET", "/v1/runs/"+m["correlationId"].(string), acme, nil), 200)
		if m["status"] != "failed" || !strings.Contains(string(run.body), want) {
			t.Errorf("%s: sync event %v\nrun %s\nwant it failed with %q", what, m, run.body, want)
		}
		if strings.Contains(string(run.body), "beta-secret") || strings.Contains(string(mustJSON(m)), "beta-secret") {
			t.Errorf("%s: beta's record reached acme: %s", what, run.body)
		}
	}
	runFails("read through a planted link", "1", confinedConfig(`"."`, "planted.json", "out/read.ndjson"), "path escapes from parent")
	runFails("write through a planted link", "2", confinedConfig(`"."`, "in.json", "out/planted.ndjson"), "path escapes from parent")
	if b, err := os.ReadFile(filepath.Join(betaDir, "out.ndjson")); err != nil || string(b) != "beta's own\n" {
		t.Fatalf("beta's file is now %q (%v)", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(acmeDir, "out", "read.ndjson")); err != nil || len(b) != 0 {
		t.Fatalf("acme's output has %q (%v), want it empty", b, err)
	}

	// A path in a secret is only known to a run, and refused there; the
	// connection test says why too.
	e.expect(e.do("PUT", "/v1/secrets/dir", acme, map[string]any{"value": "../beta"}), 201)
	runFails("connection path in a secret", "3", confinedConfig(`secret("dir")`, "secret.json", "out.ndjson"), "leads out of the tenant's files directory")
	r := e.expect(e.do("POST", "/v1/connections/files/test", acme, nil), 200).json(t)
	if r["ok"] != false || !strings.Contains(r["error"].(string), "leads out of the tenant's files directory") {
		t.Errorf("connection test: %v", r)
	}
}

// The tenant of ferry serve --dev DIR (Options.TenantDirs) is the
// developer's own: like ferry run, not confined. Other tenants of the same
// server are.
func TestDevTenantNotConfined(t *testing.T) {
	dev, elsewhere := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(elsewhere, "in.json"), []byte(`[{"id":1,"name":"x"}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	e, _ := newConfinedEnv(t, map[string]string{"acme": dev})
	acme := e.tenantWithKey("acme", RoleUser)
	e.expect(e.do("PUT", "/v1/config", acme, confinedConfig(`"`+filepath.ToSlash(elsewhere)+`"`, "in.json", "out.ndjson"), "If-Match", "0"), 200)
	m := e.expect(e.do("POST", "/v1/sync-events", acme, map[string]any{"integration": "items", "wait": "30s"}), 200).json(t)
	if m["status"] != "succeeded" {
		t.Fatalf("dev tenant's run: %v", m)
	}
	other := e.tenantWithKey("other", RoleUser)
	cfg := confinedConfig(`"`+filepath.ToSlash(elsewhere)+`"`, "in.json", "out.ndjson")
	cfg["files"].(map[string]string)["main.hcl"] = strings.Replace(cfg["files"].(map[string]string)["main.hcl"], `tenant = "acme"`, `tenant = "other"`, 1)
	if r := e.do("PUT", "/v1/config", other, cfg, "If-Match", "0"); r.status != 422 || !strings.Contains(string(r.body), "is absolute") {
		t.Fatalf("another tenant: %d %s", r.status, r.body)
	}
}

// TestHostFilesLiftsConfinement: with Options.HostFiles (ferry serve
// --host-files) a tenant's file connection may name any directory; without
// it the same configuration is refused.
func TestHostFilesLiftsConfinement(t *testing.T) {
	elsewhere := t.TempDir()
	if err := os.WriteFile(filepath.Join(elsewhere, "in.json"), []byte(`[{"id":1,"name":"x"}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := confinedConfig(`"`+filepath.ToSlash(elsewhere)+`"`, "in.json", "out.ndjson")

	confined, _ := newConfinedEnv(t, nil)
	confined.expect(confined.do("PUT", "/v1/config", confined.tenantWithKey("acme", RoleUser), cfg, "If-Match", "0"), 422)

	e := newEnv(t) // HostFiles
	acme := e.tenantWithKey("acme", RoleUser)
	e.expect(e.do("PUT", "/v1/config", acme, cfg, "If-Match", "0"), 200)
	m := e.expect(e.do("POST", "/v1/sync-events", acme, map[string]any{"integration": "items", "wait": "30s"}), 200).json(t)
	if m["status"] != "succeeded" {
		t.Fatalf("run with host files: %v", m)
	}
	if _, err := os.Stat(filepath.Join(elsewhere, "out.ndjson")); err != nil {
		t.Errorf("the run did not write to the host directory: %v", err)
	}
}
