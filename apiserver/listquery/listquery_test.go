package listquery

import (
	"errors"
	"net/url"
	"testing"
	"time"
)

type item struct {
	Name string    `json:"name"`
	N    int       `json:"n"`
	At   time.Time `json:"at"`
	Opt  *string   `json:"opt,omitempty"`
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func items() []item {
	x := "x"
	return []item{
		{"alpha", 10, t0.Add(3 * time.Hour), nil},
		{"beta", 2, t0.Add(1 * time.Hour), &x},
		{"gamma", 30, t0.Add(2 * time.Hour), nil},
		{"Alpine", 2, t0, nil},
	}
}

var fields = []string{"name", "n", "at", "opt"}

func names(t *testing.T, raw string) ([]string, int) {
	t.Helper()
	v, _ := url.ParseQuery(raw)
	q, err := Parse(v, fields)
	if err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	page, total, err := Apply(items(), q)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, it := range page {
		out = append(out, it.Name)
	}
	return out, total
}

func TestApply(t *testing.T) {
	for _, c := range []struct {
		q     string
		want  string
		total int
	}{
		{"", "alpha beta gamma Alpine", 4},
		{"order=n", "beta Alpine alpha gamma", 4},            // numeric, stable
		{"order=n[desc],name", "gamma alpha Alpine beta", 4}, // ties by name
		{"order=at", "Alpine beta gamma alpha", 4},           // chronological
		{"filter=n[gt]5", "alpha gamma", 2},                  // numeric, not lexical
		{"filter=n[lte]2", "beta Alpine", 2},
		{"filter=n[ne]2&filter=name[ne]gamma", "alpha", 1}, // filters AND
		{"filter=name[in]beta,gamma", "beta gamma", 2},
		{"filter=name[like]al%25", "alpha Alpine", 2}, // case-insensitive
		{"filter=name[like]_eta", "beta", 1},
		{"filter=at[gte]2026-01-01T02:00:00Z", "alpha gamma", 2},
		{"filter=opt[eq]x", "beta", 1},
		{"filter=opt[gt]a", "beta", 1}, // absent fields never compare greater
		{"order=name&pageSize=3&page=2", "gamma", 4},
		{"pageSize=2&page=9", "", 4},
	} {
		got, total := names(t, c.q)
		s := ""
		for i, n := range got {
			if i > 0 {
				s += " "
			}
			s += n
		}
		if s != c.want || total != c.total {
			t.Errorf("%s: got %q (total %d), want %q (total %d)", c.q, s, total, c.want, c.total)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, raw := range []string{
		"page=0", "page=x", "pageSize=0", "pageSize=501", "filter=name", "filter=nope[eq]1",
		"filter=name[regex]x", "order=nope", "order=name[up]",
	} {
		v, _ := url.ParseQuery(raw)
		_, err := Parse(v, fields)
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("%s: error %v, want *Error", raw, err)
		}
	}
	v, _ := url.ParseQuery("")
	q, _ := Parse(v, fields)
	if q.Page != 1 || q.PageSize != DefaultPageSize {
		t.Errorf("defaults %+v", q)
	}
	v, _ = url.ParseQuery("pageSize=500")
	if q, err := Parse(v, fields); err != nil || q.PageSize != MaxPageSize {
		t.Errorf("max page size: %v %v", q, err)
	}
}
