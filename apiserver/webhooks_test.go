package apiserver

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/runtime"
)

// The Shopify fixtures and their HMACs (webhook-headers.md), copied to the
// webhook package's testdata.
const (
	shopSecret   = "hush_this_is_a_test_client_secret"
	productsHMAC = "f2YENZiILvQx2mdhkoOFUkBF9ZlsgJWDCep4OFoRQ+I="
	// Shopify's sample product id: above 2^53, so a float64 would round it.
	bigID = "788032119674292922"
)

func productsFixture(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("webhook/testdata/webhook-products-update.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func shopifySign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// webhookConfig: integration "products" (shopify webhook) appends what it
// receives to dir/out.ndjson; "plain" has no webhook block; "signed" is an
// hmac webhook with replay protection, for the products/* topics only.
func webhookConfig(dir string) map[string]any {
	target := `
  target {
    connection = connection.files
    path       = "%s"
    format     = "ndjson"
    append     = true
  }
  retry {
    max_attempts = 1
  }`
	return map[string]any{"files": map[string]string{"main.hcl": `ferry {
  tenant = "acme"
}

connection "files" {
  type = "file"
  path = "` + filepath.ToSlash(dir) + `"
}

mapping "m" {
  key = "string(id)"
  fields = {
    id    = "id"
    title = "title"
  }
}

integration "products" {
  source {
    connection = connection.files
    path       = "in.json"
  }
  transform {
    mapping = mapping.m
  }` + fmt.Sprintf(target, "out.ndjson") + `
  webhook {
    verify = "shopify"
    secret = secret("shopify_webhook_secret")
  }
}

integration "plain" {
  source {
    connection = connection.files
    path       = "in.json"
  }` + fmt.Sprintf(target, "plain.ndjson") + `
}

integration "signed" {
  source {
    connection = connection.files
    path       = "in.json"
  }` + fmt.Sprintf(target, "signed.ndjson") + `
  webhook {
    verify           = "hmac"
    secret           = secret("hook_secret")
    header           = "X-Signature"
    prefix           = "sha256="
    timestamp_header = "X-Timestamp"
    tolerance        = "5m"
    topic_header     = "X-Event"
    id_header        = "X-Delivery"
    topics           = ["items/create", "items/update"]
    records          = "data.items"
  }
}

integration "pushed" {
  source {
    connection = connection.files
    path       = "in.json"
  }` + fmt.Sprintf(target, "pushed.ndjson") + `
  webhook {
    verify = "token"
    token  = secret("hook_secret")
  }
}
`}}
}

// webhookEnv is acme with webhookConfig applied and its secrets set.
func webhookEnv(t *testing.T) (e *env, user, dir string) {
	e = newRunEnv(t)
	user = e.tenantWithKey("acme", RoleUser)
	dir = t.TempDir()
	e.expect(e.do("PUT", "/v1/secrets/shopify_webhook_secret", user, map[string]any{"value": shopSecret}), 201)
	e.expect(e.do("PUT", "/v1/secrets/hook_secret", user, map[string]any{"value": "hmac-key"}), 201)
	e.expect(e.do("PUT", "/v1/config", user, webhookConfig(dir), "If-Match", "0"), 200)
	return e, user, dir
}

func shopifyHeaders(hmac, eventID string) []string {
	return []string{
		"X-Shopify-Topic", "products/update",
		"X-Shopify-Hmac-Sha256", hmac,
		"X-Shopify-Shop-Domain", "acme-apparel.myshopify.com",
		"X-Shopify-API-Version", "2025-07",
		"X-Shopify-Webhook-Id", "wh-" + eventID,
		"X-Shopify-Event-Id", eventID,
	}
}

// waitEnded waits for a run to end and returns it.
func (e *env) waitEnded(id string) *runtime.Run {
	e.t.Helper()
	run, err := e.s.waitRun(e.t.Context(), "acme", id, 60*time.Second)
	if err != nil {
		e.t.Fatal(err)
	}
	if !run.Finished() {
		e.t.Fatalf("run %s did not end: %+v", id, run)
	}
	return run
}

// runTotal is the number of acme's runs (started or queued).
func (e *env) runTotal(user string) int {
	e.t.Helper()
	m := e.expect(e.do("GET", "/v1/runs?pageSize=1", user, nil), 200).json(e.t)
	return int(m["total"].(float64))
}

func TestWebhookShopify(t *testing.T) {
	e, user, dir := webhookEnv(t)
	products := productsFixture(t)

	// The fixture with the HMAC Shopify's recipe gives: 202, and a run.
	r := e.expect(e.do("POST", "/v1/webhooks/acme/products", "", products, shopifyHeaders(productsHMAC, "ev-1")...), 202)
	m := r.json(t)
	first, _ := m["runId"].(string)
	if first == "" || m["records"] != 1.0 || m["duplicate"] != nil || r.header.Get("Location") != "/v1/runs/"+first {
		t.Fatalf("answer %v %v", m, r.header)
	}
	run := e.waitEnded(first)
	if run.Status != "succeeded" || run.Trigger != "webhook" || run.Counts.Success != 1 {
		t.Fatalf("run %+v", run)
	}

	// A record with a 64-bit id lands with its exact id.
	big := []byte(`{"id":` + bigID + `,"title":"Example T-Shirt","admin_graphql_api_id":"gid:\/\/shopify\/Product\/` + bigID + `"}`)
	m = e.expect(e.do("POST", "/v1/webhooks/acme/products", "", big, shopifyHeaders(shopifySign(shopSecret, big), "ev-2")...), 202).json(t)
	e.waitEnded(m["runId"].(string))
	out, err := os.ReadFile(filepath.Join(dir, "out.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte(`"id":8123456789012`)) || !bytes.Contains(out, []byte(`"id":`+bigID+`,`)) {
		t.Fatalf("target file:\n%s", out)
	}
	if n := bytes.Count(out, []byte("\n")); n != 2 {
		t.Errorf("target has %d records, want 2:\n%s", n, out)
	}

	// A repeated delivery (same X-Shopify-Event-Id, as Shopify's retries
	// send): 200, the first run, nothing new.
	before := e.runTotal(user)
	d := e.expect(e.do("POST", "/v1/webhooks/acme/products", "", products, shopifyHeaders(productsHMAC, "ev-1")...), 200).json(t)
	if d["duplicate"] != true || d["runId"] != first {
		t.Errorf("duplicate answer %v", d)
	}
	if n := e.runTotal(user); n != before {
		t.Errorf("a duplicate started a run: %d runs, were %d", n, before)
	}

	// Deliveries without an id are not de-duplicated: both are stored (in
	// one run or two, as they happen to join the open run).
	h := shopifyHeaders(productsHMAC, "x")[:4]
	a := e.expect(e.do("POST", "/v1/webhooks/acme/products", "", products, h...), 202).json(t)
	b := e.expect(e.do("POST", "/v1/webhooks/acme/products", "", products, h...), 202).json(t)
	e.waitEnded(a["runId"].(string))
	e.waitEnded(b["runId"].(string))
	if out := readLines(t, filepath.Join(dir, "out.ndjson")); len(out) != 4 {
		t.Errorf("target has %d records, want 4", len(out))
	}

	metrics := string(e.expect(e.do("GET", "/metrics", "", nil), 200).body)
	for _, want := range []string{
		`ferry_webhook_requests_total{outcome="accepted",tenant="acme"} 4`,
		`ferry_webhook_requests_total{outcome="duplicate",tenant="acme"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s:\n%s", want, grepLines(metrics, "ferry_webhook"))
		}
	}
}

func TestWebhookRejects(t *testing.T) {
	e, user, dir := webhookEnv(t)
	products := productsFixture(t)
	before := e.runTotal(user)
	post := func(path string, body []byte, headers ...string) resp {
		return e.do("POST", path, "", body, headers...)
	}

	// Bad signatures: 401, problem+json.
	tampered := bytes.Replace(products, []byte(`"19.99"`), []byte(`"0.01"`), 1)
	respaced := bytes.ReplaceAll(products, []byte(`": `), []byte(`":`))
	for name, c := range map[string]struct {
		body []byte
		hdrs []string
	}{
		"tampered body":  {tampered, shopifyHeaders(productsHMAC, "t1")},
		"whitespace":     {respaced, shopifyHeaders(productsHMAC, "t2")},
		"wrong secret":   {products, shopifyHeaders(shopifySign("guess", products), "t3")},
		"tampered hmac":  {products, shopifyHeaders("f2YENZiILvQx2mdhkoOFUkBF9ZlsgJWDCep4OFoRQ+J=", "t4")},
		"missing hmac":   {products, []string{"X-Shopify-Topic", "products/update", "X-Shopify-Event-Id", "t5"}},
		"hmac of {}":     {[]byte(`{}`), shopifyHeaders(productsHMAC, "t6")},
		"not base64":     {products, shopifyHeaders("%%%", "t7")},
		"an api key":     {products, []string{"Authorization", "ApiKey " + user}},
		"empty, no hmac": {nil, nil},
	} {
		r := post("/v1/webhooks/acme/products", c.body, c.hdrs...)
		if r.status != 401 || !strings.HasPrefix(r.header.Get("Content-Type"), "application/problem+json") {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
	}

	// Unknown tenant, integration, no webhook block, names that cannot
	// exist: 404, all with the same body.
	var notFound []byte
	for _, p := range []string{"/v1/webhooks/nobody/products", "/v1/webhooks/acme/nothing", "/v1/webhooks/acme/plain",
		"/v1/webhooks/ACME/products", "/v1/webhooks/acme/pro.ducts", "/v1/webhooks/system/products", "/v1/webhooks/acme/%2e%2e"} {
		r := post(p, products, shopifyHeaders(productsHMAC, "n1")...)
		if r.status != 404 {
			t.Errorf("%s: %d %s", p, r.status, r.body)
			continue
		}
		if notFound == nil {
			notFound = r.body
		} else if !bytes.Equal(r.body, notFound) {
			t.Errorf("%s: another 404 body:\n%s\n%s", p, r.body, notFound)
		}
	}
	if bytes.Contains(notFound, []byte("acme")) || bytes.Contains(notFound, []byte("products")) {
		t.Errorf("the 404 names what was asked: %s", notFound)
	}

	// Over the limit (the test server's 64 KiB): 413, declared or streamed.
	huge := append([]byte(`{"id":1,"pad":"`), bytes.Repeat([]byte("x"), 70<<10)...)
	huge = append(huge, `"}`...)
	if r := post("/v1/webhooks/acme/products", huge, shopifyHeaders(shopifySign(shopSecret, huge), "big")...); r.status != 413 {
		t.Errorf("oversized: %d %s", r.status, r.body)
	}
	req := mustRequest(e.srv.URL+"/v1/webhooks/acme/products", huge, "X-Shopify-Hmac-Sha256", shopifySign(shopSecret, huge))
	req.Body, req.ContentLength = io.NopCloser(struct{ io.Reader }{bytes.NewReader(huge)}), -1 // no Content-Length
	if r := doRaw(t, req); r.status != 413 {
		t.Errorf("oversized, chunked: %d %s", r.status, r.body)
	}

	// Verified, but no records: 422.
	for _, body := range []string{`not json`, `[1,2]`, `"x"`, `{"id":1}{"id":2}`, ``} {
		if r := post("/v1/webhooks/acme/products", []byte(body), shopifyHeaders(shopifySign(shopSecret, []byte(body)), "bad")...); r.status != 422 {
			t.Errorf("%q: %d %s", body, r.status, r.body)
		}
	}

	// Other methods: 405.
	if r := e.do("GET", "/v1/webhooks/acme/products", "", nil); r.status != 405 {
		t.Errorf("GET: %d", r.status)
	}

	// Nothing of this started a run or reached the target.
	if n := e.runTotal(user); n != before {
		t.Errorf("rejected deliveries started runs: %d, were %d", n, before)
	}
	if _, err := os.Stat(filepath.Join(dir, "out.ndjson")); err == nil {
		t.Error("a rejected delivery was written")
	}
	info, err := e.s.runs.inputs.Info(t.Context())
	if err != nil || info.State.Msgs != 0 {
		t.Errorf("input stream: %+v %v", info.State, err)
	}

	// A deactivated integration: verified deliveries are refused (the
	// sender retries), nothing is enqueued.
	e.expect(e.do("POST", "/v1/integrations/products/deactivate", user, nil), 200)
	if r := post("/v1/webhooks/acme/products", products, shopifyHeaders(productsHMAC, "inactive")...); r.status != 409 {
		t.Errorf("inactive: %d %s", r.status, r.body)
	}
	// A webhook whose secret is missing cannot verify anything: 503, and
	// the problem does not say why (the log does).
	e.expect(e.do("POST", "/v1/integrations/products/activate", user, nil), 200)
	e.expect(e.do("DELETE", "/v1/secrets/shopify_webhook_secret", user, nil, "If-Match", "*"), 204)
	defer func(d time.Duration) { webhookEndpointTTL = d }(webhookEndpointTTL)
	webhookEndpointTTL = 0 // the cached endpoint still has the secret
	if r := post("/v1/webhooks/acme/products", products, shopifyHeaders(productsHMAC, "nosecret")...); r.status != 503 || bytes.Contains(r.body, []byte("shopify_webhook_secret")) {
		t.Errorf("missing secret: %d %s", r.status, r.body)
	}
	if n := e.runTotal(user); n != before {
		t.Errorf("runs: %d, were %d", n, before)
	}

	// Outcomes are counted.
	metrics := string(e.expect(e.do("GET", "/metrics", "", nil), 200).body)
	for _, want := range []string{
		`ferry_webhook_requests_total{outcome="unauthorized",tenant="acme"} 9`,
		`ferry_webhook_requests_total{outcome="not_found",tenant=""} 7`,
		`ferry_webhook_requests_total{outcome="too_large",tenant="acme"} 2`,
		`ferry_webhook_requests_total{outcome="invalid",tenant="acme"} 5`,
		`ferry_webhook_requests_total{outcome="unavailable",tenant="acme"} 2`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s:\n%s", want, grepLines(metrics, "ferry_webhook"))
		}
	}
}

func TestWebhookHMACTopicsAndRecords(t *testing.T) {
	e, user, dir := webhookEnv(t)
	sign := func(ts string, body []byte) string {
		m := hmac.New(sha256.New, []byte("hmac-key"))
		m.Write([]byte(ts + "."))
		m.Write(body)
		return "sha256=" + hex.EncodeToString(m.Sum(nil))
	}
	now := strconv.FormatInt(e.clock.Now().Unix(), 10)
	body := []byte(`{"data":{"items":[{"id":` + bigID + `,"n":1},{"id":2,"n":2}]}}`)

	r := e.expect(e.do("POST", "/v1/webhooks/acme/signed", "", body, "X-Signature", sign(now, body), "X-Timestamp", now, "X-Event", "items/create", "X-Delivery", "d-1"), 202).json(t)
	if r["records"] != 2.0 {
		t.Errorf("answer %v", r)
	}
	e.waitEnded(r["runId"].(string))
	out := readLines(t, filepath.Join(dir, "signed.ndjson"))
	if len(out) != 2 {
		t.Fatalf("signed.ndjson: %v", out)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "signed.ndjson"))
	if !bytes.Contains(raw, []byte(bigID)) {
		t.Errorf("id changed: %s", raw)
	}

	// A topic the block does not list: acknowledged, ignored, no run.
	before := e.runTotal(user)
	ig := e.expect(e.do("POST", "/v1/webhooks/acme/signed", "", body, "X-Signature", sign(now, body), "X-Timestamp", now, "X-Event", "orders/create", "X-Delivery", "d-2"), 200).json(t)
	if ig["ignored"] != true || ig["topic"] != "orders/create" || ig["runId"] != nil {
		t.Errorf("ignored answer %v", ig)
	}
	// A replay of the first delivery ten minutes later: its signature is
	// still right, its timestamp is not.
	e.clock.Add(10 * time.Minute)
	if r := e.do("POST", "/v1/webhooks/acme/signed", "", body, "X-Signature", sign(now, body), "X-Timestamp", now, "X-Event", "items/create", "X-Delivery", "d-3"); r.status != 401 {
		t.Errorf("replay: %d %s", r.status, r.body)
	}
	// Records not where the block says: 422.
	now = strconv.FormatInt(e.clock.Now().Unix(), 10)
	flat := []byte(`[{"id":1}]`)
	if r := e.do("POST", "/v1/webhooks/acme/signed", "", flat, "X-Signature", sign(now, flat), "X-Timestamp", now, "X-Event", "items/update"); r.status != 422 || !bytes.Contains(r.body, []byte("data.items")) {
		t.Errorf("records elsewhere: %d %s", r.status, r.body)
	}
	if n := e.runTotal(user); n != before {
		t.Errorf("runs: %d, were %d", n, before)
	}
}

// Token (and basic) deliveries are checked before the body is read: a
// wrong token with a huge body is 401, not 413.
func TestWebhookToken(t *testing.T) {
	e, user, dir := webhookEnv(t)
	body := []byte(`[{"id":1},{"id":2}]`)
	r := e.expect(e.do("POST", "/v1/webhooks/acme/pushed", "", body, "Authorization", "Bearer hmac-key"), 202).json(t)
	if r["records"] != 2.0 {
		t.Errorf("answer %v", r)
	}
	e.waitEnded(r["runId"].(string))
	if out := readLines(t, filepath.Join(dir, "pushed.ndjson")); len(out) != 2 {
		t.Errorf("pushed.ndjson: %v", out)
	}
	before := e.runTotal(user)
	huge := bytes.Repeat([]byte(" "), 1<<20)
	for _, h := range []string{"Bearer wrong", "hmac-key", "ApiKey " + user, ""} {
		if r := e.do("POST", "/v1/webhooks/acme/pushed", "", huge, "Authorization", h); r.status != 401 {
			t.Errorf("%q: %d %s", h, r.status, r.body)
		}
	}
	if r := e.do("POST", "/v1/webhooks/acme/pushed", "", huge, "Authorization", "Bearer hmac-key"); r.status != 413 {
		t.Errorf("right token, huge body: %d %s", r.status, r.body)
	}
	if n := e.runTotal(user); n != before {
		t.Errorf("runs: %d, were %d", n, before)
	}
}

// A burst of concurrent deliveries: every one is stored and run, every
// record lands, none twice; they share runs (group commit).
func TestWebhookBurst(t *testing.T) {
	e, _, dir := webhookEnv(t)
	const n = 200
	var wg sync.WaitGroup
	ids := make([]string, n)
	start := time.Now()
	errs := make(chan string, n)
	for i := range n {
		wg.Go(func() {
			body := []byte(fmt.Sprintf(`{"id":%d,"title":"item %d"}`, 9007199254740993+i, i)) // 2^53+1+i
			r := doRaw(t, mustRequest(e.srv.URL+"/v1/webhooks/acme/products", body, shopifyHeaders(shopifySign(shopSecret, body), fmt.Sprintf("burst-%d", i))...))
			if r.status != 202 {
				errs <- fmt.Sprintf("delivery %d: %d %s", i, r.status, r.body)
				return
			}
			ids[i] = r.json(t)["runId"].(string)
		})
	}
	wg.Wait()
	accepted := time.Since(start)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	runs := map[string]int64{} // run → records
	for _, id := range ids {
		if _, ok := runs[id]; ok {
			continue
		}
		run := e.waitEnded(id)
		if run.Status != "succeeded" {
			t.Fatalf("run %s: %+v", id, run)
		}
		runs[id] = run.Counts.Success
	}
	var total int64
	for _, c := range runs {
		total += c
	}
	if total != n || len(runs) >= n {
		t.Errorf("%d runs with %d records for %d deliveries: want them to share runs, with every record once", len(runs), total, n)
	}
	t.Logf("%d concurrent deliveries accepted in %s, in %d runs; all ended after %s", n, accepted.Round(time.Millisecond), len(runs), time.Since(start).Round(time.Millisecond))
	raw, err := os.ReadFile(filepath.Join(dir, "out.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSpace(raw), []byte("\n"))
	if len(lines) != n {
		t.Fatalf("%d records landed, want %d", len(lines), n)
	}
	for i := range n {
		if !bytes.Contains(raw, []byte(`"id":`+strconv.Itoa(9007199254740993+i)+`,`)) {
			t.Errorf("record %d (id %d) missing or changed", i, 9007199254740993+i)
		}
	}
}

func mustRequest(url string, body []byte, headers ...string) *http.Request {
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	if err != nil {
		panic(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return req
}

// doRaw sends req (from any goroutine).
func doRaw(t testing.TB, req *http.Request) resp {
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return resp{}
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{status: res.StatusCode, header: res.Header, body: b}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
