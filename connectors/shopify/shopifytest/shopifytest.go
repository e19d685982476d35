// Package shopifytest is a fake Shopify GraphQL Admin API for tests: an
// httptest server that answers the queries and mutations of ferry's shopify
// connector the way Shopify does.
//
// It serves products, orders, customers and inventory items with cursor
// pagination (edges, pageInfo.hasNextPage/endCursor), filters them by the
// `updated_at:>'…'` search the connector sends for incremental reads, sorts by
// UPDATED_AT when asked, and reports extensions.cost with a leaky bucket: when
// the bucket cannot hold a query's requested cost, the answer is Shopify's
// THROTTLED error. It checks the X-Shopify-Access-Token header (401 like
// Shopify otherwise), applies and records productCreate, productUpdate and
// inventorySetQuantities mutations, and can be told to fail the next requests.
//
//	shop := shopifytest.Start(t, shopifytest.Options{})
//	shop.Put("products", shopifytest.SampleProducts()...)
//	// connection: store = shopifytest.Store, token = shopifytest.Token, base_url = shop.URL
//
// Queries are costed the way Shopify does (objects 1, connections
// 2 + first × node, nested connections multiplied; a mutation 10): a query
// requesting more than 1,000 points is refused with MAX_COST_EXCEEDED; one runs
// when the bucket holds its requested cost and is charged its actual cost (what
// it returned). Nested connections are paged per their first and after, with
// pageInfo, and node(id:) answers the follow-up queries for a node's further
// nested pages. The bucket restores at a Shopify Plus shop's 1,000 points a
// second, so that a throttled test waits about a second, not ten.
package shopifytest

import (
	"bytes"
	"cmp"
	"embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/connectors/shopify/internal/gql"
)

// Defaults of Options, and the store of the fixtures.
const (
	Token       = "shpat_test"
	APIVersion  = "2025-07"
	Store       = "acme-apparel.myshopify.com"
	ShopName    = "Acme Apparel"
	Bucket      = 20000.0
	RestoreRate = 1000.0
	// MutationCost is what one mutation requests and is charged.
	MutationCost = 10
)

// Options configure a fake shop. Zero values take the defaults above.
type Options struct {
	// Token is the access token the shop accepts.
	Token string
	// APIVersion is the version in the endpoint path /admin/api/<v>/graphql.json.
	APIVersion string
	// ShopName answers { shop { name } }.
	ShopName string
	// Bucket (maximumAvailable) and RestoreRate (points per second) shape the
	// cost bucket, which starts full.
	Bucket, RestoreRate float64
	// ThrottleStatus is the HTTP status of a THROTTLED answer: 200 (default) or
	// 429 — Shopify is documented with both.
	ThrottleStatus int
	// Now is the clock for the bucket's refill and for updatedAt of mutated
	// records (default time.Now).
	Now func() time.Time
}

// Request is one request the shop received.
type Request struct {
	Path      string
	Token     string
	Query     string
	Variables map[string]any
	// Status is the HTTP status answered; Throttled says the answer was THROTTLED.
	Status    int
	Throttled bool
}

// Mutation is one mutation the shop applied (or refused with userErrors).
type Mutation struct {
	// Name is the mutation's root field: productCreate, productUpdate or
	// inventorySetQuantities.
	Name      string
	Variables map[string]any
	// UserErrors are the messages answered; none when the mutation was applied.
	UserErrors []string
}

// Server is a running fake shop. Its methods are safe for concurrent use.
type Server struct {
	// URL is the server's base URL: the shopify connection's base_url.
	URL string

	opts Options
	srv  *httptest.Server

	mu        sync.Mutex
	nodes     map[string][]map[string]any // by GraphQL root field
	available float64
	refilled  time.Time
	requests  []Request
	mutations []Mutation
	faults    []fault
	nextID    int64
}

// rawBody is an answer written as it is (FailNext's body).
type rawBody string

type fault struct {
	status int
	body   string
}

// New starts a fake shop; Close stops it.
func New(opts Options) *Server {
	if opts.Token == "" {
		opts.Token = Token
	}
	if opts.APIVersion == "" {
		opts.APIVersion = APIVersion
	}
	if opts.ShopName == "" {
		opts.ShopName = ShopName
	}
	if opts.Bucket <= 0 {
		opts.Bucket = Bucket
	}
	if opts.RestoreRate <= 0 {
		opts.RestoreRate = RestoreRate
	}
	if opts.ThrottleStatus == 0 {
		opts.ThrottleStatus = http.StatusOK
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{opts: opts, nodes: map[string][]map[string]any{}, available: opts.Bucket, refilled: opts.Now(), nextID: 9100000000000}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	s.URL = s.srv.URL
	return s
}

// Start is New for a test: the shop stops when the test ends.
func Start(t testing.TB, opts Options) *Server {
	s := New(opts)
	t.Cleanup(s.Close)
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Endpoint is the GraphQL endpoint's path.
func (s *Server) Endpoint() string { return "/admin/api/" + s.opts.APIVersion + "/graphql.json" }

// rootFields maps the connector's resource names to the query root fields.
var rootFields = map[string]string{
	"products": "products", "orders": "orders", "customers": "customers",
	"inventory_items": "inventoryItems", "inventoryItems": "inventoryItems",
}

func rootField(resource string) string {
	f, ok := rootFields[resource]
	if !ok {
		panic(fmt.Sprintf("shopifytest: unknown resource %q: use products, orders, customers or inventory_items", resource))
	}
	return f
}

// Put adds nodes to a resource (products, orders, customers, inventory_items),
// replacing a node with the same "id". Nodes are copied; each needs a string
// "id" (gid://shopify/…) and should have "updatedAt" for incremental reads.
func (s *Server) Put(resource string, nodes ...map[string]any) {
	field := rootField(resource)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range nodes {
		n = clone(n)
		id, _ := n["id"].(string)
		if id == "" {
			panic(`shopifytest: Put: every node needs a string "id" (gid://shopify/…)`)
		}
		if i := s.index(field, id); i >= 0 {
			s.nodes[field][i] = n
		} else {
			s.nodes[field] = append(s.nodes[field], n)
		}
	}
}

// Nodes returns copies of a resource's nodes in the order they were added.
func (s *Server) Nodes(resource string) []map[string]any {
	field := rootField(resource)
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]map[string]any, 0, len(s.nodes[field]))
	for _, n := range s.nodes[field] {
		out = append(out, clone(n))
	}
	return out
}

// Requests returns the requests received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Mutations returns the mutations received so far.
func (s *Server) Mutations() []Mutation {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.mutations)
}

// SetAvailable sets the bucket's currently available points, e.g. 0 to have
// the next query throttled.
func (s *Server) SetAvailable(points float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.available = min(points, s.opts.Bucket)
	s.refilled = s.opts.Now()
}

// FailNext makes the next n requests (after the token check) answer status
// with body, e.g. 503 and `{"errors":"Service Unavailable"}`.
func (s *Server) FailNext(n, status int, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults = append(s.faults, fault{status, body})
	}
}

//go:embed fixtures/*.json
var fixtures embed.FS

// SampleProducts returns the five products of the shared fixtures
// (graphql-products-page1.json and page2.json): three ACTIVE, one DRAFT, one
// ARCHIVED, updatedAt from 2025-03-02T16:20:11Z to 2025-03-24T20:11:30Z.
func SampleProducts() []map[string]any {
	var out []map[string]any
	for _, name := range []string{"fixtures/graphql-products-page1.json", "fixtures/graphql-products-page2.json"} {
		b, err := fixtures.ReadFile(name)
		if err != nil {
			panic(err)
		}
		var page struct {
			Data struct {
				Products struct {
					Edges []struct {
						Node map[string]any `json:"node"`
					} `json:"edges"`
				} `json:"products"`
			} `json:"data"`
		}
		if err := decode(b, &page); err != nil {
			panic(fmt.Sprintf("shopifytest: fixture %s: %v", name, err))
		}
		for _, e := range page.Data.Products.Edges {
			out = append(out, e.Node)
		}
	}
	return out
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	var in struct {
		Query     string         `json:"query"`
		Variables map[string]any `json:"variables"`
	}
	req := Request{Path: r.URL.Path, Token: r.Header.Get("X-Shopify-Access-Token")}
	status, answer := func() (int, any) {
		switch {
		case r.URL.Path != s.Endpoint():
			return http.StatusNotFound, map[string]any{"errors": "Not Found"}
		case r.Method != http.MethodPost:
			return http.StatusMethodNotAllowed, map[string]any{"errors": "Method Not Allowed"}
		case req.Token != s.opts.Token:
			return http.StatusUnauthorized, map[string]any{"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}
		}
		if err := decode(body, &in); err != nil || strings.TrimSpace(in.Query) == "" {
			return http.StatusBadRequest, map[string]any{"errors": map[string]any{"query": "Required parameter missing or invalid"}}
		}
		req.Query, req.Variables = in.Query, in.Variables
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(s.faults) > 0 {
			f := s.faults[0]
			s.faults = s.faults[1:]
			return f.status, rawBody(f.body)
		}
		return s.answer(in.Query, in.Variables, &req)
	}()
	req.Status = status
	s.mu.Lock()
	s.requests = append(s.requests, req)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	if raw, ok := answer.(rawBody); ok {
		io.WriteString(w, string(raw))
		return
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(answer)
}

// mutations are the mutation root fields the shop applies.
var mutations = []string{"productCreate", "productUpdate", "inventorySetQuantities"}

// connections maps the query root connections to the type of their nodes.
var connections = map[string]string{
	"products": "Product", "orders": "Order", "customers": "Customer", "inventoryItems": "InventoryItem",
}

// answer handles one GraphQL request with s.mu held.
func (s *Server) answer(query string, vars map[string]any, req *Request) (int, any) {
	op, err := gql.Parse(query)
	if err != nil {
		return http.StatusOK, gqlError(err.Error(), "")
	}
	if len(op.Fields) != 1 || op.Fields[0].Name == "" {
		return http.StatusOK, gqlError("shopifytest: send one root field per request", "")
	}
	root := op.Fields[0]
	requested, err := op.Cost(vars, nil)
	if err != nil {
		return http.StatusOK, gqlError(err.Error(), "BAD_REQUEST")
	}
	if requested > gql.MaxCost {
		return http.StatusOK, maxCostExceeded(requested)
	}
	var run func() any
	switch {
	case op.Type == "mutation":
		if !slices.Contains(mutations, root.Name) {
			return http.StatusOK, undefinedField(root.Name, "Mutation")
		}
		run = func() any { return s.mutate(root.Name, vars) }
	case connections[root.Name] != "":
		v, _ := root.Arg("first", vars)
		first, ok := intVar(v)
		if !ok || first < 1 || first > gql.MaxPage {
			return http.StatusOK, gqlError(fmt.Sprintf("first must be between 1 and %d, got %v", gql.MaxPage, v), "BAD_REQUEST")
		}
		run = func() any {
			page, err := s.page(root.Name, first, vars, root.Args["sortKey"] == gql.Enum("UPDATED_AT"))
			if err != nil {
				return err
			}
			if err := shapeConnection(root, vars, page, connections[root.Name]); err != nil {
				return err
			}
			return map[string]any{root.Key(): page}
		}
	case root.Name == "node":
		run = func() any {
			id, _ := root.Arg("id", vars)
			node, typ := s.lookup(fmt.Sprint(id))
			if node == nil {
				return map[string]any{root.Key(): nil}
			}
			node = project(root.Selection, typ, node)
			if err := shape(root.Selection, vars, node, typ); err != nil {
				return err
			}
			return map[string]any{root.Key(): node}
		}
	case root.Name == "shop":
		run = func() any { return map[string]any{root.Key(): map[string]any{"name": s.opts.ShopName}} }
	default:
		return http.StatusOK, undefinedField(root.Name, "QueryRoot")
	}
	s.refill()
	if float64(requested) > s.available {
		req.Throttled = true
		return s.opts.ThrottleStatus, map[string]any{
			"errors": []any{map[string]any{"message": "Throttled", "extensions": map[string]any{
				"code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}},
			"extensions": map[string]any{"cost": s.cost(float64(requested), nil)},
		}
	}
	data := run()
	if e, ok := data.(gqlErr); ok {
		return http.StatusOK, map[string]any(e)
	}
	actual, err := op.Cost(vars, data)
	if err != nil {
		return http.StatusOK, gqlError(err.Error(), "BAD_REQUEST")
	}
	charged := float64(actual)
	s.available -= charged
	return http.StatusOK, map[string]any{"data": data, "extensions": map[string]any{"cost": s.cost(float64(requested), &charged)}}
}

// maxCostExceeded is Shopify's answer to a query that requests more than it
// runs at once (HTTP 200, no data, no cost charged).
func maxCostExceeded(cost int) gqlErr {
	return gqlErr{"errors": []any{map[string]any{
		"message": fmt.Sprintf("Query cost is %d, which exceeds the single query max cost limit (%d).\n\n"+
			"See https://shopify.dev/docs/api/usage/rate-limits for more information on how the\n"+
			"cost of a query is calculated.\n\n"+
			"To query larger amounts of data with fewer limits, bulk operations should be used instead.\n"+
			"See https://shopify.dev/docs/api/usage/bulk-operations/queries for usage details.\n", cost, gql.MaxCost),
		"extensions": map[string]any{
			"code": "MAX_COST_EXCEEDED", "cost": cost, "maxCost": gql.MaxCost,
			"documentation": "https://shopify.dev/api/usage/rate-limits",
		},
	}}}
}

// lookup finds a node of any resource by its id, and its type.
func (s *Server) lookup(id string) (map[string]any, string) {
	for field, typ := range connections {
		if i := s.index(field, id); i >= 0 {
			return clone(s.nodes[field][i]), typ
		}
	}
	return nil, ""
}

// refill adds what the bucket restored since the last refill.
func (s *Server) refill() {
	now := s.opts.Now()
	s.available = min(s.opts.Bucket, s.available+now.Sub(s.refilled).Seconds()*s.opts.RestoreRate)
	s.refilled = now
}

func (s *Server) cost(requested float64, actual *float64) map[string]any {
	var a any
	if actual != nil {
		a = *actual
	}
	return map[string]any{
		"requestedQueryCost": requested,
		"actualQueryCost":    a,
		"throttleStatus": map[string]any{
			"maximumAvailable":   s.opts.Bucket,
			"currentlyAvailable": s.available,
			"restoreRate":        s.opts.RestoreRate,
		},
	}
}

// gqlErr is a whole GraphQL error answer (no data).
type gqlErr map[string]any

// gqlError is an error answer; code "" leaves extensions out, as Shopify does
// for syntax errors.
func gqlError(msg, code string) gqlErr {
	e := map[string]any{"message": msg}
	if code != "" {
		e["extensions"] = map[string]any{"code": code}
	}
	return gqlErr{"errors": []any{e}}
}

func undefinedField(name, typ string) gqlErr {
	return gqlError(fmt.Sprintf("Field '%s' doesn't exist on type '%s'", name, typ), "undefinedField")
}

// pageCursor is what an opaque cursor holds (like Shopify's, base64 JSON).
type pageCursor struct {
	LastID    string `json:"last_id"`
	LastValue string `json:"last_value,omitempty"`
}

// page returns one page of a root connection.
func (s *Server) page(field string, first int, vars map[string]any, byUpdated bool) (map[string]any, error) {
	search, _ := vars["query"].(string)
	match, err := parseSearch(search)
	if err != nil {
		return nil, gqlError(err.Error(), "BAD_REQUEST")
	}
	sortKey := func(n map[string]any) pageCursor {
		c := pageCursor{LastID: legacyID(n)}
		if byUpdated {
			c.LastValue, _ = n["updatedAt"].(string)
		}
		return c
	}
	less := func(a, b pageCursor) int {
		if c := cmp.Compare(a.LastValue, b.LastValue); c != 0 {
			return c
		}
		return compareIDs(a.LastID, b.LastID)
	}
	var nodes []map[string]any
	for _, n := range s.nodes[field] {
		if match(n) {
			nodes = append(nodes, n)
		}
	}
	slices.SortStableFunc(nodes, func(a, b map[string]any) int { return less(sortKey(a), sortKey(b)) })
	if after, ok := vars["after"].(string); ok && after != "" {
		var c pageCursor
		raw, err := base64.StdEncoding.DecodeString(after)
		if err != nil || json.Unmarshal(raw, &c) != nil || c.LastID == "" {
			return nil, gqlError("Invalid cursor for current pagination.", "BAD_REQUEST")
		}
		i := slices.IndexFunc(nodes, func(n map[string]any) bool { return less(sortKey(n), c) > 0 })
		if i < 0 {
			i = len(nodes)
		}
		nodes = nodes[i:]
	}
	more := len(nodes) > first
	nodes = nodes[:min(first, len(nodes))]
	edges := make([]any, 0, len(nodes))
	var end any
	for _, n := range nodes {
		b, _ := json.Marshal(sortKey(n))
		c := base64.StdEncoding.EncodeToString(b)
		edges = append(edges, map[string]any{"cursor": c, "node": clone(n)})
		end = c
	}
	return map[string]any{"edges": edges, "pageInfo": map[string]any{"hasNextPage": more, "endCursor": end}}, nil
}

func (e gqlErr) Error() string { return fmt.Sprint(e["errors"]) }

var searchTermRe = regexp.MustCompile(`^(\w+):(>=|<=|>|<)?'?([^']*)'?$`)

// parseSearch understands the subset of Shopify's search syntax the connector
// sends: terms joined by AND, optionally parenthesised; updated_at with
// > >= < <=; other field:value terms compare a node's field case-insensitively
// (status:active matches "ACTIVE").
func parseSearch(q string) (func(map[string]any) bool, error) {
	q = strings.TrimSpace(q)
	if q == "" {
		return func(map[string]any) bool { return true }, nil
	}
	var preds []func(map[string]any) bool
	for _, term := range strings.Split(q, " AND ") {
		term = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(term), "("), ")"))
		m := searchTermRe.FindStringSubmatch(term)
		if m == nil {
			return nil, fmt.Errorf("shopifytest: search term %q is not field:value or updated_at:>'…'", term)
		}
		field, op, value := m[1], m[2], m[3]
		if field == "updated_at" {
			at, err := time.Parse(time.RFC3339, value)
			if err != nil {
				return nil, fmt.Errorf("shopifytest: updated_at value %q is not RFC 3339", value)
			}
			preds = append(preds, func(n map[string]any) bool {
				s, _ := n["updatedAt"].(string)
				u, err := time.Parse(time.RFC3339, s)
				if err != nil {
					return false
				}
				switch op {
				case ">":
					return u.After(at)
				case ">=":
					return !u.Before(at)
				case "<":
					return u.Before(at)
				case "<=":
					return !u.After(at)
				}
				return u.Equal(at)
			})
			continue
		}
		if op != "" {
			return nil, fmt.Errorf("shopifytest: comparison %s is supported for updated_at only", op)
		}
		key := snakeToCamel(field)
		preds = append(preds, func(n map[string]any) bool { return strings.EqualFold(fmt.Sprint(n[key]), value) })
	}
	return func(n map[string]any) bool {
		for _, p := range preds {
			if !p(n) {
				return false
			}
		}
		return true
	}, nil
}

func snakeToCamel(s string) string {
	parts := strings.Split(s, "_")
	for i := 1; i < len(parts); i++ {
		if parts[i] != "" {
			parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
		}
	}
	return strings.Join(parts, "")
}

// mutate applies a mutation with s.mu held and returns its data.
func (s *Server) mutate(name string, vars map[string]any) any {
	var payload map[string]any
	var userErrors []any
	fail := func(field []string, msg string) {
		f := make([]any, len(field))
		for i, x := range field {
			f[i] = x
		}
		userErrors = append(userErrors, map[string]any{"field": f, "message": msg})
	}
	now := s.opts.Now().UTC().Format(time.RFC3339)
	switch name {
	case "productUpdate", "productCreate":
		in, _ := vars["product"].(map[string]any)
		if in == nil {
			fail([]string{"product"}, "Product input is required")
			break
		}
		if t, has := in["title"]; has || name == "productCreate" {
			if title, _ := t.(string); strings.TrimSpace(title) == "" {
				fail([]string{"title"}, "Title can't be blank")
				break
			}
		}
		var p map[string]any
		if name == "productUpdate" {
			id, _ := in["id"].(string)
			i := s.index("products", id)
			if i < 0 {
				fail([]string{"id"}, "Product does not exist")
				break
			}
			p = s.nodes["products"][i]
		} else {
			if _, has := in["id"]; has {
				fail([]string{"id"}, "id is not allowed on create")
				break
			}
			s.nextID++
			id := strconv.FormatInt(s.nextID, 10)
			p = map[string]any{"id": "gid://shopify/Product/" + id, "legacyResourceId": id, "status": "ACTIVE",
				"createdAt": now, "tags": []any{}, "variants": map[string]any{"nodes": []any{}}}
		}
		for k, v := range in {
			if k != "id" {
				p[k] = v
			}
		}
		p["updatedAt"] = now
		if name == "productCreate" {
			s.nodes["products"] = append(s.nodes["products"], p)
		}
		payload = map[string]any{"product": map[string]any{"id": p["id"], "legacyResourceId": p["legacyResourceId"], "updatedAt": now}}
	case "inventorySetQuantities":
		in, _ := vars["input"].(map[string]any)
		qs, _ := in["quantities"].([]any)
		if len(qs) == 0 {
			fail([]string{"input", "quantities"}, "At least one quantity is required")
			break
		}
		for i, q := range qs {
			qm, _ := q.(map[string]any)
			item, _ := qm["inventoryItemId"].(string)
			loc, _ := qm["locationId"].(string)
			qty, ok := intVar(qm["quantity"])
			path := []string{"input", "quantities", strconv.Itoa(i)}
			switch {
			case !strings.HasPrefix(item, "gid://shopify/InventoryItem/"):
				fail(append(path, "inventoryItemId"), "The specified inventory item could not be found.")
			case !strings.HasPrefix(loc, "gid://shopify/Location/"):
				fail(append(path, "locationId"), "The specified location could not be found.")
			case !ok:
				fail(append(path, "quantity"), "Quantity must be an integer")
			default:
				s.setVariantQuantity(item, qty, now)
			}
		}
		if userErrors == nil {
			s.nextID++
			payload = map[string]any{"inventoryAdjustmentGroup": map[string]any{"id": "gid://shopify/InventoryAdjustmentGroup/" + strconv.FormatInt(s.nextID, 10)}}
		}
	}
	m := Mutation{Name: name, Variables: clone(vars)}
	for _, ue := range userErrors {
		m.UserErrors = append(m.UserErrors, ue.(map[string]any)["message"].(string))
	}
	s.mutations = append(s.mutations, m)
	if userErrors == nil {
		userErrors = []any{}
	}
	if name == "inventorySetQuantities" {
		if payload == nil {
			payload = map[string]any{"inventoryAdjustmentGroup": nil}
		}
	} else if payload == nil {
		payload = map[string]any{"product": nil}
	}
	payload["userErrors"] = userErrors
	return map[string]any{name: payload}
}

// setVariantQuantity keeps products' variant inventoryQuantity in step with
// inventorySetQuantities, so a later read shows the change.
func (s *Server) setVariantQuantity(item string, qty int, now string) {
	for _, p := range s.nodes["products"] {
		vs, _ := p["variants"].(map[string]any)
		nodes, _ := vs["nodes"].([]any)
		for _, v := range nodes {
			vm, _ := v.(map[string]any)
			ii, _ := vm["inventoryItem"].(map[string]any)
			if ii != nil && ii["id"] == item {
				vm["inventoryQuantity"] = int64(qty)
				vm["updatedAt"] = now
				p["updatedAt"] = now
			}
		}
	}
}

func (s *Server) index(field, id string) int {
	return slices.IndexFunc(s.nodes[field], func(n map[string]any) bool { return n["id"] == id })
}

// legacyID is a node's numeric id as a string (legacyResourceId, or the gid's tail).
func legacyID(n map[string]any) string {
	if l, ok := n["legacyResourceId"].(string); ok && l != "" {
		return l
	}
	id, _ := n["id"].(string)
	return id[strings.LastIndex(id, "/")+1:]
}

// compareIDs orders numeric ids by value (longer is larger), others as strings.
func compareIDs(a, b string) int {
	if c := cmp.Compare(len(a), len(b)); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}

func intVar(v any) (int, bool) {
	switch x := v.(type) {
	case float64:
		if x == float64(int(x)) {
			return int(x), true
		}
	case json.Number:
		n, err := strconv.Atoi(string(x))
		return n, err == nil
	case int:
		return x, true
	case int64:
		return int(x), true
	}
	return 0, false
}

// decode reads JSON keeping numbers exact (64-bit ids).
func decode(b []byte, into any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	return d.Decode(into)
}

// clone deep-copies a JSON-like value so callers never share the shop's state.
func clone(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := maps.Clone(m)
	for k, v := range out {
		out[k] = cloneValue(v)
	}
	return out
}

func cloneValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return clone(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = cloneValue(e)
		}
		return out
	}
	return v
}
