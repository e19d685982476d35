// Package httpconn is ferry's generic REST connector, connection type "http".
//
// It reads JSON records from paginated GET endpoints and writes records with
// POST, PUT, PATCH or DELETE, one request per record or in batches. It speaks
// the common authentication schemes (API key, bearer, basic, OAuth2 client
// credentials), honours per-host rate limits and servers' 429/Retry-After and
// X-RateLimit-Reset (also after a success whose X-RateLimit-Remaining is 0),
// and classifies failures for ferry's retry logic: 5xx, 408, 429, timeouts and
// lost connections are transient, other 4xx permanent. Waits longer than two
// minutes are not slept in-line but returned as transient errors carrying the
// delay, for the runtime's retry.
//
// Credentials stay with the configured host: a next-page URL on another host
// fails the read, and a redirect to another host loses the API key header
// (net/http already drops Authorization there).
//
// Under a network policy (connectors.Env.Net: a tenant's connection on a
// ferry server) every connection, a redirect's too, is checked on the
// address dialled, and HTTP_PROXY and HTTPS_PROXY are not used; a refused
// address is a permanent error.
//
//	connection "erp" {
//	  type       = "http"
//	  base_url   = "https://erp.example.com/api"
//	  headers    = { "X-Tenant" = "acme" }
//	  timeout    = "30s"                 # per request (default 30s)
//	  rate_limit = 10                    # requests per second per host (default: unlimited)
//	  test_path  = "/me"                 # what `ferry connection test` GETs (default: base_url)
//	  auth {
//	    type  = "bearer"                 # api_key | bearer | basic | oauth2
//	    token = secret("erp_token")
//	    # api_key: header = "X-API-Key" (default) or query = "api_key"; value = ...
//	    # basic:   username, password
//	    # oauth2:  token_url, client_id, client_secret, scopes = [...]  (client credentials)
//	  }
//	  tls {
//	    ca_file              = "certs/erp-ca.pem"     # relative to the configuration
//	    cert_file            = "certs/client.pem"     # client certificate (with key_file)
//	    key_file             = "certs/client-key.pem"
//	    insecure_skip_verify = false
//	  }
//	}
//
//	integration "items" {
//	  source {
//	    connection   = connection.erp
//	    path         = "/items"
//	    query        = { status = "active" }
//	    records      = "data.items"       # dotted path to the array ("" = the body is the array)
//	    cursor_param = "updated_since"    # incremental: the stored cursor is sent in this parameter
//	    pagination {
//	      type         = "cursor"         # link | cursor | page | offset | none (default none)
//	      cursor_path  = "meta.next"      # cursor: where the next-page token is in the body,
//	      cursor_param = "page_token"     #   and the parameter it is sent in
//	      # next_url_path = "links.next"  # cursor: or where the next page's URL is
//	      # page_param = "page", size_param = "per_page", page_size = 100, start = 1   (page)
//	      # page_param = "offset", size_param = "limit", page_size = 100, start = 0   (offset)
//	    }
//	  }
//	  target {
//	    connection         = connection.erp
//	    operation          = "upsert"
//	    path               = "\"/items/\" + sku"   # per record, relative to base_url
//	    method             = "PUT"                 # default by operation: create POST, update/upsert PUT, delete DELETE
//	    batch              = false                 # true: one JSON array POST per call
//	    idempotency_header = "Idempotency-Key"     # "" disables it
//	    exists_status      = 409                   # upsert: POST, and PUT when the server answers this status
//	    lookup_path        = "/items/{key}"        # upsert: GET first, 404 → POST, 200 → PUT
//	    update_path        = "/items/{key}"        # where the update half of an upsert goes
//	  }
//	}
package httpconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"

	"github.com/ferryhq/ferry/connectors"
)

// Type is the connection type of this connector.
const Type = "http"

// DefaultTimeout is the per-request timeout when the connection sets none.
const DefaultTimeout = 30 * time.Second

// Auth types.
const (
	AuthAPIKey = "api_key"
	AuthBearer = "bearer"
	AuthBasic  = "basic"
	AuthOAuth2 = "oauth2"
)

// ConnectionSpec is the schema of an http connection block's own attributes.
var ConnectionSpec = hcldec.ObjectSpec{
	"base_url":   &hcldec.AttrSpec{Name: "base_url", Type: cty.String, Required: true},
	"headers":    &hcldec.AttrSpec{Name: "headers", Type: cty.Map(cty.String)},
	"timeout":    &hcldec.AttrSpec{Name: "timeout", Type: cty.String},
	"rate_limit": &hcldec.AttrSpec{Name: "rate_limit", Type: cty.Number},
	"test_path":  &hcldec.AttrSpec{Name: "test_path", Type: cty.String},
	"auth": &hcldec.BlockSpec{TypeName: "auth", Nested: hcldec.ObjectSpec{
		"type":          &hcldec.AttrSpec{Name: "type", Type: cty.String, Required: true},
		"header":        &hcldec.AttrSpec{Name: "header", Type: cty.String},
		"query":         &hcldec.AttrSpec{Name: "query", Type: cty.String},
		"value":         &hcldec.AttrSpec{Name: "value", Type: cty.String},
		"token":         &hcldec.AttrSpec{Name: "token", Type: cty.String},
		"username":      &hcldec.AttrSpec{Name: "username", Type: cty.String},
		"password":      &hcldec.AttrSpec{Name: "password", Type: cty.String},
		"token_url":     &hcldec.AttrSpec{Name: "token_url", Type: cty.String},
		"client_id":     &hcldec.AttrSpec{Name: "client_id", Type: cty.String},
		"client_secret": &hcldec.AttrSpec{Name: "client_secret", Type: cty.String},
		"scopes":        &hcldec.AttrSpec{Name: "scopes", Type: cty.List(cty.String)},
	}},
	"tls": &hcldec.BlockSpec{TypeName: "tls", Nested: hcldec.ObjectSpec{
		"ca_file":              &hcldec.AttrSpec{Name: "ca_file", Type: cty.String},
		"cert_file":            &hcldec.AttrSpec{Name: "cert_file", Type: cty.String},
		"key_file":             &hcldec.AttrSpec{Name: "key_file", Type: cty.String},
		"insecure_skip_verify": &hcldec.AttrSpec{Name: "insecure_skip_verify", Type: cty.Bool},
	}},
}

// SourceSpec is the schema of the http connector's attributes in a source block.
var SourceSpec = hcldec.ObjectSpec{
	"path":         &hcldec.AttrSpec{Name: "path", Type: cty.String, Required: true},
	"query":        &hcldec.AttrSpec{Name: "query", Type: cty.Map(cty.String)},
	"records":      &hcldec.AttrSpec{Name: "records", Type: cty.String},
	"cursor_param": &hcldec.AttrSpec{Name: "cursor_param", Type: cty.String},
	"pagination": &hcldec.BlockSpec{TypeName: "pagination", Nested: hcldec.ObjectSpec{
		"type":          &hcldec.AttrSpec{Name: "type", Type: cty.String, Required: true},
		"cursor_path":   &hcldec.AttrSpec{Name: "cursor_path", Type: cty.String},
		"next_url_path": &hcldec.AttrSpec{Name: "next_url_path", Type: cty.String},
		"cursor_param":  &hcldec.AttrSpec{Name: "cursor_param", Type: cty.String},
		"page_param":    &hcldec.AttrSpec{Name: "page_param", Type: cty.String},
		"size_param":    &hcldec.AttrSpec{Name: "size_param", Type: cty.String},
		"page_size":     &hcldec.AttrSpec{Name: "page_size", Type: cty.Number},
		"start":         &hcldec.AttrSpec{Name: "start", Type: cty.Number},
	}},
}

// TargetSpec is the schema of the http connector's attributes in a target block.
// There is no path: the integration's target path expression is evaluated per
// record by the engine and arrives as connectors.Write.Path.
var TargetSpec = hcldec.ObjectSpec{
	"method":             &hcldec.AttrSpec{Name: "method", Type: cty.String},
	"batch":              &hcldec.AttrSpec{Name: "batch", Type: cty.Bool},
	"idempotency_header": &hcldec.AttrSpec{Name: "idempotency_header", Type: cty.String},
	"exists_status":      &hcldec.AttrSpec{Name: "exists_status", Type: cty.Number},
	"lookup_path":        &hcldec.AttrSpec{Name: "lookup_path", Type: cty.String},
	"update_path":        &hcldec.AttrSpec{Name: "update_path", Type: cty.String},
}

func init() {
	connectors.Register(&connectors.Connector{
		Type:        Type,
		Description: "REST APIs over HTTP: paginated JSON reads, per-record or batched writes",
		Connection:  ConnectionSpec,
		Source:      SourceSpec,
		Target:      TargetSpec,
		Open:        Open,
		Check:       check,
	})
}

type connectionConfig struct {
	BaseURL   *string           `cty:"base_url"`
	Headers   map[string]string `cty:"headers"`
	Timeout   *string           `cty:"timeout"`
	RateLimit *float64          `cty:"rate_limit"`
	TestPath  *string           `cty:"test_path"`
	Auth      *authConfig       `cty:"auth"`
	TLS       *tlsConfig        `cty:"tls"`
}

type authConfig struct {
	Type         *string  `cty:"type"`
	Header       *string  `cty:"header"`
	Query        *string  `cty:"query"`
	Value        *string  `cty:"value"`
	Token        *string  `cty:"token"`
	Username     *string  `cty:"username"`
	Password     *string  `cty:"password"`
	TokenURL     *string  `cty:"token_url"`
	ClientID     *string  `cty:"client_id"`
	ClientSecret *string  `cty:"client_secret"`
	Scopes       []string `cty:"scopes"`
}

type tlsConfig struct {
	CAFile             *string `cty:"ca_file"`
	CertFile           *string `cty:"cert_file"`
	KeyFile            *string `cty:"key_file"`
	InsecureSkipVerify *bool   `cty:"insecure_skip_verify"`
}

// Connection is an opened http connection: a base URL, a client and its auth.
// It is safe for concurrent use; its sources and sinks share the client, the
// OAuth2 token cache and the per-host rate limiters.
type Connection struct {
	base     *url.URL
	headers  http.Header
	timeout  time.Duration
	testPath string
	client   *http.Client
	auth     authenticator
	limits   *hostLimits

	// now is the clock, replaceable in tests.
	now func() time.Time
	// sleep waits d or until ctx ends, replaceable in tests.
	sleep func(ctx context.Context, d time.Duration) error
}

var (
	_ connectors.Connection = (*Connection)(nil)
	_ connectors.Tester     = (*Connection)(nil)
)

// Open opens an http connection from its decoded attributes. It does not touch
// the network; Test does.
func Open(env connectors.Env, cfg cty.Value) (connectors.Connection, error) {
	return open(env, cfg)
}

func open(env connectors.Env, cfg cty.Value) (*Connection, error) {
	var c connectionConfig
	if err := decode(cfg, &c, "connection"); err != nil {
		return nil, err
	}
	raw := str(c.BaseURL)
	if raw == "" {
		return nil, connectors.Permanent(errors.New(`http connection: base_url is required: set base_url = "https://api.example.com"`))
	}
	base, err := url.Parse(raw)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, connectors.Permanent(fmt.Errorf(`http connection: base_url %q is not an http or https URL; write it as "https://api.example.com/v1"`, raw))
	}
	conn := &Connection{
		base:     base,
		headers:  http.Header{},
		timeout:  DefaultTimeout,
		testPath: str(c.TestPath),
		now:      time.Now,
		sleep:    sleepCtx,
	}
	for k, v := range c.Headers {
		conn.headers.Set(k, v)
	}
	if t := str(c.Timeout); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil || d <= 0 {
			return nil, connectors.Permanent(fmt.Errorf(`http connection %s: timeout %q is not a positive duration; write it as "30s" or "2m"`, base.Redacted(), t))
		}
		conn.timeout = d
	}
	var perSecond float64
	if c.RateLimit != nil {
		if *c.RateLimit <= 0 {
			return nil, connectors.Permanent(fmt.Errorf("http connection %s: rate_limit must be a positive number of requests per second, not %v", base.Redacted(), *c.RateLimit))
		}
		perSecond = *c.RateLimit
	}
	conn.limits = newHostLimits(perSecond, func() time.Time { return conn.now() })

	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	// Every connection, redirects' and the OAuth2 token endpoint's too.
	env.Net.Transport(tr, nil)
	if c.TLS != nil {
		tc, err := buildTLS(env, c.TLS)
		if err != nil {
			return nil, connectors.Permanent(fmt.Errorf("http connection %s: %w", base.Redacted(), err))
		}
		tr.TLSClientConfig = tc
	}
	conn.client = &http.Client{Transport: tr, Timeout: conn.timeout, CheckRedirect: conn.checkRedirect}

	if c.Auth != nil {
		a, err := newAuth(conn, c.Auth)
		if err != nil {
			return nil, connectors.Permanent(fmt.Errorf("http connection %s: %w", base.Redacted(), err))
		}
		conn.auth = a
	}
	return conn, nil
}

func buildTLS(env connectors.Env, c *tlsConfig) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.InsecureSkipVerify != nil && *c.InsecureSkipVerify {
		tc.InsecureSkipVerify = true
	}
	if f := str(c.CAFile); f != "" {
		p := resolve(env.Dir, f)
		pem, err := readFile(env, f)
		if err != nil {
			return nil, fmt.Errorf("tls ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls ca_file %s holds no PEM certificate", p)
		}
		tc.RootCAs = pool
	}
	cert, key := str(c.CertFile), str(c.KeyFile)
	if (cert == "") != (key == "") {
		return nil, errors.New("tls: cert_file and key_file go together; set both for a client certificate, or neither")
	}
	if cert != "" {
		certPEM, err := readFile(env, cert)
		if err != nil {
			return nil, fmt.Errorf("tls client certificate: %w", err)
		}
		keyPEM, err := readFile(env, key)
		if err != nil {
			return nil, fmt.Errorf("tls client certificate: %w", err)
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("tls client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}

// Test checks that the API is reachable and accepts the credentials. It GETs
// test_path if set, and then wants a 2xx; without test_path it GETs base_url,
// where any answer but 401, 403 or a 5xx counts (many APIs answer 404 at their root).
func (c *Connection) Test(ctx context.Context) error {
	u := c.base.String()
	if c.testPath != "" {
		u = c.resolvePath(c.testPath)
	}
	resp, err := c.do(ctx, http.MethodGet, u, nil, nil)
	if err != nil {
		var he *httpError
		if errors.As(err, &he) {
			switch {
			case he.status == http.StatusUnauthorized || he.status == http.StatusForbidden:
				return connectors.Permanent(fmt.Errorf("http connection %s: the server rejected the credentials (%d %s); check the auth block's secrets and scopes: %w",
					c.base.Redacted(), he.status, http.StatusText(he.status), err))
			case he.status < 500 && c.testPath == "":
				return nil
			}
		}
		return err
	}
	resp.Body.Close()
	return nil
}

// checkRedirect follows up to 10 redirects like net/http's default, but does
// not carry an API key header to another host: net/http drops Authorization
// and cookies there, not custom headers.
func (c *Connection) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if a, ok := c.auth.(*apiKeyAuth); ok && a.header != "" && req.URL.Host != via[0].URL.Host {
		req.Header.Del(a.header)
	}
	return nil
}

// resolvePath joins p (a path relative to base_url, or an absolute URL) to base_url.
func (c *Connection) resolvePath(p string) string {
	if strings.HasPrefix(p, "http://") || strings.HasPrefix(p, "https://") {
		return p
	}
	b := strings.TrimSuffix(c.base.String(), "/")
	if p == "" {
		return b
	}
	if strings.HasPrefix(p, "?") {
		return b + p
	}
	return b + "/" + strings.TrimPrefix(p, "/")
}

func decode(cfg cty.Value, into any, what string) error {
	return connectors.DecodeConfig(cfg, into, "http "+what)
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// readFile reads a file the configuration names (a CA, a client certificate
// or key): relative to env.Dir, and confined to env.Root when set, so that a
// tenant of a server cannot have the host's or another tenant's key read.
func readFile(env connectors.Env, p string) ([]byte, error) {
	if env.Root == "" {
		return os.ReadFile(resolve(env.Dir, p))
	}
	rel, err := env.InRoot(p)
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(env.Root)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	return root.ReadFile(rel)
}

// check is the connector's Check: the tls files known before a run must lie
// inside env.Root.
func check(env connectors.Env, conn, _, _ cty.Value) error {
	if env.Root == "" {
		return nil
	}
	var c connectionConfig
	if err := decode(conn, &c, "connection"); err != nil || c.TLS == nil {
		return err
	}
	for _, f := range []struct {
		attr string
		p    *string
	}{{"ca_file", c.TLS.CAFile}, {"cert_file", c.TLS.CertFile}, {"key_file", c.TLS.KeyFile}} {
		if p := str(f.p); p != "" {
			if _, err := env.InRoot(p); err != nil {
				return connectors.Permanent(fmt.Errorf("http connection: tls %s: %w", f.attr, err))
			}
		}
	}
	return nil
}

func resolve(dir, p string) string {
	if filepath.IsAbs(p) || dir == "" {
		return p
	}
	return filepath.Join(dir, p)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// isTimeout reports whether err is a timeout of the client or the network.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// hostLimits holds one rate limiter per host and the time until which a host
// asked (429, Retry-After) not to be called.
type hostLimits struct {
	perSecond float64
	now       func() time.Time
	mu        sync.Mutex
	hosts     map[string]*hostLimit
}

func newHostLimits(perSecond float64, now func() time.Time) *hostLimits {
	return &hostLimits{perSecond: perSecond, now: now, hosts: map[string]*hostLimit{}}
}
