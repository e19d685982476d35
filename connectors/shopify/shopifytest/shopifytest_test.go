package shopifytest_test

import (
	"context"
	"encoding/json"
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
	if c.RequestedQueryCost != 5 || c.ActualQueryCost != 5 || c.ThrottleStatus.MaximumAvailable != 2000 || c.ThrottleStatus.CurrentlyAvailable > 1995.5 || c.ThrottleStatus.RestoreRate != 100 {
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
