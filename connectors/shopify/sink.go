package shopify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"

	"github.com/zclconf/go-cty/cty"

	"github.com/ferryhq/ferry/connectors"
)

const (
	productCreateMutation = `mutation FerryProductCreate($product: ProductCreateInput!) {
  productCreate(product: $product) {
    product { id legacyResourceId updatedAt }
    userErrors { field message }
  }
}`
	productUpdateMutation = `mutation FerryProductUpdate($product: ProductUpdateInput!) {
  productUpdate(product: $product) {
    product { id legacyResourceId updatedAt }
    userErrors { field message }
  }
}`
	inventorySetMutation = `mutation FerryInventorySet($input: InventorySetQuantitiesInput!) {
  inventorySetQuantities(input: $input) {
    inventoryAdjustmentGroup { id }
    userErrors { field message }
  }
}`
)

type targetConfig struct {
	Resource *string `cty:"resource"`
}

// Sink writes products or inventory quantities, one mutation per record.
type Sink struct {
	conn     *Connection
	resource string
}

var _ connectors.Sink = (*Sink)(nil)

// Sink opens a sink of the resource in cfg: "products" or "inventory".
func (c *Connection) Sink(cfg cty.Value) (connectors.Sink, error) {
	var tc targetConfig
	if err := decode(cfg, &tc, "target"); err != nil {
		return nil, err
	}
	r := str(tc.Resource)
	switch r {
	case "products", "inventory":
	case "inventory_items", "inventory_levels":
		r = "inventory"
	default:
		return nil, connectors.Permanent(fmt.Errorf(`shopify target: resource %q is not one of "products", "inventory"`, r))
	}
	return &Sink{conn: c, resource: r}, nil
}

// Write sends one mutation per write; an error affects only its own record.
func (s *Sink) Write(ctx context.Context, writes []connectors.Write) []error {
	var errs []error
	for i, w := range writes {
		var err error
		if s.resource == "products" {
			err = s.writeProduct(ctx, w)
		} else {
			err = s.writeInventory(ctx, w)
		}
		if err != nil {
			if errs == nil {
				errs = make([]error, len(writes))
			}
			errs[i] = err
		}
		if ctx.Err() != nil {
			if errs == nil {
				errs = make([]error, len(writes))
			}
			for j := i + 1; j < len(writes); j++ {
				errs[j] = ctx.Err()
			}
			break
		}
	}
	return errs
}

// Close releases nothing: every write is sent when Write returns.
func (s *Sink) Close(context.Context) error { return nil }

func (s *Sink) writeProduct(ctx context.Context, w connectors.Write) error {
	input := maps.Clone(w.Record)
	if input == nil {
		input = map[string]any{}
	}
	id, err := gid(input["id"], "Product")
	if err != nil {
		return err
	}
	delete(input, "id")
	mutation, field := productUpdateMutation, "productUpdate"
	switch w.Operation {
	case connectors.OpUpsert:
		if id == "" {
			mutation, field = productCreateMutation, "productCreate"
		}
	case connectors.OpUpdate:
		if id == "" {
			return connectors.Permanent(errors.New(`shopify products: update needs the record's "id"`))
		}
	case connectors.OpCreate:
		if id != "" {
			return connectors.Permanent(errors.New(`shopify products: create must not have an "id"; use update or upsert`))
		}
		mutation, field = productCreateMutation, "productCreate"
	default:
		return connectors.Permanent(fmt.Errorf("shopify products: operation %q is not supported (create, update, upsert)", w.Operation))
	}
	if id != "" {
		input["id"] = id
	}
	return s.mutate(ctx, mutation, field, map[string]any{"product": input})
}

func (s *Sink) writeInventory(ctx context.Context, w connectors.Write) error {
	if w.Operation == connectors.OpDelete {
		return connectors.Permanent(errors.New("shopify inventory: delete is not supported; set the quantity to 0"))
	}
	r := w.Record
	item, err := gid(r["inventoryItemId"], "InventoryItem")
	if err != nil {
		return err
	}
	loc, err := gid(r["locationId"], "Location")
	if err != nil {
		return err
	}
	if item == "" || loc == "" {
		return connectors.Permanent(errors.New(`shopify inventory: the record needs "inventoryItemId" and "locationId"`))
	}
	qty, ok := toInt(r["quantity"])
	if !ok {
		return connectors.Permanent(fmt.Errorf(`shopify inventory: "quantity" must be an integer, got %v`, r["quantity"]))
	}
	reason, _ := r["reason"].(string)
	if reason == "" {
		reason = "correction"
	}
	name, _ := r["name"].(string)
	if name == "" {
		name = "available"
	}
	input := map[string]any{
		"name":                  name,
		"reason":                reason,
		"ignoreCompareQuantity": true,
		"quantities": []any{map[string]any{
			"inventoryItemId": item,
			"locationId":      loc,
			"quantity":        qty,
		}},
	}
	return s.mutate(ctx, inventorySetMutation, "inventorySetQuantities", map[string]any{"input": input})
}

// mutate runs a mutation and turns its userErrors into a permanent error.
func (s *Sink) mutate(ctx context.Context, mutation, field string, vars map[string]any) error {
	data, err := s.conn.do(ctx, mutation, vars)
	if err != nil {
		return err
	}
	var root map[string]struct {
		UserErrors []struct {
			Field   []string `json:"field"`
			Message string   `json:"message"`
		} `json:"userErrors"`
	}
	if err := json.Unmarshal(data, &root); err != nil {
		return connectors.Permanent(fmt.Errorf("shopify %s: unexpected response: %w", field, err))
	}
	payload, ok := root[field]
	if !ok {
		return connectors.Permanent(fmt.Errorf("shopify %s: response has no %s payload", field, field))
	}
	if len(payload.UserErrors) > 0 {
		ms := make([]string, 0, len(payload.UserErrors))
		for _, ue := range payload.UserErrors {
			m := ue.Message
			if len(ue.Field) > 0 {
				m = strings.Join(ue.Field, ".") + ": " + m
			}
			ms = append(ms, m)
		}
		return connectors.Permanent(fmt.Errorf("shopify %s: %s", field, strings.Join(ms, "; ")))
	}
	return nil
}

// gid returns v as a global id of kind: a gid string is kept, a numeric id
// (number or digits) becomes gid://shopify/<kind>/<n>; nil or "" is "".
func gid(v any, kind string) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", nil
	case string:
		x = strings.TrimSpace(x)
		if x == "" || strings.HasPrefix(x, "gid://") {
			return x, nil
		}
		if _, err := strconv.ParseUint(x, 10, 64); err == nil {
			return "gid://shopify/" + kind + "/" + x, nil
		}
	case int64:
		return "gid://shopify/" + kind + "/" + strconv.FormatInt(x, 10), nil
	case int:
		return "gid://shopify/" + kind + "/" + strconv.Itoa(x), nil
	case json.Number:
		if _, err := strconv.ParseUint(string(x), 10, 64); err == nil {
			return "gid://shopify/" + kind + "/" + string(x), nil
		}
	case float64:
		// Exact only below 2^53; larger ids have already lost digits.
		if x == float64(int64(x)) && x >= 0 && x < 1<<53 {
			return "gid://shopify/" + kind + "/" + strconv.FormatInt(int64(x), 10), nil
		}
	}
	return "", connectors.Permanent(fmt.Errorf("shopify: %v is not a %s id (a gid://shopify/%s/… string or an integer)", v, kind, kind))
}

func toInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case int:
		return int64(x), true
	case float64:
		if x == float64(int64(x)) {
			return int64(x), true
		}
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		return n, err == nil
	case json.Number:
		n, err := x.Int64()
		return n, err == nil
	}
	return 0, false
}
