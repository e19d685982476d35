package shopify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/zclconf/go-cty/cty"

	"github.com/ferryhq/ferry/connectors"
	"github.com/ferryhq/ferry/connectors/shopify/internal/gql"
)

// resource is one readable connection of the Admin API.
type resource struct {
	// name is the resource's name in a source block (set by init).
	name string
	// field is the query root field and the key under data.
	field string
	// typ is the GraphQL type of a node, for follow-up queries on node(id:).
	typ string
	// sortable says whether the field takes sortKey: UPDATED_AT.
	sortable bool
	// selection is the node's selection set, without its nested connections.
	selection string
	// nested are the node's connections, selected after selection.
	nested []nested

	// maxPage is the largest page size whose query Shopify accepts; it is also
	// the default. Set by init from the query's requested cost.
	maxPage int
}

// nested is a connection inside a node (a product's variants). The page query
// asks for its first `first` nodes, few enough for useful page sizes; a node
// that has more gets them from follow-up queries before it is emitted.
type nested struct {
	field string
	first int
	// selection is one nested node's selection set.
	selection string

	// more is the follow-up query and moreFirst its page size (set by init).
	more      string
	moreFirst int
}

// The nested firsts trade page size against follow-up queries: every nested
// node the page query may return counts in its cost, whether or not it exists.
// Most products have few variants, orders few line items and shops few
// locations, so these leave pages of 18, 15 and 28 that rarely need more.
var resources = map[string]*resource{
	"products": {field: "products", typ: "Product", sortable: true, selection: `
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
        }`,
		nested: []nested{{field: "variants", first: 25, selection: `
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
            updatedAt`}}},
	"orders": {field: "orders", typ: "Order", sortable: true, selection: `
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
        }`,
		nested: []nested{{field: "lineItems", first: 10, selection: `
            id
            name
            sku
            quantity
            currentQuantity
            originalUnitPriceSet { shopMoney { amount currencyCode } }
            product { id }
            variant { id }`}}},
	"customers": {field: "customers", typ: "Customer", sortable: true, selection: `
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
	"inventory_items": {field: "inventoryItems", typ: "InventoryItem", sortable: false, selection: `
        id
        legacyResourceId
        sku
        tracked
        requiresShipping
        createdAt
        updatedAt
        unitCost { amount currencyCode }
        variant { id }`,
		nested: []nested{{field: "inventoryLevels", first: 10, selection: `
            id
            location { id name }
            quantities(names: ["available", "on_hand", "committed"]) { name quantity }`}}},
}

// resourceNames lists the resources for messages, in a stable order.
var resourceNames = []string{"products", "orders", "customers", "inventory_items"}

func init() {
	for _, name := range resourceNames {
		r := resources[name]
		r.name = name
		// The queries are constants of this package: one that cannot be costed
		// or does not fit even one node is a bug that any test run reports.
		r.maxPage = largestFitting(name+" page query", r.buildQuery(), func(n int) map[string]any { return map[string]any{"first": n} })
		for i := range r.nested {
			nc := &r.nested[i]
			nc.more = r.moreQuery(*nc)
			nc.moreFirst = largestFitting(name+" "+nc.field+" follow-up query", nc.more, func(n int) map[string]any {
				return map[string]any{"id": "gid://shopify/" + r.typ + "/1", "first": n}
			})
		}
	}
}

// largestFitting returns the largest first (at most gql.MaxPage) for which
// query's requested cost is within Shopify's limit. Cost grows with first, so
// a binary search finds it.
func largestFitting(what, query string, vars func(int) map[string]any) int {
	fits := func(n int) bool {
		c, err := gql.RequestedCost(query, vars(n))
		if err != nil {
			panic(fmt.Sprintf("shopify: %s: %v", what, err))
		}
		return c <= gql.MaxCost
	}
	if !fits(1) {
		panic(fmt.Sprintf("shopify: %s costs more than %d points for a single node", what, gql.MaxCost))
	}
	lo, hi := 1, gql.MaxPage // fits(lo) holds
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if fits(mid) {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

// connectionSelection selects a nested connection's first nodes and whether
// there are more.
func (n nested) connectionSelection(args string) string {
	return fmt.Sprintf(`
        %s(%s) {
          nodes {%s
          }
          pageInfo {
            hasNextPage
            endCursor
          }
        }`, n.field, args, n.selection)
}

// buildQuery returns the paginated query of r.
func (r *resource) buildQuery() string {
	sort := ""
	if r.sortable {
		sort = ", sortKey: UPDATED_AT"
	}
	sel := r.selection
	for _, n := range r.nested {
		sel += n.connectionSelection(fmt.Sprintf("first: %d", n.first))
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
}`, r.field, sort, sel)
}

// moreQuery returns the query that reads the rest of a node's nested
// connection, after the cursor its last page ended at.
func (r *resource) moreQuery(n nested) string {
	return fmt.Sprintf(`query FerryReadMore($id: ID!, $first: Int!, $after: String) {
  node(id: $id) {
    ... on %s {%s
    }
  }
}`, r.typ, n.connectionSelection("first: $first, after: $after"))
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
	res      *resource
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
	size := res.maxPage
	if sc.PageSize != nil {
		size = *sc.PageSize
	}
	if err := res.checkPageSize(size); err != nil {
		return nil, connectors.Permanent(err)
	}
	return &Source{conn: c, name: name, res: res, pageSize: size, query: strings.TrimSpace(str(sc.Query))}, nil
}

// checkPageSize refuses a page size whose query Shopify would refuse, naming
// the largest it accepts.
func (r *resource) checkPageSize(size int) error {
	if size < 1 {
		return fmt.Errorf("shopify source: page_size %d must be at least 1; for %s it can be at most %d (the default)", size, strconv.Quote(r.name), r.maxPage)
	}
	if size <= r.maxPage {
		return nil
	}
	why := fmt.Sprintf("Shopify returns at most %d nodes per page", gql.MaxPage)
	if size <= gql.MaxPage {
		cost, err := gql.RequestedCost(r.buildQuery(), map[string]any{"first": size})
		if err != nil {
			return fmt.Errorf("shopify source: page_size %d: %w", size, err)
		}
		why = fmt.Sprintf("a page of %d would request %d query cost points and Shopify refuses a query above %d", size, cost, gql.MaxCost)
	}
	return fmt.Errorf("shopify source: page_size %d is too large for %s: %s; use page_size %d or less (%d is the default)", size, strconv.Quote(r.name), why, r.maxPage, r.maxPage)
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

type pageInfo struct {
	HasNextPage bool    `json:"hasNextPage"`
	EndCursor   *string `json:"endCursor"`
}

type page struct {
	Edges []struct {
		Node json.RawMessage `json:"node"`
	} `json:"edges"`
	PageInfo pageInfo `json:"pageInfo"`
}

// nestedPage is one page of a nested connection.
type nestedPage struct {
	Nodes    []json.RawMessage `json:"nodes"`
	PageInfo pageInfo          `json:"pageInfo"`
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
	query := s.res.buildQuery()
	vars := map[string]any{"first": s.pageSize, "after": nil, "query": nil}
	if search != "" {
		vars["query"] = search
	}
	for n := 1; ; n++ {
		data, err := s.conn.do(ctx, query, vars)
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
			if len(s.res.nested) > 0 {
				if rec.Raw, err = s.complete(ctx, e.Node, rec.Position); err != nil {
					return err
				}
			}
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

// complete reads the rest of node's nested connections and returns the node
// with each of them as {"nodes": [every node]}: what a record held when a
// page query returned them all, without the pageInfo used to get there.
func (s *Source) complete(ctx context.Context, node json.RawMessage, pos string) (json.RawMessage, error) {
	// A node that is no object, or a nested field that is no connection, has
	// nothing to page: it goes on as it is, for decoding to report on the
	// record alone.
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(node, &fields); err != nil || fields == nil {
		return node, nil
	}
	changed := false
	for _, nc := range s.res.nested {
		raw, ok := fields[nc.field]
		if !ok {
			continue
		}
		var c nestedPage
		if err := json.Unmarshal(raw, &c); err != nil || bytes.Equal(raw, []byte("null")) {
			continue
		}
		for c.PageInfo.HasNextPage {
			more, err := s.more(ctx, fields["id"], nc, c.PageInfo.EndCursor, pos)
			if err != nil {
				return nil, err
			}
			c.Nodes = append(c.Nodes, more.Nodes...)
			c.PageInfo = more.PageInfo
		}
		if c.Nodes == nil {
			c.Nodes = []json.RawMessage{}
		}
		b, err := marshal(struct {
			Nodes []json.RawMessage `json:"nodes"`
		}{c.Nodes})
		if err != nil {
			return nil, connectors.Permanent(fmt.Errorf("shopify %s: record %s: %w", s.name, pos, err))
		}
		fields[nc.field] = b
		changed = true
	}
	if !changed {
		return node, nil
	}
	return marshal(fields)
}

// more reads the page of a node's nested connection that follows after.
func (s *Source) more(ctx context.Context, rawID json.RawMessage, nc nested, after *string, pos string) (nestedPage, error) {
	var id string
	if err := json.Unmarshal(rawID, &id); err != nil || id == "" {
		return nestedPage{}, connectors.Permanent(fmt.Errorf("shopify %s: record %s has more %s but no id to read them by", s.name, pos, nc.field))
	}
	if after == nil || *after == "" {
		return nestedPage{}, connectors.Permanent(fmt.Errorf("shopify %s: %s of %s: hasNextPage without an endCursor", s.name, nc.field, id))
	}
	data, err := s.conn.do(ctx, nc.more, map[string]any{"id": id, "first": nc.moreFirst, "after": *after})
	if err != nil {
		return nestedPage{}, fmt.Errorf("%s: %s of %s: %w", s.name, nc.field, id, err)
	}
	var resp struct {
		Node map[string]json.RawMessage `json:"node"`
	}
	if err := json.Unmarshal(data, &resp); err != nil {
		return nestedPage{}, connectors.Permanent(fmt.Errorf("shopify %s: %s of %s: unexpected data: %w", s.name, nc.field, id, err))
	}
	if resp.Node == nil {
		// Deleted since the page was read: a new read will not list it.
		return nestedPage{}, connectors.Transient(fmt.Errorf("shopify %s: %s was deleted while its %s were read", s.name, id, nc.field), 0)
	}
	var p nestedPage
	if err := json.Unmarshal(resp.Node[nc.field], &p); err != nil {
		return nestedPage{}, connectors.Permanent(fmt.Errorf("shopify %s: %s of %s: unexpected data: %w", s.name, nc.field, id, err))
	}
	if p.PageInfo.HasNextPage && p.PageInfo.EndCursor != nil && *p.PageInfo.EndCursor == *after {
		return nestedPage{}, connectors.Permanent(fmt.Errorf("shopify %s: %s of %s: the next page starts where the last one did (cursor %q)", s.name, nc.field, id, *after))
	}
	return p, nil
}

// marshal encodes v as compact JSON, leaving <, > and & as they are (product
// descriptions are HTML).
func marshal(v any) (json.RawMessage, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
