package file

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"

	"github.com/ferryhq/ferry/connectors"
)

// tenants makes two sibling tenant directories, as a server's FilesDir holds
// them: files/acme (the one under test) and files/beta, whose secret.json
// acme must never reach.
func tenants(t *testing.T) (acme, beta string) {
	t.Helper()
	files := t.TempDir()
	acme, beta = filepath.Join(files, "acme"), filepath.Join(files, "beta")
	writeFile(t, acme, "data/in.ndjson", "{\"id\":1}\n")
	writeFile(t, beta, "secret.json", `{"beta":"secret"}`)
	return acme, beta
}

// openConfined opens a file connection confined to root, whose configuration
// lives there too (as on the server).
func openConfined(t *testing.T, root, src string) (connectors.Connection, error) {
	t.Helper()
	c, _ := connectors.Lookup(Type)
	return c.Open(connectors.Env{Dir: root, Root: root}, decodeHCL(t, ConnectionSpec, src))
}

func mustOpenConfined(t *testing.T, root, src string) connectors.Connection {
	t.Helper()
	conn, err := openConfined(t, root, src)
	if err != nil {
		t.Fatalf("open %q: %v", src, err)
	}
	return conn
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Skipf("symlinks unavailable: %v", err)
	}
}

// wantRefused checks that err is a permanent error naming path and telling
// that paths must stay in the tenant's files directory.
func wantRefused(t *testing.T, what string, err error, path string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: not refused", what)
	}
	if connectors.CategoryOf(err) != connectors.CategoryPermanent {
		t.Errorf("%s: error is %s, want permanent: %v", what, connectors.CategoryOf(err), err)
	}
	for _, w := range []string{path, "tenant's files directory"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: error %q does not contain %q", what, err, w)
		}
	}
}

func TestConfinedRefusesPathsOutsideRoot(t *testing.T) {
	acme, beta := tenants(t)
	for _, p := range []string{"/etc", beta, "..", "../beta", "data/../../beta"} {
		_, err := openConfined(t, acme, `path = "`+p+`"`)
		wantRefused(t, "connection path "+p, err, p)
	}

	conn := mustOpenConfined(t, acme, `path = "data"`)
	for _, p := range []string{"/etc/passwd", filepath.Join(beta, "secret.json"), "../../beta/secret.json", "../../beta/*.json", "../../*/secret.json", "sub/../../../beta/secret.json"} {
		_, err := conn.Source(decodeHCL(t, SourceSpec, `path = "`+p+`"`))
		wantRefused(t, "source path "+p, err, p)
	}
	for _, p := range []string{"/tmp/out.ndjson", filepath.Join(beta, "out.ndjson"), "../../beta/out.ndjson", "../../beta/secret.json"} {
		_, err := conn.Sink(decodeHCL(t, TargetSpec, `path = "`+p+`"`))
		wantRefused(t, "target path "+p, err, p)
	}
	if got := readFileString(t, filepath.Join(beta, "secret.json")); got != `{"beta":"secret"}` {
		t.Fatalf("beta's file changed: %q", got)
	}
	if _, err := os.Stat(filepath.Join(beta, "out.ndjson")); !os.IsNotExist(err) {
		t.Fatalf("a file was written in beta's directory: %v", err)
	}

	// Paths that stay inside, ".." included, work.
	recs, err := readAll(t, newSource(t, mustOpenConfined(t, acme, ""), `path = "data/../data/*.ndjson"`))
	if err != nil || len(recs) != 1 || recs[0].Position != "data/in.ndjson:line 1" {
		t.Fatalf("read inside the root: %v %v", recs, err)
	}
	sink := newSink(t, conn, `path = "../out/items.ndjson"`)
	writeAll(t, sink, map[string]any{"id": 1})
	if err := sink.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := readFileString(t, filepath.Join(acme, "out", "items.ndjson")); got != "{\"id\":1}\n" {
		t.Fatalf("written inside the root: %q", got)
	}
}

// Without a root, nothing changes: absolute paths and ".." reach anywhere
// (ferry run on the user's own machine).
func TestUnconfinedKeepsAbsolutePaths(t *testing.T) {
	acme, beta := tenants(t)
	conn := openConn(t, acme, `path = "`+beta+`"`)
	recs, err := readAll(t, newSource(t, conn, `path = "secret.json"`))
	if err != nil || len(recs) != 1 {
		t.Fatalf("absolute connection path: %v %v", recs, err)
	}
	recs, err = readAll(t, newSource(t, openConn(t, acme, ""), `path = "../beta/*.json"`))
	if err != nil || len(recs) != 1 || !strings.HasSuffix(recs[0].Position, "beta/secret.json:line 1") {
		t.Fatalf("'..' glob: %v %v", recs, err)
	}
	out := filepath.Join(beta, "out.ndjson")
	sink := newSink(t, openConn(t, acme, ""), `path = "`+out+`"`)
	writeAll(t, sink, map[string]any{"id": 1})
	if err := sink.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := readFileString(t, out); got != "{\"id\":1}\n" {
		t.Fatalf("absolute target: %q", got)
	}
}

func TestConfinedSymlinkEscape(t *testing.T) {
	acme, beta := tenants(t)
	symlink(t, "../beta/secret.json", filepath.Join(acme, "rel-link.json"))
	symlink(t, filepath.Join(beta, "secret.json"), filepath.Join(acme, "abs-link.json"))
	symlink(t, "../beta", filepath.Join(acme, "betadir"))
	symlink(t, "../beta/out.ndjson", filepath.Join(acme, "out-link.ndjson"))
	symlink(t, "data/in.ndjson", filepath.Join(acme, "inside.ndjson")) // stays inside: fine
	conn := mustOpenConfined(t, acme, "")

	// Reading: a link to a file or a directory out of the root is not followed.
	for _, p := range []string{"rel-link.json", "abs-link.json", "betadir/secret.json"} {
		recs, err := readAll(t, newSource(t, conn, `path = "`+p+`"`))
		if len(recs) != 0 {
			t.Fatalf("%s: read %d records of beta's file", p, len(recs))
		}
		wantRefused(t, "read "+p, err, p)
	}
	// Globs neither list a directory linked out nor match a file linked out.
	recs, err := readAll(t, newSource(t, conn, `path = "betadir/*"`))
	if err == nil || len(recs) != 0 || !strings.Contains(err.Error(), `no files match "betadir/*"`) {
		t.Fatalf("glob in a directory linked out: %v %v", recs, err)
	}
	recs, err = readAll(t, newSource(t, conn, `path = "*-link.json"`))
	if len(recs) != 0 {
		t.Fatalf("glob read %d records of beta's file", len(recs))
	}
	wantRefused(t, "glob of links only", err, "*-link.json")
	recs, err = readAll(t, newSource(t, conn, `path = "*.*json"`))
	if err != nil || len(recs) != 1 || recs[0].Position != "inside.ndjson:line 1" {
		t.Fatalf("glob with links out and in: %v %v", recs, err)
	}

	// Writing: neither through a file link nor through a directory link.
	for _, p := range []string{"out-link.ndjson", "betadir/out.ndjson", "betadir/new/out.ndjson", "rel-link.json"} {
		_, err := conn.Sink(decodeHCL(t, TargetSpec, `path = "`+p+`"`))
		wantRefused(t, "write "+p, err, p)
	}
	entries, err := os.ReadDir(beta)
	if err != nil || len(entries) != 1 {
		t.Fatalf("beta's directory holds %v (%v), want only secret.json", entries, err)
	}
	if got := readFileString(t, filepath.Join(beta, "secret.json")); got != `{"beta":"secret"}` {
		t.Fatalf("beta's file changed: %q", got)
	}

	// The connection check does not go through a link out either.
	err = mustOpenConfined(t, acme, `path = "betadir"`).(connectors.Tester).Test(t.Context())
	wantRefused(t, "test betadir", err, "escapes")

	// Without a root the same links are followed, as before.
	recs, err = readAll(t, newSource(t, openConn(t, acme, ""), `path = "betadir/secret.json"`))
	if err != nil || len(recs) != 1 {
		t.Fatalf("unconfined read through a link: %v %v", recs, err)
	}
}

func TestConfinedRootCreatedForTargets(t *testing.T) {
	root := filepath.Join(t.TempDir(), "files", "acme")
	conn := mustOpenConfined(t, root, `path = "data"`)
	_, err := readAll(t, newSource(t, conn, `path = "in.json"`))
	if err == nil || !strings.Contains(err.Error(), `"in.json" not found`) {
		t.Fatalf("read before the root exists: %v", err)
	}
	if err := conn.(connectors.Tester).Test(t.Context()); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("test before the root exists: %v", err)
	}
	sink := newSink(t, conn, `path = "out/x.ndjson"`)
	writeAll(t, sink, map[string]any{"id": 1})
	if err := sink.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := readFileString(t, filepath.Join(root, "data", "out", "x.ndjson")); got != "{\"id\":1}\n" {
		t.Fatalf("got %q", got)
	}
	if err := conn.(connectors.Tester).Test(t.Context()); err != nil {
		t.Fatalf("test: %v", err)
	}
}

// Reading confined goes through the same readers: errors still point at the
// line and column, and append reopens the array.
func TestConfinedReadErrorsAndAppend(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root, "p.json", "[{\"id\":1}\n {\"id\":2}]")
	recs, err := readAll(t, newSource(t, mustOpenConfined(t, root, ""), `path = "p.json"`))
	if len(recs) != 1 || err == nil || !strings.Contains(err.Error(), "p.json: invalid JSON at line 2, column 2 (byte offset 11)") {
		t.Fatalf("got %v, %v", recs, err)
	}
	conn := mustOpenConfined(t, root, "")
	for range 2 {
		sink := newSink(t, conn, `
path   = "a.json"
append = true`)
		writeAll(t, sink, map[string]any{"id": 1})
		if err := sink.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if got := readFileString(t, filepath.Join(root, "a.json")); got != "[\n{\"id\":1},\n{\"id\":1}\n]\n" {
		t.Fatalf("appended array: %q", got)
	}
}

// check is what a server runs when a configuration is planned or applied.
func TestCheckPaths(t *testing.T) {
	acme, _ := tenants(t)
	env := connectors.Env{Dir: acme, Root: acme}
	conn := func(src string) cty.Value { return decodeHCL(t, ConnectionSpec, src) }
	src := func(p string) cty.Value { return decodeHCL(t, SourceSpec, `path = "`+p+`"`) }
	dst := func(p string) cty.Value { return decodeHCL(t, TargetSpec, `path = "`+p+`"`) }
	secretPath := cty.ObjectVal(map[string]cty.Value{"path": cty.NullVal(cty.String), "format": cty.NullVal(cty.String)})

	for _, tt := range []struct {
		name                 string
		conn, source, target cty.Value
		want                 string // "" = accepted
	}{
		{"connection inside", conn(`path = "data"`), cty.NilVal, cty.NilVal, ""},
		{"connection absolute", conn(`path = "/etc"`), cty.NilVal, cty.NilVal, `file connection: path "/etc" is absolute`},
		{"connection up", conn(`path = "../beta"`), cty.NilVal, cty.NilVal, `file connection: path "../beta" leads out`},
		{"connection from a secret", secretPath, src("in.json"), dst("out.json"), ""},
		{"source inside", conn(`path = "data"`), src("*.ndjson"), cty.NilVal, ""},
		{"source up", conn(`path = "data"`), src("../../beta/*.json"), cty.NilVal, `file source: path "../../beta/*.json" leads out`},
		{"source absolute", conn(""), src("/etc/passwd"), cty.NilVal, `file source: path "/etc/passwd" is absolute`},
		{"target up", conn(`path = "data"`), cty.NilVal, dst("../../x.ndjson"), `file target: path "../../x.ndjson" leads out`},
		{"target inside", conn(`path = "data"`), cty.NilVal, dst("../x.ndjson"), ""},
	} {
		err := check(env, tt.conn, tt.source, tt.target)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: error = %v, want it to contain %q", tt.name, err, tt.want)
		}
	}
	// Unconfined, nothing is refused.
	if err := check(connectors.Env{Dir: acme}, conn(`path = "/etc"`), src("/etc/passwd"), dst("/tmp/x")); err != nil {
		t.Fatalf("unconfined: %v", err)
	}
}

// Confined errors name paths as the tenant wrote them, never where the
// server keeps the tenant's files.
func TestConfinedErrorsHideTheServersDirectory(t *testing.T) {
	root := filepath.Join(t.TempDir(), "srv-secret-place", "files", "acme")
	conn := mustOpenConfined(t, root, `path = "data"`)
	check := func(what string, err error, want string) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "srv-secret-place") {
			t.Errorf("%s: %v; want it to say %q without the server's directory", what, err, want)
		}
	}
	check("test, no root yet", conn.(connectors.Tester).Test(t.Context()), "directory data (in the tenant's files directory) does not exist")
	_, err := readAll(t, newSource(t, conn, `path = "in.json"`))
	check("read, no root yet", err, `"in.json" not found`)
	if err := os.MkdirAll(filepath.Join(root, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = readAll(t, newSource(t, conn, `path = "in.json"`))
	check("read, no file", err, `file "in.json" not found in directory data (in the tenant's files directory)`)
	_, err = readAll(t, newSource(t, conn, `path = "*.csv"`))
	check("read, no match", err, `no files match "*.csv" in directory data (in the tenant's files directory)`)
	writeFile(t, root, "plain", "x")
	check("test, not a directory", mustOpenConfined(t, root, `path = "plain"`).(connectors.Tester).Test(t.Context()), "plain (in the tenant's files directory) is not a directory")
}
