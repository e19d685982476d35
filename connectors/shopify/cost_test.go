package shopify

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/ferryhq/ferry/connectors"
	"github.com/ferryhq/ferry/connectors/shopify/internal/gql"
	"github.com/ferryhq/ferry/connectors/shopify/shopifytest"
)

// Every resource's default page query, and every follow-up query, fits
// Shopify's limit, and is the largest that does.
func TestDefaultQueriesFit(t *testing.T) {
	want := map[string]int{"products": 18, "orders": 15, "customers": 250, "inventory_items": 28}
	for _, name := range resourceNames {
		r := resources[name]
		if r.maxPage != want[name] {
			t.Errorf("%s: default page size %d, want %d (the package documentation names it)", name, r.maxPage, want[name])
		}
		cost, err := gql.RequestedCost(r.buildQuery(), map[string]any{"first": r.maxPage, "after": "c", "query": "x"})
		if err != nil || cost > gql.MaxCost {
			t.Errorf("%s: page of %d costs %d (%v)", name, r.maxPage, cost, err)
		}
		if r.maxPage < gql.MaxPage {
			if more, _ := gql.RequestedCost(r.buildQuery(), map[string]any{"first": r.maxPage + 1}); more <= gql.MaxCost {
				t.Errorf("%s: a page of %d would cost %d: the default is not the largest", name, r.maxPage+1, more)
			}
		}
		for _, nc := range r.nested {
			cost, err := gql.RequestedCost(nc.more, map[string]any{"id": "gid://shopify/X/1", "first": nc.moreFirst, "after": "c"})
			if err != nil || cost > gql.MaxCost || nc.moreFirst < nc.first {
				t.Errorf("%s %s: follow-up of %d costs %d (%v)", name, nc.field, nc.moreFirst, cost, err)
			}
		}
	}
	// And the strict fake, which refuses what Shopify would, serves them.
	for _, name := range resourceNames {
		conn, shop, _ := setup(t, nil)
		shop.answer = func(int, gqlRequest) (int, []byte) {
			return 200, []byte(`{"data":{"` + resources[name].field + `":{"edges":[],"pageInfo":{"hasNextPage":false,"endCursor":null}}}}`)
		}
		if _, err := readAll(t, conn, `resource = "`+name+`"`, connectors.ReadRequest{}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestPageSizeTooLarge(t *testing.T) {
	conn, _, _ := setup(t, func(int, gqlRequest) (int, []byte) { return 200, nil })
	cases := []struct {
		cfg  cty.Value
		want string
	}{
		{decodeHCL(t, SourceSpec, "resource = \"products\"\npage_size = 50"), `shopify source: page_size 50 is too large for "products": a page of 50 would request 2702 query cost points and Shopify refuses a query above 1000; use page_size 18 or less (18 is the default)`},
		{decodeHCL(t, SourceSpec, "resource = \"orders\"\npage_size = 16"), `page_size 16 is too large for "orders": a page of 16 would request 1058 query cost points`},
		// Validation refuses these two already; Source does as well.
		{sourceVal("customers", 251), `page_size 251 is too large for "customers": Shopify returns at most 250 nodes per page; use page_size 250 or less`},
		{sourceVal("inventory_items", 0), `page_size 0 must be at least 1; for "inventory_items" it can be at most 28`},
	}
	for _, tc := range cases {
		_, err := conn.Source(tc.cfg)
		if connectors.CategoryOf(err) != connectors.CategoryPermanent || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%#v:\n err = %v\nwant %s", tc.cfg, err, tc.want)
		}
	}
	for _, ok := range []string{"resource = \"products\"\npage_size = 18", "resource = \"orders\"\npage_size = 1"} {
		if _, err := conn.Source(decodeHCL(t, SourceSpec, ok)); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}

// The query the connector used to send (100 variants in pages of 50) is what
// Shopify refuses; the fake refuses it too, and the connector says what to do.
func TestFakeRefusesCostlyQuery(t *testing.T) {
	conn, shop, _ := setup(t, nil)
	shop.answer = pages(t, fixture(t, "graphql-products-page1.json"))
	old := strings.Replace(resources["products"].buildQuery(), "variants(first: 25)", "variants(first: 100)", 1)
	_, err := conn.do(context.Background(), old, map[string]any{"first": 50})
	if connectors.CategoryOf(err) != connectors.CategoryPermanent || !strings.Contains(err.Error(), "lower page_size") ||
		!strings.Contains(err.Error(), "Query cost is 10202, which exceeds the single query max cost limit (1000).") || !strings.Contains(err.Error(), "MAX_COST_EXCEEDED") {
		t.Errorf("err = %v", err)
	}
}

// variantNodes makes n variants of a product, numbered from 1.
func variantNodes(product, n int) []any {
	out := make([]any, n)
	for i := range n {
		out[i] = map[string]any{
			"id": fmt.Sprintf("gid://shopify/ProductVariant/%d%03d", product, i+1), "sku": fmt.Sprintf("P%d-V%03d", product, i+1),
			"price": "10.00", "inventoryQuantity": 1, "inventoryItem": map[string]any{"id": fmt.Sprintf("gid://shopify/InventoryItem/%d%03d", product, i+1)},
		}
	}
	return out
}

func skus(t *testing.T, rec map[string]any, field, key string) []string {
	t.Helper()
	conn, ok := rec[field].(map[string]any)
	if !ok {
		t.Fatalf("%s = %#v", field, rec[field])
	}
	if _, has := conn["pageInfo"]; has || len(conn) != 1 {
		t.Errorf("%s has keys other than nodes: %v", field, conn)
	}
	var out []string
	for _, n := range conn["nodes"].([]any) {
		out = append(out, n.(map[string]any)[key].(string))
	}
	return out
}

// A product with 120 variants arrives whole: 25 with its page, the other 95
// from one follow-up query. Its neighbours need none.
func TestProductWith120Variants(t *testing.T) {
	shop := shopifytest.Start(t, shopifytest.Options{})
	for i, n := range []int{3, 120, 25, 26} {
		shop.Put("products", map[string]any{
			"id": fmt.Sprintf("gid://shopify/Product/%d", i+1), "legacyResourceId": fmt.Sprint(i + 1), "title": fmt.Sprint("P", i+1),
			"updatedAt": fmt.Sprintf("2025-03-0%dT00:00:00Z", i+1), "variants": map[string]any{"nodes": variantNodes(i+1, n)},
		})
	}
	conn, err := Open(connectors.Env{}, decodeHCL(t, ConnectionSpec, `
store    = "`+shopifytest.Store+`"
token    = "`+shopifytest.Token+`"
base_url = "`+shop.URL+`"`))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := readAll(t, conn.(*Connection), `resource = "products"`, connectors.ReadRequest{CursorField: "updatedAt"})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 4 {
		t.Fatalf("%d records", len(recs))
	}
	for i, n := range []int{3, 120, 25, 26} {
		got := skus(t, recs[i].Data, "variants", "sku")
		var want []string
		for _, v := range variantNodes(i+1, n) {
			want = append(want, v.(map[string]any)["sku"].(string))
		}
		if !slices.Equal(got, want) {
			t.Errorf("product %d: %d variants %v…, want %d in order", i+1, len(got), got[:min(3, len(got))], n)
		}
	}
	reqs := shop.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want the page and a follow-up for products 2 and 4", len(reqs))
	}
	for i, id := range map[int]string{1: "gid://shopify/Product/2", 2: "gid://shopify/Product/4"} {
		r := reqs[i]
		if r.Variables["id"] != id || fmt.Sprint(r.Variables["first"]) != "250" || r.Variables["after"] == nil || !strings.Contains(r.Query, "node(id: $id)") {
			t.Errorf("follow-up %d: %v\n%s", i, r.Variables, r.Query)
		}
	}
}

// Follow-ups repeat until a node's last nested page: 450 line items are read
// 10 with the order, then 199 (the most a follow-up can cost), 199 and 42.
func TestOrderLineItemsPaged(t *testing.T) {
	shop := shopifytest.Start(t, shopifytest.Options{})
	items := make([]any, 450)
	for i := range items {
		items[i] = map[string]any{"id": fmt.Sprintf("gid://shopify/LineItem/%d", i+1), "name": fmt.Sprint("item ", i+1), "quantity": 1}
	}
	shop.Put("orders", map[string]any{"id": "gid://shopify/Order/7", "name": "#1007", "updatedAt": "2025-03-05T00:00:00Z",
		"lineItems": map[string]any{"nodes": items}})
	conn, err := Open(connectors.Env{}, decodeHCL(t, ConnectionSpec, `
store    = "`+shopifytest.Store+`"
token    = "`+shopifytest.Token+`"
base_url = "`+shop.URL+`"`))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := readAll(t, conn.(*Connection), `resource = "orders"`, connectors.ReadRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := skus(t, recs[0].Data, "lineItems", "name")
	if len(got) != 450 || got[0] != "item 1" || got[449] != "item 450" || got[10] != "item 11" || got[209] != "item 210" {
		t.Errorf("%d line items: %v … %v", len(got), got[:2], got[len(got)-2:])
	}
	var firsts []any
	for _, r := range shop.Requests()[1:] {
		firsts = append(firsts, r.Variables["first"])
	}
	if fmt.Sprint(firsts) != "[199 199 199]" || len(shop.Requests()) != 4 {
		t.Errorf("follow-ups asked for %v", firsts)
	}
}

// A follow-up is throttled like a page: it waits and is retried.
func TestFollowUpThrottled(t *testing.T) {
	conn, shop, sleeps := setup(t, nil)
	page := strings.Replace(string(fixture(t, "graphql-products-page1.json")), `"hasNextPage": true`, `"hasNextPage": false`, 1)
	// The first product gets 30 variants: 25 come with the page.
	var p map[string]any
	if err := json.Unmarshal([]byte(page), &p); err != nil {
		t.Fatal(err)
	}
	variants := map[string]any{"nodes": variantNodes(1, 30)}
	p["data"].(map[string]any)["products"].(map[string]any)["edges"].([]any)[0].(map[string]any)["node"].(map[string]any)["variants"] = variants
	body, _ := json.Marshal(p)
	throttled := fixture(t, "graphql-throttled.json")
	shop.answer = func(n int, r gqlRequest) (int, []byte) {
		switch n {
		case 1:
			return 200, body
		case 2:
			return 200, throttled
		}
		// The fake holds the whole list; Enforce pages it after the cursor.
		b, _ := json.Marshal(map[string]any{"data": map[string]any{"node": map[string]any{"variants": variants}}})
		return 200, b
	}
	recs, err := readAll(t, conn, `resource = "products"`, connectors.ReadRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := skus(t, recs[0].Data, "variants", "sku"); len(got) != 30 || got[29] != "P1-V030" {
		t.Errorf("variants: %d %v", len(got), got)
	}
	if len(shop.requests) != 3 || shop.requests[1].Variables["after"] != shop.requests[2].Variables["after"] {
		t.Errorf("requests: %+v", shop.requests)
	}
	if len(*sleeps) != 1 || (*sleeps)[0] != 130*time.Millisecond {
		t.Errorf("sleeps = %v, want [130ms]", *sleeps)
	}
}

// A product deleted between its page and its follow-up fails the read as
// transient: read again, the page no longer lists it.
func TestFollowUpNodeGone(t *testing.T) {
	conn, shop, _ := setup(t, nil)
	body := fmt.Sprintf(`{"data":{"products":{"edges":[{"node":{"id":"gid://shopify/Product/1","updatedAt":"2025-03-01T00:00:00Z","variants":{"nodes":%s}}}],"pageInfo":{"hasNextPage":false}}}}`,
		must(json.Marshal(variantNodes(1, 26))))
	shop.answer = func(n int, r gqlRequest) (int, []byte) {
		if n == 1 {
			return 200, []byte(body)
		}
		return 200, []byte(`{"data":{"node":null}}`)
	}
	_, err := readAll(t, conn, `resource = "products"`, connectors.ReadRequest{})
	if connectors.CategoryOf(err) != connectors.CategoryTransient || !strings.Contains(err.Error(), "gid://shopify/Product/1 was deleted while its variants were read") {
		t.Errorf("err = %v", err)
	}
}

func must(b []byte, err error) string {
	if err != nil {
		panic(err)
	}
	return string(b)
}

// sourceVal is a source configuration as validation would not let through.
func sourceVal(resource string, pageSize int) cty.Value {
	return cty.ObjectVal(map[string]cty.Value{
		"resource": cty.StringVal(resource), "page_size": cty.NumberIntVal(int64(pageSize)), "query": cty.NullVal(cty.String),
	})
}

// Configuration validation decodes the source block with SourceSpec: an
// unknown resource, and a page_size no resource can hold, are found there.
func TestValidateSourceConfig(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{`resource = "widgets"`, `Unknown Shopify resource; resource "widgets" is not one of "products", "orders", "customers", "inventory_items".`},
		{"resource = \"products\"\npage_size = 251", "Invalid page_size; page_size 251 must be a whole number from 1 to what a page of the resource may hold within Shopify's query cost limit: products 18, orders 15, customers 250, inventory_items 28."},
		{"resource = \"products\"\npage_size = 0", "page_size 0 must be a whole number"},
		{"resource = \"products\"\npage_size = 2.5", "page_size 2.5 must be a whole number"},
	} {
		f, diags := hclsyntax.ParseConfig([]byte(tc.src), "main.hcl", hcl.InitialPos)
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		_, diags = hcldec.Decode(f.Body, SourceSpec, nil)
		if len(diags) != 1 || !strings.Contains(diags[0].Summary+"; "+diags[0].Detail, tc.want) || diags[0].Subject == nil || diags[0].Subject.Start.Line == 0 {
			t.Errorf("%q: diags = %v, want %q", tc.src, diags, tc.want)
		}
	}
}

// complete runs on the reading goroutine for every product, order and
// inventory item, so its per-record cost bounds a read's throughput.
func BenchmarkComplete(b *testing.B) {
	var page struct {
		Data struct {
			Products struct {
				Edges []struct {
					Node json.RawMessage `json:"node"`
				} `json:"edges"`
			} `json:"products"`
		} `json:"data"`
	}
	if err := json.Unmarshal(fixture(b, "graphql-products-page1.json"), &page); err != nil {
		b.Fatal(err)
	}
	// The fixture's Organic Cotton Tee (three variants), as the page query returns it.
	node := strings.Replace(string(page.Data.Products.Edges[2].Node), `"variants": {`, `"variants": {"pageInfo": {"hasNextPage": false, "endCursor": "x"},`, 1)
	s := &Source{name: "products", res: resources["products"]}
	b.SetBytes(int64(len(node)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.complete(context.Background(), json.RawMessage(node), "bench"); err != nil {
			b.Fatal(err)
		}
	}
}

// What is not a paged connection is passed on untouched.
func TestCompleteLeavesOddNodes(t *testing.T) {
	s := &Source{name: "products", res: resources["products"]}
	for _, node := range []string{`null`, `42`, `{"id":"gid://shopify/Product/1","variants":null}`, `{"variants":[1,2],"id":"gid://shopify/Product/1"}`, `{"id":"gid://shopify/Product/1"}`} {
		got, err := s.complete(context.Background(), json.RawMessage(node), "test")
		if err != nil || string(got) != node {
			t.Errorf("%s: %s, %v", node, got, err)
		}
	}
	got, err := s.complete(context.Background(), json.RawMessage(`{"title":"<b>Tee</b> & co","variants":{"nodes":[{"id":9007199254740993}],"pageInfo":{"hasNextPage":false,"endCursor":"c"}}}`), "test")
	if want := `{"title":"<b>Tee</b> & co","variants":{"nodes":[{"id":9007199254740993}]}}`; err != nil || string(got) != want {
		t.Errorf("complete = %s, %v; want %s", got, err, want)
	}
}
