// Package shopify is ferry's connector for the Shopify GraphQL Admin API.
//
// As a source it reads products, orders, customers or inventory items with
// cursor pagination and incremental sync on updatedAt. As a target it updates
// (or creates) products and sets inventory quantities.
//
//	connection "shop" {
//	  type           = "shopify"
//	  store          = "acme.myshopify.com"           # required; "acme" alone means acme.myshopify.com
//	  token          = secret("shopify_admin_token")  # required; Admin API access token (X-Shopify-Access-Token)
//	  api_version    = "2025-07"                      # default 2025-07
//	  webhook_secret = secret("shopify_webhook_secret") # optional; used by ferry's webhook verification
//	  base_url       = "http://127.0.0.1:8080"        # optional; replaces https://<store> (tests, proxies)
//	}
//
//	integration "products_to_erp" {
//	  source {
//	    connection = connection.shop
//	    resource   = "products"   # products | orders | customers | inventory_items
//	    page_size  = 10           # default: the most that fits Shopify's query cost limit (products 18)
//	    query      = "status:active"  # extra Shopify search syntax, ANDed with the watermark
//	    cursor     = "updatedAt"  # incremental: the default cursor field of this connector
//	  }
//	}
//
//	integration "stock_from_erp" {
//	  target {
//	    connection = connection.shop
//	    resource   = "inventory"  # products | inventory
//	    operation  = "upsert"
//	  }
//	}
//
// # Incremental sync
//
// Records are the GraphQL nodes as Shopify returns them, so they carry
// "updatedAt"; that is this connector's cursor field (DefaultCursorField). With a
// stored cursor the connector searches `updated_at:>'<cursor>'` and sorts by
// UPDATED_AT (inventory items cannot be sorted: their watermark is the largest
// updatedAt seen, which the runtime keeps). A cursor field of "updated_at" is
// accepted as an alias: the connector then copies updatedAt into updated_at.
//
// The comparison is a strict ">": a record updated within the same second as
// the watermark, after the run read it, is picked up by the next change only.
//
// # Query cost
//
// Shopify refuses a query whose requested cost is above 1,000 points, and a
// query's cost multiplies with its page size and the page size of the
// connections inside each node (a product's variants, an order's line items,
// an inventory item's levels). The connector computes the cost of its own
// queries the way Shopify does (internal/gql): page_size defaults to the
// largest that fits (products 18, orders 15, customers 250, inventory_items
// 28), and a larger page_size is refused when the source opens, naming the
// maximum (validation already refuses one that no resource can hold). Nested connections are read 25 variants, 10 line items or 10
// inventory levels at a time with the page; a node that has more gets the rest
// from follow-up node(id:) queries, throttled like the pages, before it is
// emitted, so variants.nodes is always the complete list.
//
// # Throttling
//
// Shopify's GraphQL Admin API limits by query cost (a leaky bucket). Every
// response reports extensions.cost; before each request, if the last response's
// requestedQueryCost exceeds currentlyAvailable, the connector waits
// (requested − available) / restoreRate seconds. A THROTTLED error (HTTP 200 or
// 429) is retried for the same page, up to maxThrottleRetries times, after the
// wait computed from the throttled response's own throttleStatus.
package shopify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"

	"github.com/ferryhq/ferry/connectors"
)

// Type is the connection type of this connector.
const Type = "shopify"

// DefaultAPIVersion is the Admin API version used when none is configured.
const DefaultAPIVersion = "2025-07"

// DefaultCursorField is the record field that carries the incremental cursor.
const DefaultCursorField = "updatedAt"

const (
	// maxThrottleRetries bounds how often one request is retried after THROTTLED.
	maxThrottleRetries = 5
	// fallbackThrottleWait is Shopify's recommended backoff when the response
	// gives nothing to compute a wait from.
	fallbackThrottleWait = time.Second
	// maxThrottleWait caps one computed wait (a bucket refills fully in ~20s).
	maxThrottleWait = time.Minute
	maxResponseSize = 64 << 20
)

// ConnectionSpec is the schema of a shopify connection block's own attributes.
var ConnectionSpec = hcldec.ObjectSpec{
	"store":          &hcldec.AttrSpec{Name: "store", Type: cty.String, Required: true},
	"token":          &hcldec.AttrSpec{Name: "token", Type: cty.String, Required: true},
	"api_version":    &hcldec.AttrSpec{Name: "api_version", Type: cty.String},
	"webhook_secret": &hcldec.AttrSpec{Name: "webhook_secret", Type: cty.String},
	"base_url":       &hcldec.AttrSpec{Name: "base_url", Type: cty.String},
}

// SourceSpec is the schema of the shopify connector's attributes in a source block.
// Configuration validation sees resource and page_size one at a time: a
// page_size that fits no resource is found there, one too large for its
// resource when the source opens (Connection.Source).
var SourceSpec = hcldec.ObjectSpec{
	"resource": &hcldec.ValidateSpec{
		Wrapped: &hcldec.AttrSpec{Name: "resource", Type: cty.String, Required: true},
		Func:    validateResource,
	},
	"page_size": &hcldec.ValidateSpec{
		Wrapped: &hcldec.AttrSpec{Name: "page_size", Type: cty.Number},
		Func:    validatePageSize,
	},
	"query": &hcldec.AttrSpec{Name: "query", Type: cty.String},
}

func validateResource(v cty.Value) hcl.Diagnostics {
	if v.IsNull() || !v.IsKnown() || resources[v.AsString()] != nil {
		return nil
	}
	return hcl.Diagnostics{{
		Severity: hcl.DiagError,
		Summary:  "Unknown Shopify resource",
		Detail:   fmt.Sprintf(`resource %q is not one of "products", "orders", "customers", "inventory_items".`, v.AsString()),
	}}
}

func validatePageSize(v cty.Value) hcl.Diagnostics {
	if v.IsNull() || !v.IsKnown() {
		return nil
	}
	largest := 0
	var maxima []string
	for _, name := range resourceNames {
		largest = max(largest, resources[name].maxPage)
		maxima = append(maxima, fmt.Sprintf("%s %d", name, resources[name].maxPage))
	}
	n, exact := v.AsBigFloat().Int64()
	if exact == big.Exact && n >= 1 && n <= int64(largest) {
		return nil
	}
	return hcl.Diagnostics{{
		Severity: hcl.DiagError,
		Summary:  "Invalid page_size",
		Detail: fmt.Sprintf("page_size %s must be a whole number from 1 to what a page of the resource may hold within Shopify's query cost limit: %s.",
			v.AsBigFloat().Text('g', -1), strings.Join(maxima, ", ")),
	}}
}

// TargetSpec is the schema of the shopify connector's attributes in a target block.
var TargetSpec = hcldec.ObjectSpec{
	"resource": &hcldec.AttrSpec{Name: "resource", Type: cty.String, Required: true},
}

func init() {
	connectors.Register(&connectors.Connector{
		Type:        Type,
		Description: "Shopify GraphQL Admin API: read products, orders, customers, inventory items; update products and inventory",
		Connection:  ConnectionSpec,
		Source:      SourceSpec,
		Target:      TargetSpec,
		Open:        Open,
	})
}

type connectionConfig struct {
	Store         *string `cty:"store"`
	Token         *string `cty:"token"`
	APIVersion    *string `cty:"api_version"`
	WebhookSecret *string `cty:"webhook_secret"`
	BaseURL       *string `cty:"base_url"`
}

// Connection is an opened shopify connection.
type Connection struct {
	// Store is the shop's domain (acme.myshopify.com).
	Store string
	// APIVersion is the Admin API version in the endpoint path.
	APIVersion string
	// WebhookSecret is the secret ferry verifies webhook HMACs with ("" = none).
	WebhookSecret string

	endpoint string
	token    string
	client   *http.Client
	// sleep waits d or until ctx ends; tests replace it.
	sleep func(ctx context.Context, d time.Duration) error

	mu   sync.Mutex
	last cost // cost of the last response, for the pre-wait
}

var (
	_ connectors.Connection = (*Connection)(nil)
	_ connectors.Tester     = (*Connection)(nil)
)

// Open opens a shopify connection from its decoded attributes. It makes no request.
func Open(env connectors.Env, cfg cty.Value) (connectors.Connection, error) {
	var c connectionConfig
	if err := decode(cfg, &c, "connection"); err != nil {
		return nil, err
	}
	store := strings.TrimSpace(str(c.Store))
	store = strings.TrimPrefix(strings.TrimPrefix(store, "https://"), "http://")
	store = strings.TrimRight(store, "/")
	if store == "" {
		return nil, connectors.Permanent(errors.New(`shopify connection: "store" is required (acme.myshopify.com)`))
	}
	if strings.ContainsAny(store, "/?# ") {
		return nil, connectors.Permanent(fmt.Errorf("shopify connection: store %q must be a domain like acme.myshopify.com", store))
	}
	if !strings.Contains(store, ".") {
		store += ".myshopify.com"
	}
	token := str(c.Token)
	if token == "" {
		return nil, connectors.Permanent(errors.New(`shopify connection: "token" is required (an Admin API access token)`))
	}
	version := str(c.APIVersion)
	if version == "" {
		version = DefaultAPIVersion
	}
	if strings.ContainsAny(version, "/?# ") {
		return nil, connectors.Permanent(fmt.Errorf("shopify connection: invalid api_version %q", version))
	}
	base := "https://" + store
	if b := strings.TrimRight(str(c.BaseURL), "/"); b != "" {
		u, err := url.Parse(b)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, connectors.Permanent(fmt.Errorf("shopify connection: base_url %q is not an http(s) URL", b))
		}
		base = b
	}
	return &Connection{
		Store:         store,
		APIVersion:    version,
		WebhookSecret: str(c.WebhookSecret),
		endpoint:      base + "/admin/api/" + version + "/graphql.json",
		token:         token,
		client:        newClient(env),
		sleep:         sleepCtx,
	}, nil
}

// newClient is the connection's HTTP client. Under a network policy
// (connectors.Env.Net: a tenant's, on a ferry server; base_url may name any
// host) it dials through the policy's dialer, and not through a proxy of
// the environment, which would dial where the policy cannot look.
func newClient(env connectors.Env) *http.Client {
	c := &http.Client{Timeout: 60 * time.Second}
	if env.Net != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		env.Net.Transport(tr, nil)
		c.Transport = tr
	}
	return c
}

// Test runs `{ shop { name } }`.
func (c *Connection) Test(ctx context.Context) error {
	var data struct {
		Shop struct {
			Name string `json:"name"`
		} `json:"shop"`
	}
	raw, err := c.do(ctx, "{ shop { name } }", nil)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, &data); err != nil {
		return connectors.Permanent(fmt.Errorf("shopify: unexpected response to the shop query: %w", err))
	}
	if data.Shop.Name == "" {
		return connectors.Permanent(errors.New("shopify: the shop query returned no shop name"))
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// cost is extensions.cost of a GraphQL Admin API response.
type cost struct {
	RequestedQueryCost float64  `json:"requestedQueryCost"`
	ActualQueryCost    *float64 `json:"actualQueryCost"`
	ThrottleStatus     struct {
		MaximumAvailable   float64 `json:"maximumAvailable"`
		CurrentlyAvailable float64 `json:"currentlyAvailable"`
		RestoreRate        float64 `json:"restoreRate"`
	} `json:"throttleStatus"`
}

// wait is how long the bucket needs to hold the requested cost again (0 = none).
func (c cost) wait() time.Duration {
	need := c.RequestedQueryCost - c.ThrottleStatus.CurrentlyAvailable
	if need <= 0 || c.ThrottleStatus.RestoreRate <= 0 {
		return 0
	}
	d := time.Duration(math.Ceil(need / c.ThrottleStatus.RestoreRate * float64(time.Second)))
	return min(d, maxThrottleWait)
}

type gqlError struct {
	Message    string `json:"message"`
	Extensions struct {
		Code string `json:"code"`
	} `json:"extensions"`
}

type gqlResponse struct {
	Data       json.RawMessage `json:"data"`
	Errors     []gqlError      `json:"errors"`
	Extensions struct {
		Cost *cost `json:"cost"`
	} `json:"extensions"`
}

func (r *gqlResponse) hasCode(code string) bool {
	for _, e := range r.Errors {
		if e.Extensions.Code == code {
			return true
		}
	}
	return false
}

func (r *gqlResponse) messages() string {
	ms := make([]string, 0, len(r.Errors))
	for _, e := range r.Errors {
		m := e.Message
		if e.Extensions.Code != "" {
			m += " (" + e.Extensions.Code + ")"
		}
		ms = append(ms, m)
	}
	return strings.Join(ms, "; ")
}

// do sends one GraphQL request and returns its data. It waits for the cost
// bucket before sending, and retries THROTTLED responses a bounded number of
// times; other failures are returned categorised.
func (c *Connection) do(ctx context.Context, query string, vars map[string]any) (json.RawMessage, error) {
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		return nil, connectors.Permanent(fmt.Errorf("shopify: encoding the request: %w", err))
	}
	for attempt := 0; ; attempt++ {
		c.mu.Lock()
		pre := c.last.wait()
		c.mu.Unlock()
		if pre > 0 {
			if err := c.sleep(ctx, pre); err != nil {
				return nil, err
			}
		}
		resp, status, retryAfter, err := c.post(ctx, body)
		if err != nil {
			return nil, err
		}
		if resp.Extensions.Cost != nil {
			c.mu.Lock()
			c.last = *resp.Extensions.Cost
			c.mu.Unlock()
		}
		if resp.hasCode("THROTTLED") {
			wait := fallbackThrottleWait
			if resp.Extensions.Cost != nil {
				if w := resp.Extensions.Cost.wait(); w > 0 {
					wait = w
				}
			}
			wait = max(wait, retryAfter)
			if attempt >= maxThrottleRetries {
				return nil, connectors.Transient(fmt.Errorf("shopify: still throttled after %d retries (HTTP %d)", attempt, status), wait)
			}
			// The wait is taken here; the bucket state it came from is spent.
			c.mu.Lock()
			c.last = cost{}
			c.mu.Unlock()
			if err := c.sleep(ctx, wait); err != nil {
				return nil, err
			}
			continue
		}
		if status == http.StatusTooManyRequests {
			return nil, connectors.Transient(fmt.Errorf("shopify: HTTP 429 Too Many Requests"), max(retryAfter, fallbackThrottleWait))
		}
		if resp.hasCode("MAX_COST_EXCEEDED") {
			return nil, connectors.Permanent(fmt.Errorf("shopify: the query costs more than Shopify allows for one request; lower page_size: %s", resp.messages()))
		}
		if len(resp.Errors) > 0 {
			return nil, connectors.Permanent(fmt.Errorf("shopify: GraphQL error: %s", resp.messages()))
		}
		if len(resp.Data) == 0 || string(resp.Data) == "null" {
			return nil, connectors.Permanent(errors.New("shopify: response has no data"))
		}
		return resp.Data, nil
	}
}

// post sends body and decodes the response. Non-GraphQL HTTP failures are
// returned as categorised errors; a 200 or 429 with a GraphQL body is decoded.
func (c *Connection) post(ctx context.Context, body []byte) (*gqlResponse, int, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, 0, 0, connectors.Permanent(fmt.Errorf("shopify: %w", err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("X-Shopify-Access-Token", c.token)
	res, err := c.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, 0, 0, ctx.Err()
		}
		if denied := (*connectors.DeniedAddressError)(nil); errors.As(err, &denied) {
			return nil, 0, 0, connectors.Permanent(fmt.Errorf("shopify: request to %s: %w", c.Store, denied))
		}
		return nil, 0, 0, connectors.Transient(fmt.Errorf("shopify: request to %s failed: %w", c.Store, err), 0)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, maxResponseSize))
	if err != nil {
		if ctx.Err() != nil {
			return nil, 0, 0, ctx.Err()
		}
		return nil, 0, 0, connectors.Transient(fmt.Errorf("shopify: reading the response: %w", err), 0)
	}
	retryAfter := parseRetryAfter(res.Header.Get("Retry-After"))
	st := res.StatusCode
	switch {
	case st == http.StatusUnauthorized || st == http.StatusForbidden:
		return nil, st, 0, connectors.Permanent(fmt.Errorf("shopify: HTTP %d from %s: check the token and its scopes%s", st, c.Store, snippet(b)))
	case st >= 500:
		return nil, st, 0, connectors.Transient(fmt.Errorf("shopify: HTTP %d from %s%s", st, c.Store, snippet(b)), retryAfter)
	case st == http.StatusNotFound:
		return nil, st, 0, connectors.Permanent(fmt.Errorf("shopify: HTTP 404 from %s: check the store and api_version %q", c.Store, c.APIVersion))
	case st != http.StatusOK && st != http.StatusTooManyRequests:
		return nil, st, 0, connectors.Permanent(fmt.Errorf("shopify: HTTP %d from %s%s", st, c.Store, snippet(b)))
	}
	var resp gqlResponse
	if err := json.Unmarshal(b, &resp); err != nil {
		if st == http.StatusTooManyRequests {
			return &resp, st, retryAfter, nil
		}
		return nil, st, 0, connectors.Transient(fmt.Errorf("shopify: response is not GraphQL JSON: %w%s", err, snippet(b)), 0)
	}
	return &resp, st, retryAfter, nil
}

func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil && f > 0 {
		return min(time.Duration(f*float64(time.Second)), maxThrottleWait)
	}
	return 0
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if s == "" {
		return ""
	}
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return ": " + s
}

func decode(cfg cty.Value, into any, what string) error {
	return connectors.DecodeConfig(cfg, into, "shopify "+what)
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
