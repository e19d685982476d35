package apiserver

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/ferryhq/ferry/connectors/file"
	_ "github.com/ferryhq/ferry/connectors/http"
	"github.com/ferryhq/ferry/runtime"
)

// loopbackNetworks lets the tenants of a test server reach the httptest
// servers and databases of the tests, all on loopback (Options.AllowNetworks).
var loopbackNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// newEnvWith is newEnv with the tenants' files in files/<tenant> and the
// options changed by opt.
func newEnvWith(t *testing.T, opt func(*Options)) (e *env, files string) {
	t.Helper()
	rt, err := runtime.Open(context.Background(), runtime.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	files = t.TempDir()
	o := Options{AdminKey: testAdminKey, MasterKey: bytes.Repeat([]byte{7}, 32), MaxBodyBytes: 64 << 10, Now: c.Now, FilesDir: files}
	opt(&o)
	s, err := New(rt, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Close(ctx)
	})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &env{t: t, s: s, rt: rt, srv: srv, clock: c}, files
}

// netConfig is acme's integration "items" from the http API at base to the
// file out.ndjson of its directory.
func netConfig(base string) map[string]any {
	return map[string]any{"files": map[string]string{"main.hcl": `ferry {
  tenant = "acme"
}

connection "api" {
  type     = "http"
  base_url = "` + base + `"
}

connection "files" {
  type = "file"
  path = "."
}

mapping "m" {
  key = "string(id)"
  fields = {
    id = "id"
  }
}

integration "items" {
  source {
    connection = connection.api
    path       = "/items"
  }
  transform {
    mapping = mapping.m
  }
  target {
    connection = connection.files
    path       = "out.ndjson"
  }
  retry {
    max_attempts = 1
  }
}
`}}
}

// A tenant's connections may not reach the server itself (loopback here)
// unless Options.AllowNetworks allows it; --host-files does not, and the
// --dev tenant, like ferry run, is not restricted. The run and the
// connection test say which address was refused and how to allow it.
func TestTenantNetworkPolicy(t *testing.T) {
	var hits atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `[{"id":1}]`)
	}))
	defer api.Close()
	cfg := netConfig(api.URL)
	addr := api.Listener.Addr().String()
	run := func(e *env, key string) (map[string]any, string) {
		t.Helper()
		m := e.expect(e.do("POST", "/v1/sync-events", key, map[string]any{"integration": "items", "wait": "30s"}), 200).json(t)
		r := e.expect(e.do("GET", "/v1/runs/"+m["correlationId"].(string), key, nil), 200)
		return m, string(r.body)
	}

	for _, tt := range []struct {
		name string
		opt  func(*Options)
	}{
		{"confined", func(*Options) {}},
		{"host files", func(o *Options) { o.HostFiles = true }},
		{"other networks allowed", func(o *Options) { o.AllowNetworks = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} }},
	} {
		e, _ := newEnvWith(t, tt.opt)
		acme := e.tenantWithKey("acme", RoleUser)
		e.expect(e.do("PUT", "/v1/config", acme, cfg, "If-Match", "0"), 200)
		m, body := run(e, acme)
		want := "connecting to " + addr + " is not allowed on this server"
		if m["status"] != "failed" || !strings.Contains(body, want) || !strings.Contains(body, "ferry serve --allow-networks 127.0.0.1/32") {
			t.Errorf("%s: sync event %v\nrun %s\nwant it failed with %q and the flag that allows it", tt.name, m, body, want)
		}
		r := e.expect(e.do("POST", "/v1/connections/api/test", acme, nil), 200).json(t)
		if r["ok"] != false || !strings.Contains(fmt.Sprint(r["error"]), want) {
			t.Errorf("%s: connection test %v, want it refused", tt.name, r)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the refused server was reached %d times", n)
	}

	// Allowed: the run reads the API.
	e, files := newEnvWith(t, func(o *Options) { o.AllowNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")} })
	acme := e.tenantWithKey("acme", RoleUser)
	e.expect(e.do("PUT", "/v1/config", acme, cfg, "If-Match", "0"), 200)
	if m, body := run(e, acme); m["status"] != "succeeded" {
		t.Fatalf("with AllowNetworks: %v\n%s", m, body)
	}
	if got := readLines(t, filepath.Join(files, "acme", "out.ndjson")); len(got) != 1 {
		t.Errorf("with AllowNetworks, written: %v", got)
	}

	// The --dev tenant is not restricted.
	dev := t.TempDir()
	e, _ = newEnvWith(t, func(o *Options) { o.TenantDirs = map[string]string{"acme": dev} })
	acme = e.tenantWithKey("acme", RoleUser)
	e.expect(e.do("PUT", "/v1/config", acme, cfg, "If-Match", "0"), 200)
	if m, body := run(e, acme); m["status"] != "succeeded" {
		t.Fatalf("dev tenant: %v\n%s", m, body)
	}
	if _, err := os.Stat(filepath.Join(dev, "out.ndjson")); err != nil {
		t.Errorf("dev tenant: %v", err)
	}

	if _, err := New(e.rt, Options{AllowNetworks: []netip.Prefix{{}}}); err == nil || !strings.Contains(err.Error(), "AllowNetworks") {
		t.Errorf("an invalid prefix: %v", err)
	}
}

// Event deliveries are under the same policy as connections: a tenant
// cannot have the server POST to itself (and read the answer in the
// delivery history). A url that says so is refused at once; a name that
// leads there is refused when dialled. --dev tenants are not restricted.
func TestSubscriptionsUnderTheNetworkPolicy(t *testing.T) {
	e, _ := newEnvWith(t, func(o *Options) { o.TenantDirs = map[string]string{"dev": t.TempDir()} })
	key := e.tenantWithKey("acme", RoleUser)
	rc := newReceiver(t, nil)
	for _, u := range []string{rc.URL, "http://localhost:9/x", "http://169.254.169.254/latest/meta-data/", "http://[::ffff:127.0.0.1]:8080/"} {
		r := e.expect(e.do("POST", "/v1/subscriptions", key, map[string]any{"url": u, "types": []string{"run.started"}}), 422)
		if !strings.Contains(string(r.body), "is not allowed on this server") || !strings.Contains(string(r.body), "--allow-networks") {
			t.Errorf("subscribing %s: %s", u, r.body)
		}
	}
	// At delivery, the address dialled is checked, whatever the url said.
	a := e.s.attempt(t.Context(), "acme", rc.URL, "whsec_x", []byte("{}"), "dlv_x", 1)
	if a.ok() || !strings.Contains(a.Error, "is not allowed on this server") || len(rc.requests()) != 0 {
		t.Errorf("delivery to loopback: %+v, %d requests reached it", a, len(rc.requests()))
	}
	if a := e.s.attempt(t.Context(), "dev", rc.URL, "whsec_x", []byte("{}"), "dlv_y", 1); !a.ok() || len(rc.requests()) != 1 {
		t.Errorf("the --dev tenant's delivery: %+v", a)
	}

	// Allowed networks are reachable.
	e2, _ := newEnvWith(t, func(o *Options) { o.AllowNetworks = loopbackNetworks })
	key2 := e2.tenantWithKey("acme", RoleUser)
	e2.subscribe(key2, map[string]any{"url": rc.URL, "types": []string{"run.started"}})
	if a := e2.s.attempt(t.Context(), "acme", rc.URL, "whsec_x", []byte("{}"), "dlv_z", 1); !a.ok() {
		t.Errorf("allowed delivery: %+v", a)
	}
}
