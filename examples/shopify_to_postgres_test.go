package examples_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferryhq/ferry/connectors/shopify/shopifytest"
	"github.com/ferryhq/ferry/engine"
	"github.com/ferryhq/ferry/runtime"
)

const shopifyIntegration = "products_to_postgres"

// internalProduct is tagged "internal": the mapping's filter skips it.
var internalProduct = map[string]any{
	"id": "gid://shopify/Product/8123456789099", "legacyResourceId": "8123456789099", "title": "Staff sample tee",
	"handle": "staff-sample-tee", "status": "DRAFT", "vendor": "Acme Apparel", "productType": "Shirts",
	"tags": []any{"internal"}, "updatedAt": "2025-03-12T08:00:00Z", "publishedAt": nil,
	"variants": map[string]any{"nodes": []any{map[string]any{"sku": "TEE-STAFF", "price": "0.00", "inventoryQuantity": 4}}},
}

// wantProducts are the rows of the five fixture products, as products() prints them.
var wantProducts = []string{
	"8123456789012|Organic Cotton Tee|active|[cotton organic tee]|[TEE-ORG-S TEE-ORG-M TEE-ORG-L]|19.99|21.99|sale=true|stock=99|published=true|2025-03-18T18:27:05Z",
	"8123456789013|Canvas Tote Bag|active|[bags canvas]|[TOTE-CNV-NAT]|19.99|19.99|sale=false|stock=88|published=true|2025-03-09T13:45:00Z",
	"8123456789020|Merino Beanie|active|[merino winter]|[BEANIE-MER-CHR BEANIE-MER-OAT]|28.00|28.00|sale=false|stock=43|published=true|2025-03-02T16:20:11Z",
	"8123456789031|Recycled Denim Jacket|draft|[denim recycled]|[JKT-DNM-M JKT-DNM-L]|89.00|89.00|sale=true|stock=8|published=false|2025-03-21T09:05:47Z",
	"8123456789044|Wool Socks 3-Pack|archived|[]|[SOCK-WOOL-3PK]|15.00|15.00|sale=false|stock=0|published=false|2025-03-24T20:11:30Z",
}

// setupShopifyToPostgres starts the fake shop with the fixture products and
// an internal one, creates the products table from the example's schema.sql
// in a schema of the test's own, and loads the example pointed at both.
func setupShopifyToPostgres(t *testing.T) (*shopifytest.Server, *pgx.Conn, *engine.Program, func(string) (string, error)) {
	db, dbURL := postgresSchema(t)
	schema, err := os.ReadFile("shopify-to-postgres/schema.sql")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(context.Background(), string(schema)); err != nil {
		t.Fatalf("schema.sql: %v", err)
	}
	shop := shopifytest.Start(t, shopifytest.Options{})
	shop.Put("products", shopifytest.SampleProducts()...)
	shop.Put("products", internalProduct)
	prog := load(t, "shopify-to-postgres", []string{"SHOPIFY_BASE_URL=" + shop.URL, "DATABASE_URL=" + dbURL})
	return shop, db, prog, secrets(map[string]string{"shopify_admin_token": shopifytest.Token})
}

// products prints the table's rows, one line each, by shopify_id.
func products(t *testing.T, db *pgx.Conn) []string {
	t.Helper()
	rows, err := db.Query(context.Background(), `SELECT shopify_id, title, status, tags, skus, price_min::text, price_max::text,
		on_sale, inventory_total, published, updated_at FROM products ORDER BY shopify_id`)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		var id int64
		var title, status, pmin, pmax string
		var tags, skus []string
		var sale, published bool
		var stock int
		var updated time.Time
		if err := rows.Scan(&id, &title, &status, &tags, &skus, &pmin, &pmax, &sale, &stock, &published, &updated); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%d|%s|%s|%v|%v|%s|%s|sale=%v|stock=%d|published=%v|%s",
			id, title, status, tags, skus, pmin, pmax, sale, stock, published, updated.UTC().Format(time.RFC3339)))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func wantRows(t *testing.T, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("products table:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestShopifyToPostgresInMemory(t *testing.T) {
	shop, db, prog, secret := setupShopifyToPostgres(t)
	res, err := prog.Run(testCtx(t), shopifyIntegration, engine.RunOptions{Secrets: secret})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != engine.RunSucceeded || res.Counts != (engine.Counts{Total: 6, Success: 5, Skipped: 1}) {
		t.Fatalf("run: %s %+v %s %v", res.Status, res.Counts, res.Error, res.Failures)
	}
	wantRows(t, products(t, db), wantProducts)
	// One page of 50, with the connection's token.
	reqs := shop.Requests()
	if len(reqs) != 1 || reqs[0].Token != shopifytest.Token || reqs[0].Variables["first"] == nil {
		t.Errorf("requests: %+v", reqs)
	}

	// Run again from a cursor: only what changed since, upserted in place.
	changed := shopifytest.SampleProducts()[1] // Canvas Tote Bag
	changed["title"] = "Canvas Tote Bag (Large)"
	changed["updatedAt"] = "2025-04-02T08:00:00Z"
	shop.Put("products", changed)
	res, err = prog.Run(testCtx(t), shopifyIntegration, engine.RunOptions{Secrets: secret, Cursor: "2025-03-24T20:11:30Z"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Counts != (engine.Counts{Total: 1, Success: 1}) {
		t.Fatalf("incremental run: %+v %s", res.Counts, res.Error)
	}
	want := append([]string(nil), wantProducts...)
	want[1] = "8123456789013|Canvas Tote Bag (Large)|active|[bags canvas]|[TOTE-CNV-NAT]|19.99|19.99|sale=false|stock=88|published=true|2025-04-02T08:00:00Z"
	wantRows(t, products(t, db), want)
}

func TestShopifyToPostgresDurable(t *testing.T) {
	shop, db, prog, secret := setupShopifyToPostgres(t)
	rt := openRuntime(t)
	ctx := testCtx(t)
	tenant := prog.Config.Tenant()
	run := func() *engine.RunResult {
		t.Helper()
		res, err := rt.Run(ctx, tenant, prog, shopifyIntegration, runtime.RunOptions{Trigger: "test", Secrets: secret})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}

	// The first run reads everything, through a throttled first answer.
	shop.SetAvailable(0)
	res := run()
	if res.Status != engine.RunSucceeded || res.Counts.Total != 6 || res.Counts.Success != 5 || res.Counts.Skipped != 1 {
		t.Fatalf("first run: %s %+v %s", res.Status, res.Counts, res.Error)
	}
	if reqs := shop.Requests(); len(reqs) != 2 || !reqs[0].Throttled || reqs[1].Throttled {
		t.Errorf("want a throttled request and its retry: %+v", reqs)
	}
	wantRows(t, products(t, db), wantProducts)
	cur, err := rt.Cursors().Get(ctx, tenant, shopifyIntegration)
	if err != nil {
		t.Fatal(err)
	}
	if cur.Value != "2025-03-24T20:11:30Z" {
		t.Fatalf("cursor after the first run = %+v, want the newest updatedAt", cur)
	}

	// A product changes in the shop: the next run asks Shopify for what changed
	// after the cursor and upserts that one row.
	changed := shopifytest.SampleProducts()[2] // Organic Cotton Tee
	changed["status"] = "ARCHIVED"
	changed["updatedAt"] = "2025-04-01T09:15:00Z"
	shop.Put("products", changed)
	before := len(shop.Requests())
	res = run()
	if res.Status != engine.RunSucceeded || res.Counts.Total != 1 || res.Counts.Success != 1 {
		t.Fatalf("second run: %s %+v %s", res.Status, res.Counts, res.Error)
	}
	// (The bucket may still be refilling from the first run: a throttled
	// request and its retry are one page.)
	var served int
	for _, r := range shop.Requests()[before:] {
		if r.Variables["query"] != "updated_at:>'2025-03-24T20:11:30Z'" {
			t.Errorf("second run searched %q, want updated_at:>'2025-03-24T20:11:30Z'", r.Variables["query"])
		}
		if !r.Throttled {
			served++
		}
	}
	if served != 1 {
		t.Errorf("second run: %d pages served, want 1", served)
	}
	want := append([]string(nil), wantProducts...)
	want[0] = "8123456789012|Organic Cotton Tee|archived|[cotton organic tee]|[TEE-ORG-S TEE-ORG-M TEE-ORG-L]|19.99|21.99|sale=true|stock=99|published=false|2025-04-01T09:15:00Z"
	wantRows(t, products(t, db), want)

	// Nothing changed: nothing read, nothing written.
	if res = run(); res.Status != engine.RunSucceeded || res.Counts.Total != 0 {
		t.Fatalf("third run: %s %+v", res.Status, res.Counts)
	}
	if cur, _ := rt.Cursors().Get(ctx, tenant, shopifyIntegration); cur.Value != "2025-04-01T09:15:00Z" {
		t.Errorf("cursor = %+v", cur)
	}
}
