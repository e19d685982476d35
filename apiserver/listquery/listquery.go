// Package listquery implements the list conventions of ferry's REST API:
// page and pageSize (default 50, max 500), repeatable filter=field[op]value
// (eq, ne, gt, gte, lt, lte, in, like) and order=field or order=field[desc].
//
// Items are filtered and ordered in memory by the JSON field names of their
// encoding, so a resource declares only which fields may be used.
package listquery

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// Ops are the filter operators.
var Ops = []string{"eq", "ne", "gt", "gte", "lt", "lte", "in", "like"}

// Filter is one filter=field[op]value.
type Filter struct {
	Field, Op, Value string
}

// Order is one order=field or order=field[desc].
type Order struct {
	Field string
	Desc  bool
}

// Query is a parsed list request.
type Query struct {
	Page, PageSize int
	Filters        []Filter
	Order          []Order
}

// Error is a query the client got wrong (a 400).
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

func errorf(format string, a ...any) error { return &Error{Msg: fmt.Sprintf(format, a...)} }

var filterRe = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9_]*)\[([a-z]+)\](.*)$`)

// Parse reads page, pageSize, filter and order from v. fields are the names
// that may be filtered and ordered on; anything else is an *Error.
func Parse(v url.Values, fields []string) (Query, error) {
	q := Query{Page: 1, PageSize: DefaultPageSize}
	if s := v.Get("page"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return q, errorf("page must be a whole number from 1, got %q", s)
		}
		q.Page = n
	}
	if s := v.Get("pageSize"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxPageSize {
			return q, errorf("pageSize must be a whole number from 1 to %d, got %q", MaxPageSize, s)
		}
		q.PageSize = n
	}
	for _, f := range v["filter"] {
		m := filterRe.FindStringSubmatch(f)
		if m == nil {
			return q, errorf("filter %q: write field[op]value, e.g. filter=action[eq]config.apply", f)
		}
		if !slices.Contains(fields, m[1]) {
			return q, errorf("filter %q: unknown field %q; use one of %s", f, m[1], strings.Join(fields, ", "))
		}
		if !slices.Contains(Ops, m[2]) {
			return q, errorf("filter %q: unknown operator %q; use one of %s", f, m[2], strings.Join(Ops, ", "))
		}
		q.Filters = append(q.Filters, Filter{Field: m[1], Op: m[2], Value: m[3]})
	}
	for _, o := range v["order"] {
		for _, part := range strings.Split(o, ",") {
			field, desc := part, false
			if f, ok := strings.CutSuffix(part, "[desc]"); ok {
				field, desc = f, true
			} else if f, ok := strings.CutSuffix(part, "[asc]"); ok {
				field = f
			}
			if !slices.Contains(fields, field) {
				return q, errorf("order %q: unknown field %q; use one of %s", o, field, strings.Join(fields, ", "))
			}
			q.Order = append(q.Order, Order{Field: field, Desc: desc})
		}
	}
	return q, nil
}

// Apply filters, orders and pages items. It returns the page and the number of
// items that matched the filters.
func Apply[T any](items []T, q Query) ([]T, int, error) {
	type row struct {
		item   T
		fields map[string]any
	}
	rows := make([]row, 0, len(items))
	for _, it := range items {
		b, err := json.Marshal(it)
		if err != nil {
			return nil, 0, err
		}
		var m map[string]any
		d := json.NewDecoder(strings.NewReader(string(b)))
		d.UseNumber()
		if err := d.Decode(&m); err != nil {
			return nil, 0, err
		}
		if matches(m, q.Filters) {
			rows = append(rows, row{it, m})
		}
	}
	if len(q.Order) > 0 {
		slices.SortStableFunc(rows, func(a, b row) int {
			for _, o := range q.Order {
				c := compare(a.fields[o.Field], b.fields[o.Field])
				if o.Desc {
					c = -c
				}
				if c != 0 {
					return c
				}
			}
			return 0
		})
	}
	total := len(rows)
	if q.PageSize <= 0 {
		q.PageSize = DefaultPageSize
	}
	if q.Page <= 0 {
		q.Page = 1
	}
	// (page-1)*pageSize overflows for a huge page=; past the end is empty.
	start := total
	if q.Page-1 <= total/q.PageSize {
		start = min((q.Page-1)*q.PageSize, total)
	}
	end := start + min(q.PageSize, total-start)
	out := make([]T, 0, end-start)
	for _, r := range rows[start:end] {
		out = append(out, r.item)
	}
	return out, total, nil
}

func matches(m map[string]any, filters []Filter) bool {
	for _, f := range filters {
		if !match(m[f.Field], f) {
			return false
		}
	}
	return true
}

func match(v any, f Filter) bool {
	switch f.Op {
	case "eq":
		return compare(v, f.Value) == 0
	case "ne":
		return compare(v, f.Value) != 0
	case "gt":
		return v != nil && compare(v, f.Value) > 0
	case "gte":
		return v != nil && compare(v, f.Value) >= 0
	case "lt":
		return v != nil && compare(v, f.Value) < 0
	case "lte":
		return v != nil && compare(v, f.Value) <= 0
	case "in":
		for _, s := range strings.Split(f.Value, ",") {
			if compare(v, s) == 0 {
				return true
			}
		}
		return false
	case "like":
		return like(text(v), f.Value)
	}
	return false
}

// like matches SQL-style patterns: % is any run of characters, _ one
// character; case-insensitive. * is accepted for % too.
func like(s, pattern string) bool {
	var b strings.Builder
	b.WriteString("(?is)^")
	for _, r := range pattern {
		switch r {
		case '%', '*':
			b.WriteString(".*")
		case '_':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString("$")
	re, err := regexp.Compile(b.String())
	return err == nil && re.MatchString(s)
}

func text(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case json.Number:
		return v.String()
	case bool:
		return strconv.FormatBool(v)
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
}

// compare orders two values: numbers numerically, RFC 3339 times
// chronologically, anything else as text. nil sorts first.
func compare(a, b any) int {
	if a == nil || b == nil {
		switch {
		case a == nil && b == nil:
			return 0
		case a == nil:
			return -1
		default:
			return 1
		}
	}
	sa, sb := text(a), text(b)
	if fa, err := strconv.ParseFloat(sa, 64); err == nil {
		if fb, err := strconv.ParseFloat(sb, 64); err == nil {
			switch {
			case fa < fb:
				return -1
			case fa > fb:
				return 1
			}
			return 0
		}
	}
	if ta, err := time.Parse(time.RFC3339Nano, sa); err == nil {
		if tb, err := time.Parse(time.RFC3339Nano, sb); err == nil {
			return ta.Compare(tb)
		}
	}
	return strings.Compare(sa, sb)
}
