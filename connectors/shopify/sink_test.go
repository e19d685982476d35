package shopify

import (
	"context"
	"strings"
	"testing"

	"github.com/ferryhq/ferry/connectors"
)

func newSink(t *testing.T, conn *Connection, resource string) connectors.Sink {
	t.Helper()
	s, err := conn.Sink(decodeHCL(t, TargetSpec, `resource = "`+resource+`"`))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSinkProducts(t *testing.T) {
	conn, shop, _ := setup(t, nil)
	shop.answer = func(_ int, r gqlRequest) (int, []byte) {
		p := r.Variables["product"].(map[string]any)
		switch {
		case strings.Contains(r.Query, "productCreate("):
			return 200, []byte(`{"data":{"productCreate":{"product":{"id":"gid://shopify/Product/8123456789099","legacyResourceId":"8123456789099","updatedAt":"2025-03-25T10:00:00Z"},"userErrors":[]}}}`)
		case p["title"] == "":
			return 200, []byte(`{"data":{"productUpdate":{"product":null,"userErrors":[{"field":["title"],"message":"Title can't be blank"}]}}}`)
		default:
			return 200, []byte(`{"data":{"productUpdate":{"product":{"id":"` + p["id"].(string) + `","legacyResourceId":"8123456789012","updatedAt":"2025-03-25T10:00:00Z"},"userErrors":[]}}}`)
		}
	}
	s := newSink(t, conn, "products")
	errs := s.Write(context.Background(), []connectors.Write{
		{Operation: connectors.OpUpsert, Record: map[string]any{"id": int64(8123456789012), "title": "Organic Cotton Tee v2"}},
		{Operation: connectors.OpUpsert, Record: map[string]any{"id": "gid://shopify/Product/8123456789013", "title": ""}},
		{Operation: connectors.OpUpsert, Record: map[string]any{"title": "New Hoodie", "status": "DRAFT"}},
		{Operation: connectors.OpUpdate, Record: map[string]any{"title": "no id"}},
		{Operation: connectors.OpDelete, Record: map[string]any{"id": "gid://shopify/Product/1"}},
	})
	if len(errs) != 5 || errs[0] != nil || errs[2] != nil {
		t.Fatalf("errs = %v", errs)
	}
	for _, i := range []int{1, 3, 4} {
		if connectors.CategoryOf(errs[i]) != connectors.CategoryPermanent {
			t.Errorf("write %d: %v is not permanent", i, errs[i])
		}
	}
	if !strings.Contains(errs[1].Error(), "title: Title can't be blank") {
		t.Errorf("userErrors message lost: %v", errs[1])
	}
	if len(shop.requests) != 3 {
		t.Fatalf("%d requests, want 3", len(shop.requests))
	}
	first := shop.requests[0]
	if !strings.Contains(first.Query, "productUpdate(product: $product)") || first.Path != apiPath || first.Token != "shpat_test" {
		t.Errorf("request: %+v", first)
	}
	if id := first.Variables["product"].(map[string]any)["id"]; id != "gid://shopify/Product/8123456789012" {
		t.Errorf("id = %v (must be exact)", id)
	}
	if p := shop.requests[2].Variables["product"].(map[string]any); p["id"] != nil || p["title"] != "New Hoodie" {
		t.Errorf("create input = %v", p)
	}
}

func TestSinkInventory(t *testing.T) {
	conn, shop, sleeps := setup(t, nil)
	throttled := fixture(t, "graphql-throttled.json")
	shop.answer = func(n int, r gqlRequest) (int, []byte) {
		if n == 1 {
			return 429, throttled
		}
		q := r.Variables["input"].(map[string]any)["quantities"].([]any)[0].(map[string]any)
		if q["locationId"] == "gid://shopify/Location/404" {
			return 200, []byte(`{"data":{"inventorySetQuantities":{"inventoryAdjustmentGroup":null,"userErrors":[{"field":["input","quantities","0","locationId"],"message":"The specified location could not be found."}]}}}`)
		}
		return 200, []byte(`{"data":{"inventorySetQuantities":{"inventoryAdjustmentGroup":{"id":"gid://shopify/InventoryAdjustmentGroup/1"},"userErrors":[]}}}`)
	}
	s := newSink(t, conn, "inventory")
	errs := s.Write(context.Background(), []connectors.Write{
		{Operation: connectors.OpUpsert, Record: map[string]any{"inventoryItemId": int64(46012345678901), "locationId": "gid://shopify/Location/71234567890", "quantity": int64(40)}},
		{Operation: connectors.OpUpsert, Record: map[string]any{"inventoryItemId": "46012345678902", "locationId": "404", "quantity": int64(1)}},
		{Operation: connectors.OpUpsert, Record: map[string]any{"inventoryItemId": "46012345678903", "locationId": "1", "quantity": "many"}},
	})
	if len(errs) != 3 || errs[0] != nil {
		t.Fatalf("errs = %v", errs)
	}
	if connectors.CategoryOf(errs[1]) != connectors.CategoryPermanent || !strings.Contains(errs[1].Error(), "could not be found") {
		t.Errorf("userErrors: %v", errs[1])
	}
	if connectors.CategoryOf(errs[2]) != connectors.CategoryPermanent {
		t.Errorf("bad quantity: %v", errs[2])
	}
	if len(*sleeps) != 1 {
		t.Errorf("sleeps = %v (throttled mutation must be retried once)", *sleeps)
	}
	in := shop.requests[1].Variables["input"].(map[string]any)
	q := in["quantities"].([]any)[0].(map[string]any)
	if in["reason"] != "correction" || in["name"] != "available" || q["inventoryItemId"] != "gid://shopify/InventoryItem/46012345678901" || q["quantity"] != float64(40) {
		t.Errorf("input = %v", in)
	}
	if !strings.Contains(shop.requests[1].Query, "inventorySetQuantities(input: $input)") {
		t.Errorf("query: %s", shop.requests[1].Query)
	}
}

func TestSinkConfig(t *testing.T) {
	conn, _, _ := setup(t, nil)
	if _, err := conn.Sink(decodeHCL(t, TargetSpec, `resource = "orders"`)); connectors.CategoryOf(err) != connectors.CategoryPermanent {
		t.Errorf("err = %v", err)
	}
}
