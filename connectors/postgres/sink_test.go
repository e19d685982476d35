package postgres

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/connectors"
)

func upsert(data map[string]any) connectors.Write {
	return connectors.Write{Operation: connectors.OpUpsert, Record: data}
}

func (db *testDB) rows(sql string) [][]any {
	db.t.Helper()
	rows, err := db.admin.Query(context.Background(), sql)
	if err != nil {
		db.t.Fatalf("%s: %v", sql, err)
	}
	defer rows.Close()
	var out [][]any
	for rows.Next() {
		v, err := rows.Values()
		if err != nil {
			db.t.Fatal(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		db.t.Fatal(err)
	}
	return out
}

func noErrors(t testing.TB, errs []error) {
	t.Helper()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
}

func TestSinkInsertUpsertDelete(t *testing.T) {
	db := newDB(t)
	db.exec(`CREATE TABLE items (sku text PRIMARY KEY, name text, qty int, note text DEFAULT 'keep')`)
	s := db.sink(`
table       = "items"
key_columns = ["sku"]
batch_size  = 2
`)
	ctx := context.Background()
	noErrors(t, s.Write(ctx, []connectors.Write{
		{Operation: connectors.OpCreate, Record: map[string]any{"sku": "a", "name": "A", "qty": int64(1), "ignored": "not a column"}},
		{Operation: connectors.OpCreate, Record: map[string]any{"sku": "b", "name": "B", "qty": int64(2)}},
		{Operation: connectors.OpCreate, Record: map[string]any{"sku": "c", "name": "C", "qty": int64(3)}},
	}))
	// Upsert: one update, one insert, the same key twice in one call (last wins),
	// and a record without "note" keeps the column's value.
	noErrors(t, s.Write(ctx, []connectors.Write{
		upsert(map[string]any{"sku": "a", "name": "A2", "qty": int64(10)}),
		upsert(map[string]any{"sku": "d", "name": "D", "qty": int64(4)}),
		upsert(map[string]any{"sku": "d", "name": "D2", "qty": int64(5)}),
	}))
	noErrors(t, s.Write(ctx, []connectors.Write{
		{Operation: connectors.OpDelete, Record: map[string]any{"sku": "b"}},
		{Operation: connectors.OpDelete, Record: map[string]any{"sku": "zzz"}}, // absent: fine
		{Operation: connectors.OpUpdate, Record: map[string]any{"sku": "c", "qty": int64(30)}},
	}))
	errs := s.Write(ctx, []connectors.Write{{Operation: connectors.OpUpdate, Record: map[string]any{"sku": "nope", "qty": int64(1)}}})
	if len(errs) != 1 || connectors.CategoryOf(errs[0]) != connectors.CategoryPermanent {
		t.Errorf("update of a missing row: %v, want a permanent error", errs)
	}
	got := db.rows(`SELECT sku, name, qty, note FROM items ORDER BY sku`)
	want := [][]any{
		{"a", "A2", int32(10), "keep"},
		{"c", "C", int32(30), "keep"},
		{"d", "D2", int32(5), "keep"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("table = %v, want %v", got, want)
	}
}

func TestSinkConstraintViolationFailsOnlyThatRecord(t *testing.T) {
	db := newDB(t)
	db.exec(`CREATE TABLE items (sku text PRIMARY KEY, qty int NOT NULL CHECK (qty >= 0))`)
	s := db.sink(`
table       = "items"
key_columns = ["sku"]
`)
	var writes []connectors.Write
	for i := 0; i < 10; i++ {
		qty := int64(i)
		if i == 4 {
			qty = -1 // violates the check constraint
		}
		writes = append(writes, upsert(map[string]any{"sku": string(rune('a' + i)), "qty": qty}))
	}
	writes = append(writes, upsert(map[string]any{"sku": "k", "qty": "many"})) // not an integer: data error
	writes = append(writes, upsert(map[string]any{"name": "no key"}))          // no key: rejected before SQL
	errs := s.Write(context.Background(), writes)
	if len(errs) != len(writes) {
		t.Fatalf("got %d errors for %d writes", len(errs), len(writes))
	}
	for i, err := range errs {
		bad := i == 4 || i == 10 || i == 11
		switch {
		case bad && err == nil:
			t.Errorf("write %d: no error", i)
		case bad && connectors.CategoryOf(err) != connectors.CategoryPermanent:
			t.Errorf("write %d: %v is %s, want permanent", i, err, connectors.CategoryOf(err))
		case !bad && err != nil:
			t.Errorf("write %d: %v", i, err)
		}
	}
	if !strings.Contains(errs[4].Error(), "23514") {
		t.Errorf("write 4: %v, want the check violation", errs[4])
	}
	if n := db.rows(`SELECT count(*) FROM items`)[0][0].(int64); n != 9 {
		t.Errorf("%d rows committed, want 9", n)
	}
}

func TestSinkTypeMapping(t *testing.T) {
	db := newDB(t)
	db.exec(`CREATE TABLE typed (
  id      int PRIMARY KEY,
  big     bigint,
  amount  numeric(30, 9),
  label   text,
  active  boolean,
  at      timestamptz,
  doc     jsonb,
  uid     uuid,
  tags    text[],
  nothing text,
  ratio   double precision,
  day     date,
  raw     bytea
)`)
	s := db.sink(`
table       = "typed"
key_columns = ["id"]
`)
	in := map[string]any{
		"id":      int64(1),
		"big":     int64(9007199254740993), // 2^53 + 1
		"amount":  "12345678901234567890.123456789",
		"label":   "héllo \"quoted\"",
		"active":  true,
		"at":      "2024-05-06T07:08:09.123456+02:00",
		"doc":     map[string]any{"a": []any{int64(1), "two", nil}, "big": int64(9007199254740993)},
		"uid":     "7c9e6679-7425-40de-944b-e07fc1f90ae7",
		"tags":    []any{"x", "y,z", `q"t`, nil},
		"nothing": nil,
		"ratio":   0.25,
		"day":     "2024-02-29",
		"raw":     `\xdeadbeef`,
	}
	noErrors(t, s.Write(context.Background(), []connectors.Write{upsert(in)}))
	src := db.source(`table = "typed"`)
	recs := readAll(t, src, connectors.ReadRequest{})
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	got := recs[0].Data
	want := map[string]any{
		"id":      int64(1),
		"big":     int64(9007199254740993),
		"amount":  "12345678901234567890.123456789",
		"label":   "héllo \"quoted\"",
		"active":  true,
		"at":      "2024-05-06T05:08:09.123456Z",
		"doc":     map[string]any{"a": []any{int64(1), "two", nil}, "big": int64(9007199254740993)},
		"uid":     "7c9e6679-7425-40de-944b-e07fc1f90ae7",
		"tags":    []any{"x", "y,z", `q"t`, nil},
		"nothing": nil,
		"ratio":   0.25,
		"day":     "2024-02-29",
		"raw":     "3q2+7w==",
	}
	for k, w := range want {
		if !reflect.DeepEqual(got[k], w) {
			t.Errorf("%s = %#v (%T), want %#v (%T)", k, got[k], got[k], w, w)
		}
	}
	// The read record writes back unchanged (round trip through the sink).
	got["id"] = int64(2)
	delete(got, "raw") // base64 is not bytea's input format
	noErrors(t, s.Write(context.Background(), []connectors.Write{upsert(got)}))
	if d := db.rows(`SELECT count(*) FROM typed a JOIN typed b ON a.id = 1 AND b.id = 2
WHERE (a.big, a.amount, a.label, a.active, a.at, a.doc, a.uid, a.tags, a.ratio, a.day)
    = (b.big, b.amount, b.label, b.active, b.at, b.doc, b.uid, b.tags, b.ratio, b.day)`)[0][0].(int64); d != 1 {
		t.Errorf("a record read from the table does not write back the same")
	}
}

func TestSinkKilledConnectionIsTransient(t *testing.T) {
	db := newDB(t)
	db.exec(`CREATE TABLE items (sku text PRIMARY KEY, qty int)`)
	conn := db.open(`
url             = "` + db.url + `"
max_connections = 1
`)
	sk, err := conn.Sink(decodeHCL(t, TargetSpec, `
table       = "items"
key_columns = ["sku"]
`))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	noErrors(t, sk.Write(ctx, []connectors.Write{upsert(map[string]any{"sku": "a", "qty": int64(1)})}))
	// Kill the sink's backend (the only one of its pool).
	db.exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()`, db.schema)
	for i := 0; i < 100; i++ {
		if n := db.rows(`SELECT count(*) FROM pg_stat_activity WHERE application_name = '` + db.schema + `' AND pid <> pg_backend_pid()`)[0][0].(int64); n == 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	errs := sk.Write(ctx, []connectors.Write{upsert(map[string]any{"sku": "b", "qty": int64(2)})})
	if len(errs) != 1 || errs[0] == nil {
		t.Fatalf("write on a killed connection: %v, want an error", errs)
	}
	if c := connectors.CategoryOf(errs[0]); c != connectors.CategoryTransient {
		t.Fatalf("write on a killed connection: %v is %s, want transient", errs[0], c)
	}
	// The retry gets a fresh connection.
	noErrors(t, sk.Write(ctx, []connectors.Write{upsert(map[string]any{"sku": "b", "qty": int64(2)})}))
	if n := db.rows(`SELECT count(*) FROM items`)[0][0].(int64); n != 2 {
		t.Errorf("%d rows, want 2", n)
	}
}

func TestTester(t *testing.T) {
	db := newDB(t)
	db.exec(`CREATE TABLE items (sku text PRIMARY KEY)`)
	ctx := context.Background()
	if err := db.conn.Test(ctx); err != nil {
		t.Fatalf("connection test: %v", err)
	}
	if err := db.sink(`
table       = "items"
key_columns = ["sku"]`).Test(ctx); err != nil {
		t.Errorf("sink test: %v", err)
	}
	if err := db.source(`table = "items"`).Test(ctx); err != nil {
		t.Errorf("source test: %v", err)
	}
	for name, err := range map[string]error{
		"sink on a missing table":   db.sink(`table = "missing"`).Test(ctx),
		"sink with a missing key":   db.sink("table = \"items\"\nkey_columns = [\"id\"]").Test(ctx),
		"source on a missing table": db.source(`table = "missing"`).Test(ctx),
	} {
		if err == nil || connectors.CategoryOf(err) != connectors.CategoryPermanent {
			t.Errorf("%s: %v, want a permanent error", name, err)
		}
	}
	// Nothing listens on port 1: unreachable is transient (it may come back).
	down := db.open(`url = "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2"`)
	if err := down.Test(ctx); err == nil || connectors.CategoryOf(err) != connectors.CategoryTransient {
		t.Errorf("unreachable database: %v, want a transient error", err)
	}
	c, _ := connectors.Lookup(Type)
	if _, err := c.Open(connectors.Env{}, decodeHCL(t, c.Connection, `url = "mysql://nope"`)); err == nil {
		t.Errorf("bad url: no error")
	}
	if _, err := c.Open(connectors.Env{}, decodeHCL(t, c.Connection, "url = \"postgres://x@h/db\"\nmax_connections = 0")); err == nil {
		t.Errorf("max_connections = 0: no error")
	}
}
