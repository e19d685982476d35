package shopify

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/ferryhq/ferry/connectors"
	"github.com/ferryhq/ferry/connectors/shopify/shopifytest"
)

const apiPath = "/admin/api/2025-07/graphql.json"

func decodeHCL(t testing.TB, spec hcldec.Spec, src string) cty.Value {
	t.Helper()
	f, diags := hclsyntax.ParseConfig([]byte(src), "test.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("parse %q: %s", src, diags)
	}
	v, diags := hcldec.Decode(f.Body, spec, nil)
	if diags.HasErrors() {
		t.Fatalf("decode %q: %s", src, diags)
	}
	return v
}

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// gqlRequest is one request the fake Shopify received.
type gqlRequest struct {
	Path      string
	Token     string
	Query     string
	Variables map[string]any
}

// fakeShop answers like the GraphQL Admin API: each request is passed to
// answer with its decoded body; answer returns the status and body, which
// shopifytest.Enforce holds to Shopify's rules: a query above the cost limit
// is refused whatever answer says, and nested connections are paged.
type fakeShop struct {
	mu       sync.Mutex
	requests []gqlRequest
	answer   func(n int, r gqlRequest) (int, []byte)
}

func (f *fakeShop) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var body struct {
		Query     string         `json:"query"`
		Variables map[string]any `json:"variables"`
	}
	if r.Method != http.MethodPost || json.Unmarshal(b, &body) != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	req := gqlRequest{Path: r.URL.Path, Token: r.Header.Get("X-Shopify-Access-Token"), Query: body.Query, Variables: body.Variables}
	f.mu.Lock()
	f.requests = append(f.requests, req)
	n := len(f.requests)
	f.mu.Unlock()
	status, out := f.answer(n, req)
	status, out = shopifytest.Enforce(req.Query, req.Variables, status, out)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(out)
}

// setup starts a fake shop and opens a connection to it whose sleeps are
// recorded, not taken.
func setup(t *testing.T, answer func(n int, r gqlRequest) (int, []byte)) (*Connection, *fakeShop, *[]time.Duration) {
	t.Helper()
	f := &fakeShop{answer: answer}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	c, ok := connectors.Lookup("shopify")
	if !ok {
		t.Fatal(`connector "shopify" is not registered`)
	}
	conn, err := c.Open(connectors.Env{}, decodeHCL(t, c.Connection, `
store          = "acme-apparel.myshopify.com"
token          = "shpat_test"
webhook_secret = "whsec"
base_url       = "`+srv.URL+`"
`))
	if err != nil {
		t.Fatal(err)
	}
	sc := conn.(*Connection)
	var sleeps []time.Duration
	sc.sleep = func(ctx context.Context, d time.Duration) error {
		sleeps = append(sleeps, d)
		return ctx.Err()
	}
	return sc, f, &sleeps
}

// pages serves the two fixture pages by the after variable.
func pages(t *testing.T, page1 []byte) func(int, gqlRequest) (int, []byte) {
	p2 := fixture(t, "graphql-products-page2.json")
	return func(_ int, r gqlRequest) (int, []byte) {
		if r.Variables["after"] == nil {
			return 200, page1
		}
		if r.Variables["after"] == "eyJsYXN0X2lkIjo4MTIzNDU2Nzg5MDEyLCJsYXN0X3ZhbHVlIjoiMjAyNS0wMy0xOCAxODoyNzowNS4wMDAwMDAifQ==" {
			return 200, p2
		}
		return 200, []byte(`{"errors":[{"message":"Invalid cursor"}]}`)
	}
}

func readAll(t *testing.T, conn *Connection, src string, req connectors.ReadRequest) ([]connectors.Record, error) {
	t.Helper()
	s, err := conn.Source(decodeHCL(t, SourceSpec, src))
	if err != nil {
		t.Fatal(err)
	}
	var recs []connectors.Record
	err = s.Read(context.Background(), req, func(r connectors.Record) error {
		if err := r.Decode(); err != nil {
			return err
		}
		recs = append(recs, r)
		return nil
	})
	return recs, err
}

func ids(recs []connectors.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.Data["legacyResourceId"].(string))
	}
	return out
}

var wantIDs = []string{"8123456789020", "8123456789013", "8123456789012", "8123456789031", "8123456789044"}

func TestIncrementalProductsPaginate(t *testing.T) {
	conn, shop, sleeps := setup(t, nil)
	shop.answer = pages(t, fixture(t, "graphql-products-page1.json"))
	recs, err := readAll(t, conn, `
resource  = "products"
page_size = 3
`, connectors.ReadRequest{Cursor: "2025-03-01T00:00:00Z", CursorField: "updatedAt"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(ids(recs), ","); got != strings.Join(wantIDs, ",") {
		t.Fatalf("ids = %s", got)
	}
	if len(shop.requests) != 2 {
		t.Fatalf("%d requests, want 2", len(shop.requests))
	}
	for i, r := range shop.requests {
		if r.Path != apiPath {
			t.Errorf("request %d path %q", i, r.Path)
		}
		if r.Token != "shpat_test" {
			t.Errorf("request %d token %q", i, r.Token)
		}
		if !strings.Contains(r.Query, "sortKey: UPDATED_AT") || !strings.Contains(r.Query, "products(first: $first, after: $after, query: $query") {
			t.Errorf("request %d query:\n%s", i, r.Query)
		}
		if q := r.Variables["query"]; q != "updated_at:>'2025-03-01T00:00:00Z'" {
			t.Errorf("request %d search %v", i, q)
		}
		if r.Variables["first"] != float64(3) {
			t.Errorf("request %d first %v", i, r.Variables["first"])
		}
		if r.Query != shop.requests[0].Query {
			t.Errorf("request %d: query changed between pages", i)
		}
	}
	if shop.requests[0].Variables["after"] != nil {
		t.Errorf("page 1 after = %v", shop.requests[0].Variables["after"])
	}
	if len(*sleeps) != 0 {
		t.Errorf("slept %v with plenty of budget", *sleeps)
	}
	// Records carry updatedAt for the runtime's cursor; variants stay nested.
	last := recs[len(recs)-1]
	if last.Data["updatedAt"] != "2025-03-24T20:11:30Z" {
		t.Errorf("updatedAt = %v", last.Data["updatedAt"])
	}
	tee := recs[2]
	if tee.Data["id"] != "gid://shopify/Product/8123456789012" {
		t.Errorf("tee id = %v", tee.Data["id"])
	}
	variants := tee.Data["variants"].(map[string]any)["nodes"].([]any)
	if len(variants) != 3 || variants[1].(map[string]any)["sku"] != "TEE-ORG-M" {
		t.Errorf("variants = %v", variants)
	}
	if q := variants[0].(map[string]any)["inventoryQuantity"]; q != int64(42) {
		t.Errorf("inventoryQuantity = %#v", q)
	}
}

// The webhook's product id must be the same, exactly, as the GraphQL record's.
func TestIDsExact(t *testing.T) {
	conn, shop, _ := setup(t, nil)
	shop.answer = pages(t, fixture(t, "graphql-products-page1.json"))
	recs, err := readAll(t, conn, `resource = "products"`, connectors.ReadRequest{})
	if err != nil {
		t.Fatal(err)
	}
	hook, err := connectors.DecodeJSON(fixture(t, "webhook-products-update.json"))
	if err != nil {
		t.Fatal(err)
	}
	h := hook.(map[string]any)
	if h["id"] != int64(8123456789012) {
		t.Fatalf("webhook id = %#v", h["id"])
	}
	if recs[2].Data["legacyResourceId"] != "8123456789012" || recs[2].Data["id"] != h["admin_graphql_api_id"] {
		t.Errorf("GraphQL %v / %v vs webhook %v", recs[2].Data["legacyResourceId"], recs[2].Data["id"], h["admin_graphql_api_id"])
	}
	// Ids above 2^53 survive (Shopify's own sample id).
	big := strings.ReplaceAll(string(fixture(t, "graphql-products-page1.json")), "8123456789020", "788032119674292922")
	shop.answer = func(int, gqlRequest) (int, []byte) {
		return 200, []byte(strings.Replace(big, `"hasNextPage": true`, `"hasNextPage": false`, 1))
	}
	recs, err = readAll(t, conn, `resource = "products"`, connectors.ReadRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if recs[0].Data["legacyResourceId"] != "788032119674292922" || recs[0].Data["id"] != "gid://shopify/Product/788032119674292922" {
		t.Errorf("big id = %v / %v", recs[0].Data["legacyResourceId"], recs[0].Data["id"])
	}
}

func TestFullSyncNoCursorAndExtraQuery(t *testing.T) {
	conn, shop, _ := setup(t, nil)
	shop.answer = pages(t, fixture(t, "graphql-products-page1.json"))
	if _, err := readAll(t, conn, `
resource = "products"
query    = "status:active"
`, connectors.ReadRequest{Cursor: "2025-03-01T00:00:00Z"}); err != nil {
		t.Fatal(err)
	}
	if q := shop.requests[1].Variables["query"]; q != "(status:active) AND updated_at:>'2025-03-01T00:00:00Z'" {
		t.Errorf("search = %v", q)
	}
	shop.requests = nil
	if _, err := readAll(t, conn, `resource = "products"`, connectors.ReadRequest{}); err != nil {
		t.Fatal(err)
	}
	if q := shop.requests[0].Variables["query"]; q != nil {
		t.Errorf("full sync search = %v", q)
	}
	// The default is the largest page whose query Shopify accepts.
	if shop.requests[0].Variables["first"] != float64(18) {
		t.Errorf("default page size = %v", shop.requests[0].Variables["first"])
	}
}

func TestCursorFieldAlias(t *testing.T) {
	conn, shop, _ := setup(t, nil)
	shop.answer = pages(t, fixture(t, "graphql-products-page1.json"))
	recs, err := readAll(t, conn, `resource = "products"`, connectors.ReadRequest{CursorField: "updated_at"})
	if err != nil {
		t.Fatal(err)
	}
	if recs[0].Data["updated_at"] != "2025-03-02T16:20:11Z" {
		t.Errorf("updated_at = %v", recs[0].Data["updated_at"])
	}
	if _, err := readAll(t, conn, `resource = "products"`, connectors.ReadRequest{CursorField: "createdAt"}); connectors.CategoryOf(err) != connectors.CategoryPermanent {
		t.Errorf("unsupported cursor field: %v", err)
	}
}

func TestThrottledRetriesSamePage(t *testing.T) {
	for _, status := range []int{200, 429} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			conn, shop, sleeps := setup(t, nil)
			serve := pages(t, fixture(t, "graphql-products-page1.json"))
			throttled := fixture(t, "graphql-throttled.json")
			shop.answer = func(n int, r gqlRequest) (int, []byte) {
				if n == 2 { // page 2, first try
					return status, throttled
				}
				return serve(n, r)
			}
			recs, err := readAll(t, conn, `
resource  = "products"
page_size = 3
`, connectors.ReadRequest{Cursor: "2025-03-01T00:00:00Z"})
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(ids(recs), ","); got != strings.Join(wantIDs, ",") {
				t.Fatalf("ids = %s (each record must arrive once)", got)
			}
			if len(shop.requests) != 3 {
				t.Fatalf("%d requests, want 3", len(shop.requests))
			}
			if shop.requests[1].Variables["after"] != shop.requests[2].Variables["after"] || shop.requests[2].Variables["after"] == nil {
				t.Errorf("retry did not repeat page 2: %v vs %v", shop.requests[1].Variables["after"], shop.requests[2].Variables["after"])
			}
			// (44 − 31) / 100 points per second = 130ms.
			if len(*sleeps) != 1 || (*sleeps)[0] != 130*time.Millisecond {
				t.Errorf("sleeps = %v, want [130ms]", *sleeps)
			}
		})
	}
}

func TestThrottledBounded(t *testing.T) {
	conn, shop, sleeps := setup(t, nil)
	throttled := fixture(t, "graphql-throttled.json")
	shop.answer = func(int, gqlRequest) (int, []byte) { return 429, throttled }
	_, err := readAll(t, conn, `resource = "products"`, connectors.ReadRequest{})
	if err == nil || connectors.CategoryOf(err) != connectors.CategoryTransient {
		t.Fatalf("err = %v, want transient", err)
	}
	if connectors.RetryAfterOf(err) != 130*time.Millisecond {
		t.Errorf("retry after = %v", connectors.RetryAfterOf(err))
	}
	if len(shop.requests) != maxThrottleRetries+1 || len(*sleeps) != maxThrottleRetries {
		t.Errorf("%d requests, %d sleeps", len(shop.requests), len(*sleeps))
	}
}

func TestCostPreWait(t *testing.T) {
	conn, shop, sleeps := setup(t, nil)
	// Page 1 leaves 4 points; page 2 requests 44 at 100/s: wait 400ms first.
	p1 := strings.Replace(string(fixture(t, "graphql-products-page1.json")), `"currentlyAvailable": 1980.0`, `"currentlyAvailable": 4.0`, 1)
	shop.answer = pages(t, []byte(p1))
	recs, err := readAll(t, conn, `resource = "products"`, connectors.ReadRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 5 {
		t.Fatalf("%d records", len(recs))
	}
	if len(*sleeps) != 1 || (*sleeps)[0] != 400*time.Millisecond {
		t.Errorf("sleeps = %v, want [400ms]", *sleeps)
	}
}

func TestPreWaitHonoursContext(t *testing.T) {
	conn, shop, _ := setup(t, nil)
	p1 := strings.Replace(string(fixture(t, "graphql-products-page1.json")), `"currentlyAvailable": 1980.0`, `"currentlyAvailable": 4.0`, 1)
	shop.answer = pages(t, []byte(p1))
	conn.sleep = sleepCtx
	ctx, cancel := context.WithCancel(context.Background())
	s, _ := conn.Source(decodeHCL(t, SourceSpec, `resource = "products"`))
	err := s.Read(ctx, connectors.ReadRequest{}, func(connectors.Record) error { cancel(); return nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if len(shop.requests) != 1 {
		t.Errorf("%d requests after cancel", len(shop.requests))
	}
}

func TestErrors(t *testing.T) {
	cases := []struct {
		name   string
		status int
		body   string
		cat    connectors.Category
		want   string
	}{
		{"max cost", 200, `{"errors":[{"message":"Query cost is 1250, which exceeds the single query max cost limit (1000).","extensions":{"code":"MAX_COST_EXCEEDED","cost":1250,"maxCost":1000}}]}`, connectors.CategoryPermanent, "lower page_size"},
		{"graphql", 200, `{"errors":[{"message":"Field 'bogus' doesn't exist on type 'Product'","locations":[{"line":1,"column":3}],"path":["query","products","bogus"],"extensions":{"code":"undefinedField","typeName":"Product","fieldName":"bogus"}}]}`, connectors.CategoryPermanent, "Field 'bogus' doesn't exist"},
		{"access denied", 200, `{"errors":[{"message":"Access denied for products field. Required access: ` + "`read_products`" + ` access scope.","extensions":{"code":"ACCESS_DENIED"}}]}`, connectors.CategoryPermanent, "read_products"},
		{"unauthorized", 401, `{"errors":"[API] Invalid API key or access token (unrecognized login or wrong password)"}`, connectors.CategoryPermanent, "check the token and its scopes"},
		{"forbidden", 403, `{"errors":"Forbidden"}`, connectors.CategoryPermanent, "check the token and its scopes"},
		{"server", 503, `{"errors":"Service Unavailable"}`, connectors.CategoryTransient, "503"},
		{"internal", 500, `{"errors":[{"message":"Internal error. Looks like something went wrong on our end."}]}`, connectors.CategoryTransient, "500"},
		{"not found", 404, `{"errors":"Not Found"}`, connectors.CategoryPermanent, "api_version"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn, shop, _ := setup(t, nil)
			shop.answer = func(int, gqlRequest) (int, []byte) { return tc.status, []byte(tc.body) }
			_, err := readAll(t, conn, `resource = "orders"`, connectors.ReadRequest{})
			if err == nil {
				t.Fatal("no error")
			}
			if connectors.CategoryOf(err) != tc.cat || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v (%s), want %s containing %q", err, connectors.CategoryOf(err), tc.cat, tc.want)
			}
			if len(shop.requests) != 1 {
				t.Errorf("%d requests, want 1 (no retry inside the connector)", len(shop.requests))
			}
		})
	}
}

func TestTimeoutTransient(t *testing.T) {
	conn, shop, _ := setup(t, nil)
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	shop.answer = func(int, gqlRequest) (int, []byte) { <-block; return 200, nil }
	conn.client.Timeout = 50 * time.Millisecond
	_, err := readAll(t, conn, `resource = "products"`, connectors.ReadRequest{})
	if err == nil || connectors.CategoryOf(err) != connectors.CategoryTransient {
		t.Fatalf("err = %v", err)
	}
}

func TestOtherResources(t *testing.T) {
	for _, tc := range []struct{ resource, field string }{
		{"orders", "orders"}, {"customers", "customers"}, {"inventory_items", "inventoryItems"},
	} {
		t.Run(tc.resource, func(t *testing.T) {
			conn, shop, _ := setup(t, nil)
			shop.answer = func(int, gqlRequest) (int, []byte) {
				return 200, []byte(`{"data":{"` + tc.field + `":{"edges":[{"cursor":"c1","node":{"id":"gid://shopify/X/9007199254740993","legacyResourceId":"9007199254740993","updatedAt":"2025-03-05T00:00:00Z"}}],"pageInfo":{"hasNextPage":false,"endCursor":"c1"}}}}`)
			}
			recs, err := readAll(t, conn, `resource = "`+tc.resource+`"`, connectors.ReadRequest{Cursor: "2025-03-01T00:00:00Z"})
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != 1 || recs[0].Data["legacyResourceId"] != "9007199254740993" {
				t.Fatalf("records %v", recs)
			}
			q := shop.requests[0].Query
			if !strings.Contains(q, tc.field+"(first: $first") {
				t.Errorf("query:\n%s", q)
			}
			if sorted := strings.Contains(q, "sortKey: UPDATED_AT"); sorted != (tc.resource != "inventory_items") {
				t.Errorf("sortKey present = %v", sorted)
			}
		})
	}
}

func TestSourceConfigErrors(t *testing.T) {
	conn, _, _ := setup(t, func(int, gqlRequest) (int, []byte) { return 200, nil })
	// Validation refuses these already (TestValidateSourceConfig); Source
	// does too, whatever hands it its configuration.
	for _, cfg := range []cty.Value{sourceVal("widgets", 0), sourceVal("products", 251), sourceVal("products", -1)} {
		if _, err := conn.Source(cfg); connectors.CategoryOf(err) != connectors.CategoryPermanent {
			t.Errorf("%#v: err = %v", cfg, err)
		}
	}
	c, _ := connectors.Lookup("shopify")
	if _, err := c.Open(connectors.Env{}, decodeHCL(t, c.Connection, `
store = ""
token = "x"`)); err == nil {
		t.Error("empty store accepted")
	}
	cc, err := c.Open(connectors.Env{}, decodeHCL(t, c.Connection, `
store = "acme"
token = "x"`))
	if err != nil {
		t.Fatal(err)
	}
	if e := cc.(*Connection).endpoint; e != "https://acme.myshopify.com/admin/api/2025-07/graphql.json" {
		t.Errorf("endpoint = %s", e)
	}
}

func TestTester(t *testing.T) {
	conn, shop, _ := setup(t, nil)
	shop.answer = func(int, gqlRequest) (int, []byte) {
		return 200, []byte(`{"data":{"shop":{"name":"Acme Apparel"}},"extensions":{"cost":{"requestedQueryCost":1,"actualQueryCost":1,"throttleStatus":{"maximumAvailable":2000.0,"currentlyAvailable":1999,"restoreRate":100.0}}}}`)
	}
	if err := conn.Test(context.Background()); err != nil {
		t.Fatal(err)
	}
	if q := shop.requests[0].Query; q != "{ shop { name } }" || shop.requests[0].Path != apiPath {
		t.Errorf("query %q path %q", q, shop.requests[0].Path)
	}
	shop.answer = func(int, gqlRequest) (int, []byte) {
		return 401, []byte(`{"errors":"[API] Invalid API key or access token"}`)
	}
	if err := conn.Test(context.Background()); err == nil || !strings.Contains(err.Error(), "check the token") {
		t.Errorf("err = %v", err)
	}
}
