package postgres

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"

	"github.com/ferryhq/ferry/connectors"
)

// Confined (connectors.Env.Root set, a tenant's connection on a ferry
// server), a url may not have pgx read files of the server, nor reach its
// Unix sockets. Open does not dial, so no database is needed.
func TestConfinedURL(t *testing.T) {
	root := t.TempDir()
	// A file pgx would read as the CA, and fail on, if it got that far:
	// a confined url must be refused before.
	other := filepath.Join(t.TempDir(), "other-tenant-key.pem")
	if err := os.WriteFile(other, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	open := func(env connectors.Env, url string) error {
		conn, err := Open(env, cty.ObjectVal(map[string]cty.Value{"url": cty.StringVal(url), "max_connections": cty.NullVal(cty.Number)}))
		if err == nil {
			conn.(*Connection).Close()
		}
		return err
	}
	confined := connectors.Env{Dir: root, Root: root}

	for _, tt := range []struct{ url, want string }{
		{"postgres://u:pw@db.example.com/app?sslmode=verify-full&sslrootcert=" + other, `parameter "sslrootcert" is not allowed`},
		{"postgres://u@db.example.com/app?sslcert=" + other + "&sslkey=" + other, `is not allowed on a ferry server`},
		{"postgres://u@db.example.com/app?passfile=/etc/shadow", `parameter "passfile" is not allowed`},
		{"postgres://u@db.example.com/app?service=prod&servicefile=/etc/pg_service.conf", `is not allowed on a ferry server`},
		{"host=db.example.com user=u sslrootcert=" + other, "the url must be a URL"},
		{"postgres://u@db.example.com/app?host=/var/run/postgresql", "Unix socket /var/run/postgresql"},
		{"postgres://u@%2Ftmp/app", "Unix socket /tmp"},
	} {
		err := open(confined, tt.url)
		if err == nil || !strings.Contains(err.Error(), tt.want) || connectors.CategoryOf(err) != connectors.CategoryPermanent {
			t.Errorf("%s: error = %v, want a permanent error containing %q", tt.url, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "unable to read CA file") {
			t.Errorf("%s: the file was read before the url was refused: %v", tt.url, err)
		}
	}
	// An ordinary url, with pool and server parameters, is fine.
	for _, url := range []string{
		"postgres://u:pw@db.example.com:5432/app?sslmode=require&application_name=x&pool_max_conns=3&search_path=s&options=-c%20work_mem%3D64MB",
		"postgresql://u:pw@db.example.com:5432/app?sslmode=disable&connect_timeout=5",
	} {
		if err := open(confined, url); err != nil {
			t.Errorf("%s: %v", url, err)
		}
	}
	// Unconfined (ferry run), the url is pgx's: it reads the CA it names.
	err := open(connectors.Env{Dir: root}, "postgres://u@db.example.com/app?sslmode=verify-full&sslrootcert="+other)
	if err == nil || !strings.Contains(err.Error(), "unable to add CA to cert pool") {
		t.Errorf("unconfined sslrootcert: %v", err)
	}
}
