package shopifytest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/ferryhq/ferry/connectors"
	"github.com/ferryhq/ferry/connectors/shopify"
	"github.com/ferryhq/ferry/connectors/shopify/shopifytest"
)

// The fake is checked through the real connector: what the connector reads
// and writes against it is what it would against Shopify.

func decodeHCL(t *testing.T, spec hcldec.Spec, src string) cty.Value {
	t.Helper()
	f, diags := hclsyntax.ParseConfig([]byte(src), "test.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	v, diags := hcldec.Decode(f.Body, spec, nil)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return v
}

func open(t *testing.T, shop *shopifytest.Server, token string) *shopify.Connection {
	t.Helper()
	conn, err := shopify.Open(connectors.Env{}, decodeHCL(t, shopify.ConnectionSpec, `
store    = "`+shopifytest.Store+`"
token    = "`+token+`"
base_url = "`+shop.URL+`"
`))
	if err != nil {
		t.Fatal(err)
	}
	return conn.(*shopify.Connection)
}

func read(t *testing.T, conn *shopify.Connection, src, cursor string) ([]map[string]any, error) {
	t.Helper()
	s, err := conn.Source(decodeHCL(t, shopify.SourceSpec, src))
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	err = s.Read(context.Background(), connectors.ReadRequest{Cursor: cursor, CursorField: shopify.DefaultCursorField}, func(r connectors.Record) error {
		if err := r.Decode(); err != nil {
			return err
		}
		out = append(out, r.Data)
		return nil
	})
	return out, err
}

func ids(recs []map[string]any) string {
	var out []string
	for _, r := range recs {
		out = append(out, r["legacyResourceId"].(string))
	}
	return strings.Join(out, ",")
}

func TestIncrementalPagination(t *testing.T) {
	shop := shopifytest.Start(t, shopifytest.Options{})
	shop.Put("products", shopifytest.SampleProducts()...)
	conn := open(t, shop, shopifytest.Token)

	recs, err := read(t, conn, "resource = \"products\"\npage_size = 2", "2025-03-01T00:00:00Z")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(recs), "8123456789020,8123456789013,8123456789012,8123456789031,8123456789044"; got != want {
		t.Fatalf("ids %s, want %s (updatedAt order)", got, want)
	}
	reqs := shop.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests for 5 products in pages of 2, want 3", len(reqs))
	}
	if reqs[0].Variables["after"] != nil || reqs[1].Variables["after"] == nil || reqs[0].Token != shopifytest.Token || reqs[0].Path != shop.Endpoint() {
		t.Errorf("requests: %+v", reqs[:2])
	}

	// Only what changed after the watermark, on one page.
	recs, err = read(t, conn, `resource = "products"`, "2025-03-18T18:27:05Z")
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(recs); got != "8123456789031,8123456789044" {
		t.Errorf("after the watermark: %s", got)
	}
	recs, err = read(t, conn, "resource = \"products\"\nquery = \"status:active\"", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 {
		t.Errorf("status:active: %s", ids(recs))
	}
	// Nested numbers arrive exact.
	if v := recs[0]["variants"].(map[string]any)["nodes"].([]any)[0].(map[string]any)["inventoryQuantity"]; v != int64(31) {
		t.Errorf("inventoryQuantity = %#v", v)
	}
}

func TestThrottled(t *testing.T) {
	for _, status := range []int{http.StatusOK, http.StatusTooManyRequests} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			shop := shopifytest.Start(t, shopifytest.Options{ThrottleStatus: status})
			shop.Put("products", shopifytest.SampleProducts()...)
			conn := open(t, shop, shopifytest.Token)
			shop.SetAvailable(0)
			recs, err := read(t, conn, "resource = \"products\"\npage_size = 3", "")
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != 5 {
				t.Fatalf("%d records, want 5, each once", len(recs))
			}
			reqs := shop.Requests()
			if !reqs[0].Throttled || reqs[0].Status != status || reqs[1].Throttled {
				t.Fatalf("want the first request throttled (HTTP %d) and the retry served: %+v", status, reqs)
			}
			if reqs[1].Variables["after"] != nil {
				t.Errorf("the retry must ask for the same (first) page")
			}
		})
	}
}

func TestCostExtension(t *testing.T) {
	shop := shopifytest.Start(t, shopifytest.Options{})
	shop.Put("products", shopifytest.SampleProducts()...)
	body := `{"query":"query { products(first: 3) { edges { node { id } } pageInfo { hasNextPage endCursor } } }","variables":{"first":3}}`
	req, _ := http.NewRequest(http.MethodPost, shop.URL+shop.Endpoint(), strings.NewReader(body))
	req.Header.Set("X-Shopify-Access-Token", shopifytest.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Data       map[string]map[string]any `json:"data"`
		Extensions struct {
			Cost struct {
				RequestedQueryCost float64 `json:"requestedQueryCost"`
				ActualQueryCost    float64 `json:"actualQueryCost"`
				ThrottleStatus     struct {
					MaximumAvailable, CurrentlyAvailable, RestoreRate float64
				} `json:"throttleStatus"`
			} `json:"cost"`
		} `json:"extensions"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	c := out.Extensions.Cost
	if c.RequestedQueryCost != 5 || c.ActualQueryCost != 5 || c.ThrottleStatus.MaximumAvailable != 20000 || c.ThrottleStatus.CurrentlyAvailable > 19995.5 || c.ThrottleStatus.RestoreRate != 1000 {
		t.Errorf("cost = %+v", c)
	}
	pi := out.Data["products"]["pageInfo"].(map[string]any)
	if pi["hasNextPage"] != true || pi["endCursor"] == nil {
		t.Errorf("pageInfo = %v", pi)
	}
}

func TestTokenAndFaults(t *testing.T) {
	shop := shopifytest.Start(t, shopifytest.Options{})
	if err := open(t, shop, "shpat_wrong").Test(context.Background()); err == nil || !strings.Contains(err.Error(), "check the token") {
		t.Errorf("wrong token: %v", err)
	}
	conn := open(t, shop, shopifytest.Token)
	if err := conn.Test(context.Background()); err != nil {
		t.Errorf("connection test: %v", err)
	}
	shop.FailNext(1, http.StatusServiceUnavailable, `{"errors":"Service Unavailable"}`)
	err := conn.Test(context.Background())
	if connectors.CategoryOf(err) != connectors.CategoryTransient {
		t.Errorf("503: %v (%s), want transient", err, connectors.CategoryOf(err))
	}
	if err := conn.Test(context.Background()); err != nil {
		t.Errorf("after the fault: %v", err)
	}
}

func TestMutations(t *testing.T) {
	now := time.Date(2025, 4, 1, 12, 0, 0, 0, time.UTC)
	shop := shopifytest.Start(t, shopifytest.Options{Now: func() time.Time { return now }})
	shop.Put("products", shopifytest.SampleProducts()...)
	shop.Put("products", map[string]any{
		"id": "gid://shopify/Product/1", "legacyResourceId": "1", "title": "Mug", "updatedAt": "2025-01-01T00:00:00Z",
		"variants": map[string]any{"nodes": []any{map[string]any{"sku": "MUG", "inventoryQuantity": 2, "inventoryItem": map[string]any{"id": "gid://shopify/InventoryItem/77"}}}},
	})
	conn := open(t, shop, shopifytest.Token)
	products, err := conn.Sink(decodeHCL(t, shopify.TargetSpec, `resource = "products"`))
	if err != nil {
		t.Fatal(err)
	}
	errs := products.Write(context.Background(), []connectors.Write{
		{Key: "a", Operation: connectors.OpUpsert, Record: map[string]any{"id": "8123456789012", "title": "Organic Cotton Tee v2"}},
		{Key: "b", Operation: connectors.OpUpsert, Record: map[string]any{"title": "Linen Shirt", "status": "DRAFT"}},
		{Key: "c", Operation: connectors.OpUpdate, Record: map[string]any{"id": "gid://shopify/Product/8123456789013", "title": " "}},
		{Key: "d", Operation: connectors.OpUpdate, Record: map[string]any{"id": "404", "title": "Ghost"}},
	})
	if len(errs) != 4 || errs[0] != nil || errs[1] != nil {
		t.Fatalf("errs = %v", errs)
	}
	if !strings.Contains(errs[2].Error(), "Title can't be blank") || !strings.Contains(errs[3].Error(), "Product does not exist") {
		t.Errorf("userErrors: %v / %v", errs[2], errs[3])
	}
	inventory, err := conn.Sink(decodeHCL(t, shopify.TargetSpec, `resource = "inventory"`))
	if err != nil {
		t.Fatal(err)
	}
	if errs := inventory.Write(context.Background(), []connectors.Write{
		{Key: "e", Operation: connectors.OpUpsert, Record: map[string]any{"inventoryItemId": 77, "locationId": 5, "quantity": 40}},
	}); errs != nil {
		t.Fatalf("inventory: %v", errs)
	}

	ms := shop.Mutations()
	if len(ms) != 5 {
		t.Fatalf("%d mutations, want 5", len(ms))
	}
	if ms[0].Name != "productUpdate" || ms[1].Name != "productCreate" || ms[4].Name != "inventorySetQuantities" || ms[0].UserErrors != nil || len(ms[2].UserErrors) != 1 {
		t.Errorf("mutations = %+v", ms)
	}
	// The changes are what the next incremental read sees.
	recs, err := read(t, conn, `resource = "products"`, "2025-03-31T00:00:00Z")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]any{}
	for _, r := range recs {
		got[r["title"].(string)] = r
	}
	if len(recs) != 3 || got["Organic Cotton Tee v2"] == nil || got["Linen Shirt"] == nil || got["Mug"] == nil {
		t.Fatalf("changed products: %v", recs)
	}
	if got["Linen Shirt"]["updatedAt"] != "2025-04-01T12:00:00Z" || got["Linen Shirt"]["status"] != "DRAFT" {
		t.Errorf("created: %v", got["Linen Shirt"])
	}
	if q := got["Mug"]["variants"].(map[string]any)["nodes"].([]any)[0].(map[string]any)["inventoryQuantity"]; q != int64(40) {
		t.Errorf("inventory quantity = %#v, want 40", q)
	}
}

func TestOtherResources(t *testing.T) {
	shop := shopifytest.Start(t, shopifytest.Options{})
	shop.Put("orders",
		map[string]any{"id": "gid://shopify/Order/2", "name": "#1002", "updatedAt": "2025-03-05T00:00:00Z"},
		map[string]any{"id": "gid://shopify/Order/10", "name": "#1010", "updatedAt": "2025-03-04T00:00:00Z"})
	shop.Put("inventory_items", map[string]any{"id": "gid://shopify/InventoryItem/9007199254740993", "legacyResourceId": "9007199254740993", "updatedAt": "2025-03-05T00:00:00Z"})
	conn := open(t, shop, shopifytest.Token)
	recs, err := read(t, conn, `resource = "orders"`, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0]["name"] != "#1010" {
		t.Errorf("orders by updatedAt: %v", recs)
	}
	recs, err = read(t, conn, `resource = "inventory_items"`, "2025-03-01T00:00:00Z")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0]["legacyResourceId"] != "9007199254740993" {
		t.Errorf("inventory items: %v", recs)
	}
	if recs, err := read(t, conn, `resource = "customers"`, ""); err != nil || len(recs) != 0 {
		t.Errorf("no customers: %v %v", recs, err)
	}
}

// post sends one GraphQL request and decodes the answer.
func post(t *testing.T, shop *shopifytest.Server, query string, vars map[string]any) map[string]any {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, shop.URL+shop.Endpoint(), strings.NewReader(string(body)))
	req.Header.Set("X-Shopify-Access-Token", shopifytest.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP %d", resp.StatusCode)
	}
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMaxCostExceeded(t *testing.T) {
	shop := shopifytest.Start(t, shopifytest.Options{})
	shop.Put("products", shopifytest.SampleProducts()...)
	// 2 + 50 × (1 + 2 + 100 × (1 + 1)) points.
	out := post(t, shop, `query Q($first: Int!) { products(first: $first) { edges { node { id variants(first: 100) { nodes { id inventoryItem { id } } } } } } }`,
		map[string]any{"first": 50})
	errs, _ := out["errors"].([]any)
	if len(errs) != 1 || out["data"] != nil {
		t.Fatalf("answer = %v", out)
	}
	e := errs[0].(map[string]any)
	ext := e["extensions"].(map[string]any)
	if ext["code"] != "MAX_COST_EXCEEDED" || ext["cost"] != float64(10152) || ext["maxCost"] != float64(1000) ||
		!strings.HasPrefix(e["message"].(string), "Query cost is 10152, which exceeds the single query max cost limit (1000).") {
		t.Errorf("error = %v", e)
	}
	// Refused before it runs: nothing is charged, and a query that fits runs.
	out = post(t, shop, `{ products(first: 2) { edges { node { id variants(first: 100) { nodes { id } } } } } }`, nil)
	cost := out["extensions"].(map[string]any)["cost"].(map[string]any)
	if cost["requestedQueryCost"] != float64(2+2*(1+2+100)) || cost["throttleStatus"].(map[string]any)["currentlyAvailable"].(float64) < shopifytest.Bucket-20 {
		t.Errorf("cost = %v", cost)
	}
}

func TestNestedConnectionsPaged(t *testing.T) {
	shop := shopifytest.Start(t, shopifytest.Options{})
	var variants []any
	for i := range 5 {
		variants = append(variants, map[string]any{"id": fmt.Sprintf("gid://shopify/ProductVariant/%d", i+1), "sku": fmt.Sprint("S", i+1)})
	}
	shop.Put("products", map[string]any{"id": "gid://shopify/Product/1", "title": "Tee", "updatedAt": "2025-03-01T00:00:00Z",
		"variants": map[string]any{"nodes": variants}})
	shop.Put("products", map[string]any{"id": "gid://shopify/Product/2", "title": "Mug", "updatedAt": "2025-03-02T00:00:00Z"})

	out := post(t, shop, `{ products(first: 5) { edges { node { id variants(first: 2) { nodes { sku } pageInfo { hasNextPage endCursor } } } } } }`, nil)
	edges := out["data"].(map[string]any)["products"].(map[string]any)["edges"].([]any)
	tee := edges[0].(map[string]any)["node"].(map[string]any)["variants"].(map[string]any)
	pi := tee["pageInfo"].(map[string]any)
	if n := tee["nodes"].([]any); len(n) != 2 || n[1].(map[string]any)["sku"] != "S2" || pi["hasNextPage"] != true || pi["endCursor"] == nil {
		t.Fatalf("tee variants = %v", tee)
	}
	// A product without variants has an empty connection, as in Shopify.
	mug := edges[1].(map[string]any)["node"].(map[string]any)["variants"].(map[string]any)
	if len(mug["nodes"].([]any)) != 0 || mug["pageInfo"].(map[string]any)["hasNextPage"] != false {
		t.Errorf("mug variants = %v", mug)
	}
	// Charged for what came back: 2 + (1 + 2 + 2) + (1 + 2).
	if c := out["extensions"].(map[string]any)["cost"].(map[string]any); c["actualQueryCost"] != float64(10) || c["requestedQueryCost"] != float64(2+5*(1+2+2)) {
		t.Errorf("cost = %v", c)
	}

	// The rest by node(id:), after the cursor, in edges form.
	more := `query M($id: ID!, $first: Int!, $after: String) { node(id: $id) { id ... on Product { variants(first: $first, after: $after) { edges { cursor node { sku } } pageInfo { hasNextPage } } } ... on Order { name } } }`
	out = post(t, shop, more, map[string]any{"id": "gid://shopify/Product/1", "first": 2, "after": pi["endCursor"]})
	node := out["data"].(map[string]any)["node"].(map[string]any)
	if _, has := node["title"]; has || node["id"] != "gid://shopify/Product/1" {
		t.Errorf("node holds only what is selected: %v", node)
	}
	vs := node["variants"].(map[string]any)
	var got []string
	for _, e := range vs["edges"].([]any) {
		got = append(got, e.(map[string]any)["node"].(map[string]any)["sku"].(string))
	}
	if strings.Join(got, ",") != "S3,S4" || vs["pageInfo"].(map[string]any)["hasNextPage"] != true {
		t.Errorf("second page = %v", vs)
	}
	last := vs["edges"].([]any)[1].(map[string]any)["cursor"]
	out = post(t, shop, more, map[string]any{"id": "gid://shopify/Product/1", "first": 2, "after": last})
	vs = out["data"].(map[string]any)["node"].(map[string]any)["variants"].(map[string]any)
	if len(vs["edges"].([]any)) != 1 || vs["pageInfo"].(map[string]any)["hasNextPage"] != false {
		t.Errorf("last page = %v", vs)
	}

	for _, tc := range []struct {
		vars map[string]any
		want string
	}{
		{map[string]any{"id": "gid://shopify/Product/1", "first": 2, "after": "bogus"}, "Invalid cursor"},
		{map[string]any{"id": "gid://shopify/Product/1", "first": 251}, "between 0 and 250"},
		{map[string]any{"id": "gid://shopify/Product/1"}, "variable is not given"},
	} {
		out = post(t, shop, more, tc.vars)
		if errs, _ := out["errors"].([]any); len(errs) != 1 || !strings.Contains(fmt.Sprint(errs[0]), tc.want) {
			t.Errorf("%v: %v, want %q", tc.vars, out, tc.want)
		}
	}
	out = post(t, shop, more, map[string]any{"id": "gid://shopify/Product/404", "first": 2})
	if d := out["data"].(map[string]any); d["node"] != nil {
		t.Errorf("unknown id: %v", d)
	}
	out = post(t, shop, `{ shop { name } `, nil)
	if errs, _ := out["errors"].([]any); len(errs) != 1 || !strings.Contains(fmt.Sprint(errs[0]), "graphql 1:17: expected a field") {
		t.Errorf("syntax error: %v", out)
	}
}

func TestEnforce(t *testing.T) {
	costly := `{ products(first: 250) { nodes { variants(first: 250) { nodes { id } } } } }` // 2 + 250 × (1 + 2 + 250)
	status, body := shopifytest.Enforce(costly, nil, http.StatusOK, []byte(`{"data":{}}`))
	if status != http.StatusOK || !strings.Contains(string(body), `"code":"MAX_COST_EXCEEDED","cost":63252`) {
		t.Errorf("costly: %d %s", status, body)
	}
	// Answers that are not data pass through; so do mutations.
	for _, tc := range []struct {
		query  string
		status int
		body   string
	}{
		{`{ shop { name } }`, http.StatusServiceUnavailable, `{"errors":"Service Unavailable"}`},
		{`{ shop { name } }`, http.StatusOK, `not json`},
		{`mutation { productUpdate(product: {id: "1"}) { product { id } } }`, http.StatusOK, `{"data":{"productUpdate":{"product":null}}}`},
	} {
		if status, body := shopifytest.Enforce(tc.query, nil, tc.status, []byte(tc.body)); status != tc.status || string(body) != tc.body {
			t.Errorf("%s: %d %s", tc.query, status, body)
		}
	}
	// Nested pages of a canned answer, numbers kept exact.
	status, body = shopifytest.Enforce(`{ products(first: 1) { nodes { id variants(first: 1) { nodes { id } } } } }`, nil, http.StatusOK,
		[]byte(`{"data":{"products":{"nodes":[{"id":"gid://shopify/Product/788032119674292922","variants":{"nodes":[{"id":1},{"id":2}]}}]}},"extensions":{"cost":{"requestedQueryCost":5}}}`))
	if want := `{"data":{"products":{"nodes":[{"id":"gid://shopify/Product/788032119674292922","variants":{"nodes":[{"id":1}]}}]}},"extensions":{"cost":{"requestedQueryCost":5}}}`; status != http.StatusOK || strings.TrimSpace(string(body)) != want {
		t.Errorf("shaped:\n%s\nwant\n%s", body, want)
	}
}
