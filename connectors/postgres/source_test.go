package postgres

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"testing"

	"github.com/ferryhq/ferry/connectors"
)

func TestSourceTableColumns(t *testing.T) {
	db := newDB(t)
	db.exec(`CREATE TABLE items (id int PRIMARY KEY, name text, secret text)`)
	db.exec(`INSERT INTO items VALUES (2, 'b', 'x'), (1, 'a', 'y')`)
	s := db.source(`
table   = "items"
columns = ["id", "name"]
`)
	recs := readAll(t, s, connectors.ReadRequest{})
	if len(recs) != 2 {
		t.Fatalf("got %d records, want 2", len(recs))
	}
	got := map[int64]map[string]any{}
	for _, r := range recs {
		if _, ok := r.Data["secret"]; ok {
			t.Errorf("column not listed was read: %v", r.Data)
		}
		got[r.Data["id"].(int64)] = r.Data
	}
	if want := (map[string]any{"id": int64(1), "name": "a"}); !reflect.DeepEqual(got[1], want) {
		t.Errorf("row 1 = %v, want %v", got[1], want)
	}
	// Schema-qualified names work too.
	s = db.source(fmt.Sprintf(`table = "%s.items"`, db.schema))
	if n := len(readAll(t, s, connectors.ReadRequest{})); n != 2 {
		t.Errorf("schema-qualified table: %d records, want 2", n)
	}
}

func TestSourceQuery(t *testing.T) {
	db := newDB(t)
	db.exec(`CREATE TABLE orders (id int PRIMARY KEY, total numeric, status text)`)
	db.exec(`INSERT INTO orders VALUES (1, 10.50, 'open'), (2, 3, 'closed'), (3, 7.25, 'open')`)
	s := db.source(`
query      = "SELECT id, total * 2 AS double, status FROM orders WHERE status = 'open'"
key_column = "id"
batch_rows = 1
`)
	recs := readAll(t, s, connectors.ReadRequest{})
	if len(recs) != 2 {
		t.Fatalf("got %d records, want 2: %v", len(recs), recs)
	}
	seen := map[string]bool{}
	for _, r := range recs {
		seen[r.Position] = true
		if r.Data["status"] != "open" {
			t.Errorf("record %v", r.Data)
		}
	}
	if !seen["query:1"] || !seen["query:3"] {
		t.Errorf("positions = %v, want query:1 and query:3", seen)
	}
	// Incremental on a query: wrapped with the cursor condition and order.
	s = db.source(`
query         = "SELECT id, total FROM orders"
cursor_column = "total"
key_column    = "id"
`)
	recs = readAll(t, s, connectors.ReadRequest{Cursor: "7.25", CursorField: "total"})
	if len(recs) != 2 || recs[0].Data["total"] != "7.25" || recs[1].Data["total"] != "10.50" {
		t.Errorf("incremental query from 7.25 = %v", recs)
	}
}

// settled mimics the runtime: a record is settled by a stored cursor when its
// (value, key) is at or before it.
func TestSourceIncrementalTies(t *testing.T) {
	db := newDB(t)
	db.exec(`CREATE TABLE events (id int PRIMARY KEY, updated_at timestamptz NOT NULL, v text)`)
	// Five rows share the same cursor value; the first read stops in the middle of them.
	db.exec(`INSERT INTO events
SELECT i, CASE WHEN i <= 3 THEN '2024-01-01T00:00:00Z'::timestamptz
               WHEN i <= 8 THEN '2024-01-02T00:00:00.5Z'::timestamptz
               ELSE '2024-01-03T00:00:00Z'::timestamptz END, 'v' || i
FROM generate_series(1, 10) i`)
	s := db.source(`
table         = "events"
cursor_column = "updated_at"
key_column    = "id"
batch_rows    = 2
`)
	req := connectors.ReadRequest{CursorField: "updated_at"}
	all := readAll(t, s, req)
	if len(all) != 10 {
		t.Fatalf("full read: %d records", len(all))
	}
	for i, r := range all {
		if r.Data["id"] != int64(i+1) {
			t.Fatalf("order: record %d has id %v", i, r.Data["id"])
		}
	}
	// First run settles up to id 5 (in the middle of the tie at 2024-01-02).
	last := all[4].Data
	value, key := last["updated_at"].(string), fmt.Sprint(last["id"])
	if value != "2024-01-02T00:00:00.500000Z" {
		t.Fatalf("cursor value %q", value)
	}
	// A row with the same cursor value arrives between the runs.
	db.exec(`INSERT INTO events VALUES (11, '2024-01-02T00:00:00.5Z', 'late tie')`)
	want := []int64{6, 7, 8, 11, 9, 10}

	// ReadAfter: strictly after (value, key).
	var got []int64
	if err := s.ReadAfter(context.Background(), value, key, func(r connectors.Record) error {
		got = append(got, r.Data["id"].(int64))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ReadAfter = %v, want %v", got, want)
	}

	// Read with the value only is inclusive; the runtime drops what it settled.
	got = nil
	for _, r := range readAll(t, s, connectors.ReadRequest{Cursor: value, CursorField: "updated_at"}) {
		id := r.Data["id"].(int64)
		if r.Data["updated_at"] == value && id <= 5 {
			continue // settled by the first run
		}
		got = append(got, id)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Read from %q (after dropping settled) = %v, want %v", value, got, want)
	}
}

func TestSourceStreamsWithFlatMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("100k rows")
	}
	db := newDB(t)
	const n = 100_000
	// ~300 bytes a row: buffering the table would hold well over 30 MB of records.
	db.exec(`CREATE TABLE big AS SELECT i AS id, repeat(md5(i::text), 8) AS payload, now() AS at FROM generate_series(1, $1::int) i`, n)
	s := db.source(`
table         = "big"
cursor_column = "id"
key_column    = "id"
batch_rows    = 500
`)
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	base := heap()
	var peak uint64
	count := 0
	err := s.Read(context.Background(), connectors.ReadRequest{CursorField: "id"}, func(r connectors.Record) error {
		count++
		if count%10_000 == 0 {
			if h := heap(); h > peak {
				peak = h
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if count != n {
		t.Fatalf("read %d rows, want %d", count, n)
	}
	growth := int64(peak) - int64(base)
	t.Logf("heap in use: base %d KB, peak %d KB, growth %d KB", base>>10, peak>>10, growth>>10)
	if growth > 8<<20 {
		t.Errorf("heap grew by %d MB while streaming %d rows; rows are being buffered", growth>>20, n)
	}
}

func TestSourceEmitErrorStops(t *testing.T) {
	db := newDB(t)
	db.exec(`CREATE TABLE t AS SELECT i AS id FROM generate_series(1, 50) i`)
	s := db.source(`
table      = "t"
batch_rows = 7
`)
	stop := errors.New("stop")
	n := 0
	err := s.Read(context.Background(), connectors.ReadRequest{}, func(connectors.Record) error {
		n++
		if n == 10 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 10 {
		t.Fatalf("err = %v after %d records, want stop after 10", err, n)
	}
}

func TestSourceConfigErrors(t *testing.T) {
	db := newDB(t)
	for _, src := range []string{
		``,
		`
table = "a"
query = "SELECT 1"`,
		`
table         = "a"
cursor_column = "x"`,
		`
table      = "a"
batch_rows = 0`,
	} {
		_, err := db.conn.Source(decodeHCL(t, SourceSpec, src))
		if err == nil || connectors.CategoryOf(err) != connectors.CategoryPermanent {
			t.Errorf("source %q: err = %v, want a permanent error", src, err)
		}
	}
	s := db.source(`table = "missing"`)
	err := s.Read(context.Background(), connectors.ReadRequest{}, func(connectors.Record) error { return nil })
	if err == nil || connectors.CategoryOf(err) != connectors.CategoryPermanent {
		t.Errorf("missing table: err = %v, want permanent", err)
	}
}
