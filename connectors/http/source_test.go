package httpconn

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/connectors"
)

// itemsJSON renders records {"id":from}..{"id":to} as a JSON array.
func itemsJSON(from, to int) string {
	parts := []string{}
	for i := from; i <= to; i++ {
		parts = append(parts, fmt.Sprintf(`{"id":%d,"name":"item %d"}`, i, i))
	}
	return "[" + strings.Join(parts, ",") + "]"
}

func wantIDs(t *testing.T, recs []connectors.Record, from, to int) {
	t.Helper()
	var want []int64
	for i := from; i <= to; i++ {
		want = append(want, int64(i))
	}
	if got := ids(recs); !reflect.DeepEqual(got, want) {
		t.Fatalf("ids = %v, want %v", got, want)
	}
}

func wantURIs(t *testing.T, a *api, want ...string) {
	t.Helper()
	if got := a.uris(); !reflect.DeepEqual(got, want) {
		t.Fatalf("requests =\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func wantPermanent(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil || connectors.CategoryOf(err) != connectors.CategoryPermanent {
		t.Fatalf("err = %v, want a permanent error", err)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not mention %q", err, p)
		}
	}
}

func TestSourceLinkPagination(t *testing.T) {
	var a *api
	a = newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, _ string) {
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		switch page {
		case 0: // the first request, built from the configuration
			// Several links, a quoted title holding a comma and a semicolon, and
			// rel="next" not first.
			w.Header().Set("Link", fmt.Sprintf(`<%s/items?page=3>; rel="last", <%s/items?page=1>; title="a, b; c"; rel="prev first", <%s/items?page=2>; rel="next"`, a.URL, a.URL, a.URL))
			fmt.Fprint(w, itemsJSON(1, 2))
		case 2:
			// A second Link header line and a relation list; a relative target.
			w.Header().Add("Link", `</items?page=1>; rel="prev"`)
			w.Header().Add("Link", `</items?page=3>; rel="next last"`)
			fmt.Fprint(w, itemsJSON(3, 4))
		case 3:
			w.Header().Set("Link", `</items?page=2>; rel="prev"`)
			fmt.Fprint(w, itemsJSON(5, 5))
		}
	})
	conn, _ := connTo(t, a, "")
	recs, err := readAll(t, newSource(t, conn, `
path  = "/items"
query = { status = "active" }
pagination {
  type = "link"
}`), "")
	if err != nil {
		t.Fatal(err)
	}
	wantIDs(t, recs, 1, 5)
	wantURIs(t, a, "/items?status=active", "/items?page=2", "/items?page=3")
	if recs[2].Position != "/items page 2 record 1" {
		t.Errorf("position = %q", recs[2].Position)
	}
}

func TestNextLink(t *testing.T) {
	for header, want := range map[string]string{
		`<https://x/a?p=2>; rel="next"`:                                      "https://x/a?p=2",
		`<https://x/a?p=2>; rel=next`:                                        "https://x/a?p=2",
		`<https://x/a?p=2>; REL="Next"`:                                      "https://x/a?p=2",
		`<https://x/a?p=1>; rel="prev", <https://x/a?p=3>;rel="next"`:        "https://x/a?p=3",
		`<https://x/a?q=1,2>; rel="next"`:                                    "https://x/a?q=1,2", // comma inside <...>
		`<https://x/p>; title="next, <https://evil/>; rel=next"; rel="prev"`: "",                  // rel=next only inside a quoted title
		`<https://x/a?p=2>; rel="last"`:                                      "",
		`https://x/a?p=2; rel="next"`:                                        "",
		`<https://x/a?p=2; rel="next"`:                                       "",
		``:                                                                   "",
	} {
		h := http.Header{}
		h.Set("Link", header)
		if got := nextLink(h); got != want {
			t.Errorf("nextLink(%s) = %q, want %q", header, got, want)
		}
	}
}

func TestSourceCursorToken(t *testing.T) {
	a := newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, _ string) {
		switch r.URL.Query().Get("page_token") {
		case "":
			fmt.Fprintf(w, `{"data":{"items":%s},"meta":{"next":"tok A/2"}}`, itemsJSON(1, 2))
		case "tok A/2":
			fmt.Fprintf(w, `{"data":{"items":%s},"meta":{"next":3}}`, itemsJSON(3, 4))
		case "3": // a numeric token is sent as written
			fmt.Fprintf(w, `{"data":{"items":%s},"meta":{"next":null}}`, itemsJSON(5, 6))
		}
	})
	conn, _ := connTo(t, a, "")
	recs, err := readAll(t, newSource(t, conn, `
path    = "/items"
query   = { status = "active" }
records = "data.items"
pagination {
  type         = "cursor"
  cursor_path  = "meta.next"
  cursor_param = "page_token"
}`), "")
	if err != nil {
		t.Fatal(err)
	}
	wantIDs(t, recs, 1, 6)
	wantURIs(t, a, "/items?status=active", "/items?page_token=tok+A%2F2&status=active", "/items?page_token=3&status=active")
}

func TestSourceNextURL(t *testing.T) {
	var a *api
	a = newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, _ string) {
		switch r.URL.Query().Get("after") {
		case "":
			fmt.Fprintf(w, `{"items":%s,"links":{"next":"/v1/items?after=2"}}`, itemsJSON(1, 2)) // relative to the host
		case "2":
			fmt.Fprintf(w, `{"items":%s,"links":{"next":"items?after=4"}}`, itemsJSON(3, 4)) // relative to the page
		case "4":
			fmt.Fprintf(w, `{"items":%s,"links":{"next":"%s/v1/items?after=6"}}`, itemsJSON(5, 6), a.URL) // absolute
		case "6":
			fmt.Fprintf(w, `{"items":%s,"links":{"next":""}}`, itemsJSON(7, 7))
		}
	})
	conn := openConn(t, "", fmt.Sprintf("base_url = %q", a.URL+"/v1"))
	recs, err := readAll(t, newSource(t, conn, `
path    = "items"
records = "items"
pagination {
  type          = "cursor"
  next_url_path = "links.next"
}`), "")
	if err != nil {
		t.Fatal(err)
	}
	wantIDs(t, recs, 1, 7)
	wantURIs(t, a, "/v1/items", "/v1/items?after=2", "/v1/items?after=4", "/v1/items?after=6")
}

func TestSourcePageNumber(t *testing.T) {
	t.Run("page_size stops at a short page", func(t *testing.T) {
		a := newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, _ string) {
			page, _ := strconv.Atoi(r.URL.Query().Get("page"))
			if page < 3 {
				fmt.Fprint(w, itemsJSON(page*2-1, page*2))
			} else {
				fmt.Fprint(w, itemsJSON(5, 5))
			}
		})
		conn, _ := connTo(t, a, "")
		recs, err := readAll(t, newSource(t, conn, `
path = "/items"
pagination {
  type       = "page"
  size_param = "per_page"
  page_size  = 2
}`), "")
		if err != nil {
			t.Fatal(err)
		}
		wantIDs(t, recs, 1, 5)
		// No fourth request: the short third page was the last.
		wantURIs(t, a, "/items?page=1&per_page=2", "/items?page=2&per_page=2", "/items?page=3&per_page=2")
	})
	t.Run("without page_size an empty page or missing array ends it", func(t *testing.T) {
		a := newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, _ string) {
			switch r.URL.Query().Get("p") {
			case "0":
				fmt.Fprintf(w, `{"data":{"items":%s}}`, itemsJSON(1, 3))
			case "1":
				fmt.Fprintf(w, `{"data":{"items":%s}}`, itemsJSON(4, 4))
			default:
				fmt.Fprint(w, `{"data":{}}`) // the last page omits the array
			}
		})
		conn, _ := connTo(t, a, "")
		recs, err := readAll(t, newSource(t, conn, `
path    = "/items"
records = "data.items"
pagination {
  type       = "page"
  page_param = "p"
  start      = 0
}`), "")
		if err != nil {
			t.Fatal(err)
		}
		wantIDs(t, recs, 1, 4)
		wantURIs(t, a, "/items?p=0", "/items?p=1", "/items?p=2")
	})
}

func TestSourceOffset(t *testing.T) {
	a := newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, _ string) {
		off, _ := strconv.Atoi(r.URL.Query().Get("offset"))
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		to := min(off+limit, 7)
		if off >= to {
			fmt.Fprint(w, `[]`)
			return
		}
		fmt.Fprint(w, itemsJSON(off+1, to))
	})
	conn, _ := connTo(t, a, "")
	recs, err := readAll(t, newSource(t, conn, `
path = "/items"
pagination {
  type       = "offset"
  size_param = "limit"
  page_size  = 3
}`), "")
	if err != nil {
		t.Fatal(err)
	}
	wantIDs(t, recs, 1, 7)
	wantURIs(t, a, "/items?limit=3&offset=0", "/items?limit=3&offset=3", "/items?limit=3&offset=6")
}

func TestSourceBadPages(t *testing.T) {
	cases := []struct {
		name, body, records string
		want                []string
	}{
		{"not JSON", `<html>Bad gateway</html>`, "", []string{"response is not JSON", "<html>Bad gateway</html>", "page 1"}},
		{"truncated JSON", `{"data":[{"id":1}`, "data", []string{"response is not JSON"}},
		{"body is an object", `{"data":[{"id":1}]}`, "", []string{"response is a JSON object, not an array", `set records = "data"`}},
		{"records not an array", `{"data":{"items":{"id":1}}}`, "data.items", []string{`records "data.items" is a JSON object, not an array`}},
		{"records a string", `{"data":"none"}`, "data", []string{`records "data" is a JSON string`}},
		{"record not an object", `[{"id":1},42]`, "", []string{"record 2 is a JSON number, not an object"}},
		{"an array where an object is expected", `[{"data":[{"id":1}]}]`, "data", []string{`response is a JSON array, not an object holding records "data"`}},
		{"record an array", `{"data":[[1]]}`, "data", []string{"record 1 is a JSON array, not an object"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, _ string) { fmt.Fprint(w, tc.body) })
			conn, _ := connTo(t, a, "")
			src := fmt.Sprintf("path = %q\nrecords = %q", "/items", tc.records)
			_, err := readAll(t, newSource(t, conn, src), "")
			wantPermanent(t, err, append([]string{"GET " + a.URL + "/items"}, tc.want...)...)
		})
	}
}

func TestSourceEmptyAndNullPages(t *testing.T) {
	for _, tc := range []struct{ body, records string }{
		{``, ""}, {" \n", ""}, {`null`, ""}, {`[]`, ""},
		{`{"data":null}`, "data"}, {`{"other":[1]}`, "data"}, {`{"data":[]}`, "data"},
	} {
		a := newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, _ string) { fmt.Fprint(w, tc.body) })
		conn, _ := connTo(t, a, "")
		recs, err := readAll(t, newSource(t, conn, fmt.Sprintf("path = \"/x\"\nrecords = %q", tc.records)), "")
		if err != nil || len(recs) != 0 {
			t.Errorf("body %q, records %q: %v %v", tc.body, tc.records, recs, err)
		}
	}
}

func TestSourceRecordsAreRawAndDecodeInOrder(t *testing.T) {
	a := newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, _ string) {
		fmt.Fprint(w, `{"data": {"items": [ {"id": 1, "tags": ["a", "]"], "s": "x\"}y"} ,
		  {"id":2,"nested":{"items":[9]}} ]}, "items": "decoy", "data\u002eitems": 5}`)
	})
	conn, _ := connTo(t, a, "")
	var recs []connectors.Record
	err := newSource(t, conn, "path = \"/x\"\nrecords = \"data.items\"").Read(context.Background(), connectors.ReadRequest{}, func(r connectors.Record) error {
		recs = append(recs, r)
		return nil
	})
	if err != nil || len(recs) != 2 {
		t.Fatalf("%v %v", recs, err)
	}
	if recs[0].Data != nil || string(recs[0].Raw) != `{"id": 1, "tags": ["a", "]"], "s": "x\"}y"}` {
		t.Fatalf("raw = %s", recs[0].Raw)
	}
	if err := recs[1].Decode(); err != nil || recs[1].Data["id"] != int64(2) {
		t.Fatalf("decode: %v %v", recs[1].Data, err)
	}
}

func TestRawAtMatchesDecoder(t *testing.T) {
	doc := []byte(` { "a" : { "b\u0031" : [1, {"c": "}"}], "b1": {"dup": true} }, "x": null, "e": "\\" } `)
	for path, want := range map[string]string{
		"a.b1":     `{"dup": true}`, // a later duplicate key wins, written or escaped
		"a.b1.dup": `true`,
		"x":        `null`,
		"e":        `"\\"`,
		"a.zz":     ``,
		"x.y":      ``,
		"e.y":      ``,
	} {
		got := rawAt(doc, strings.Split(path, "."))
		if string(got) != want {
			t.Errorf("rawAt(%s) = %q, want %q", path, got, want)
		}
	}
}

func FuzzSourceItems(f *testing.F) {
	for _, s := range []string{`[]`, `[{"id":1}, {"id":{"a":[1,"]"]}}]`, `{"data":[{"a":"\"}"}]}`, `[1,"x",null,true]`, `{"data":{"data":[{}]}}`} {
		f.Add(s)
	}
	s := &source{records: []string{"data"}}
	whole := &source{}
	f.Fuzz(func(t *testing.T, body string) {
		for _, src := range []*source{s, whole} {
			items, err := src.items([]byte(body))
			if err != nil {
				continue
			}
			doc, derr := connectors.DecodeJSON([]byte(body))
			if derr != nil {
				if strings.TrimSpace(body) == "" {
					continue
				}
				t.Fatalf("items accepted %q, which DecodeJSON rejects: %v", body, derr)
			}
			want := doc
			if src.records != nil {
				m, _ := doc.(map[string]any)
				want = m["data"]
			}
			arr, _ := want.([]any)
			if len(arr) != len(items) {
				t.Fatalf("%q: %d items, the decoder sees %d", body, len(items), len(arr))
			}
			for i, raw := range items {
				v, err := connectors.DecodeJSON(raw)
				if err != nil || !reflect.DeepEqual(v, arr[i]) {
					t.Fatalf("%q item %d: %s decodes to %v (%v), want %v", body, i, raw, v, err, arr[i])
				}
			}
		}
	})
}

func TestSourceIncrementalCursorParam(t *testing.T) {
	a := newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, _ string) {
		fmt.Fprintf(w, `{"items":%s,"next":%q}`, itemsJSON(n, n), map[int]string{1: "p2"}[n])
	})
	conn, _ := connTo(t, a, "")
	src := newSource(t, conn, `
path         = "/items"
records      = "items"
cursor_param = "updated_since"
pagination {
  type         = "cursor"
  cursor_path  = "next"
  cursor_param = "page"
}`)
	if _, err := readAll(t, src, "2026-01-02T03:04:05Z"); err != nil {
		t.Fatal(err)
	}
	// The cursor goes on every page's request; a first read sends none.
	if _, err := readAll(t, src, ""); err != nil {
		t.Fatal(err)
	}
	wantURIs(t, a,
		"/items?updated_since=2026-01-02T03%3A04%3A05Z",
		"/items?page=p2&updated_since=2026-01-02T03%3A04%3A05Z",
		"/items")
}

func TestSourceRepeatedNextURL(t *testing.T) {
	a := newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, _ string) {
		// The API ignores the token parameter name it was configured with and
		// always points back at the second page.
		fmt.Fprintf(w, `{"items":%s,"next":"/items?cursor=2"}`, itemsJSON(n, n))
	})
	conn, _ := connTo(t, a, "")
	recs, err := readAll(t, newSource(t, conn, `
path    = "/items"
records = "items"
pagination {
  type          = "cursor"
  next_url_path = "next"
}`), "")
	wantPermanent(t, err, "page 3 repeats an earlier page's URL", "/items?cursor=2", "pagination settings")
	if len(recs) != 2 || len(a.requests()) != 2 {
		t.Fatalf("records %d, requests %d; want 2 and 2", len(recs), len(a.requests()))
	}
}

func TestSourceRefusesNextPageOnAnotherHost(t *testing.T) {
	other := newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, _ string) { fmt.Fprint(w, `[]`) })
	a := newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, _ string) {
		w.Header().Set("Link", "<"+other.URL+"/steal>; rel=next")
		fmt.Fprint(w, itemsJSON(1, 1))
	})
	conn, _ := connTo(t, a, "auth {\n type = \"bearer\"\n token = \"t0ps3cret\"\n}")
	_, err := readAll(t, newSource(t, conn, "path = \"/items\"\npagination {\n type = \"link\"\n}"), "")
	wantPermanent(t, err, "next page is on another host", strings.TrimPrefix(other.URL, "http://"))
	if n := len(other.requests()); n != 0 {
		t.Fatalf("the other host got %d requests", n)
	}
}

// Server-given waits are honoured through the connection's clock: nothing in
// this test really sleeps.
func TestSourceHonours429(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name   string
		header func(now time.Time) (string, string)
		want   time.Duration
	}{
		{"Retry-After seconds", func(time.Time) (string, string) { return "Retry-After", "7" }, 7 * time.Second},
		{"Retry-After HTTP date", func(now time.Time) (string, string) {
			return "Retry-After", now.Add(30 * time.Second).Format(http.TimeFormat)
		}, 30 * time.Second},
		{"X-RateLimit-Reset Unix time", func(now time.Time) (string, string) {
			return "X-RateLimit-Reset", strconv.FormatInt(now.Add(20*time.Second).Unix(), 10)
		}, 20 * time.Second},
		{"X-RateLimit-Reset seconds", func(time.Time) (string, string) { return "X-RateLimit-Reset", "12" }, 12 * time.Second},
		{"no hint: backoff", func(time.Time) (string, string) { return "X-Nothing", "" }, 500 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, _ string) {
				if n == 1 {
					k, v := tc.header(start)
					w.Header().Set(k, v)
					w.WriteHeader(http.StatusTooManyRequests)
					return
				}
				fmt.Fprint(w, itemsJSON(1, 2))
			})
			conn, clock := connTo(t, a, "")
			recs, err := readAll(t, newSource(t, conn, `path = "/items"`), "")
			if err != nil || len(recs) != 2 {
				t.Fatalf("%v %v", recs, err)
			}
			if got := clock.waits(); !reflect.DeepEqual(got, []time.Duration{tc.want}) {
				t.Fatalf("waits = %v, want [%v]", got, tc.want)
			}
		})
	}
}

func TestSource429BlocksTheHostForOtherReads(t *testing.T) {
	a := newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, _ string) {
		if n == 1 {
			w.Header().Set("Retry-After", "10")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		fmt.Fprint(w, `[]`)
	})
	conn, clock := connTo(t, a, "")
	// A sink of the same connection is told to wait and fails fast with the
	// delay; the read then waits it out; no second request went early.
	err := newSink(t, conn, "").Write(context.Background(), []Write{{Key: "k", Operation: connectors.OpCreate, Path: "/x", Record: map[string]any{}}})[0]
	if got := connectors.RetryAfterOf(err); got != 10*time.Second {
		t.Fatalf("sink error %v, retry after %v", err, got)
	}
	if _, err := readAll(t, newSource(t, conn, `path = "/items"`), ""); err != nil {
		t.Fatal(err)
	}
	if got := clock.waits(); !reflect.DeepEqual(got, []time.Duration{10 * time.Second}) {
		t.Fatalf("waits = %v", got)
	}
}

func TestSourceWaitsForAnExhaustedQuota(t *testing.T) {
	var a *api
	a = newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, _ string) {
		if n == 1 {
			w.Header().Set("X-RateLimit-Remaining", "0")
			w.Header().Set("X-RateLimit-Reset", "15")
			w.Header().Set("Link", "</items?page=2>; rel=next")
		}
		fmt.Fprint(w, itemsJSON(n, n))
	})
	conn, clock := connTo(t, a, "")
	recs, err := readAll(t, newSource(t, conn, "path = \"/items\"\npagination {\n type = \"link\"\n}"), "")
	if err != nil || len(recs) != 2 {
		t.Fatalf("%v %v", recs, err)
	}
	if got := clock.waits(); !reflect.DeepEqual(got, []time.Duration{15 * time.Second}) {
		t.Fatalf("waits = %v, want [15s] before the second page", got)
	}
}

func TestSourceLongRetryAfterFailsTransient(t *testing.T) {
	a := newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, _ string) {
		w.Header().Set("Retry-After", "3600")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, "maintenance")
	})
	conn, clock := connTo(t, a, "")
	_, err := readAll(t, newSource(t, conn, `path = "/items"`), "")
	if connectors.CategoryOf(err) != connectors.CategoryTransient || connectors.RetryAfterOf(err) != time.Hour || !strings.Contains(err.Error(), "503 Service Unavailable: maintenance") {
		t.Fatalf("err = %v (retry after %v)", err, connectors.RetryAfterOf(err))
	}
	if len(clock.waits()) != 0 || len(a.requests()) != 1 {
		t.Fatalf("waited %v over %d requests; an hour is the runtime's to wait", clock.waits(), len(a.requests()))
	}
}

func TestRetryAfterBounds(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"1.5":                           1500 * time.Millisecond,
		"-3":                            0,
		"1e300":                         maxRetryAfter,
		"99999999999999999999":          maxRetryAfter,
		"Wed, 31 Dec 2025 23:00:00 GMT": 0, // in the past
		"soon":                          0,
	} {
		h := http.Header{"Retry-After": {v}}
		if got := retryAfter(h, 503, now); got != want {
			t.Errorf("Retry-After %q = %v, want %v", v, got, want)
		}
	}
	for v, want := range map[string]time.Duration{
		"1e18": maxRetryAfter, // a Unix time far away
		strconv.FormatInt(now.Add(-time.Minute).Unix(), 10): 0,
		"Inf": 0,
	} {
		h := http.Header{"X-Ratelimit-Reset": {v}}
		if got := retryAfter(h, 429, now); got != want {
			t.Errorf("X-RateLimit-Reset %q = %v, want %v", v, got, want)
		}
	}
	// A 503 with a reset header but quota left is not a rate limit.
	if got := retryAfter(http.Header{"X-Ratelimit-Reset": {"30"}, "X-Ratelimit-Remaining": {"5"}}, 503, now); got != 0 {
		t.Errorf("503 with quota left: %v", got)
	}
}

func TestSourceRetries5xxInline(t *testing.T) {
	a := newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, _ string) {
		switch n {
		case 1:
			w.WriteHeader(http.StatusBadGateway)
		case 2:
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			fmt.Fprint(w, itemsJSON(1, 3))
		}
	})
	conn, clock := connTo(t, a, "")
	recs, err := readAll(t, newSource(t, conn, `path = "/items"`), "")
	if err != nil || len(recs) != 3 {
		t.Fatalf("%v %v", recs, err)
	}
	if got := clock.waits(); !reflect.DeepEqual(got, []time.Duration{500 * time.Millisecond, time.Second}) {
		t.Fatalf("waits = %v, want the backoff [500ms 1s]", got)
	}
}

func TestSourcePersistent5xxIsTransient(t *testing.T) {
	a := newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, _ string) {
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprint(w, `{"error":"database down"}`)
	})
	conn, clock := connTo(t, a, "")
	_, err := readAll(t, newSource(t, conn, `path = "/items"`), "")
	if connectors.CategoryOf(err) != connectors.CategoryTransient || !strings.Contains(err.Error(), "after 4 attempts") || !strings.Contains(err.Error(), `500 Internal Server Error: {"error":"database down"}`) {
		t.Fatalf("err = %v", err)
	}
	if len(a.requests()) != 4 || len(clock.waits()) != 3 {
		t.Fatalf("%d requests, waits %v", len(a.requests()), clock.waits())
	}
}

func TestSource4xxIsPermanent(t *testing.T) {
	a := newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, _ string) {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":"unknown filter 'stauts'"}`)
	})
	conn, _ := connTo(t, a, "auth {\n type = \"api_key\"\n query = \"api_key\"\n value = \"k-s3cret\"\n}")
	_, err := readAll(t, newSource(t, conn, "path = \"/items\"\nquery = { stauts = \"x\", access_token = \"t-s3cret\" }"), "")
	wantPermanent(t, err, "400 Bad Request", `{"error":"unknown filter 'stauts'"}`, "api_key=REDACTED", "access_token=REDACTED")
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error shows a secret: %v", err)
	}
	if len(a.requests()) != 1 {
		t.Fatalf("a 400 was retried: %d requests", len(a.requests()))
	}
}

func TestSourceRateLimitSpacing(t *testing.T) {
	a := newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, _ string) {
		if n < 4 {
			w.Header().Set("Link", fmt.Sprintf("</items?page=%d>; rel=next", n+1))
		}
		fmt.Fprint(w, itemsJSON(n, n))
	})
	conn, clock := connTo(t, a, "rate_limit = 4")
	recs, err := readAll(t, newSource(t, conn, "path = \"/items\"\npagination {\n type = \"link\"\n}"), "")
	if err != nil || len(recs) != 4 {
		t.Fatalf("%v %v", recs, err)
	}
	q := 250 * time.Millisecond
	if got := clock.waits(); !reflect.DeepEqual(got, []time.Duration{q, q, q}) {
		t.Fatalf("waits = %v, want three of %v (4 requests per second)", got, q)
	}
	// Time that passed on its own counts: after a second, the next read starts at once.
	clock.advance(time.Second)
	if _, err := readAll(t, newSource(t, conn, `path = "/items"`), ""); err != nil {
		t.Fatal(err)
	}
	if got := len(clock.waits()); got != 3 {
		t.Fatalf("%d waits after an idle second, want still 3", got)
	}
}

func TestSourceContextCancellation(t *testing.T) {
	t.Run("between pages", func(t *testing.T) {
		a := newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, _ string) {
			w.Header().Set("Link", fmt.Sprintf("</items?page=%d>; rel=next", n+1))
			fmt.Fprint(w, itemsJSON(n*2-1, n*2))
		})
		conn, _ := connTo(t, a, "")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var got int
		err := newSource(t, conn, "path = \"/items\"\npagination {\n type = \"link\"\n}").Read(ctx, connectors.ReadRequest{}, func(connectors.Record) error {
			if got++; got == 2 {
				cancel()
			}
			return nil
		})
		if !errors.Is(err, context.Canceled) || len(a.requests()) != 1 {
			t.Fatalf("err = %v after %d requests", err, len(a.requests()))
		}
	})
	t.Run("during a request", func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		a := newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, _ string) {
			select { // hold the request until the client gives up
			case <-r.Context().Done():
			case <-release:
			}
		})
		conn := openConn(t, "", fmt.Sprintf("base_url = %q", a.URL))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- newSource(t, conn, `path = "/items"`).Read(ctx, connectors.ReadRequest{}, func(connectors.Record) error { return nil })
		}()
		for len(a.requests()) == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestSourceConfigErrors(t *testing.T) {
	conn := openConn(t, "", `base_url = "https://api.example.com"`)
	for src, want := range map[string]string{
		`path = ""`: "path is required",
		"path = \"/x\"\nrecords = \"data..items\"":                                                         `records "data..items" has an empty segment`,
		"path = \"/x\"\npagination {\n type = \"scroll\"\n}":                                               `unknown type "scroll"`,
		"path = \"/x\"\npagination {\n type = \"cursor\"\n}":                                               "needs cursor_path (with cursor_param) or next_url_path",
		"path = \"/x\"\npagination {\n type = \"cursor\"\n cursor_path = \"next\"\n}":                      "cursor_path needs cursor_param",
		"path = \"/x\"\npagination {\n type = \"page\"\n size_param = \"n\"\n}":                            "size_param needs page_size",
		"path = \"/x\"\npagination {\n type = \"page\"\n page_size = 2.5\n}":                               "page_size must be a whole number of at least 1",
		"path = \"/x\"\npagination {\n type = \"offset\"\n start = -1\n}":                                  "start must be a whole number of at least 0",
		"path = \"/x\"\npagination {\n type = \"cursor\"\n cursor_path = \"a\"\n next_url_path = \"b\"\n}": "one of them",
	} {
		_, err := conn.Source(decodeHCL(t, SourceSpec, src))
		if err == nil || connectors.CategoryOf(err) != connectors.CategoryPermanent || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", src, err, want)
		}
	}
}
