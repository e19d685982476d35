package httpconn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/connectors"
)

func ok(w http.ResponseWriter, _ *http.Request, _ int, _ string) { w.WriteHeader(http.StatusOK) }

func rec(kv ...any) map[string]any {
	m := map[string]any{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

func jsonEqual(t *testing.T, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("body %q is not JSON: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("body = %s, want %s", got, want)
	}
}

func TestSinkPerRecordMethods(t *testing.T) {
	a := newAPI(t, ok)
	conn, _ := connTo(t, a, "headers = { X-Tenant = \"acme\" }\nauth {\n type = \"bearer\"\n token = \"tok\"\n}")
	s := newSink(t, conn, "")
	errs := s.Write(context.Background(), []Write{
		{Key: "1", Operation: connectors.OpCreate, Path: "/items", Record: rec("sku", "A-1", "price", 19.99, "note", "<b>&</b>")},
		{Key: "2", Operation: connectors.OpUpdate, Path: "/items/2", Record: rec("sku", "B-2")},
		{Key: "3", Operation: connectors.OpUpsert, Path: "items/3", Record: rec("sku", "C-3", "tags", []any{"x"})},
		{Key: "4", Operation: connectors.OpDelete, Path: "/items/4", Record: rec("sku", "D-4")},
	})
	if errs != nil {
		t.Fatalf("errs = %v, want nil", errs)
	}
	reqs := a.requests()
	want := []struct{ method, uri, body string }{
		{"POST", "/items", `{"sku":"A-1","price":19.99,"note":"<b>&</b>"}`},
		{"PUT", "/items/2", `{"sku":"B-2"}`},
		{"PUT", "/items/3", `{"sku":"C-3","tags":["x"]}`},
		{"DELETE", "/items/4", ``},
	}
	if len(reqs) != len(want) {
		t.Fatalf("%d requests, want %d", len(reqs), len(want))
	}
	keys := map[string]bool{}
	for i, w := range want {
		r := reqs[i]
		if r.Method != w.method || r.URI != w.uri {
			t.Errorf("request %d: %s %s, want %s %s", i, r.Method, r.URI, w.method, w.uri)
		}
		if w.body == "" {
			if r.Body != "" || r.Header.Get("Content-Type") != "" {
				t.Errorf("DELETE sent a body %q (%s)", r.Body, r.Header.Get("Content-Type"))
			}
		} else {
			jsonEqual(t, r.Body, w.body)
			if r.Header.Get("Content-Type") != "application/json" {
				t.Errorf("request %d: Content-Type %q", i, r.Header.Get("Content-Type"))
			}
		}
		if r.Header.Get("Authorization") != "Bearer tok" || r.Header.Get("X-Tenant") != "acme" || r.Header.Get("User-Agent") != "ferry" {
			t.Errorf("request %d headers: %v", i, r.Header)
		}
		k := r.Header.Get("Idempotency-Key")
		if !strings.HasPrefix(k, "ferry-") || keys[k] {
			t.Errorf("request %d: idempotency key %q missing or reused", i, k)
		}
		keys[k] = true
	}
	// HTML characters are sent as written, not as \u003c escapes.
	if !strings.Contains(reqs[0].Body, `"<b>&</b>"`) {
		t.Errorf("body %s escapes HTML", reqs[0].Body)
	}
}

func TestSinkMethodOverride(t *testing.T) {
	a := newAPI(t, ok)
	conn, _ := connTo(t, a, "")
	s := newSink(t, conn, `method = "patch"
idempotency_header = "X-Request-Id"`)
	if errs := s.Write(context.Background(), []Write{
		{Key: "1", Operation: connectors.OpUpdate, Path: "/items/1", Record: rec("qty", int64(3))},
		{Key: "1", Operation: connectors.OpDelete, Path: "/items/1"},
	}); errs != nil {
		t.Fatal(errs)
	}
	reqs := a.requests()
	if reqs[0].Method != "PATCH" || reqs[1].Method != "DELETE" {
		t.Fatalf("methods %s %s, want PATCH and DELETE (a delete stays a delete)", reqs[0].Method, reqs[1].Method)
	}
	jsonEqual(t, reqs[0].Body, `{"qty":3}`)
	if reqs[0].Header.Get("X-Request-Id") == "" || reqs[0].Header.Get("Idempotency-Key") != "" {
		t.Errorf("idempotency header: %v", reqs[0].Header)
	}
	off := newSink(t, conn, `idempotency_header = ""`)
	off.Write(context.Background(), []Write{{Key: "1", Operation: connectors.OpCreate, Path: "/x", Record: rec()}})
	if h := a.requests()[2].Header.Get("Idempotency-Key"); h != "" {
		t.Errorf(`idempotency_header = "" still sent %q`, h)
	}
}

func TestSinkIdempotencyKey(t *testing.T) {
	a := newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, _ string) {
		if n == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusCreated)
	})
	conn, _ := connTo(t, a, "")
	s := newSink(t, conn, "")
	w := Write{Key: "sku-1", Operation: connectors.OpCreate, Path: "/items", Record: rec("sku", "sku-1", "qty", int64(1))}
	// The engine retries a failed write by calling Write again with it.
	if errs := s.Write(context.Background(), []Write{w}); len(errs) != 1 || connectors.CategoryOf(errs[0]) != connectors.CategoryTransient {
		t.Fatalf("first try: %v", errs)
	}
	if errs := s.Write(context.Background(), []Write{w}); errs != nil {
		t.Fatalf("retry: %v", errs)
	}
	changed := w
	changed.Record = rec("sku", "sku-1", "qty", int64(2))
	s.Write(context.Background(), []Write{changed})
	other := w
	other.Key = "sku-2"
	s.Write(context.Background(), []Write{other})
	var got []string
	for _, r := range a.requests() {
		got = append(got, r.Header.Get("Idempotency-Key"))
	}
	if got[0] == "" || got[0] != got[1] {
		t.Fatalf("a retry of the same write sent key %q, then %q", got[0], got[1])
	}
	if got[2] == got[0] || got[3] == got[0] || got[2] == got[3] {
		t.Fatalf("keys %q: a changed body or another entity must get a new key", got)
	}
}

func TestSinkDeleteOfMissingEntitySucceeds(t *testing.T) {
	a := newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, _ string) {
		switch r.URL.Path {
		case "/items/gone":
			w.WriteHeader(http.StatusGone)
		case "/items/missing":
			w.WriteHeader(http.StatusNotFound)
		default:
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, "read-only item")
		}
	})
	conn, _ := connTo(t, a, "")
	errs := newSink(t, conn, "").Write(context.Background(), []Write{
		{Key: "missing", Operation: connectors.OpDelete, Path: "/items/missing"},
		{Key: "gone", Operation: connectors.OpDelete, Path: "/items/gone"},
		{Key: "locked", Operation: connectors.OpDelete, Path: "/items/locked"},
	})
	if len(errs) != 3 || errs[0] != nil || errs[1] != nil {
		t.Fatalf("errs = %v", errs)
	}
	wantPermanent(t, errs[2], `record "locked"`, "403 Forbidden: read-only item")
}

func TestSinkUpsertByLookup(t *testing.T) {
	a := newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, _ string) {
		switch {
		case r.Method == "GET" && r.URL.Path == "/items/new":
			w.WriteHeader(http.StatusNotFound)
		case r.Method == "GET" && r.URL.EscapedPath() == "/items/a/b":
			w.WriteHeader(http.StatusNotFound) // an unescaped key would land here
		case r.Method == "GET" && r.URL.Path == "/items/flaky":
			w.WriteHeader(http.StatusBadGateway)
		case r.Method == "GET":
			fmt.Fprint(w, `{"sku":"old"}`)
		case r.Method == "POST":
			w.WriteHeader(http.StatusCreated)
		default:
			w.WriteHeader(http.StatusOK)
		}
	})
	conn, _ := connTo(t, a, "")
	s := newSink(t, conn, `lookup_path = "/items/{key}"`)
	errs := s.Write(context.Background(), []Write{
		{Key: "new", Operation: connectors.OpUpsert, Path: "/items", Record: rec("sku", "new")},
		{Key: "a/b", Operation: connectors.OpUpsert, Path: "/items", Record: rec("sku", "a/b")},
		{Key: "flaky", Operation: connectors.OpUpsert, Path: "/items", Record: rec("sku", "flaky")},
		{Key: "nopath", Operation: connectors.OpUpsert, Record: rec("sku", "nopath")},
	})
	if len(errs) != 4 || errs[0] != nil || errs[1] != nil {
		t.Fatalf("errs = %v", errs)
	}
	if connectors.CategoryOf(errs[2]) != connectors.CategoryTransient || !strings.Contains(errs[2].Error(), "lookup: GET") {
		t.Errorf("a failed lookup: %v", errs[2])
	}
	// nopath exists (the lookup answers 200): it is updated though it has no create path.
	if errs[3] != nil {
		t.Errorf("nopath: %v", errs[3])
	}
	var got []string
	for _, r := range a.requests() {
		got = append(got, r.Method+" "+r.URI)
	}
	want := []string{
		"GET /items/new", "POST /items",
		"GET /items/a%2Fb", "PUT /items/a%2Fb",
		"GET /items/flaky",
		"GET /items/nopath", "PUT /items/nopath",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("requests\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	// A GET carries no body or idempotency key; the writes do.
	reqs := a.requests()
	if reqs[0].Header.Get("Idempotency-Key") != "" || reqs[1].Header.Get("Idempotency-Key") == "" {
		t.Errorf("idempotency keys: GET %q, POST %q", reqs[0].Header.Get("Idempotency-Key"), reqs[1].Header.Get("Idempotency-Key"))
	}
	jsonEqual(t, reqs[3].Body, `{"sku":"a/b"}`)

	// update_path sends the update half elsewhere; a missing entity without a path cannot be created.
	b := newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, _ string) {
		if r.Method == "GET" && r.URL.Path == "/lookup/missing" {
			w.WriteHeader(http.StatusNotFound)
		}
	})
	conn, _ = connTo(t, b, "")
	s = newSink(t, conn, "lookup_path = \"/lookup/{key}\"\nupdate_path = \"/items/{key}/replace\"")
	errs = s.Write(context.Background(), []Write{
		{Key: "k1", Operation: connectors.OpUpsert, Path: "/items", Record: rec("sku", "k1")},
		{Key: "missing", Operation: connectors.OpUpsert, Record: rec("sku", "missing")},
	})
	if len(errs) != 2 || errs[0] != nil {
		t.Fatalf("errs = %v", errs)
	}
	wantPermanent(t, errs[1], `record "missing" does not exist and has no path`)
	if got := b.uris(); !reflect.DeepEqual(got, []string{"/lookup/k1", "/items/k1/replace", "/lookup/missing"}) {
		t.Fatalf("requests %v", got)
	}
}

func TestSinkUpsertByExistsStatus(t *testing.T) {
	a := newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, body string) {
		switch {
		case r.Method == "POST" && strings.Contains(body, `"dup"`):
			w.WriteHeader(http.StatusConflict)
			fmt.Fprint(w, `{"error":"sku exists"}`)
		case r.Method == "POST" && strings.Contains(body, `"bad"`):
			w.WriteHeader(http.StatusUnprocessableEntity)
			fmt.Fprint(w, `{"error":"price must be positive"}`)
		case r.Method == "POST":
			w.WriteHeader(http.StatusCreated)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
	conn, _ := connTo(t, a, "")
	s := newSink(t, conn, "exists_status = 409\nupdate_path = \"/items/{key}\"")
	errs := s.Write(context.Background(), []Write{
		{Key: "new", Operation: connectors.OpUpsert, Path: "/items", Record: rec("sku", "new")},
		{Key: "dup", Operation: connectors.OpUpsert, Path: "/items", Record: rec("sku", "dup")},
		{Key: "bad", Operation: connectors.OpUpsert, Path: "/items", Record: rec("sku", "bad")},
	})
	if len(errs) != 3 || errs[0] != nil || errs[1] != nil {
		t.Fatalf("errs = %v", errs)
	}
	wantPermanent(t, errs[2], `record "bad"`, "422 Unprocessable Entity", `{"error":"price must be positive"}`)
	var got []string
	for _, r := range a.requests() {
		got = append(got, r.Method+" "+r.URI)
	}
	if want := []string{"POST /items", "POST /items", "PUT /items/dup", "POST /items"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("requests %v, want %v", got, want)
	}
	reqs := a.requests()
	jsonEqual(t, reqs[2].Body, `{"sku":"dup"}`)
	if reqs[1].Header.Get("Idempotency-Key") == reqs[2].Header.Get("Idempotency-Key") {
		t.Error("the PUT after a 409 reused the POST's idempotency key")
	}
}

func TestSinkBatch(t *testing.T) {
	a := newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, _ string) {
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":"row 2: sku missing"}`)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	conn, _ := connTo(t, a, "")
	s := newSink(t, conn, "batch = true")
	writes := []Write{
		{Key: "1", Operation: connectors.OpCreate, Path: "/items/bulk", Record: rec("id", int64(1))},
		{Key: "2", Operation: connectors.OpUpsert, Path: "/items/bulk", Record: rec("id", int64(2))},
		{Key: "3", Operation: connectors.OpDelete, Path: "/items/bulk", Record: rec("id", int64(3))},
		{Key: "4", Operation: connectors.OpCreate, Path: "/prices/bulk", Record: rec("id", int64(4))},
		{Key: "5", Operation: connectors.OpUpdate, Path: "/items/bulk", Record: rec("id", int64(5))},
		{Key: "6", Operation: connectors.OpDelete, Path: "/items/bulk", Record: rec("id", int64(6))},
	}
	if errs := s.Write(context.Background(), writes); errs != nil {
		t.Fatalf("errs = %v", errs)
	}
	reqs := a.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3 (grouped by path and method)", len(reqs))
	}
	want := []struct{ method, uri, body string }{
		{"POST", "/items/bulk", `[{"id":1},{"id":2},{"id":5}]`},
		{"DELETE", "/items/bulk", `[{"id":3},{"id":6}]`},
		{"POST", "/prices/bulk", `[{"id":4}]`},
	}
	for i, w := range want {
		if reqs[i].Method != w.method || reqs[i].URI != w.uri {
			t.Errorf("request %d: %s %s, want %s %s", i, reqs[i].Method, reqs[i].URI, w.method, w.uri)
		}
		jsonEqual(t, reqs[i].Body, w.body)
		if reqs[i].Header.Get("Idempotency-Key") == "" {
			t.Errorf("request %d has no idempotency key", i)
		}
	}
	// The same batch again (a retry) has the same key.
	s.Write(context.Background(), writes[:1])
	s.Write(context.Background(), writes[:1])
	if r := a.requests(); r[3].Header.Get("Idempotency-Key") != r[4].Header.Get("Idempotency-Key") {
		t.Error("a retried batch got a new idempotency key")
	}

	// A failed batch fails each of its writes; other groups are unaffected.
	errs := s.Write(context.Background(), []Write{
		{Key: "a", Operation: connectors.OpCreate, Path: "/fail", Record: rec("id", int64(1))},
		{Key: "b", Operation: connectors.OpCreate, Path: "/items/bulk", Record: rec("id", int64(2))},
		{Key: "c", Operation: connectors.OpCreate, Path: "/fail", Record: rec("id", int64(3))},
		{Key: "d", Operation: connectors.OpCreate, Record: rec("id", int64(4))},
	})
	if len(errs) != 4 || errs[1] != nil {
		t.Fatalf("errs = %v", errs)
	}
	wantPermanent(t, errs[0], "batch of 2 records", "400 Bad Request", "row 2: sku missing")
	if errs[2] != errs[0] {
		t.Errorf("errs[2] = %v", errs[2])
	}
	wantPermanent(t, errs[3], "batch writes have no path")
}

func TestSinkErrorClassification(t *testing.T) {
	cases := []struct {
		status     int
		header     string
		category   connectors.Category
		retryAfter time.Duration
	}{
		{500, "", connectors.CategoryTransient, 0},
		{502, "", connectors.CategoryTransient, 0},
		{503, "Retry-After: 30", connectors.CategoryTransient, 30 * time.Second},
		{408, "", connectors.CategoryTransient, 0},
		{429, "Retry-After: 5", connectors.CategoryTransient, 5 * time.Second},
		{429, "X-RateLimit-Reset: 60", connectors.CategoryTransient, time.Minute},
		{400, "", connectors.CategoryPermanent, 0},
		{404, "", connectors.CategoryPermanent, 0},
		{422, "", connectors.CategoryPermanent, 0},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.status, tc.header), func(t *testing.T) {
			body := fmt.Sprintf(`{"message":"status %d for you"}`, tc.status)
			a := newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, _ string) {
				if k, v, ok := strings.Cut(tc.header, ": "); ok {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tc.status)
				fmt.Fprint(w, body)
			})
			conn, _ := connTo(t, a, "")
			errs := newSink(t, conn, "").Write(context.Background(), []Write{
				{Key: "sku-9", Operation: connectors.OpCreate, Path: "/items", Record: rec("sku", "sku-9")},
			})
			if len(errs) != 1 || errs[0] == nil {
				t.Fatalf("errs = %v", errs)
			}
			err := errs[0]
			if got := connectors.CategoryOf(err); got != tc.category {
				t.Errorf("category %s, want %s: %v", got, tc.category, err)
			}
			if got := connectors.RetryAfterOf(err); got != tc.retryAfter {
				t.Errorf("retry after %v, want %v", got, tc.retryAfter)
			}
			if got := StatusOf(err); got != tc.status {
				t.Errorf("StatusOf = %d", got)
			}
			for _, part := range []string{`record "sku-9"`, "POST " + a.URL + "/items", fmt.Sprint(tc.status), body} {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("%q does not mention %q", err, part)
				}
			}
			if len(a.requests()) != 1 {
				t.Errorf("the sink retried in-line (%d requests); retries are the engine's", len(a.requests()))
			}
		})
	}
}

func TestSinkLongErrorBodyIsCut(t *testing.T) {
	a := newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, _ string) {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, strings.Repeat("é", 10_000))
	})
	conn, _ := connTo(t, a, "")
	err := newSink(t, conn, "").Write(context.Background(), []Write{{Key: "k", Operation: connectors.OpCreate, Path: "/x"}})[0]
	msg := err.Error()
	if len(msg) > 700 || !strings.HasSuffix(msg, "é…") {
		t.Fatalf("message of %d bytes ends %q", len(msg), msg[len(msg)-10:])
	}
}

func TestSinkTimeoutIsTransient(t *testing.T) {
	release := make(chan struct{})
	a := newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, _ string) {
		select { // answer only after the client gave up
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release)
	conn, _ := connTo(t, a, `timeout = "50ms"`)
	err := newSink(t, conn, "").Write(context.Background(), []Write{{Key: "k", Operation: connectors.OpCreate, Path: "/slow", Record: rec()}})[0]
	if connectors.CategoryOf(err) != connectors.CategoryTransient || !strings.Contains(err.Error(), "no response within 50ms") {
		t.Fatalf("err = %v", err)
	}
}

func TestSinkConnectionRefusedIsTransient(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	conn := openConn(t, "", fmt.Sprintf("base_url = %q", "http://"+addr))
	err = newSink(t, conn, "").Write(context.Background(), []Write{{Key: "k", Operation: connectors.OpCreate, Path: "/x", Record: rec()}})[0]
	if connectors.CategoryOf(err) != connectors.CategoryTransient || !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), `record "k"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestSinkErrorsAlignWithWrites(t *testing.T) {
	a := newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, _ string) {
		if strings.HasSuffix(r.URL.Path, "/bad") {
			w.WriteHeader(http.StatusBadRequest)
		}
	})
	conn, _ := connTo(t, a, "")
	s := newSink(t, conn, "")
	errs := s.Write(context.Background(), []Write{
		{Key: "1", Operation: connectors.OpCreate, Path: "/a"},
		{Key: "2", Operation: connectors.OpCreate, Path: "/a/bad"},
		{Key: "3", Operation: connectors.OpCreate, Path: "/b"},
		{Key: "4", Operation: connectors.OpCreate},
		{Key: "5", Operation: "merge", Path: "/c"},
		{Key: "6", Operation: connectors.OpCreate, Path: "/d", Record: rec("ratio", math.NaN())},
	})
	if len(errs) != 6 || errs[0] != nil || errs[2] != nil || errs[1] == nil || errs[3] == nil || errs[4] == nil {
		t.Fatalf("errs = %v", errs)
	}
	wantPermanent(t, errs[3], `record "4" has no path`)
	wantPermanent(t, errs[4], `unknown operation "merge"`)
	wantPermanent(t, errs[5], `record "6" cannot be encoded as JSON`, "NaN")
	batch := newSink(t, conn, "batch = true")
	errs = batch.Write(context.Background(), []Write{{Key: "7", Operation: connectors.OpCreate, Path: "/d", Record: rec("ratio", math.Inf(1))}})
	wantPermanent(t, errs[0], `record "7" cannot be encoded as JSON`)
	if got := len(a.requests()); got != 3 {
		t.Fatalf("%d requests; unencodable records must not be sent", got)
	}
	if errs := s.Write(context.Background(), nil); errs != nil {
		t.Fatalf("no writes: %v", errs)
	}
	// A cancelled context fails the remaining writes without sending them.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n := len(a.requests())
	errs = s.Write(ctx, []Write{{Key: "x", Operation: connectors.OpCreate, Path: "/a"}, {Key: "y", Operation: connectors.OpCreate, Path: "/a"}})
	if len(errs) != 2 || !errors.Is(errs[0], context.Canceled) || !errors.Is(errs[1], context.Canceled) || len(a.requests()) != n {
		t.Fatalf("cancelled: %v, %d requests sent", errs, len(a.requests())-n)
	}
}

func TestSinkConcurrentWrites(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	a := newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, body string) {
		var m map[string]any
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		mu.Lock()
		seen[m["id"].(string)]++
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	})
	conn := openConn(t, "", fmt.Sprintf("base_url = %q\nrate_limit = 100000\nauth {\n type = \"bearer\"\n token = \"t\"\n}", a.URL))
	s := newSink(t, conn, "")
	if !s.ConcurrentWrites() {
		t.Fatal("the sink should accept concurrent writes")
	}
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var writes []Write
			for i := range 25 {
				id := fmt.Sprintf("%d-%d", g, i)
				writes = append(writes, Write{Key: id, Operation: connectors.OpCreate, Path: "/items", Record: rec("id", id)})
			}
			for _, err := range s.Write(context.Background(), writes) {
				errc <- err
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if len(seen) != 200 {
		t.Fatalf("%d distinct records arrived, want 200", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s arrived %d times", id, n)
		}
	}
}

func TestSinkConfigErrors(t *testing.T) {
	conn := openConn(t, "", `base_url = "https://api.example.com"`)
	for src, want := range map[string]string{
		`method = "GET"`:                                  `method "GET" is not supported`,
		`exists_status = 200`:                             "exists_status must be an HTTP status between 300 and 599",
		`exists_status = 409.5`:                           "exists_status must be",
		"exists_status = 409\nlookup_path = \"/x/{key}\"": "set exists_status or lookup_path, not both",
		"batch = true\nlookup_path = \"/x/{key}\"":        "batch cannot be combined",
	} {
		_, err := conn.Sink(decodeHCL(t, TargetSpec, src))
		if err == nil || connectors.CategoryOf(err) != connectors.CategoryPermanent || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", src, err, want)
		}
	}
}

func TestConnectionTest(t *testing.T) {
	cases := []struct {
		name, testPath string
		status         int
		want           string // "" = ok
		category       connectors.Category
	}{
		{"200", "", 200, "", ""},
		{"404 at the root without test_path", "", 404, "", ""},
		{"404 at test_path", "/me", 404, "404 Not Found", connectors.CategoryPermanent},
		{"200 at test_path", "/me", 200, "", ""},
		{"401", "", 401, "rejected the credentials (401 Unauthorized); check the auth block", connectors.CategoryPermanent},
		{"403", "/me", 403, "rejected the credentials (403 Forbidden)", connectors.CategoryPermanent},
		{"500", "", 500, "500 Internal Server Error", connectors.CategoryTransient},
		{"503", "/me", 503, "503 Service Unavailable", connectors.CategoryTransient},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, _ string) {
				w.WriteHeader(tc.status)
				fmt.Fprint(w, "answer")
			})
			extra := ""
			if tc.testPath != "" {
				extra = fmt.Sprintf("test_path = %q", tc.testPath)
			}
			conn := openConn(t, "", fmt.Sprintf("base_url = %q\n%s", a.URL+"/api", extra))
			err := conn.Test(context.Background())
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Test: %v", err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tc.want) || connectors.CategoryOf(err) != tc.category {
				t.Fatalf("Test: %v, want %q (%s)", err, tc.want, tc.category)
			}
			want := "/api"
			if tc.testPath != "" {
				want = "/api/me"
			}
			if uris := a.uris(); len(uris) != 1 || uris[0] != want {
				t.Fatalf("requests %v, want [%s]", uris, want)
			}
		})
	}
}

func TestRedirectDoesNotCarryAPIKeyToAnotherHost(t *testing.T) {
	other := newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, _ string) { fmt.Fprint(w, `[{"id":1}]`) })
	a := newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, _ string) {
		if r.URL.Path == "/same" {
			http.Redirect(w, r, "/items", http.StatusFound)
			return
		}
		if r.URL.Path == "/items" {
			fmt.Fprint(w, `[{"id":1}]`)
			return
		}
		http.Redirect(w, r, other.URL+"/items", http.StatusFound)
	})
	conn := openConn(t, "", fmt.Sprintf("base_url = %q\nauth {\n type = \"api_key\"\n header = \"X-Key\"\n value = \"k\"\n}", a.URL))
	for _, path := range []string{"/same", "/away"} {
		if _, err := readAll(t, newSource(t, conn, fmt.Sprintf("path = %q", path)), ""); err != nil {
			t.Fatal(err)
		}
	}
	if got := a.requests()[1].Header.Get("X-Key"); got != "k" {
		t.Errorf("a redirect on the same host lost the key: %q", got)
	}
	if got := other.requests()[0].Header.Get("X-Key"); got != "" {
		t.Errorf("the API key went to another host: %q", got)
	}
}

func TestSinkLongHostBlockFailsFast(t *testing.T) {
	a := newAPI(t, func(w http.ResponseWriter, r *http.Request, n int, _ string) {
		if n == 1 {
			w.Header().Set("Retry-After", "600")
			w.WriteHeader(http.StatusTooManyRequests)
		}
	})
	conn, clock := connTo(t, a, "rate_limit = 1")
	s := newSink(t, conn, "")
	errs := s.Write(context.Background(), []Write{
		{Key: "1", Operation: connectors.OpCreate, Path: "/x", Record: rec()},
		{Key: "2", Operation: connectors.OpCreate, Path: "/x", Record: rec()},
	})
	if len(errs) != 2 || len(a.requests()) != 1 || len(clock.waits()) != 0 {
		t.Fatalf("errs %v after %d requests and waits %v; the second write must not be sent nor wait 10 minutes", errs, len(a.requests()), clock.waits())
	}
	for _, err := range errs {
		if connectors.CategoryOf(err) != connectors.CategoryTransient || connectors.RetryAfterOf(err) != 10*time.Minute {
			t.Errorf("%v: retry after %v", err, connectors.RetryAfterOf(err))
		}
	}
	if !strings.Contains(errs[1].Error(), "asked not to be called for another 10m0s") {
		t.Errorf("errs[1] = %v", errs[1])
	}
	// Ten minutes later the host is called at once: the write that gave up
	// took no rate_limit slot that would push this one back.
	clock.advance(10 * time.Minute)
	if errs := s.Write(context.Background(), []Write{{Key: "1", Operation: connectors.OpCreate, Path: "/x", Record: rec()}}); errs != nil {
		t.Fatal(errs)
	}
	if w := clock.waits(); len(w) != 0 {
		t.Fatalf("waits %v", w)
	}
}
