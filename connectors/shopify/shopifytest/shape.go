package shopifytest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/ferryhq/ferry/connectors/shopify/internal/gql"
)

// Nodes hold their nested connections as {"nodes": [every node]} (the shape
// of the fixtures and of Put); an answer pages them the way Shopify does.

// shapeConnection shapes the nodes of a root connection's page.
func shapeConnection(root *gql.Field, vars map[string]any, page map[string]any, typ string) error {
	edges, _ := page["edges"].([]any)
	for _, e := range edges {
		em, _ := e.(map[string]any)
		for _, sel := range root.NodeSelections() {
			if node, ok := em["node"].(map[string]any); ok {
				if err := shape(sel, vars, node, typ); err != nil {
					return err
				}
			}
		}
	}
	nodes, _ := page["nodes"].([]any)
	for _, n := range nodes {
		for _, sel := range root.NodeSelections() {
			if node, ok := n.(map[string]any); ok {
				if err := shape(sel, vars, node, typ); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// shape pages, in place, the nested connections that sel selects of node (of
// GraphQL type typ, "" when unknown), at any depth.
func shape(sel []*gql.Field, vars map[string]any, node map[string]any, typ string) error {
	for _, f := range sel {
		if f.Name == "" {
			if f.On == typ || typ == "" {
				if err := shape(f.Selection, vars, node, typ); err != nil {
					return err
				}
			}
			continue
		}
		if f.Selection == nil {
			continue
		}
		v, has := node[f.Name]
		if f.IsConnection() {
			c, err := pageNested(f, vars, v)
			if err != nil {
				return err
			}
			node[f.Key()] = c
			continue
		}
		if !has {
			continue
		}
		switch x := v.(type) {
		case map[string]any:
			if err := shape(f.Selection, vars, x, ""); err != nil {
				return err
			}
		case []any:
			for _, e := range x {
				if m, ok := e.(map[string]any); ok {
					if err := shape(f.Selection, vars, m, ""); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// nestedCursor is what a nested connection's cursor holds: a node's index.
type nestedCursor struct {
	Index int `json:"index"`
}

func encodeNestedCursor(i int) string {
	b, _ := json.Marshal(nestedCursor{i})
	return base64.StdEncoding.EncodeToString(b)
}

// pageNested returns the page of stored connection v (nodes or edges) that f
// asks for by first and after.
func pageNested(f *gql.Field, vars map[string]any, v any) (map[string]any, error) {
	stored, _ := v.(map[string]any)
	var all []any
	if nodes, ok := stored["nodes"].([]any); ok {
		all = nodes
	} else if edges, ok := stored["edges"].([]any); ok {
		for _, e := range edges {
			em, _ := e.(map[string]any)
			all = append(all, em["node"])
		}
	}
	if _, ok := f.Args["last"]; ok {
		return nil, gqlError(fmt.Sprintf("shopifytest: %s(last:) is not supported; use first", f.Name), "BAD_REQUEST")
	}
	first, err := f.Size(vars)
	if err != nil {
		return nil, gqlError(err.Error(), "BAD_REQUEST")
	}
	start := 0
	if after, _ := f.Arg("after", vars); after != nil {
		raw, err := base64.StdEncoding.DecodeString(fmt.Sprint(after))
		var c nestedCursor
		if err != nil || json.Unmarshal(raw, &c) != nil || c.Index < 0 || c.Index >= len(all) {
			return nil, gqlError("Invalid cursor for current pagination.", "BAD_REQUEST")
		}
		start = c.Index + 1
	}
	end := min(start+first, len(all))
	nodes := make([]any, 0, end-start)
	edges := make([]any, 0, end-start)
	for i := start; i < end; i++ {
		n := cloneValue(all[i])
		if m, ok := n.(map[string]any); ok {
			for _, sel := range f.NodeSelections() {
				if err := shape(sel, vars, m, ""); err != nil {
					return nil, err
				}
			}
		}
		nodes = append(nodes, n)
		edges = append(edges, map[string]any{"cursor": encodeNestedCursor(i), "node": n})
	}
	var startCursor, endCursor any
	if end > start {
		startCursor, endCursor = encodeNestedCursor(start), encodeNestedCursor(end-1)
	}
	out := map[string]any{}
	if nf := f.Child("nodes"); nf != nil {
		out[nf.Key()] = nodes
	}
	if ef := f.Child("edges"); ef != nil {
		out[ef.Key()] = edges
	}
	if pf := f.Child("pageInfo"); pf != nil {
		out[pf.Key()] = map[string]any{
			"hasNextPage": end < len(all), "hasPreviousPage": start > 0,
			"startCursor": startCursor, "endCursor": endCursor,
		}
	}
	return out, nil
}

// project keeps of node what sel selects at its top level (of type typ), as
// Shopify answers a node(id:) query.
func project(sel []*gql.Field, typ string, node map[string]any) map[string]any {
	out := map[string]any{}
	for _, f := range sel {
		if f.Name == "" {
			if f.On == typ {
				for k, v := range project(f.Selection, typ, node) {
					out[k] = v
				}
			}
			continue
		}
		if f.Name == "__typename" {
			out[f.Key()] = typ
			continue
		}
		out[f.Key()] = node[f.Name]
	}
	return out
}

// Enforce applies Shopify's query rules to a canned answer, for fakes that
// answer from fixtures: a query Shopify would refuse for its cost gets the
// MAX_COST_EXCEEDED answer instead, one that does not parse a syntax error,
// and the nested connections of a successful query's data are paged per
// their first and after, with the pageInfo the query selects. Other answers
// (mutations, errors, non-JSON bodies) are returned as they are.
func Enforce(query string, vars map[string]any, status int, body []byte) (int, []byte) {
	op, err := gql.Parse(query)
	if err != nil {
		return http.StatusOK, encode(gqlError(err.Error(), ""))
	}
	requested, err := op.Cost(vars, nil)
	if err != nil {
		return http.StatusOK, encode(gqlError(err.Error(), "BAD_REQUEST"))
	}
	if requested > gql.MaxCost {
		return http.StatusOK, encode(maxCostExceeded(requested))
	}
	if op.Type != "query" || status != http.StatusOK {
		return status, body
	}
	var answer map[string]any
	if decode(body, &answer) != nil {
		return status, body
	}
	data, _ := answer["data"].(map[string]any)
	if data == nil {
		return status, body
	}
	for _, root := range op.Fields {
		v, _ := data[root.Key()].(map[string]any)
		if v == nil || root.Selection == nil {
			continue
		}
		if root.IsConnection() {
			err = shapeConnection(root, vars, v, connections[root.Name])
		} else {
			err = shape(root.Selection, vars, v, typeOf(v))
		}
		if e, ok := err.(gqlErr); ok {
			return http.StatusOK, encode(e)
		}
	}
	return status, encode(answer)
}

// typeOf reads a node's type from its gid (gid://shopify/Product/1).
func typeOf(node map[string]any) string {
	id, _ := node["id"].(string)
	const prefix = "gid://shopify/"
	if len(id) <= len(prefix) || id[:len(prefix)] != prefix {
		return ""
	}
	rest := id[len(prefix):]
	for i := range len(rest) {
		if rest[i] == '/' {
			return rest[:i]
		}
	}
	return ""
}

// encode writes v as JSON the way the server does.
func encode(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return []byte(`{"errors":[{"message":` + strconv.Quote("shopifytest: "+err.Error()) + `}]}`)
	}
	return b.Bytes()
}
