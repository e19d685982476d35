package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/jackc/pgx/v5"
	"github.com/zclconf/go-cty/cty"

	"github.com/ferryhq/ferry/connectors"
)

const defaultTestURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

func testURL() string {
	if u := os.Getenv("FERRY_TEST_POSTGRES_URL"); u != "" {
		return u
	}
	return defaultTestURL
}

var (
	reachOnce sync.Once
	reachErr  error
)

// needPostgres skips the test when no PostgreSQL is reachable, except in CI
// (CI set), where a missing database is a failure.
func needPostgres(t testing.TB) {
	t.Helper()
	reachOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, testURL())
		if err != nil {
			reachErr = err
			return
		}
		defer c.Close(ctx)
		reachErr = c.Ping(ctx)
	})
	if reachErr != nil {
		msg := "PostgreSQL is not reachable at FERRY_TEST_POSTGRES_URL (default " + defaultTestURL + "): " + reachErr.Error()
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg + "; start PostgreSQL or set FERRY_TEST_POSTGRES_URL to run these tests")
	}
}

func decodeHCL(t testing.TB, spec hcldec.Spec, src string) cty.Value {
	t.Helper()
	f, diags := hclsyntax.ParseConfig([]byte(src), "test.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("parse %q: %s", src, diags)
	}
	v, diags := hcldec.Decode(f.Body, spec, nil)
	if diags.HasErrors() {
		t.Fatalf("decode %q: %s", src, diags)
	}
	return v
}

// testDB is one test's own schema on the test database.
type testDB struct {
	t      testing.TB
	url    string
	schema string
	admin  *pgx.Conn
	conn   *Connection
}

// newDB creates a schema of the test's own, dropped when the test ends, and
// opens a ferry connection whose search_path is that schema.
func newDB(t testing.TB) *testDB {
	t.Helper()
	needPostgres(t)
	ctx := context.Background()
	b := make([]byte, 6)
	rand.Read(b)
	schema := "ferry_test_" + hex.EncodeToString(b)
	admin, err := pgx.Connect(ctx, testURL())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		admin.Close(context.Background())
	})
	if _, err := admin.Exec(ctx, "SET search_path = "+schema); err != nil {
		t.Fatal(err)
	}
	url := withParams(testURL(), "search_path="+schema+"&application_name="+schema)
	db := &testDB{t: t, url: url, schema: schema, admin: admin}
	db.conn = db.open(`url = "` + url + `"`)
	return db
}

func withParams(url, params string) string {
	for i := 0; i < len(url); i++ {
		if url[i] == '?' {
			return url + "&" + params
		}
	}
	return url + "?" + params
}

func (db *testDB) open(src string) *Connection {
	db.t.Helper()
	c, ok := connectors.Lookup(Type)
	if !ok {
		db.t.Fatal(`connector "postgres" is not registered`)
	}
	conn, err := c.Open(connectors.Env{}, decodeHCL(db.t, c.Connection, src))
	if err != nil {
		db.t.Fatalf("open: %v", err)
	}
	pc := conn.(*Connection)
	db.t.Cleanup(func() { pc.Close() })
	return pc
}

func (db *testDB) exec(sql string, args ...any) {
	db.t.Helper()
	if _, err := db.admin.Exec(context.Background(), sql, args...); err != nil {
		db.t.Fatalf("%s: %v", sql, err)
	}
}

func (db *testDB) source(src string) *Source {
	db.t.Helper()
	s, err := db.conn.Source(decodeHCL(db.t, SourceSpec, src))
	if err != nil {
		db.t.Fatalf("source %q: %v", src, err)
	}
	return s.(*Source)
}

func (db *testDB) sink(src string) *Sink {
	db.t.Helper()
	s, err := db.conn.Sink(decodeHCL(db.t, TargetSpec, src))
	if err != nil {
		db.t.Fatalf("sink %q: %v", src, err)
	}
	return s.(*Sink)
}

// readAll reads every record of s.
func readAll(t testing.TB, s connectors.Source, req connectors.ReadRequest) []connectors.Record {
	t.Helper()
	var out []connectors.Record
	if err := s.Read(context.Background(), req, func(r connectors.Record) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatalf("read: %v", err)
	}
	return out
}
