package postgres

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ferryhq/ferry/connectors"
)

// Source reads a table or a query. Rows stream through a server-side cursor
// in a read-only transaction, batch_rows at a time, so memory stays flat and
// the read sees one snapshot.
//
// Incremental reads (the integration has a cursor and the source a
// cursor_column) are ordered by (cursor_column, key_column). Read receives the
// last settled cursor value only (connectors.ReadRequest carries no key), so
// it reads rows with cursor_column >= that value: rows sharing the last value
// are read again and the runtime drops those it already settled by their
// (value, entity key). ReadAfter takes the key too and reads strictly after
// (value, key).
type Source struct {
	pool      *pgxpool.Pool
	table     string
	columns   []string
	query     string
	cursorCol string
	keyCol    string
	batchRows int
}

var (
	_ connectors.Source = (*Source)(nil)
	_ connectors.Tester = (*Source)(nil)
)

// Read emits every row (from req.Cursor, inclusive, when incremental).
func (s *Source) Read(ctx context.Context, req connectors.ReadRequest, emit func(connectors.Record) error) error {
	if req.CursorField == "" || s.cursorCol == "" || req.Cursor == "" {
		return s.read(ctx, req.CursorField != "" && s.cursorCol != "", nil, emit)
	}
	return s.read(ctx, true, []any{req.Cursor}, emit)
}

// ReadAfter emits the rows strictly after (cursor value, key) in
// (cursor_column, key_column) order: neither a missed nor a repeated row even
// when many rows share a cursor value.
func (s *Source) ReadAfter(ctx context.Context, cursor, key string, emit func(connectors.Record) error) error {
	if s.cursorCol == "" {
		return connectors.Permanent(errors.New("postgres source: ReadAfter needs cursor_column and key_column"))
	}
	return s.read(ctx, true, []any{cursor, key}, emit)
}

// statement builds the SELECT for the read: args is nil (from the start),
// [value] (cursor >= value) or [value, key] ((cursor, key) > (value, key)).
func (s *Source) statement(ordered bool, args []any) string {
	var b strings.Builder
	b.WriteString("SELECT ")
	from := ""
	if s.table != "" {
		if len(s.columns) == 0 {
			b.WriteString("*")
		} else {
			for i, c := range s.columns {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString(quote(c))
			}
		}
		from = ident(s.table)
	} else {
		b.WriteString("*")
		from = "(" + strings.TrimRight(strings.TrimSpace(s.query), ";") + ") AS ferry_q"
	}
	b.WriteString(" FROM ")
	b.WriteString(from)
	if !ordered {
		return b.String()
	}
	c, k := quote(s.cursorCol), quote(s.keyCol)
	switch len(args) {
	case 1:
		fmt.Fprintf(&b, " WHERE %s >= $1", c)
	case 2:
		fmt.Fprintf(&b, " WHERE (%s, %s) > ($1, $2)", c, k)
	}
	fmt.Fprintf(&b, " ORDER BY %s, %s", c, k)
	return b.String()
}

func (s *Source) read(ctx context.Context, ordered bool, args []any, emit func(connectors.Record) error) error {
	sql := s.statement(ordered, args)
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return classify(fmt.Errorf("postgres source: connect: %w", err))
	}
	defer conn.Release()
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead})
	if err != nil {
		return classify(fmt.Errorf("postgres source: begin: %w", err))
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, "DECLARE ferry_read NO SCROLL CURSOR FOR "+sql, args...); err != nil {
		return classify(fmt.Errorf("postgres source %s: %w", s.name(), err))
	}
	fetch := "FETCH FORWARD " + strconv.Itoa(s.batchRows) + " FROM ferry_read"
	var conv []func(any, []byte) any
	keyIdx := -1
	row := 0
	for {
		// Describe every time: the cached description of this FETCH text
		// could be of another cursor of the same name on this connection.
		rows, err := tx.Query(ctx, fetch, pgx.QueryExecModeDescribeExec)
		if err != nil {
			return classify(fmt.Errorf("postgres source %s: %w", s.name(), err))
		}
		n := 0
		fds := rows.FieldDescriptions()
		if conv == nil {
			conv = make([]func(any, []byte) any, len(fds))
			for i, fd := range fds {
				conv[i] = converter(fd.DataTypeOID)
				if fd.Name == s.keyCol {
					keyIdx = i
				}
			}
		}
		for rows.Next() {
			n++
			row++
			vals, err := rows.Values()
			if err != nil {
				rows.Close()
				return connectors.Permanent(fmt.Errorf("postgres source %s: row %d: %w", s.name(), row, err))
			}
			raws := rows.RawValues()
			data := make(map[string]any, len(fds))
			for i, fd := range fds {
				data[fd.Name] = conv[i](vals[i], raws[i])
			}
			pos := s.name() + ":"
			if keyIdx >= 0 {
				pos += positionKey(data[fds[keyIdx].Name])
			} else {
				pos += strconv.Itoa(row)
			}
			if err := emit(connectors.Record{Data: data, Position: pos}); err != nil {
				rows.Close()
				return err
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return classify(fmt.Errorf("postgres source %s: %w", s.name(), err))
		}
		if n < s.batchRows {
			return nil
		}
	}
}

// Test checks that the table exists (or that the query plans).
func (s *Source) Test(ctx context.Context) error {
	_, err := s.pool.Exec(ctx, "EXPLAIN "+s.statement(false, nil))
	if err != nil {
		return classify(fmt.Errorf("postgres source %s: %w", s.name(), err))
	}
	return nil
}

func (s *Source) name() string {
	if s.table != "" {
		return s.table
	}
	return "query"
}

func positionKey(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case nil:
		return "null"
	default:
		return fmt.Sprint(v)
	}
}

// Timestamp formats: fixed width, so cursor values compare as strings in time
// order, and microseconds (PostgreSQL's precision) survive the round trip.
const (
	timestamptzFormat = "2006-01-02T15:04:05.000000Z07:00"
	timestampFormat   = "2006-01-02T15:04:05.000000"
	dateFormat        = "2006-01-02"
)

// converter returns how a column of type oid becomes a JSON-friendly value:
// integers int64, numeric a string (exact), floats float64, timestamps fixed
// RFC 3339 strings (timestamptz in UTC), json/jsonb decoded (big integers
// exact), uuid a string, bytea base64, arrays []any.
func converter(oid uint32) func(any, []byte) any {
	switch oid {
	case pgtype.JSONOID, pgtype.JSONBOID:
		return func(v any, raw []byte) any {
			if raw == nil {
				return nil
			}
			if oid == pgtype.JSONBOID && len(raw) > 0 && raw[0] == 1 {
				raw = raw[1:] // binary jsonb: version byte, then text
			}
			d, err := connectors.DecodeJSON(raw)
			if err != nil {
				return normalize(v)
			}
			return d
		}
	case pgtype.TimestamptzOID:
		return func(v any, _ []byte) any {
			if t, ok := v.(time.Time); ok {
				return t.UTC().Format(timestamptzFormat)
			}
			return normalize(v)
		}
	case pgtype.TimestampOID:
		return func(v any, _ []byte) any {
			if t, ok := v.(time.Time); ok {
				return t.Format(timestampFormat)
			}
			return normalize(v)
		}
	case pgtype.DateOID:
		return func(v any, _ []byte) any {
			if t, ok := v.(time.Time); ok {
				return t.Format(dateFormat)
			}
			return normalize(v)
		}
	}
	return func(v any, _ []byte) any { return normalize(v) }
}

func normalize(v any) any {
	switch v := v.(type) {
	case nil, string, bool, int64, float64:
		return v
	case int16:
		return int64(v)
	case int32:
		return int64(v)
	case int8:
		return int64(v)
	case int:
		return int64(v)
	case uint32:
		return int64(v)
	case float32:
		return float64(v)
	case pgtype.Numeric:
		if !v.Valid {
			return nil
		}
		if v.NaN {
			return "NaN"
		}
		if v.InfinityModifier == pgtype.Infinity {
			return "Infinity"
		}
		if v.InfinityModifier == pgtype.NegativeInfinity {
			return "-Infinity"
		}
		b, err := v.MarshalJSON()
		if err != nil {
			return nil
		}
		return string(b)
	case [16]byte: // uuid
		h := hex.EncodeToString(v[:])
		return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
	case []byte:
		return base64.StdEncoding.EncodeToString(v)
	case time.Time:
		return v.UTC().Format(timestamptzFormat)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = normalize(e)
		}
		return out
	case map[string]any:
		for k, e := range v {
			v[k] = normalize(e)
		}
		return v
	case pgtype.Interval, pgtype.Time:
		if tv, ok := v.(pgtype.TextValuer); ok {
			if t, err := tv.TextValue(); err == nil && t.Valid {
				return t.String
			}
		}
		return fmt.Sprint(v)
	case fmt.Stringer:
		return v.String()
	default:
		return fmt.Sprint(v)
	}
}
