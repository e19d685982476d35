package postgres

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/zclconf/go-cty/cty"

	"github.com/ferryhq/ferry/connectors"
)

// serverPGEnv gives the test process what a ferry server's own PostgreSQL
// client setup could be: PG* variables, and a home with ~/.pgpass and a
// client certificate and CA in ~/.postgresql.
func serverPGEnv(t *testing.T) {
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, ".postgresql"), 0o700); err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM := selfSignedCert(t)
	for name, data := range map[string][]byte{
		".pgpass":                    []byte("*:*:*:*:home-pgpass\n"),
		".postgresql/postgresql.crt": certPEM,
		".postgresql/postgresql.key": keyPEM,
		".postgresql/root.crt":       certPEM,
	} {
		if err := os.WriteFile(filepath.Join(home, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	passfile := filepath.Join(t.TempDir(), "pgpass")
	if err := os.WriteFile(passfile, []byte("*:*:*:*:env-pgpass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"HOME":                 home,
		"PGPASSFILE":           passfile,
		"PGPASSWORD":           "env-password",
		"PGUSER":               "server-user",
		"PGHOST":               "server-db.internal",
		"PGPORT":               "6543",
		"PGDATABASE":           "server-db",
		"PGSSLMODE":            "require",
		"PGSSLCERTMODE":        "require",
		"PGSSLSNI":             "0",
		"PGSSLNEGOTIATION":     "direct",
		"PGSSLPASSWORD":        "env-sslpassword",
		"PGAPPNAME":            "server-app",
		"PGOPTIONS":            "-c search_path=server",
		"PGTZ":                 "Antarctica/Troll",
		"PGCONNECT_TIMEOUT":    "7",
		"PGTARGETSESSIONATTRS": "read-write",
		"PGMINPROTOCOLVERSION": "3.2",
		"PGCHANNELBINDING":     "disable",
		"PGREQUIREAUTH":        "md5",
		"PGSERVICE":            "",
	} {
		t.Setenv(k, v)
	}
}

func selfSignedCert(t *testing.T) (certPEM, keyPEM []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "server-user"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IsCA:         true,
		KeyUsage:     x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

// poolConfig opens a connection (Open does not dial) and returns its parsed config.
func poolConfig(env connectors.Env, url string) (*pgxpool.Config, error) {
	conn, err := Open(env, cty.ObjectVal(map[string]cty.Value{"url": cty.StringVal(url), "max_connections": cty.NullVal(cty.Number)}))
	if err != nil {
		return nil, err
	}
	defer conn.(*Connection).Close()
	return conn.(*Connection).Pool.Config(), nil
}

// On a ferry server, a tenant's url is all there is to its connection:
// neither the server's PG* variables nor its ~/.pgpass or ~/.postgresql
// fill in what the url leaves out. ferry run keeps pgx's libpq-like
// defaults. No database is needed: the configs are compared.
func TestConfinedIgnoresServerPGEnv(t *testing.T) {
	root := t.TempDir()
	confined := connectors.Env{Dir: root, Root: root}

	// pgconn's defaults, whatever the environment says.
	checkClean := func(t *testing.T, url string) *pgxpool.Config {
		t.Helper()
		pc, err := poolConfig(confined, url)
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		c := pc.ConnConfig
		if c.Password != "" {
			t.Errorf("%s: password %q, want none", url, c.Password)
		}
		if c.Host != "db.example.com" || c.Port != 5432 || c.User != "tenant" {
			t.Errorf("%s: host %s port %d user %s, want db.example.com 5432 tenant", url, c.Host, c.Port, c.User)
		}
		if c.ConnectTimeout != 0 || c.ValidateConnect != nil || c.SSLNegotiation != "" || c.SSLCertMode != "allow" ||
			c.MinProtocolVersion != "3.0" || c.MaxProtocolVersion != "3.0" || c.ChannelBinding != "prefer" || c.RequireAuth != "" {
			t.Errorf("%s: connect_timeout %v, target_session_attrs %v, sslnegotiation %q, sslcertmode %q, protocol %s-%s, channel_binding %s, require_auth %q: the server's environment",
				url, c.ConnectTimeout, c.ValidateConnect != nil, c.SSLNegotiation, c.SSLCertMode, c.MinProtocolVersion, c.MaxProtocolVersion, c.ChannelBinding, c.RequireAuth)
		}
		// sslmode=prefer: TLS, then without.
		if c.TLSConfig == nil || len(c.Fallbacks) != 1 || c.Fallbacks[0].TLSConfig != nil {
			t.Fatalf("%s: tls %v, fallbacks %d: want sslmode=prefer's", url, c.TLSConfig != nil, len(c.Fallbacks))
		}
		if len(c.TLSConfig.Certificates) != 0 || c.TLSConfig.RootCAs != nil || c.TLSConfig.ServerName != "db.example.com" {
			t.Errorf("%s: client certificates %d, CA %v, server name %q: the server's files or environment", url, len(c.TLSConfig.Certificates), c.TLSConfig.RootCAs != nil, c.TLSConfig.ServerName)
		}
		for k, v := range c.RuntimeParams {
			if k != "application_name" || v != "ferry" {
				t.Errorf("%s: server parameter %s=%q: the server's environment", url, k, v)
			}
		}
		return pc
	}

	t.Run("confined", func(t *testing.T) {
		serverPGEnv(t)
		for _, url := range []string{
			"postgres://tenant@db.example.com/app",
			"postgresql://tenant:@db.example.com/app?",
			"postgres://tenant@db.example.com/app?sslsni=1&",
			"postgres://tenant@db.example.com:/app",
			"postgres://%74enant@db.example.com?dbname=app&password=",
			"postgres:///app?host=db.example.com&user=tenant",
			"postgres://[db.example.com]/app?user=tenant",
		} {
			if pc := checkClean(t, url); pc.ConnConfig.Database != "app" {
				t.Errorf("%s: database %q", url, pc.ConnConfig.Database)
			}
		}
		// Without a database, the database server takes the user's name.
		if pc := checkClean(t, "postgres://tenant@db.example.com"); pc.ConnConfig.Database != "" {
			t.Errorf("database %q, want none (not PGDATABASE)", pc.ConnConfig.Database)
		}
	})

	t.Run("confined hosts", func(t *testing.T) {
		serverPGEnv(t)
		// A port left out of a list of hosts is 5432, not PGPORT.
		pc, err := poolConfig(confined, "postgres://tenant@db.example.com:5433,db2.example.com/app?sslmode=disable")
		if err != nil {
			t.Fatal(err)
		}
		c := pc.ConnConfig
		if c.Host != "db.example.com" || c.Port != 5433 || len(c.Fallbacks) != 1 || c.Fallbacks[0].Host != "db2.example.com" || c.Fallbacks[0].Port != 5432 || c.Password != "" {
			t.Errorf("%s:%d, fallbacks %d, password %q: want db.example.com:5433 then db2.example.com:5432, no password", c.Host, c.Port, len(c.Fallbacks), c.Password)
		}
	})

	t.Run("confined passfiles", func(t *testing.T) {
		serverPGEnv(t)
		t.Setenv("PGPASSWORD", "") // pgconn reads PGPASSFILE
		checkClean(t, "postgres://tenant@db.example.com/app")
		t.Setenv("PGPASSFILE", "") // and then ~/.pgpass
		checkClean(t, "postgres://tenant@db.example.com/app")
	})

	t.Run("confined does not read the server's files", func(t *testing.T) {
		serverPGEnv(t)
		// Were they read, by a trial parse or the last, the parse would fail.
		bad := filepath.Join(t.TempDir(), "bad.pem")
		if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("PGSSLROOTCERT", bad)
		t.Setenv("PGSSLCERT", bad)
		t.Setenv("PGSSLKEY", filepath.Join(t.TempDir(), "missing.key"))
		checkClean(t, "postgres://tenant@db.example.com/app")
		if _, err := poolConfig(connectors.Env{Dir: root}, "postgres://tenant@db.example.com/app"); err == nil {
			t.Error("unconfined: the bad files were not read: the test proves nothing")
		}
	})

	t.Run("the url's own settings", func(t *testing.T) {
		serverPGEnv(t)
		pc, err := poolConfig(confined, "postgres://tenant:pa?ss@db.example.com:5433/app?sslmode=disable&application_name=mine&options=-c%20x%3Dy&connect_timeout=5&target_session_attrs=any&timezone=UTC")
		if err != nil {
			t.Fatal(err)
		}
		c := pc.ConnConfig
		if c.Password != "pa?ss" || c.Port != 5433 || c.TLSConfig != nil || len(c.Fallbacks) != 0 || c.ConnectTimeout != 5*time.Second ||
			c.RuntimeParams["application_name"] != "mine" || c.RuntimeParams["options"] != "-c x=y" || c.RuntimeParams["timezone"] != "UTC" {
			t.Errorf("password %q port %d tls %v fallbacks %d timeout %v params %v", c.Password, c.Port, c.TLSConfig != nil, len(c.Fallbacks), c.ConnectTimeout, c.RuntimeParams)
		}
		pc, err = poolConfig(confined, "postgres://tenant:a%20b+c@db.example.com?sslmode=disable")
		if err != nil {
			t.Fatal(err)
		}
		if c := pc.ConnConfig; c.Password != "a b+c" || c.TLSConfig != nil || len(c.Fallbacks) != 0 || c.Database != "" {
			t.Errorf("password %q tls %v fallbacks %d database %q", c.Password, c.TLSConfig != nil, len(c.Fallbacks), c.Database)
		}
		// ssl=true is sslmode=require: TLS only, not prefer's fallback.
		pc, err = poolConfig(confined, "postgres://tenant@db.example.com/app?ssl=true")
		if err != nil {
			t.Fatal(err)
		}
		if c := pc.ConnConfig; c.TLSConfig == nil || len(c.Fallbacks) != 0 {
			t.Errorf("ssl=true: tls %v fallbacks %d, want sslmode=require", c.TLSConfig != nil, len(c.Fallbacks))
		}
	})

	t.Run("confined refusals", func(t *testing.T) {
		serverPGEnv(t)
		for _, tt := range []struct{ url, want string }{
			{"postgres://:secret@db.example.com/app", "the url names no user"},
			{"postgres:// :secret@db.example.com/app", "the url names no user"},
			{"postgres://tenant:secret@db.example.com/app?user=", "the url names no user"},
			{"postgres:///app?user=tenant", "the url names no host"},
			{"postgres://tenant@db.example.com/app?host=", "the url names no host"},
			{"postgres://tenant@db.example.com,/app", "an empty one in its list"},
			{"host=db.example.com user=tenant password=secret", "the url must be a URL, postgres://"},
			{" postgres://tenant:secret@db.example.com/app", "the url must be a URL, postgres://"},
			{"postgres://tenant@db.example.com/app?sslcertmode=disable", `parameter "sslcertmode" is not allowed`},
			{"postgres://tenant@db.example.com/app?ssl=false", `parameter "ssl" is not allowed`},
			{"postgres://tenant@db.example.com/app?ssl=true&ssl=false", `parameter "ssl" is not allowed`},
			{"postgres://tenant@db.example.com/app?service=prod", `parameter "service" is not allowed`},
			{"postgres://tenant@db.example.com/app?ssl%72ootcert=/etc/ssl/ca.pem", `parameter "sslrootcert" is not allowed`},
			{"postgres://tenant:secret@db.example.com:x/app", "invalid port"},
			{"postgres://tenant:secret@db.example.com/app?a", "not name=value"},
			{"postgres://tenant@db.example.com/app?password=se=cret", "not name=value"},
			{"postgres://tenant@db.example.com/app?sslmode=require&&x=y", "not name=value"},
			{"postgres://tenant@db.example.com/app?%zz=1", "a parameter name in its query"},
			{"postgres://tenant:secret@[db.example.com/app", `no "]" ends an IPv6 host address`},
			{"postgres://tenant:secret@[db.example.com]x/app", "an IPv6 host address in [brackets] is followed by"},
			{"postgres://tenant:sec%zzret@db.example.com/app", "invalid percent-encoded token in password"},
		} {
			_, err := poolConfig(confined, tt.url)
			if err == nil || !strings.Contains(err.Error(), tt.want) || connectors.CategoryOf(err) != connectors.CategoryPermanent {
				t.Errorf("%s: error = %v, want a permanent error containing %q", tt.url, err, tt.want)
			}
			if err != nil && (strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "cret")) {
				t.Errorf("%s: the error shows the password: %v", tt.url, err)
			}
		}
		t.Setenv("PGSERVICE", "prod")
		if _, err := poolConfig(confined, "postgres://tenant@db.example.com/app"); err == nil || !strings.Contains(err.Error(), "PGSERVICE") {
			t.Errorf("PGSERVICE set: error = %v, want one naming PGSERVICE", err)
		}
	})

	t.Run("unconfined", func(t *testing.T) {
		serverPGEnv(t)
		unconfined := connectors.Env{Dir: root}
		pc, err := poolConfig(unconfined, "postgres://")
		if err != nil {
			t.Fatal(err)
		}
		c := pc.ConnConfig
		if c.Host != "server-db.internal" || c.Port != 6543 || c.User != "server-user" || c.Password != "env-password" || c.Database != "server-db" {
			t.Errorf("host %s port %d user %s password %q database %s, want the environment's", c.Host, c.Port, c.User, c.Password, c.Database)
		}
		if c.TLSConfig == nil || len(c.TLSConfig.Certificates) != 1 || c.TLSConfig.RootCAs == nil || len(c.Fallbacks) != 0 {
			t.Errorf("tls %v, want ~/.postgresql's client certificate and CA, sslmode=require", c.TLSConfig)
		}
		if c.ConnectTimeout != 7*time.Second || c.ValidateConnect == nil || c.RuntimeParams["application_name"] != "server-app" ||
			c.RuntimeParams["options"] != "-c search_path=server" || c.RuntimeParams["timezone"] != "Antarctica/Troll" {
			t.Errorf("timeout %v, target_session_attrs %v, params %v: want the environment's", c.ConnectTimeout, c.ValidateConnect != nil, c.RuntimeParams)
		}
		t.Setenv("PGPASSWORD", "")
		if pc, err := poolConfig(unconfined, "postgres://"); err != nil || pc.ConnConfig.Password != "env-pgpass" {
			t.Errorf("PGPASSFILE: %v, %v", pc, err)
		}
		t.Setenv("PGPASSFILE", "")
		if pc, err := poolConfig(unconfined, "postgres://"); err != nil || pc.ConnConfig.Password != "home-pgpass" {
			t.Errorf("~/.pgpass: %v, %v", pc, err)
		}
	})
}
