package gql

import (
	"encoding/json"
	"strings"
	"testing"
)

// The expected costs are worked out by hand from Shopify's documented rules.
func TestRequestedCost(t *testing.T) {
	cases := []struct {
		name  string
		query string
		vars  map[string]any
		want  int
	}{
		{"object", `{ shop { name } }`, nil, 1},
		{"scalars are free", `query { shop { name id currencyCode } }`, nil, 1},
		{"connection", `query { products(first: 3) { edges { cursor node { id } } pageInfo { hasNextPage endCursor } } }`, nil, 2 + 3},
		{"variable from JSON", `query Q($first: Int!, $after: String) { products(first: $first, after: $after) { nodes { id } } }`,
			map[string]any{"first": float64(10), "after": nil}, 2 + 10},
		{"json.Number", `query Q($first: Int!) { products(first: $first) { nodes { id } } }`,
			map[string]any{"first": json.Number("10")}, 12},
		{"last", `{ orders(last: 4) { nodes { id } } }`, nil, 6},
		{"objects in a node", `{ orders(first: 2) { nodes { id customer { id } totalPriceSet { shopMoney { amount } } } } }`, nil, 2 + 2*(1+1+2)},
		// The query the connector used to send for products: ≈10,000 points.
		{"nested connections multiply", `{ products(first: 50) { edges { node { id options { name } variants(first: 100) { nodes { id inventoryItem { id } } } } } } }`,
			nil, 2 + 50*(1+1+2+100*(1+1))},
		{"interface: dearest fragment", `query Q($id: ID!) { node(id: $id) { id ... on Product { variants(first: 250) { nodes { id } } } ... on Order { lineItems(first: 10) { nodes { id } } } } }`,
			map[string]any{"id": "gid://shopify/Product/1"}, 1 + 2 + 250},
		{"two root fields", `{ shop { name } customers(first: 5) { nodes { id amountSpent { amount } } } }`, nil, 1 + 2 + 5*2},
		{"mutation", `mutation M($product: ProductUpdateInput!) { productUpdate(product: $product) { product { id } userErrors { field message } } }`, nil, MutationCost},
		{"arguments of every kind", `{ inventoryItems(first: 1, query: "sku:\"A\"", reverse: true, sortKey: ID) { nodes { quantities(names: ["available", "on_hand"]) { name } } } }`, nil, 2 + 1*(1+1)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := RequestedCost(tc.query, tc.vars)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("cost = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestActualCost(t *testing.T) {
	op, err := Parse(`{ products(first: 50) { edges { node { id variants(first: 25) { nodes { id inventoryItem { id } } pageInfo { hasNextPage } } } } } }`)
	if err != nil {
		t.Fatal(err)
	}
	var data any
	if err := json.Unmarshal([]byte(`{"products": {"edges": [
		{"node": {"id": "1", "variants": {"nodes": [{"id": "a", "inventoryItem": {"id": "i"}}, {"id": "b", "inventoryItem": null}]}}},
		{"node": {"id": "2", "variants": {"nodes": []}}}
	]}}`), &data); err != nil {
		t.Fatal(err)
	}
	got, err := op.Cost(nil, data)
	if err != nil {
		t.Fatal(err)
	}
	// products 2; product 1: 1 + variants (2 + (1+1) + (1+0)); product 2: 1 + variants 2.
	if want := 2 + (1 + 2 + 2 + 1) + (1 + 2); got != want {
		t.Errorf("actual = %d, want %d", got, want)
	}
	requested, _ := op.Cost(nil, nil)
	if requested != 2+50*(1+2+25*2) {
		t.Errorf("requested = %d", requested)
	}
}

func TestCostErrors(t *testing.T) {
	cases := []struct {
		query string
		vars  map[string]any
		want  string
	}{
		{`query Q($first: Int!) { products(first: $first) { nodes { id } } }`, nil, "products(first: $first): the variable is not given"},
		{`{ products(first: 251) { nodes { id } } }`, nil, "between 0 and 250"},
		{`query Q($first: Int!) { products(first: $first) { nodes { id } } }`, map[string]any{"first": 2.5}, "must be an integer"},
		{`{ products { nodes { id } } }`, nil, "connection products needs a first or last argument"},
		{`{ products(first: 1) { nodes { id }`, nil, "graphql 1:36: expected a field, found the end of the document"},
		{"{\n  shop {\n    name(\n  }\n}", nil, "graphql 4:3: expected an argument name"},
		{`{ shop { ...ShopFields } }`, nil, "named fragments are not supported"},
		{`{ shop @include(if: true) { name } }`, nil, "directives are not supported"},
		{`{ shop { name } } fragment X on Shop { id }`, nil, "named fragments are not supported"},
		{`{ shop { name(x: "open) } }`, nil, "unterminated string"},
		{`{ shop { } }`, nil, "empty selection set"},
		{`{ shop { name } } }`, nil, "expected the end of the document"},
		{`{ shop { na%me } }`, nil, "unexpected character '%'"},
		{`query ($a: Int { shop { name } }`, nil, "unterminated variable definitions"},
		{strings.Repeat("{ a ", 100) + strings.Repeat("}", 100), nil, "nested more than 64 deep"},
	}
	for _, tc := range cases {
		_, err := RequestedCost(tc.query, tc.vars)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %q", tc.query, err, tc.want)
		}
	}
}

func TestParseShape(t *testing.T) {
	op, err := Parse(`# comment
query FerryMore($id: ID!, $after: String = null) {
  item: node(id: $id) { ... on Product { variants(first: 2, after: $after) { nodes { id } } } }
}`)
	if err != nil {
		t.Fatal(err)
	}
	if op.Type != "query" || op.Name != "FerryMore" || len(op.Fields) != 1 {
		t.Fatalf("op = %+v", op)
	}
	node := op.Fields[0]
	if node.Key() != "item" || node.Name != "node" || node.Args["id"] != Var("id") {
		t.Errorf("node = %+v", node)
	}
	if v, ok := node.Arg("id", map[string]any{"id": "gid://shopify/Product/1"}); !ok || v != "gid://shopify/Product/1" {
		t.Errorf("id = %v %v", v, ok)
	}
	frag := node.Selection[0]
	if frag.Name != "" || frag.On != "Product" {
		t.Fatalf("fragment = %+v", frag)
	}
	variants := frag.Child("variants")
	if !variants.IsConnection() || len(variants.NodeSelections()) != 1 {
		t.Errorf("variants = %+v", variants)
	}
	if n, err := variants.Size(nil); n != 2 || err != nil {
		t.Errorf("size = %d %v", n, err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{ shop { name } }`,
		`query Q($first: Int!) { products(first: $first, query: "a:b") { edges { node { id v(first: 2) { nodes { id } } } } } }`,
		`mutation { productUpdate(product: {id: "1", tags: ["a"]}) { product { id } } }`,
		`{ node(id: "x") { ... on Product { id } } }`,
		`{ a(x: -1.5e3, y: """block""") { b } }`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, query string) {
		op, err := Parse(query)
		if err != nil {
			return
		}
		// Costing never panics, whatever parsed.
		op.Cost(map[string]any{"first": 3}, nil)
	})
}
