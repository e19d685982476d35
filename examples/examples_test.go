// Package examples_test keeps the example configurations honest: each one
// validates and passes its own test blocks (what `ferry validate` and `ferry
// test` check), and the connector examples run end to end against local fake
// servers and PostgreSQL, in memory and through the durable runtime.
package examples_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/jackc/pgx/v5"

	"github.com/ferryhq/ferry/engine"
	"github.com/ferryhq/ferry/lang"
	"github.com/ferryhq/ferry/runtime"

	_ "github.com/ferryhq/ferry/connectors/file"
	_ "github.com/ferryhq/ferry/connectors/http"
	_ "github.com/ferryhq/ferry/connectors/postgres"
	_ "github.com/ferryhq/ferry/connectors/shopify"
)

// TestExamplesValidateAndPassTheirTests does for every example directory what
// `ferry validate DIR` and `ferry test DIR` do, with an empty environment so
// that env() defaults are what a fresh checkout sees.
func TestExamplesValidateAndPassTheirTests(t *testing.T) {
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		hcls, _ := filepath.Glob(filepath.Join(e.Name(), "*.hcl"))
		if !e.IsDir() || len(hcls) == 0 {
			continue
		}
		n++
		t.Run(e.Name(), func(t *testing.T) {
			for _, f := range hcls { // ferry fmt -check
				src, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				if out, diags := lang.Format(src, f); diags.HasErrors() || string(out) != string(src) {
					t.Errorf("%s is not formatted: run ferry fmt %s (%v)", f, e.Name(), diags)
				}
			}
			prog := load(t, e.Name(), nil)
			results := prog.RunTests(context.Background(), nil)
			if len(results) < 3 {
				t.Errorf("%d test blocks; every example has tests of its mappings and of an integration", len(results))
			}
			for _, r := range results {
				if !r.Passed {
					t.Errorf("test %q fails: %s%s", r.Name, r.Err, r.Diff)
				}
			}
		})
	}
	if n < 3 {
		t.Fatalf("found %d example directories with *.hcl files, want at least 3", n)
	}
}

// load loads and compiles an example as `ferry validate` does; environ is the
// environment env() reads.
func load(t *testing.T, dir string, environ []string) *engine.Program {
	t.Helper()
	cfg, diags := lang.Load(dir, lang.LoadOptions{Environ: environ})
	if !diags.HasErrors() {
		prog, cdiags := engine.Compile(cfg)
		if !cdiags.HasErrors() {
			return prog
		}
		diags = append(diags, cdiags...)
	}
	var b strings.Builder
	var files map[string]*hcl.File
	if cfg != nil {
		files = cfg.Files
	}
	lang.WriteDiagnostics(&b, files, diags, false)
	t.Fatalf("example %s does not validate:\n%s", dir, b.String())
	return nil
}

// secrets resolves secret("name") from a map, as ferry run does from
// FERRY_SECRET_<NAME>.
func secrets(m map[string]string) func(string) (string, error) {
	return func(name string) (string, error) {
		if v, ok := m[name]; ok {
			return v, nil
		}
		return "", &missingSecret{name}
	}
}

type missingSecret struct{ name string }

func (e *missingSecret) Error() string { return "secret " + e.name + " is not set in the test" }

// openRuntime starts the durable runtime with an embedded NATS in a
// temporary directory (in-process connections, no port).
func openRuntime(t *testing.T) *runtime.Runtime {
	t.Helper()
	rt, err := runtime.Open(context.Background(), runtime.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

const defaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

func postgresURL() string {
	if u := os.Getenv("FERRY_TEST_POSTGRES_URL"); u != "" {
		return u
	}
	return defaultPostgresURL
}

// postgresSchema connects to the test database (skipping the test when there
// is none, failing it in CI), creates a schema of the test's own, dropped at
// the end, and returns an admin connection whose search_path is that schema
// and the URL for the example's connection.
func postgresSchema(t *testing.T) (*pgx.Conn, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, postgresURL())
	if err == nil {
		err = admin.Ping(ctx)
	}
	if err != nil {
		msg := "PostgreSQL is not reachable at FERRY_TEST_POSTGRES_URL (default " + defaultPostgresURL + "): " + err.Error()
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg + "; start PostgreSQL or set FERRY_TEST_POSTGRES_URL to run this test")
	}
	b := make([]byte, 6)
	rand.Read(b)
	schema := "ferry_example_" + hex.EncodeToString(b)
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema+"; SET search_path = "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		admin.Close(context.Background())
	})
	sep := "?"
	if strings.Contains(postgresURL(), "?") {
		sep = "&"
	}
	return admin, postgresURL() + sep + "search_path=" + schema
}
