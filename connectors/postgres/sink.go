package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ferryhq/ferry/connectors"
)

// Sink writes records to a table, one transaction per Write call.
//
// Consecutive writes with the same operation and the same columns become one
// multi-row statement: INSERT for create, INSERT ... ON CONFLICT (keys) DO
// UPDATE for upsert, DELETE ... WHERE (keys) IN (...) for delete; updates are
// pipelined one statement per record (a record whose row does not exist
// fails). Each statement runs in a savepoint: when it fails on the data (SQLSTATE
// class 22 or 23) its records are retried one by one so that only the bad ones
// fail, permanently, and the rest commit.
type Sink struct {
	pool      *pgxpool.Pool
	table     string
	keys      []string
	whitelist []string
	batchSize int

	mu      sync.Mutex
	types   map[string]string // column → SQL type (format_type)
	allowed map[string]bool   // columns that may be written
}

var (
	_ connectors.Sink           = (*Sink)(nil)
	_ connectors.Tester         = (*Sink)(nil)
	_ connectors.ConcurrentSink = (*Sink)(nil)
)

// ConcurrentWrites reports that Write may run concurrently: each call takes
// its own connection from the pool.
func (s *Sink) ConcurrentWrites() bool { return true }

// Close releases nothing: the connection owns the pool.
func (s *Sink) Close(ctx context.Context) error { return nil }

// Test checks the database answers and the table exists with the key columns.
func (s *Sink) Test(ctx context.Context) error {
	return s.load(ctx)
}

// load reads the table's columns once.
func (s *Sink) load(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.types != nil {
		return nil
	}
	rows, err := s.pool.Query(ctx, `SELECT a.attname, format_type(a.atttypid, a.atttypmod)
FROM pg_attribute a
WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
ORDER BY a.attnum`, ident(s.table))
	if err != nil {
		return classify(fmt.Errorf("postgres target %s: read columns: %w", s.table, err))
	}
	types := map[string]string{}
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			rows.Close()
			return classify(fmt.Errorf("postgres target %s: read columns: %w", s.table, err))
		}
		types[name] = typ
	}
	if err := rows.Err(); err != nil {
		return classify(fmt.Errorf("postgres target %s: read columns: %w", s.table, err))
	}
	if len(types) == 0 {
		return connectors.Permanent(fmt.Errorf("postgres target: table %s does not exist (or has no columns you may see); create it or fix the target's table", s.table))
	}
	for _, k := range s.keys {
		if _, ok := types[k]; !ok {
			return connectors.Permanent(fmt.Errorf("postgres target %s: key column %q is not a column of the table", s.table, k))
		}
	}
	allowed := map[string]bool{}
	if len(s.whitelist) > 0 {
		for _, c := range s.whitelist {
			if _, ok := types[c]; !ok {
				return connectors.Permanent(fmt.Errorf("postgres target %s: column %q is not a column of the table", s.table, c))
			}
			allowed[c] = true
		}
		for _, k := range s.keys {
			allowed[k] = true
		}
	} else {
		for c := range types {
			allowed[c] = true
		}
	}
	s.types, s.allowed = types, allowed
	return nil
}

// row is one write made ready for SQL.
type row struct {
	idx  int // index in the Write call
	op   connectors.Operation
	cols []string // sorted; for delete, the key columns
	sig  string   // op + cols, to group rows into one statement
	vals []any    // text or nil, one per column
	key  string   // key values, to keep one row per key in a statement
}

// Write writes the records in one transaction.
func (s *Sink) Write(ctx context.Context, writes []connectors.Write) []error {
	if len(writes) == 0 {
		return nil
	}
	errs := make([]error, len(writes))
	failAll := func(err error) []error {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
		return errs
	}
	if err := s.load(ctx); err != nil {
		return failAll(err)
	}
	rows := make([]row, 0, len(writes))
	for i, w := range writes {
		r, err := s.prepare(i, w)
		if err != nil {
			errs[i] = connectors.Permanent(fmt.Errorf("postgres target %s: %w", s.table, err))
			continue
		}
		rows = append(rows, r)
	}
	if len(rows) == 0 {
		return errs
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return failAll(classify(fmt.Errorf("postgres target %s: begin: %w", s.table, err)))
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	for _, chunk := range s.chunks(rows) {
		if err := s.runChunk(ctx, tx, chunk, errs); err != nil {
			return failAll(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return failAll(classify(fmt.Errorf("postgres target %s: commit: %w", s.table, err)))
	}
	for _, e := range errs {
		if e != nil {
			return errs
		}
	}
	return nil
}

// runChunk runs one statement in a savepoint; on a data error it retries the
// rows one by one. It returns an error that fails the whole call.
func (s *Sink) runChunk(ctx context.Context, tx pgx.Tx, chunk []row, errs []error) error {
	err := s.inSavepoint(ctx, tx, func(sp pgx.Tx) error { return s.exec(ctx, sp, chunk, errs) })
	if err == nil {
		return nil
	}
	if !dataError(err) {
		return classify(fmt.Errorf("postgres target %s: %w", s.table, err))
	}
	if len(chunk) == 1 {
		errs[chunk[0].idx] = connectors.Permanent(fmt.Errorf("postgres target %s: %w", s.table, err))
		return nil
	}
	for i := range chunk {
		one := chunk[i : i+1]
		err := s.inSavepoint(ctx, tx, func(sp pgx.Tx) error { return s.exec(ctx, sp, one, errs) })
		switch {
		case err == nil:
		case dataError(err):
			errs[one[0].idx] = connectors.Permanent(fmt.Errorf("postgres target %s: %w", s.table, err))
		default:
			return classify(fmt.Errorf("postgres target %s: %w", s.table, err))
		}
	}
	return nil
}

func (s *Sink) inSavepoint(ctx context.Context, tx pgx.Tx, f func(pgx.Tx) error) error {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return err
	}
	if err := f(sp); err != nil {
		if rerr := sp.Rollback(ctx); rerr != nil && !dataError(err) {
			return err
		} else if rerr != nil {
			return rerr // the savepoint could not be undone: the connection is gone
		}
		return err
	}
	return sp.Commit(ctx)
}

// exec runs one chunk of rows sharing an operation and columns.
func (s *Sink) exec(ctx context.Context, tx pgx.Tx, chunk []row, errs []error) error {
	op, cols := chunk[0].op, chunk[0].cols
	args := make([]any, 0, len(chunk)*len(cols))
	var b strings.Builder
	tuples := func(sep string) {
		n := 0
		for i, r := range chunk {
			if i > 0 {
				b.WriteString(sep)
			}
			b.WriteByte('(')
			for j, c := range cols {
				if j > 0 {
					b.WriteString(", ")
				}
				n++
				fmt.Fprintf(&b, "$%d::%s", n, s.types[c])
				args = append(args, r.vals[j])
			}
			b.WriteByte(')')
		}
	}
	colList := func(cs []string) string {
		q := make([]string, len(cs))
		for i, c := range cs {
			q[i] = quote(c)
		}
		return strings.Join(q, ", ")
	}
	switch op {
	case connectors.OpCreate, connectors.OpUpsert:
		fmt.Fprintf(&b, "INSERT INTO %s (%s) VALUES ", ident(s.table), colList(cols))
		tuples(", ")
		if op == connectors.OpUpsert {
			fmt.Fprintf(&b, " ON CONFLICT (%s) DO ", colList(s.keys))
			var set []string
			for _, c := range cols {
				if !slices.Contains(s.keys, c) {
					set = append(set, quote(c)+" = EXCLUDED."+quote(c))
				}
			}
			if len(set) == 0 {
				b.WriteString("NOTHING")
			} else {
				b.WriteString("UPDATE SET " + strings.Join(set, ", "))
			}
		}
		_, err := tx.Exec(ctx, b.String(), args...)
		return err
	case connectors.OpDelete:
		fmt.Fprintf(&b, "DELETE FROM %s WHERE (%s) IN (", ident(s.table), colList(cols))
		tuples(", ")
		b.WriteByte(')')
		_, err := tx.Exec(ctx, b.String(), args...)
		return err
	case connectors.OpUpdate:
		// One statement per row, pipelined: each row's "not found" is its own.
		var set, where []string
		n := 0
		for _, c := range cols {
			n++
			p := fmt.Sprintf("$%d::%s", n, s.types[c])
			if slices.Contains(s.keys, c) {
				where = append(where, quote(c)+" = "+p)
			} else {
				set = append(set, quote(c)+" = "+p)
			}
		}
		if len(set) == 0 {
			for _, r := range chunk {
				errs[r.idx] = connectors.Permanent(fmt.Errorf("postgres target %s: update of %s sets no column besides the key", s.table, r.key))
			}
			return nil
		}
		sql := fmt.Sprintf("UPDATE %s SET %s WHERE %s", ident(s.table), strings.Join(set, ", "), strings.Join(where, " AND "))
		batch := &pgx.Batch{}
		for _, r := range chunk {
			batch.Queue(sql, r.vals...)
		}
		br := tx.SendBatch(ctx, batch)
		for _, r := range chunk {
			tag, err := br.Exec()
			if err != nil {
				br.Close()
				return err
			}
			if tag.RowsAffected() == 0 {
				errs[r.idx] = connectors.Permanent(fmt.Errorf("postgres target %s: update: no row with key %s", s.table, r.key))
			}
		}
		return br.Close()
	}
	return fmt.Errorf("unknown operation %q", op)
}

// chunks splits rows into runs of the same operation and columns, at most
// batch_size rows and maxParams parameters each, without a key twice (ON
// CONFLICT cannot touch a row twice in one statement).
func (s *Sink) chunks(rows []row) [][]row {
	var out [][]row
	start := 0
	seen := map[string]bool{}
	for i := range rows {
		r := rows[i]
		if i > start {
			prev := rows[start]
			n := i - start
			if r.sig != prev.sig || n >= s.batchSize || (n+1)*len(r.cols) > maxParams || (r.key != "" && seen[r.key]) {
				out = append(out, rows[start:i])
				start = i
				clear(seen)
			}
		}
		if r.key != "" {
			seen[r.key] = true
		}
	}
	return append(out, rows[start:])
}

// prepare checks a write and turns its values into SQL parameters.
func (s *Sink) prepare(i int, w connectors.Write) (row, error) {
	r := row{idx: i, op: w.Operation}
	switch w.Operation {
	case connectors.OpCreate, connectors.OpUpsert, connectors.OpUpdate, connectors.OpDelete:
	case "":
		r.op = connectors.OpUpsert
		if len(s.keys) == 0 {
			r.op = connectors.OpCreate
		}
	default:
		return r, fmt.Errorf("unknown operation %q", w.Operation)
	}
	if r.op != connectors.OpCreate && len(s.keys) == 0 {
		return r, fmt.Errorf("%s needs key_columns in the target block", r.op)
	}
	if r.op == connectors.OpDelete {
		r.cols = s.keys
	} else {
		for c := range w.Record {
			if s.allowed[c] {
				r.cols = append(r.cols, c)
			}
		}
		if len(r.cols) == 0 {
			return r, errors.New("the record has no field that is a column of the table")
		}
		sort.Strings(r.cols)
	}
	var key strings.Builder
	for _, k := range s.keys {
		v, ok := w.Record[k]
		if r.op == connectors.OpCreate {
			break
		}
		if !ok || v == nil {
			return r, fmt.Errorf("%s needs key column %q in the record", r.op, k)
		}
		p, err := param(v, s.types[k])
		if err != nil {
			return r, fmt.Errorf("column %q: %w", k, err)
		}
		key.WriteString(strconv.Quote(p.(string)))
		key.WriteByte(',')
	}
	r.key = key.String()
	r.sig = string(r.op) + "\x00" + strings.Join(r.cols, "\x00")
	r.vals = make([]any, len(r.cols))
	for j, c := range r.cols {
		p, err := param(w.Record[c], s.types[c])
		if err != nil {
			return r, fmt.Errorf("column %q: %w", c, err)
		}
		r.vals[j] = p
	}
	return r, nil
}

// param turns a JSON value into the text of a parameter of SQL type typ (nil
// for NULL); the statement casts it ($n::typ), so PostgreSQL parses it as that
// type and rejects what does not fit (a data error, permanent).
func param(v any, typ string) (any, error) {
	if v == nil {
		return nil, nil
	}
	if typ == "json" || typ == "jsonb" {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		return string(b), nil
	}
	if strings.HasSuffix(typ, "[]") {
		if a, ok := v.([]any); ok {
			return arrayLiteral(a)
		}
	}
	return scalar(v)
}

func scalar(v any) (any, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case bool:
		return strconv.FormatBool(v), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case int:
		return strconv.Itoa(v), nil
	case int32:
		return strconv.FormatInt(int64(v), 10), nil
	case uint64:
		return strconv.FormatUint(v, 10), nil
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return strconv.FormatFloat(v, 'g', -1, 64), nil
		}
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	case float32:
		return strconv.FormatFloat(float64(v), 'f', -1, 32), nil
	case json.Number:
		return v.String(), nil
	case map[string]any, []any:
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		return string(b), nil
	default:
		return fmt.Sprint(v), nil
	}
}

// arrayLiteral writes a JSON array as a PostgreSQL array literal.
func arrayLiteral(a []any) (any, error) {
	var b strings.Builder
	b.WriteByte('{')
	for i, e := range a {
		if i > 0 {
			b.WriteByte(',')
		}
		if e == nil {
			b.WriteString("NULL")
			continue
		}
		if sub, ok := e.([]any); ok {
			s, err := arrayLiteral(sub)
			if err != nil {
				return nil, err
			}
			b.WriteString(s.(string))
			continue
		}
		s, err := scalar(e)
		if err != nil {
			return nil, err
		}
		b.WriteByte('"')
		b.WriteString(strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s.(string)))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String(), nil
}
