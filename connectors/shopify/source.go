package shopify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/zclconf/go-cty/cty"

	"github.com/ferryhq/ferry/connectors"
)

// resource is one readable connection of the Admin API.
type resource struct {
	// field is the query root field and the key under data.
	field string
	// sortable says whether the field takes sortKey: UPDATED_AT.
	sortable bool
	// selection is the node's selection set.
	selection string
}

var resources = map[string]resource{
	"products": {field: "products", sortable: true, selection: `
        id
        legacyResourceId
        title
        handle
        status
        vendor
        productType
        tags
        descriptionHtml
        createdAt
        updatedAt
        publishedAt
        options {
          name
          values
        }
        variants(first: 100) {
          nodes {
            id
            legacyResourceId
            title
            sku
            barcode
            price
            compareAtPrice
            inventoryQuantity
            inventoryItem {
              id
            }
            updatedAt
          }
        }`},
	"orders": {field: "orders", sortable: true, selection: `
        id
        legacyResourceId
        name
        email
        createdAt
        updatedAt
        processedAt
        cancelledAt
        closedAt
        test
        tags
        currencyCode
        presentmentCurrencyCode
        displayFinancialStatus
        displayFulfillmentStatus
        subtotalPriceSet { shopMoney { amount currencyCode } presentmentMoney { amount currencyCode } }
        totalTaxSet { shopMoney { amount currencyCode } presentmentMoney { amount currencyCode } }
        totalShippingPriceSet { shopMoney { amount currencyCode } presentmentMoney { amount currencyCode } }
        totalPriceSet { shopMoney { amount currencyCode } presentmentMoney { amount currencyCode } }
        customer {
          id
          legacyResourceId
        }
        lineItems(first: 100) {
          nodes {
            id
            name
            sku
            quantity
            currentQuantity
            originalUnitPriceSet { shopMoney { amount currencyCode } }
            product { id }
            variant { id }
          }
        }`},
	"customers": {field: "customers", sortable: true, selection: `
        id
        legacyResourceId
        firstName
        lastName
        displayName
        email
        phone
        state
        tags
        note
        verifiedEmail
        taxExempt
        numberOfOrders
        amountSpent { amount currencyCode }
        createdAt
        updatedAt`},
	// inventoryItems takes no sortKey: its watermark is the largest updatedAt
	// seen, which the runtime keeps as the cursor.
	"inventory_items": {field: "inventoryItems", sortable: false, selection: `
        id
        legacyResourceId
        sku
        tracked
        requiresShipping
        createdAt
        updatedAt
        unitCost { amount currencyCode }
        variant { id }
        inventoryLevels(first: 50) {
          nodes {
            id
            location { id name }
            quantities(names: ["available", "on_hand", "committed"]) { name quantity }
          }
        }`},
}

// buildQuery returns the paginated query of r.
func (r resource) buildQuery() string {
	sort := ""
	if r.sortable {
		sort = ", sortKey: UPDATED_AT"
	}
	return fmt.Sprintf(`query FerryRead($first: Int!, $after: String, $query: String) {
  %s(first: $first, after: $after, query: $query%s) {
    edges {
      node {%s
      }
    }
    pageInfo {
      hasNextPage
      endCursor
    }
  }
}`, r.field, sort, r.selection)
}

type sourceConfig struct {
	Resource *string `cty:"resource"`
	PageSize *int    `cty:"page_size"`
	Query    *string `cty:"query"`
}

// Source reads one resource.
type Source struct {
	conn     *Connection
	name     string
	res      resource
	pageSize int
	query    string
}

var _ connectors.Source = (*Source)(nil)

// Source opens a source of the resource in cfg.
func (c *Connection) Source(cfg cty.Value) (connectors.Source, error) {
	var sc sourceConfig
	if err := decode(cfg, &sc, "source"); err != nil {
		return nil, err
	}
	name := str(sc.Resource)
	res, ok := resources[name]
	if !ok {
		return nil, connectors.Permanent(fmt.Errorf(`shopify source: resource %q is not one of "products", "orders", "customers", "inventory_items"`, name))
	}
	size := defaultPageSize
	if sc.PageSize != nil {
		size = *sc.PageSize
	}
	if size < 1 || size > maxPageSize {
		return nil, connectors.Permanent(fmt.Errorf("shopify source: page_size %d must be between 1 and %d", size, maxPageSize))
	}
	return &Source{conn: c, name: name, res: res, pageSize: size, query: strings.TrimSpace(str(sc.Query))}, nil
}

// searchQuery combines the configured search with the watermark.
func (s *Source) searchQuery(cursor string) (string, error) {
	var parts []string
	if s.query != "" {
		parts = append(parts, "("+s.query+")")
	}
	if cursor != "" {
		if strings.ContainsAny(cursor, `'\`) {
			return "", connectors.Permanent(fmt.Errorf("shopify source: cursor %q is not a timestamp", cursor))
		}
		parts = append(parts, "updated_at:>'"+cursor+"'")
	}
	return strings.Join(parts, " AND "), nil
}

type page struct {
	Edges []struct {
		Node json.RawMessage `json:"node"`
	} `json:"edges"`
	PageInfo struct {
		HasNextPage bool    `json:"hasNextPage"`
		EndCursor   *string `json:"endCursor"`
	} `json:"pageInfo"`
}

// Read emits every node of the resource updated after req.Cursor, page by page.
func (s *Source) Read(ctx context.Context, req connectors.ReadRequest, emit func(connectors.Record) error) error {
	alias := ""
	switch req.CursorField {
	case "", DefaultCursorField:
	case "updated_at":
		alias = "updated_at"
	default:
		return connectors.Permanent(fmt.Errorf("shopify source: cursor field %q is not supported; use %q", req.CursorField, DefaultCursorField))
	}
	search, err := s.searchQuery(req.Cursor)
	if err != nil {
		return err
	}
	gql := s.res.buildQuery()
	vars := map[string]any{"first": s.pageSize, "after": nil, "query": nil}
	if search != "" {
		vars["query"] = search
	}
	for n := 1; ; n++ {
		data, err := s.conn.do(ctx, gql, vars)
		if err != nil {
			return fmt.Errorf("%s page %d: %w", s.name, n, err)
		}
		var root map[string]json.RawMessage
		if err := json.Unmarshal(data, &root); err != nil {
			return connectors.Permanent(fmt.Errorf("shopify %s page %d: unexpected data: %w", s.name, n, err))
		}
		var p page
		if err := json.Unmarshal(root[s.res.field], &p); err != nil {
			return connectors.Permanent(fmt.Errorf("shopify %s page %d: unexpected data: %w", s.name, n, err))
		}
		for i, e := range p.Edges {
			rec := connectors.Record{Raw: e.Node, Position: fmt.Sprintf("shopify %s page %d #%d", s.name, n, i+1)}
			if alias != "" {
				if err := rec.Decode(); err != nil {
					return err
				}
				rec.Raw = nil
				rec.Data[alias] = rec.Data[DefaultCursorField]
			}
			if err := emit(rec); err != nil {
				return err
			}
		}
		if !p.PageInfo.HasNextPage {
			return nil
		}
		if p.PageInfo.EndCursor == nil || *p.PageInfo.EndCursor == "" {
			return connectors.Permanent(errors.New("shopify " + s.name + ": hasNextPage without an endCursor"))
		}
		vars["after"] = *p.PageInfo.EndCursor
	}
}
