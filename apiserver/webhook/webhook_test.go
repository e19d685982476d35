package webhook

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"hash"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zclconf/go-cty/cty"
)

// From /work/shared/fixtures/shopify/webhook-headers.md (the fixture files are
// copied to testdata unchanged; their SHA-256 is checked below).
const (
	shopSecret     = "hush_this_is_a_test_client_secret"
	workedBody     = `{"id":8123456789012,"title":"Organic Cotton Tee","updated_at":"2025-03-18T14:27:05-04:00"}`
	workedHMAC     = "T2pPsAfcgivCUJwHtSjLsWa/E2MQHM1UoVFNwlDSeXY="
	spacedBody     = `{"id": 8123456789012, "title": "Organic Cotton Tee", "updated_at": "2025-03-18T14:27:05-04:00"}`
	spacedHMAC     = "rRuFOrR/J0eJBaVkPEiVCLuC3MgY0UkKpX6CvHIQjMY="
	escapedBody    = `{"admin_graphql_api_id":"gid:\/\/shopify\/Product\/8123456789012"}`
	escapedHMAC    = "P1drH3EY8JxPKcc8pUpZRwln6jwgtvW2f4+TbIPkcVQ="
	unescapedBody  = `{"admin_graphql_api_id":"gid://shopify/Product/8123456789012"}`
	unescapedHMAC  = "AsXNO/7KBy4FuiGtBgspapDUWigROv6DtEyI4C2gXP8="
	productsHMAC   = "f2YENZiILvQx2mdhkoOFUkBF9ZlsgJWDCep4OFoRQ+I="
	ordersHMAC     = "f+4dX/e5UEN6UjRgrwTSKiNJSBVt7GB2jfdyvtPqFmU="
	productsSHA256 = "fbe64516886fe520ec5e6ca35054a1713859e17ed4860b84a6a9cb49873f267d"
	ordersSHA256   = "65f728ef035a4d193e069a3d239d5796f6818f8ad4bfd323c97ec6b763a19e80"
)

func fixture(t testing.TB, name, wantSHA string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != wantSHA {
		t.Fatalf("testdata/%s changed (sha256 %x); its HMAC in webhook-headers.md no longer applies", name, sum)
	}
	return b
}

func strs(kv ...string) map[string]cty.Value {
	m := map[string]cty.Value{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = cty.StringVal(kv[i+1])
	}
	return m
}

func mustNew(t testing.TB, verify string, attrs map[string]cty.Value, opts ...Option) *Endpoint {
	t.Helper()
	e, err := New(verify, attrs, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func req(headers ...string) *http.Request {
	r := httptest.NewRequest("POST", "/v1/webhooks/acme/x", nil)
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Set(headers[i], headers[i+1])
	}
	return r
}

func TestShopifyFixtures(t *testing.T) {
	e := mustNew(t, "shopify", strs("secret", shopSecret))
	products := fixture(t, "webhook-products-update.json", productsSHA256)
	orders := fixture(t, "webhook-orders-create.json", ordersSHA256)
	ok := map[string]struct {
		body []byte
		hmac string
	}{
		"worked example":       {[]byte(workedBody), workedHMAC},
		"spaced":               {[]byte(spacedBody), spacedHMAC},
		"escaped slashes":      {[]byte(escapedBody), escapedHMAC},
		"unescaped slashes":    {[]byte(unescapedBody), unescapedHMAC},
		"products/update file": {products, productsHMAC},
		"orders/create file":   {orders, ordersHMAC},
	}
	for name, c := range ok {
		if err := e.Verify(req(ShopifyHMACHeader, c.hmac), c.body); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		// HTTP/2 lowercases header names; Events deliveries drop the X-.
		r := req()
		r.Header["x-shopify-hmac-sha256"] = nil
		r.Header.Set("shopify-hmac-sha256", c.hmac)
		if err := e.Verify(r, c.body); err != nil {
			t.Errorf("%s via shopify-hmac-sha256: %v", name, err)
		}
	}

	bad := map[string]struct {
		body []byte
		hdrs []string
	}{
		"whitespace change":         {[]byte(spacedBody), []string{ShopifyHMACHeader, workedHMAC}},
		"re-encoded slashes":        {[]byte(unescapedBody), []string{ShopifyHMACHeader, escapedHMAC}},
		"tampered body":             {bytes.Replace(products, []byte("19.99"), []byte("0.01"), 1), []string{ShopifyHMACHeader, productsHMAC}},
		"trailing newline dropped":  {bytes.TrimRight(products, "\n"), []string{ShopifyHMACHeader, productsHMAC}},
		"other file's hmac":         {orders, []string{ShopifyHMACHeader, productsHMAC}},
		"tampered header":           {[]byte(workedBody), []string{ShopifyHMACHeader, "T2pPsAfcgivCUJwHtSjLsWa/E2MQHM1UoVFNwlDSeXZ="}},
		"truncated header":          {[]byte(workedBody), []string{ShopifyHMACHeader, workedHMAC[:20]}},
		"hex instead of base64":     {[]byte(workedBody), []string{ShopifyHMACHeader, "4f6a4fb007dc822bc2509c07b528cbb166bf1363101ccd54a1514dc250d27976"}},
		"missing header":            {[]byte(workedBody), nil},
		"empty header":              {[]byte(workedBody), []string{ShopifyHMACHeader, ""}},
		"hmac in another header":    {[]byte(workedBody), []string{"X-Signature", workedHMAC}},
		"empty body with its hmac?": {nil, []string{ShopifyHMACHeader, workedHMAC}},
	}
	for name, c := range bad {
		err := e.Verify(req(c.hdrs...), c.body)
		if !errors.Is(err, ErrUnauthorized) {
			t.Errorf("%s: %v, want ErrUnauthorized", name, err)
		}
	}
	// Another secret fails.
	other := mustNew(t, "shopify", strs("secret", "another_secret"))
	if err := other.Verify(req(ShopifyHMACHeader, workedHMAC), []byte(workedBody)); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("other secret: %v", err)
	}
	// Rotation: the previous secret still verifies.
	rot := mustNew(t, "shopify", strs("secret", "new_secret", "previous_secret", shopSecret))
	if err := rot.Verify(req(ShopifyHMACHeader, workedHMAC), []byte(workedBody)); err != nil {
		t.Errorf("previous secret: %v", err)
	}
}

func TestShopifyHeaders(t *testing.T) {
	e := mustNew(t, "shopify", strs("secret", shopSecret))
	r := req(ShopifyTopicHeader, "products/update", ShopifyWebhookIDHeader, "wh-1", ShopifyEventIDHeader, "ev-1")
	if e.Topic(r) != "products/update" || e.DeliveryID(r) != "ev-1" {
		t.Errorf("topic %q id %q", e.Topic(r), e.DeliveryID(r))
	}
	r = req(ShopifyWebhookIDHeader, "wh-1", "shopify-topic", "orders/create")
	if e.Topic(r) != "orders/create" || e.DeliveryID(r) != "wh-1" {
		t.Errorf("topic %q id %q (no event id: the webhook id)", e.Topic(r), e.DeliveryID(r))
	}
	if e.DeliveryID(req()) != "" || e.Topic(req()) != "" {
		t.Error("no headers: no topic, no id")
	}
}

func sign(h func() hash.Hash, key string, parts ...string) []byte {
	m := hmac.New(h, []byte(key))
	for _, p := range parts {
		m.Write([]byte(p))
	}
	return m.Sum(nil)
}

func TestHMAC(t *testing.T) {
	body := `{"id":788032119674292922}`
	for _, alg := range []struct {
		name string
		h    func() hash.Hash
	}{{"sha256", sha256.New}, {"sha512", sha512.New}} {
		for _, enc := range []string{"hex", "base64"} {
			encode := hex.EncodeToString
			if enc == "base64" {
				encode = base64.StdEncoding.EncodeToString
			}
			for _, prefix := range []string{"", alg.name + "="} {
				name := alg.name + "/" + enc + "/prefix=" + prefix
				t.Run(name, func(t *testing.T) {
					e := mustNew(t, "hmac", strs("secret", "s3cret", "header", "X-Signature", "algorithm", alg.name, "encoding", enc, "prefix", prefix))
					good := prefix + encode(sign(alg.h, "s3cret", body))
					if err := e.Verify(req("x-signature", good), []byte(body)); err != nil {
						t.Fatal(err)
					}
					if enc == "hex" {
						if err := e.Verify(req("X-Signature", prefix+strings.ToUpper(encode(sign(alg.h, "s3cret", body)))), []byte(body)); err != nil {
							t.Errorf("upper-case hex: %v", err)
						}
					}
					for bname, hdr := range map[string]string{
						"wrong key":       prefix + encode(sign(alg.h, "other", body)),
						"wrong algorithm": prefix + encode(sign(map[bool]func() hash.Hash{true: sha512.New, false: sha256.New}[alg.name == "sha256"], "s3cret", body)),
						"no prefix":       strings.TrimPrefix(good, prefix) + map[bool]string{true: "x", false: ""}[prefix == ""],
						"garbage":         prefix + "!!!",
						"empty":           "",
					} {
						if err := e.Verify(req("X-Signature", hdr), []byte(body)); !errors.Is(err, ErrUnauthorized) {
							t.Errorf("%s: %v", bname, err)
						}
					}
					if err := e.Verify(req("X-Signature", good), []byte(body+" ")); !errors.Is(err, ErrUnauthorized) {
						t.Errorf("changed body: %v", err)
					}
				})
			}
		}
	}
}

func TestHMACTimestamp(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	body := `{"id":1}`
	e := mustNew(t, "hmac", strs("secret", "k", "header", "X-Sig", "timestamp_header", "X-Timestamp", "tolerance", "5m"), WithClock(clock))
	at := func(ts time.Time) (string, string) {
		s := strconv.FormatInt(ts.Unix(), 10)
		return s, hex.EncodeToString(sign(sha256.New, "k", s, ".", body))
	}
	ts, sig := at(now.Add(-4 * time.Minute))
	if err := e.Verify(req("X-Sig", sig, "X-Timestamp", ts), []byte(body)); err != nil {
		t.Errorf("within tolerance: %v", err)
	}
	ts, sig = at(now.Add(-6 * time.Minute)) // a replay of an old delivery
	if err := e.Verify(req("X-Sig", sig, "X-Timestamp", ts), []byte(body)); !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "tolerance") {
		t.Errorf("replay outside tolerance: %v", err)
	}
	ts, sig = at(now.Add(6 * time.Minute))
	if err := e.Verify(req("X-Sig", sig, "X-Timestamp", ts), []byte(body)); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("future: %v", err)
	}
	// A fresh timestamp on an old signature: the timestamp is signed, so no.
	ts, sig = at(now.Add(-time.Hour))
	fresh := strconv.FormatInt(now.Unix(), 10)
	if err := e.Verify(req("X-Sig", sig, "X-Timestamp", fresh), []byte(body)); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("swapped timestamp: %v", err)
	}
	_ = ts
	if err := e.Verify(req("X-Sig", sig), []byte(body)); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("missing timestamp: %v", err)
	}
	if err := e.Verify(req("X-Sig", sig, "X-Timestamp", "yesterday"), []byte(body)); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("bad timestamp: %v", err)
	}
	// Milliseconds and RFC 3339, and a Slack-style template.
	slack := mustNew(t, "hmac", strs("secret", "k", "header", "X-Slack-Signature", "prefix", "v0=", "timestamp_header", "X-Slack-Request-Timestamp", "signed", "v0:{timestamp}:{body}"), WithClock(clock))
	for _, ts := range []string{strconv.FormatInt(now.UnixMilli(), 10), now.Add(time.Minute).Format(time.RFC3339Nano)} {
		sig := "v0=" + hex.EncodeToString(sign(sha256.New, "k", "v0:", ts, ":", body))
		if err := slack.Verify(req("X-Slack-Signature", sig, "X-Slack-Request-Timestamp", ts), []byte(body)); err != nil {
			t.Errorf("slack style, timestamp %s: %v", ts, err)
		}
	}
}

func TestToken(t *testing.T) {
	e := mustNew(t, "token", strs("token", "tok-123"))
	if err := e.Verify(req("Authorization", "Bearer tok-123"), nil); err != nil {
		t.Error(err)
	}
	if err := e.Verify(req("Authorization", "bearer tok-123"), nil); err != nil {
		t.Errorf("scheme is case-insensitive: %v", err)
	}
	for _, h := range []string{"", "Bearer tok-12", "Bearer tok-1234", "tok-123", "Basic tok-123", "Bearer "} {
		if err := e.Verify(req("Authorization", h), nil); !errors.Is(err, ErrUnauthorized) {
			t.Errorf("%q: %v", h, err)
		}
	}
	c := mustNew(t, "token", strs("token", "tok-123", "header", "X-Hook-Token"))
	if err := c.Verify(req("X-Hook-Token", "tok-123"), nil); err != nil {
		t.Error(err)
	}
	if err := c.Verify(req("Authorization", "Bearer tok-123"), nil); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("token in the wrong header: %v", err)
	}
}

func TestBasic(t *testing.T) {
	e := mustNew(t, "basic", strs("username", "shop", "password", "pw"))
	r := req()
	r.SetBasicAuth("shop", "pw")
	if err := e.Verify(r, nil); err != nil {
		t.Error(err)
	}
	for _, up := range [][2]string{{"shop", "pw2"}, {"shop2", "pw"}, {"", ""}, {"shop", ""}} {
		r := req()
		r.SetBasicAuth(up[0], up[1])
		if err := e.Verify(r, nil); !errors.Is(err, ErrUnauthorized) {
			t.Errorf("%v: %v", up, err)
		}
	}
	if err := e.Verify(req(), nil); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("none: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	placeholder := cty.StringVal("((secret:x))")
	cases := map[string]struct {
		verify string
		attrs  map[string]cty.Value
		want   string
	}{
		"unknown mode":                {"shopfy", nil, "verify"},
		"shopify no secret":           {"shopify", nil, "needs secret"},
		"unknown attribute":           {"shopify", strs("secret", "x", "header", "X-Sig"), `"header" is not an attribute`},
		"hmac no header":              {"hmac", strs("secret", "x"), "needs header"},
		"hmac bad algorithm":          {"hmac", strs("secret", "x", "header", "X-S", "algorithm", "md5"), "algorithm"},
		"hmac bad encoding":           {"hmac", strs("secret", "x", "header", "X-S", "encoding", "b32"), "encoding"},
		"hmac bad header":             {"hmac", strs("secret", "x", "header", "X Sig"), "not an HTTP header"},
		"tolerance without ts":        {"hmac", strs("secret", "x", "header", "X-S", "tolerance", "5m"), "tolerance needs timestamp_header"},
		"bad tolerance":               {"hmac", strs("secret", "x", "header", "X-S", "timestamp_header", "X-T", "tolerance", "soon"), "duration"},
		"unsigned timestamp":          {"hmac", strs("secret", "x", "header", "X-S", "timestamp_header", "X-T", "signed", "{body}"), "{timestamp} exactly once"},
		"no body signed":              {"hmac", strs("secret", "x", "header", "X-S", "signed", "x"), "{body} exactly once"},
		"placeholder secret":          {"shopify", map[string]cty.Value{"secret": placeholder}, "unresolved secret"},
		"marked secret":               {"token", map[string]cty.Value{"token": cty.StringVal("t").Mark("secret")}, "unresolved secret"},
		"token missing":               {"token", nil, "needs token"},
		"basic missing pw":            {"basic", strs("username", "u"), "needs password"},
		"records empty seg":           {"none", strs("records", "data..items"), "empty segment"},
		"records wrong type":          {"none", map[string]cty.Value{"records": cty.True}, "records must be"},
		"topics not a list":           {"none", map[string]cty.Value{"topics": cty.True}, "list of strings"},
		"secret wrong type":           {"shopify", map[string]cty.Value{"secret": cty.EmptyObjectVal}, "must be a string"},
		"topics empty":                {"shopify", map[string]cty.Value{"secret": cty.StringVal("x"), "topics": cty.ListValEmpty(cty.String)}, "topics is empty"},
		"topics no header":            {"token", map[string]cty.Value{"token": cty.StringVal("x"), "topics": cty.TupleVal([]cty.Value{cty.StringVal("a")})}, "topics needs topic_header"},
		"records by topic, no header": {"none", map[string]cty.Value{"records": cty.ObjectVal(map[string]cty.Value{"a": cty.StringVal("x")})}, "needs topic_header"},
	}
	for name, c := range cases {
		_, err := New(c.verify, c.attrs)
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrConfig mentioning %q", name, err, c.want)
		}
	}
	// Check accepts unresolved secrets (validate/apply time).
	if err := Check("shopify", map[string]cty.Value{"secret": placeholder.Mark("secret")}); err != nil {
		t.Errorf("Check with a placeholder: %v", err)
	}
	if err := Check("shopify", strs("secret", "x", "bogus", "y")); !errors.Is(err, ErrConfig) {
		t.Errorf("Check of an unknown attribute: %v", err)
	}
	if got := Attributes("hmac"); !strings.Contains(strings.Join(got, ","), "timestamp_header") {
		t.Errorf("Attributes(hmac) = %v", got)
	}
}

func TestTopics(t *testing.T) {
	e := mustNew(t, "none", map[string]cty.Value{
		"topics":       cty.ListVal([]cty.Value{cty.StringVal("products/update"), cty.StringVal("products/create")}),
		"topic_header": cty.StringVal("X-Event"),
		"id_header":    cty.StringVal("X-Delivery"),
	})
	if !e.Accepts("products/update") || e.Accepts("orders/create") || e.Accepts("") {
		t.Error("topics")
	}
	r := req("X-Event", "products/create", "X-Delivery", "d1")
	if e.Topic(r) != "products/create" || e.DeliveryID(r) != "d1" {
		t.Errorf("topic %q id %q", e.Topic(r), e.DeliveryID(r))
	}
	if all := mustNew(t, "none", nil); !all.Accepts("anything") || !all.Accepts("") {
		t.Error("no topics: every topic is accepted")
	}
}

func rawStrings(rs []json.RawMessage) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = string(r)
	}
	return out
}

func TestRecords(t *testing.T) {
	cases := []struct {
		path, body string
		want       []string
		err        string
	}{
		{"", `{"id":788032119674292922}`, []string{`{"id":788032119674292922}`}, ""},
		{"", ` [ {"id":1} , {"id":18446744073709551615} ] `, []string{`{"id":1}`, `{"id":18446744073709551615}`}, ""},
		{"", `[]`, []string{}, ""},
		{"data.items", `{"meta":{"items":[1]},"data":{"x":"}\"{","items":[{"id":1.50},{"id":2e3}]}}`, []string{`{"id":1.50}`, `{"id":2e3}`}, ""},
		{"data.items", `{"data":{"items":null}}`, []string{}, ""},
		{"product", `{"product":{"id":788032119674292922,"t":"a\"b"}}`, []string{`{"id":788032119674292922,"t":"a\"b"}`}, ""},
		{"a\"b", `{"a\"b":[{"x":1}]}`, []string{`{"x":1}`}, ""},
		{"data", `{"data":[{"id":1}],"data":[{"id":2}]}`, []string{`{"id":1}`}, ""}, // the first key wins, as in the file source
		{"data.items", `{"data":{"other":[]}}`, nil, `"data" has no key "items"`},
		{"data.items", `{"data":[1]}`, nil, `"data" is an array, not an object`},
		{"data", `[{"data":[]}]`, nil, "the body is an array, not an object"},
		{"data", `{"data":"x"}`, nil, "is a string"},
		{"", `[{"id":1},2]`, nil, "record 2 of the body is a number"},
		{"", `"x"`, nil, "the body is a string"},
		{"", ``, nil, "empty"},
		{"", " \n", nil, "empty"},
		{"", `{"id":1}{"id":2}`, nil, "malformed JSON"},
		{"", `{"id":1`, nil, "malformed JSON"},
		{"", `{"id":01}`, nil, "malformed JSON"},
	}
	for _, c := range cases {
		p, err := ParsePath(c.path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Extract([]byte(c.body), p)
		if c.err != "" {
			if !errors.Is(err, ErrInvalidPayload) || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q in %s: %v, want %q", c.path, c.body, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q in %s: %v", c.path, c.body, err)
			continue
		}
		if g := rawStrings(got); strings.Join(g, "|") != strings.Join(c.want, "|") || len(g) != len(c.want) {
			t.Errorf("%q in %s: %q, want %q", c.path, c.body, g, c.want)
		}
	}
}

func TestRecordsByTopic(t *testing.T) {
	e := mustNew(t, "none", map[string]cty.Value{"topic_header": cty.StringVal("X-Topic"), "records": cty.ObjectVal(map[string]cty.Value{
		"orders/create": cty.StringVal("line_items"),
		"*":             cty.StringVal("data"),
	})})
	body := []byte(`{"data":{"id":1},"line_items":[{"id":2},{"id":3}]}`)
	if got, err := e.Records("orders/create", body); err != nil || len(got) != 2 {
		t.Errorf("orders/create: %q %v", rawStrings(got), err)
	}
	if got, err := e.Records("products/update", body); err != nil || len(got) != 1 || string(got[0]) != `{"id":1}` {
		t.Errorf("default: %q %v", rawStrings(got), err)
	}

	orders := fixture(t, "webhook-orders-create.json", ordersSHA256)
	o := mustNew(t, "shopify", map[string]cty.Value{"secret": cty.StringVal(shopSecret), "records": cty.StringVal("line_items")})
	items, err := o.Records("orders/create", orders)
	if err != nil || len(items) != 2 {
		t.Fatalf("line items of the order fixture: %d %v", len(items), err)
	}
	whole, err := mustNew(t, "shopify", strs("secret", shopSecret)).Records("orders/create", orders)
	if err != nil || len(whole) != 1 || !bytes.Equal(whole[0], bytes.TrimSpace(orders)) {
		t.Errorf("the order as one record: %d %v", len(whole), err)
	}
}

// The records are the body's own bytes: ids above 2^53 are never rounded.
func TestRecordsKeepBigIDs(t *testing.T) {
	body := []byte(`[{"id":788032119674292922,"price":"19.99","n":1e400}]`)
	got, err := Extract(body, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(got[0], []byte("788032119674292922")) || !bytes.Contains(got[0], []byte("1e400")) {
		t.Errorf("record changed: %s", got[0])
	}
}
