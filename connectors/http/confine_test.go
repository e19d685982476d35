package httpconn

import (
	"context"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"

	"github.com/ferryhq/ferry/connectors"
)

// Confined to a tenant's directory (connectors.Env.Root, as on ferry serve),
// tls files are read only from inside it: not by absolute path, "..", or a
// symbolic link leading out.
func TestTLSFilesConfined(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	files := t.TempDir()
	acme, beta := filepath.Join(files, "acme"), filepath.Join(files, "beta")
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	for _, p := range []string{filepath.Join(acme, "certs", "ca.pem"), filepath.Join(beta, "ca.pem")} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, ca, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("../beta/ca.pem", filepath.Join(acme, "link.pem")); err != nil {
		t.Skipf("symlinks unavailable: %v", err)
	}
	c, _ := connectors.Lookup(Type)
	env := connectors.Env{Dir: acme, Root: acme}
	open := func(env connectors.Env, block string) error {
		_, err := c.Open(env, decodeHCL(t, c.Connection, fmt.Sprintf("base_url = %q\ntls {\n%s\n}", srv.URL, block)))
		return err
	}

	// Inside the root: works, and the connection reaches the server.
	conn, err := c.Open(env, decodeHCL(t, c.Connection, fmt.Sprintf("base_url = %q\ntls {\n ca_file = \"certs/ca.pem\"\n}", srv.URL)))
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.(connectors.Tester).Test(context.Background()); err != nil {
		t.Fatalf("test with the tenant's CA: %v", err)
	}

	for _, tt := range []struct{ block, want string }{
		{`ca_file = "` + filepath.Join(beta, "ca.pem") + `"`, "is absolute"},
		{`ca_file = "/etc/ssl/certs/ca-certificates.crt"`, "is absolute"},
		{`ca_file = "../beta/ca.pem"`, "leads out of the tenant's files directory"},
		{`ca_file = "link.pem"`, "path escapes"},
		{"cert_file = \"../beta/ca.pem\"\nkey_file = \"certs/ca.pem\"", "leads out"},
		{"cert_file = \"certs/ca.pem\"\nkey_file = \"/etc/ssl/private/server.key\"", "is absolute"},
	} {
		err := open(env, tt.block)
		if err == nil || !strings.Contains(err.Error(), tt.want) || connectors.CategoryOf(err) != connectors.CategoryPermanent {
			t.Errorf("%s: error = %v, want a permanent error containing %q", tt.block, err, tt.want)
		}
	}

	// Unconfined (ferry run), absolute paths and links keep working.
	for _, block := range []string{`ca_file = "` + filepath.Join(beta, "ca.pem") + `"`, `ca_file = "link.pem"`, `ca_file = "../beta/ca.pem"`} {
		if err := open(connectors.Env{Dir: acme}, block); err != nil {
			t.Errorf("unconfined %s: %v", block, err)
		}
	}

	// The static check a server runs at plan time.
	conf := func(block string) cty.Value {
		return decodeHCL(t, c.Connection, fmt.Sprintf("base_url = %q\ntls {\n%s\n}", srv.URL, block))
	}
	if err := c.Check(env, conf(`ca_file = "../beta/ca.pem"`), cty.NilVal, cty.NilVal); err == nil || !strings.Contains(err.Error(), `tls ca_file: path "../beta/ca.pem" leads out`) {
		t.Errorf("check: %v", err)
	}
	if err := c.Check(env, conf(`ca_file = "certs/ca.pem"`), cty.NilVal, cty.NilVal); err != nil {
		t.Errorf("check inside: %v", err)
	}
	if err := c.Check(connectors.Env{Dir: acme}, conf(`ca_file = "/etc/x.pem"`), cty.NilVal, cty.NilVal); err != nil {
		t.Errorf("check unconfined: %v", err)
	}
}
