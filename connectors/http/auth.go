package httpconn

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/ferryhq/ferry/connectors"
)

// authenticator adds credentials to requests.
type authenticator interface {
	apply(ctx context.Context, req *http.Request) error
	// invalidate drops cached credentials; it reports whether retrying can help.
	invalidate() bool
	// queryParam names the query parameter that carries a secret ("" = none).
	queryParam() string
}

func newAuth(conn *Connection, a *authConfig) (authenticator, error) {
	switch t := str(a.Type); t {
	case AuthAPIKey:
		value := str(a.Value)
		if value == "" {
			return nil, errors.New(`auth "api_key": value is required: set value = secret("...")`)
		}
		header, query := str(a.Header), str(a.Query)
		if header != "" && query != "" {
			return nil, errors.New(`auth "api_key": set header or query, not both`)
		}
		if header == "" && query == "" {
			header = "X-API-Key"
		}
		return &apiKeyAuth{header: header, query: query, value: value}, nil
	case AuthBearer:
		token := str(a.Token)
		if token == "" {
			return nil, errors.New(`auth "bearer": token is required: set token = secret("...")`)
		}
		return &headerAuth{value: "Bearer " + token}, nil
	case AuthBasic:
		if str(a.Username) == "" {
			return nil, errors.New(`auth "basic": username is required`)
		}
		return &basicAuth{user: str(a.Username), pass: str(a.Password)}, nil
	case AuthOAuth2:
		o := &oauth2Auth{conn: conn, tokenURL: str(a.TokenURL), clientID: str(a.ClientID), clientSecret: str(a.ClientSecret), scopes: a.Scopes}
		switch {
		case o.tokenURL == "":
			return nil, errors.New(`auth "oauth2": token_url is required (the client credentials token endpoint)`)
		case o.clientID == "":
			return nil, errors.New(`auth "oauth2": client_id is required`)
		case o.clientSecret == "":
			return nil, errors.New(`auth "oauth2": client_secret is required`)
		}
		if u, err := url.Parse(o.tokenURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			return nil, fmt.Errorf(`auth "oauth2": token_url %q is not an http or https URL`, o.tokenURL)
		}
		return o, nil
	case "":
		return nil, errors.New(`auth: type is required: "api_key", "bearer", "basic" or "oauth2"`)
	default:
		return nil, fmt.Errorf(`auth: unknown type %q; use "api_key", "bearer", "basic" or "oauth2"`, t)
	}
}

type apiKeyAuth struct{ header, query, value string }

func (a *apiKeyAuth) apply(_ context.Context, req *http.Request) error {
	if a.query != "" {
		q := req.URL.Query()
		q.Set(a.query, a.value)
		req.URL.RawQuery = q.Encode()
		return nil
	}
	req.Header.Set(a.header, a.value)
	return nil
}
func (a *apiKeyAuth) invalidate() bool   { return false }
func (a *apiKeyAuth) queryParam() string { return a.query }

type headerAuth struct{ value string }

func (a *headerAuth) apply(_ context.Context, req *http.Request) error {
	req.Header.Set("Authorization", a.value)
	return nil
}
func (a *headerAuth) invalidate() bool   { return false }
func (a *headerAuth) queryParam() string { return "" }

type basicAuth struct{ user, pass string }

func (a *basicAuth) apply(_ context.Context, req *http.Request) error {
	req.SetBasicAuth(a.user, a.pass)
	return nil
}
func (a *basicAuth) invalidate() bool   { return false }
func (a *basicAuth) queryParam() string { return "" }

// oauth2Auth gets tokens with the client credentials grant (RFC 6749 4.4),
// caches them, and fetches a new one shortly before the cached one expires.
type oauth2Auth struct {
	conn                             *Connection
	tokenURL, clientID, clientSecret string
	scopes                           []string

	mu      sync.Mutex
	token   string
	refresh time.Time // when to fetch a new token (before its expiry)
}

// defaultTokenLifetime is assumed when the token endpoint gives no expires_in.
const defaultTokenLifetime = time.Hour

// refreshMargin is how long before expiry a token is replaced: a tenth of its
// lifetime, at most a minute, so a request never goes out with a token about
// to expire in flight.
func refreshMargin(lifetime time.Duration) time.Duration {
	return min(lifetime/10, time.Minute)
}

func (o *oauth2Auth) apply(ctx context.Context, req *http.Request) error {
	tok, err := o.get(ctx)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	return nil
}

func (o *oauth2Auth) get(ctx context.Context) (string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.token != "" && o.conn.now().Before(o.refresh) {
		return o.token, nil
	}
	tok, lifetime, err := o.fetch(ctx)
	if err != nil {
		return "", err
	}
	o.token = tok
	o.refresh = o.conn.now().Add(lifetime - refreshMargin(lifetime))
	return tok, nil
}

func (o *oauth2Auth) invalidate() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.token = ""
	return true
}

func (o *oauth2Auth) queryParam() string { return "" }

func (o *oauth2Auth) fetch(ctx context.Context) (string, time.Duration, error) {
	form := url.Values{"grant_type": {"client_credentials"}}
	if len(o.scopes) > 0 {
		form.Set("scope", strings.Join(o.scopes, " "))
	}
	shown := o.conn.redact(o.tokenURL)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, connectors.Permanent(fmt.Errorf("oauth2 token request: %w", err))
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(o.clientID), url.QueryEscape(o.clientSecret)) // RFC 6749 2.3.1
	resp, err := o.conn.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return "", 0, ctx.Err()
		}
		if denied := (*connectors.DeniedAddressError)(nil); errors.As(err, &denied) {
			return "", 0, connectors.Permanent(fmt.Errorf("oauth2 token request to %s: %w", shown, denied))
		}
		return "", 0, connectors.Transient(fmt.Errorf("oauth2 token request to %s: %w", shown, unwrapURLError(err)), 0)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		he := &httpError{method: "POST", url: shown, status: resp.StatusCode, body: readSnippet(resp.Body)}
		err := fmt.Errorf("oauth2 token request: %w", he)
		if transientStatus(resp.StatusCode) {
			return "", 0, connectors.Transient(err, retryAfter(resp.Header, resp.StatusCode, o.conn.now()))
		}
		return "", 0, connectors.Permanent(fmt.Errorf("%w; check client_id, client_secret and scopes", err))
	}
	body, err := readBody(resp)
	if err != nil {
		return "", 0, connectors.Transient(fmt.Errorf("oauth2 token response from %s: %w", shown, err), 0)
	}
	v, err := connectors.DecodeJSON(body)
	m, ok := v.(map[string]any)
	if err != nil || !ok {
		return "", 0, connectors.Permanent(fmt.Errorf("oauth2 token response from %s is not a JSON object: %s", shown, snippet(body)))
	}
	tok, _ := m["access_token"].(string)
	if tok == "" {
		return "", 0, connectors.Permanent(fmt.Errorf("oauth2 token response from %s has no access_token: %s", shown, snippet(body)))
	}
	if tt, _ := m["token_type"].(string); tt != "" && !strings.EqualFold(tt, "bearer") {
		return "", 0, connectors.Permanent(fmt.Errorf("oauth2 token response from %s: token_type %q is not supported, only bearer", shown, tt))
	}
	lifetime := defaultTokenLifetime
	switch e := m["expires_in"].(type) {
	case int64:
		lifetime = time.Duration(e) * time.Second
	case float64:
		lifetime = time.Duration(e * float64(time.Second))
	case string: // some servers quote it
		if d, err := time.ParseDuration(e + "s"); err == nil {
			lifetime = d
		}
	}
	if lifetime <= 0 {
		lifetime = defaultTokenLifetime
	}
	return tok, lifetime, nil
}

func snippet(b []byte) string {
	if len(b) > errorBodyLimit {
		return string(b[:errorBodyLimit]) + "…"
	}
	return string(b)
}
