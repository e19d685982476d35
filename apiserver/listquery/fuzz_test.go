package listquery

import (
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// FuzzListQuery feeds arbitrary query strings to Parse and Apply, as list
// routes do with r.URL.Query(). A query is either an *Error with a message
// or a query within bounds; Apply then never fails, returns the page the
// numbers promise, in the order asked for, and only items that match.
func FuzzListQuery(f *testing.F) {
	for _, s := range []string{
		"", "page=2&pageSize=1", "pageSize=500", "pageSize=501", "page=0", "page=-1", "page=1e3",
		"filter=name[eq]alpha", "filter=n[gt]5&filter=n[lte]30", "filter=name[like]AL%25", "filter=name[like]_eta",
		"filter=name[in]alpha,beta", "filter=opt[ne]x", "filter=at[gte]2026-01-01T01:00:00Z", "filter=name[regex].*",
		"filter=nope[eq]1", "filter=name", "order=n,name[desc]", "order=at[asc]", "order=opt[desc]&order=n", "order=", "order=n[up]",
		"page=9223372036854775807&pageSize=500", "page=4611686018427387904&pageSize=2", "page=%zz&pageSize=1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, _ := url.ParseQuery(raw) // as r.URL.Query(): malformed pairs are dropped
		q, err := Parse(v, fields)
		if err != nil {
			var le *Error
			if !errors.As(err, &le) || le.Msg == "" {
				t.Fatalf("%q: error %T %v, want *Error with a message", raw, err, err)
			}
			return
		}
		if q.Page < 1 || q.PageSize < 1 || q.PageSize > MaxPageSize {
			t.Fatalf("%q: page %d, pageSize %d out of bounds", raw, q.Page, q.PageSize)
		}
		for _, fl := range q.Filters {
			if !slices.Contains(fields, fl.Field) || !slices.Contains(Ops, fl.Op) {
				t.Fatalf("%q: filter %+v accepted", raw, fl)
			}
		}
		for _, o := range q.Order {
			if !slices.Contains(fields, o.Field) {
				t.Fatalf("%q: order %+v accepted", raw, o)
			}
		}
		all := items()
		page, total, err := Apply(all, q)
		if err != nil {
			t.Fatalf("%q: Apply: %v", raw, err)
		}
		if total < 0 || total > len(all) {
			t.Fatalf("%q: total %d of %d items", raw, total, len(all))
		}
		want := 0
		if q.Page-1 < len(all) && (q.Page-1)*q.PageSize < total {
			want = min(total-(q.Page-1)*q.PageSize, q.PageSize)
		}
		if len(page) != want {
			t.Fatalf("%q: page of %d items, want %d (total %d)", raw, len(page), want, total)
		}
		if len(q.Filters) == 0 && total != len(all) {
			t.Fatalf("%q: no filter but total %d of %d", raw, total, len(all))
		}
		// Every item on the page matches on its own, and the page is ordered.
		fieldsOf := func(it item) map[string]any {
			b, _ := json.Marshal(it)
			d := json.NewDecoder(strings.NewReader(string(b)))
			d.UseNumber()
			var m map[string]any
			_ = d.Decode(&m)
			return m
		}
		for i, it := range page {
			m := fieldsOf(it)
			if !matches(m, q.Filters) {
				t.Fatalf("%q: %+v on the page does not match", raw, it)
			}
			if i == 0 {
				continue
			}
			prev := fieldsOf(page[i-1])
			for _, o := range q.Order {
				c := compare(prev[o.Field], m[o.Field])
				if o.Desc {
					c = -c
				}
				if c > 0 {
					t.Fatalf("%q: %+v before %+v", raw, page[i-1], it)
				}
				if c < 0 {
					break
				}
			}
		}
	})
}
