package postgres

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ferryhq/ferry/connectors"
)

// copyUpsert is the alternative measured against the multi-row INSERT: COPY
// the rows as text into a temporary table, then INSERT ... SELECT with casts
// ... ON CONFLICT.
func (s *Sink) copyUpsert(ctx context.Context, writes []connectors.Write) error {
	if err := s.load(ctx); err != nil {
		return err
	}
	var rows []row
	for i, w := range writes {
		r, err := s.prepare(i, w)
		if err != nil {
			return err
		}
		rows = append(rows, r)
	}
	cols := rows[0].cols
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	var defs, sel, set []string
	for _, c := range cols {
		defs = append(defs, quote(c)+" text")
		sel = append(sel, quote(c)+"::"+s.types[c])
		if !slices.Contains(s.keys, c) {
			set = append(set, quote(c)+" = EXCLUDED."+quote(c))
		}
	}
	if _, err := tx.Exec(ctx, "CREATE TEMP TABLE ferry_stage ("+strings.Join(defs, ", ")+") ON COMMIT DROP"); err != nil {
		return err
	}
	data := make([][]any, len(rows))
	for i, r := range rows {
		data[i] = r.vals
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"ferry_stage"}, cols, pgx.CopyFromRows(data)); err != nil {
		return err
	}
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = quote(c)
	}
	sql := fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM ferry_stage ON CONFLICT (%s) DO UPDATE SET %s",
		ident(s.table), strings.Join(q, ", "), strings.Join(sel, ", "), strings.Join(s.keys, ", "), strings.Join(set, ", "))
	if _, err := tx.Exec(ctx, sql); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

func BenchmarkSinkUpsertCopy(b *testing.B) {
	for _, size := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			db := newDB(b)
			db.exec(`CREATE TABLE items (id bigint PRIMARY KEY, name text, qty int, price numeric(12,2), updated_at timestamptz, attrs jsonb)`)
			s := db.sink(`
table       = "items"
key_columns = ["id"]
`)
			writes := make([]connectors.Write, size)
			ctx := context.Background()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for j := range writes {
					writes[j] = upsert(map[string]any{
						"id": int64(i*size/2 + j), "name": "item name", "qty": int64(j), "price": "19.99",
						"updated_at": "2024-05-06T07:08:09.123456Z", "attrs": map[string]any{"color": "red", "size": int64(j)},
					})
				}
				if err := s.copyUpsert(ctx, writes); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
