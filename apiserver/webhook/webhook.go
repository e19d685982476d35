// Package webhook verifies inbound webhook deliveries and splits their bodies
// into records. It is pure: no server, no I/O; the API server resolves the
// webhook block's secret() values, builds an Endpoint with New and calls
// Verify, Topic, DeliveryID and Records on each request.
//
// # The webhook block
//
// An integration accepts pushes at POST /v1/webhooks/{tenant}/{integration}
// when it has a webhook block. verify picks how a delivery proves where it
// comes from; the other attributes depend on it:
//
//	webhook {
//	  verify = "shopify"   # shopify | hmac | token | basic | none
//
//	  # shopify: base64 HMAC-SHA256 of the raw body in X-Shopify-Hmac-Sha256
//	  # (or shopify-hmac-sha256, Shopify's Events deliveries).
//	  secret          = secret("shopify_webhook_secret")  # the app's client secret (required)
//	  previous_secret = secret("shopify_webhook_secret_old") # also accepted while rotating (optional)
//	}
//
//	webhook {
//	  verify    = "hmac"
//	  secret    = secret("hook_secret")  # required; previous_secret as above
//	  header    = "X-Hub-Signature-256"  # the header holding the signature (required)
//	  algorithm = "sha256"               # sha256 (default) | sha512
//	  encoding  = "hex"                  # hex (default) | base64
//	  prefix    = "sha256="              # text before the signature in the header (GitHub style; default none)
//	  # Replay protection (optional): the sender signs a timestamp with the body.
//	  timestamp_header = "X-Timestamp"   # Unix seconds (or milliseconds) or RFC 3339
//	  tolerance        = "5m"            # how far the timestamp may be from now (default 5m)
//	  signed           = "{timestamp}.{body}" # what is signed: {body} (default without a
//	                                     # timestamp) or a template with {timestamp} and
//	                                     # {body} (default with one: "{timestamp}.{body}")
//	}
//
//	webhook {
//	  verify = "token"
//	  token  = secret("hook_token")   # required
//	  header = "Authorization"        # default Authorization
//	  prefix = "Bearer "              # default "Bearer " on Authorization, else none
//	}
//
//	webhook {
//	  verify   = "basic"              # HTTP basic authentication
//	  username = "shop"               # required
//	  password = secret("hook_pw")    # required
//	}
//
// verify = "none" accepts every delivery: anyone who knows the URL can start
// runs. Use it only behind something that authenticates.
//
// Every mode also takes:
//
//	records      = "data.items"   # dotted path of object keys to the array of records (or to one
//	                              # record, an object); default: the body is one record (an
//	                              # object) or an array of records. A map from topic to path
//	                              # picks the path by topic: { "orders/create" = "line_items" };
//	                              # a topic it does not list uses the whole body ("*" sets another default).
//	topics       = ["products/update", "products/create"]
//	                              # accepted topics; a verified delivery of another topic is
//	                              # acknowledged (200, "ignored") and does not start a run
//	topic_header = "X-GitHub-Event"   # where the topic is (shopify: X-Shopify-Topic)
//	id_header    = "X-GitHub-Delivery" # a delivery id to drop duplicate deliveries by
//	                              # (shopify: X-Shopify-Event-Id, else X-Shopify-Webhook-Id)
//
// Every comparison of a secret is constant-time (hmac.Equal,
// subtle.ConstantTimeCompare over digests, so not even a length leaks).
package webhook

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// Modes: the values of verify.
const (
	ModeShopify = "shopify"
	ModeHMAC    = "hmac"
	ModeToken   = "token"
	ModeBasic   = "basic"
	ModeNone    = "none"
)

// Shopify's delivery headers. Shopify's Events deliveries use the same names
// without the X- prefix; both are read.
const (
	ShopifyHMACHeader      = "X-Shopify-Hmac-Sha256"
	ShopifyTopicHeader     = "X-Shopify-Topic"
	ShopifyEventIDHeader   = "X-Shopify-Event-Id"
	ShopifyWebhookIDHeader = "X-Shopify-Webhook-Id"
)

// DefaultTolerance is the replay window of hmac mode with a timestamp_header.
const DefaultTolerance = 5 * time.Minute

// Errors. Verify's errors wrap ErrUnauthorized, Records' wrap ErrInvalidPayload,
// New's wrap ErrConfig; each says what is wrong.
var (
	ErrUnauthorized   = errors.New("webhook delivery not verified")
	ErrInvalidPayload = errors.New("invalid webhook payload")
	ErrConfig         = errors.New("invalid webhook block")
)

// Verifier checks that a delivery comes from who it claims to: body is the raw
// request body, exactly as received.
type Verifier interface {
	Verify(r *http.Request, body []byte) error
}

// Endpoint is one integration's webhook: how deliveries are verified, which
// topics are accepted, where the records are and what identifies a delivery.
type Endpoint struct {
	Mode     string
	verifier Verifier
	// topics accepted (nil: all).
	topics []string
	// topicHeaders and idHeaders are read in order; the first present wins.
	topicHeaders []string
	idHeaders    []string
	// records: the default path (nil: the body) and per-topic paths.
	records      []string
	topicRecords map[string][]string
}

// Option configures New.
type Option func(*options)

type options struct {
	now        func() time.Time
	unresolved bool
}

// WithClock sets the clock timestamps are checked against (default time.Now).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// common attributes, valid in every mode.
var commonAttrs = []string{"records", "topics", "topic_header", "id_header"}

// modeAttrs are the attributes of each mode, besides the common ones.
var modeAttrs = map[string][]string{
	ModeShopify: {"secret", "previous_secret"},
	ModeHMAC:    {"secret", "previous_secret", "header", "algorithm", "encoding", "prefix", "timestamp_header", "tolerance", "signed"},
	ModeToken:   {"token", "header", "prefix"},
	ModeBasic:   {"username", "password"},
	ModeNone:    {},
}

// Attributes lists the attributes valid with verify = mode (nil for an unknown
// mode), for the grammar's documentation and validation.
func Attributes(mode string) []string {
	m, ok := modeAttrs[mode]
	if !ok {
		return nil
	}
	out := append(slices.Clone(commonAttrs), m...)
	sort.Strings(out)
	return out
}

// New builds the Endpoint of a webhook block: verify is its verify attribute
// ("" means none), attrs the others with every secret() already resolved
// (lang.ResolveSecrets). A value still marked as a secret is an error, so a
// placeholder can never become a key.
func New(verify string, attrs map[string]cty.Value, opts ...Option) (*Endpoint, error) {
	o := options{now: time.Now}
	for _, f := range opts {
		f(&o)
	}
	return build(verify, attrs, o)
}

// Check validates a webhook block's attributes without resolving its
// secrets (at validate or apply time): unknown attributes, wrong types, bad
// values.
func Check(verify string, attrs map[string]cty.Value) error {
	_, err := build(verify, attrs, options{now: time.Now, unresolved: true})
	return err
}

func build(verify string, attrs map[string]cty.Value, o options) (*Endpoint, error) {
	if verify == "" {
		verify = ModeNone
	}
	own, ok := modeAttrs[verify]
	if !ok {
		return nil, fmt.Errorf("%w: verify = %q; use one of shopify, hmac, token, basic, none", ErrConfig, verify)
	}
	a := &attrReader{attrs: attrs, unresolved: o.unresolved}
	for name := range attrs {
		if !slices.Contains(commonAttrs, name) && !slices.Contains(own, name) {
			return nil, fmt.Errorf("%w: %q is not an attribute of a webhook with verify = %q; it takes: %s",
				ErrConfig, name, verify, strings.Join(Attributes(verify), ", "))
		}
	}
	e := &Endpoint{Mode: verify}
	var err error
	switch verify {
	case ModeShopify:
		e.verifier, err = newShopify(a)
		e.topicHeaders = []string{ShopifyTopicHeader, "Shopify-Topic"}
		e.idHeaders = []string{ShopifyEventIDHeader, "Shopify-Event-Id", ShopifyWebhookIDHeader, "Shopify-Webhook-Id"}
	case ModeHMAC:
		e.verifier, err = newHMAC(a, o.now)
	case ModeToken:
		e.verifier, err = newToken(a)
	case ModeBasic:
		e.verifier, err = newBasic(a)
	case ModeNone:
		e.verifier = noneVerifier{}
	}
	if err != nil {
		return nil, err
	}
	if h, ok, err := a.header("topic_header"); err != nil {
		return nil, err
	} else if ok {
		e.topicHeaders = []string{h}
	}
	if h, ok, err := a.header("id_header"); err != nil {
		return nil, err
	} else if ok {
		e.idHeaders = []string{h}
	}
	if e.topics, err = a.stringList("topics"); err != nil {
		return nil, err
	}
	if e.topics != nil && len(e.topics) == 0 {
		return nil, fmt.Errorf("%w: topics is empty, so every delivery would be ignored; list the accepted topics, or remove topics to accept all", ErrConfig)
	}
	if err := e.readRecords(a); err != nil {
		return nil, err
	}
	if len(e.topicHeaders) == 0 {
		if e.topics != nil {
			return nil, fmt.Errorf("%w: topics needs topic_header, the request header holding the topic (e.g. \"X-GitHub-Event\")", ErrConfig)
		}
		if len(e.topicRecords) > 0 {
			return nil, fmt.Errorf("%w: records by topic needs topic_header, the request header holding the topic", ErrConfig)
		}
	}
	return e, nil
}

// VerifiesBody reports whether Verify reads the body (a signature over it);
// when it does not (token, basic, none), a server can verify before reading
// the body.
func (e *Endpoint) VerifiesBody() bool {
	switch e.Mode {
	case ModeShopify, ModeHMAC:
		return true
	}
	return false
}

// Verify checks the delivery with the block's mode; the error wraps
// ErrUnauthorized.
func (e *Endpoint) Verify(r *http.Request, body []byte) error {
	return e.verifier.Verify(r, body)
}

// Topic is the delivery's topic ("" when the block names no topic header or
// the request has none).
func (e *Endpoint) Topic(r *http.Request) string { return firstHeader(r, e.topicHeaders) }

// DeliveryID identifies a delivery for de-duplication ("" when there is none).
func (e *Endpoint) DeliveryID(r *http.Request) string { return firstHeader(r, e.idHeaders) }

// Accepts reports whether a delivery of topic starts a run: every topic does
// when the block has no topics list.
func (e *Endpoint) Accepts(topic string) bool {
	return e.topics == nil || slices.Contains(e.topics, topic)
}

// Topics are the accepted topics (nil: all).
func (e *Endpoint) Topics() []string { return slices.Clone(e.topics) }

func firstHeader(r *http.Request, names []string) string {
	for _, n := range names {
		if v := r.Header.Get(n); v != "" {
			return v
		}
	}
	return ""
}

// attrReader reads typed attribute values with errors that name the attribute.
type attrReader struct {
	attrs      map[string]cty.Value
	unresolved bool // secrets may still be placeholders (Check)
}

// placeholderPrefix is how lang writes an unresolved secret("x").
const placeholderPrefix = "((secret:"

func (a *attrReader) str(name string) (string, bool, error) {
	v, ok := a.attrs[name]
	if !ok || v.IsNull() {
		return "", false, nil
	}
	if v.ContainsMarked() {
		if !a.unresolved {
			return "", false, fmt.Errorf("%w: %s holds an unresolved secret", ErrConfig, name)
		}
		v, _ = v.UnmarkDeep()
	}
	if !v.IsWhollyKnown() {
		return "", false, fmt.Errorf("%w: %s is not known", ErrConfig, name)
	}
	s, err := convert.Convert(v, cty.String)
	if err != nil {
		return "", false, fmt.Errorf("%w: %s must be a string, not %s", ErrConfig, name, v.Type().FriendlyName())
	}
	return s.AsString(), true, nil
}

func (a *attrReader) requiredStr(name, mode string) (string, error) {
	s, ok, err := a.str(name)
	if err != nil {
		return "", err
	}
	if !ok || s == "" {
		return "", fmt.Errorf("%w: verify = %q needs %s", ErrConfig, mode, name)
	}
	return s, nil
}

// secret reads a secret-bearing attribute: resolved, never a placeholder.
func (a *attrReader) secret(name string, required bool, mode string) ([]byte, error) {
	var (
		s   string
		ok  bool
		err error
	)
	if required {
		s, err = a.requiredStr(name, mode)
		ok = err == nil
	} else {
		s, ok, err = a.str(name)
	}
	if err != nil || !ok {
		return nil, err
	}
	if !a.unresolved && strings.Contains(s, placeholderPrefix) {
		return nil, fmt.Errorf("%w: %s holds an unresolved secret", ErrConfig, name)
	}
	if s == "" {
		return nil, fmt.Errorf("%w: %s is empty", ErrConfig, name)
	}
	return []byte(s), nil
}

func (a *attrReader) oneOf(name, def string, valid ...string) (string, error) {
	s, ok, err := a.str(name)
	if err != nil {
		return "", err
	}
	if !ok {
		return def, nil
	}
	s = strings.ToLower(s)
	if !slices.Contains(valid, s) {
		return "", fmt.Errorf("%w: %s = %q; use one of %s", ErrConfig, name, s, strings.Join(valid, ", "))
	}
	return s, nil
}

func (a *attrReader) header(name string) (string, bool, error) {
	h, ok, err := a.str(name)
	if err != nil || !ok {
		return "", false, err
	}
	if !validHeaderName(h) {
		return "", false, fmt.Errorf("%w: %s = %q is not an HTTP header name", ErrConfig, name, h)
	}
	return h, true, nil
}

func (a *attrReader) stringList(name string) ([]string, error) {
	v, ok := a.attrs[name]
	if !ok || v.IsNull() {
		return nil, nil
	}
	v, _ = v.UnmarkDeep()
	if !v.IsWhollyKnown() {
		return nil, fmt.Errorf("%w: %s is not known", ErrConfig, name)
	}
	l, err := convert.Convert(v, cty.List(cty.String))
	if err != nil || l.IsNull() {
		return nil, fmt.Errorf("%w: %s must be a list of strings", ErrConfig, name)
	}
	out := []string{}
	for it := l.ElementIterator(); it.Next(); {
		_, e := it.Element()
		if e.IsNull() || e.AsString() == "" {
			return nil, fmt.Errorf("%w: %s holds an empty value", ErrConfig, name)
		}
		out = append(out, e.AsString())
	}
	return out, nil
}

func (a *attrReader) duration(name string, def time.Duration) (time.Duration, error) {
	v, ok := a.attrs[name]
	if !ok || v.IsNull() {
		return def, nil
	}
	if v.Type() == cty.Number {
		return 0, fmt.Errorf("%w: %s must be a duration such as \"5m\" or \"300s\"", ErrConfig, name)
	}
	s, _, err := a.str(name)
	if err != nil {
		return 0, err
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%w: %s = %q is not a positive duration such as \"5m\" or \"300s\"", ErrConfig, name, s)
	}
	return d, nil
}

// validHeaderName: an RFC 9110 token.
func validHeaderName(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
