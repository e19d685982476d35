package examples_test

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/connectors"
	"github.com/ferryhq/ferry/engine"
	"github.com/ferryhq/ferry/runtime"
)

const restIntegration = "contacts_to_customers"

// fakeCRM serves GET /contacts like a typical REST API: bearer auth, records
// under "data", at most two a page whatever the limit asked (so the example's
// cursor pagination is exercised), filtered by updated_since.
type fakeCRM struct {
	mu       sync.Mutex
	contacts []map[string]any
	queries  []string // the query string of each GET /contacts
}

func newFakeCRM(t *testing.T) (*fakeCRM, string) {
	c := &fakeCRM{contacts: []map[string]any{
		{"id": 1, "first_name": "anna", "last_name": "de vries", "company": "Brouwer Fietsen B.V.", "email": "Anna@Brouwer-Fietsen.nl", "phone": "+31 (0)20 123 4567", "city": "Amsterdam", "country": "nl", "lifetime_value": 18250.5, "marketing_opt_in": true, "updated_at": "2025-03-01T10:00:00Z"},
		{"id": 2, "first_name": "Old", "last_name": "Lead", "email": "old@example.com", "deleted": true, "updated_at": "2025-03-02T10:00:00Z"},
		{"id": 3, "first_name": "luc", "last_name": "peeters", "email": "luc@peeters.be", "country": "BE", "lifetime_value": 1500, "updated_at": "2025-03-03T10:00:00Z"},
		{"id": 4, "first_name": "jan", "last_name": "jansen", "email": "jan.at.example.com", "country": "NL", "updated_at": "2025-03-04T10:00:00Z"},
		{"id": 5, "first_name": "Marie", "last_name": "Dubois", "email": "marie@dubois.fr", "country": "FR", "lifetime_value": 320, "marketing_opt_in": "no", "updated_at": "2025-03-05T10:00:00Z"},
	}}
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	return c, srv.URL + "/api/v2"
}

func (c *fakeCRM) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer crm-token" {
		writeJSONAnswer(w, http.StatusUnauthorized, map[string]any{"error": "invalid token"})
		return
	}
	if r.Method != http.MethodGet || r.URL.Path != "/api/v2/contacts" {
		writeJSONAnswer(w, http.StatusNotFound, map[string]any{"error": "not found"})
		return
	}
	q := r.URL.Query()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.queries = append(c.queries, r.URL.RawQuery)
	limit, _ := strconv.Atoi(q.Get("limit"))
	limit = min(max(limit, 1), 2)
	start, _ := strconv.Atoi(q.Get("cursor"))
	var list []map[string]any
	for _, ct := range c.contacts {
		if ct["updated_at"].(string) > q.Get("updated_since") {
			list = append(list, ct)
		}
	}
	slices.SortFunc(list, func(a, b map[string]any) int {
		return strings.Compare(a["updated_at"].(string), b["updated_at"].(string))
	})
	list = list[min(start, len(list)):]
	var next any
	if len(list) > limit {
		list, next = list[:limit], strconv.Itoa(start+limit)
	}
	writeJSONAnswer(w, http.StatusOK, map[string]any{"data": list, "meta": map[string]any{"next_cursor": next}})
}

func (c *fakeCRM) put(contact map[string]any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, ct := range c.contacts {
		if ct["id"] == contact["id"] {
			c.contacts[i] = contact
		}
	}
}

func (c *fakeCRM) requests() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.queries)
}

// fakeERP takes PUT /customers/{number} with an API key. It refuses a
// customer whose email has no "@" (422) and answers 503 to the first try of
// the customers in unavailable.
type fakeERP struct {
	mu          sync.Mutex
	customers   map[string]map[string]any
	puts        []erpPut
	unavailable map[string]int
}

type erpPut struct {
	number, idempotencyKey string
	status                 int
}

func newFakeERP(t *testing.T) (*fakeERP, string) {
	e := &fakeERP{customers: map[string]map[string]any{}, unavailable: map[string]int{"C000003": 1}}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return e, srv.URL + "/api"
}

func (e *fakeERP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	number, ok := strings.CutPrefix(r.URL.Path, "/api/customers/")
	switch {
	case r.Header.Get("X-API-Key") != "erp-key":
		writeJSONAnswer(w, http.StatusUnauthorized, map[string]any{"error": "missing or wrong X-API-Key"})
		return
	case r.Method != http.MethodPut || !ok:
		writeJSONAnswer(w, http.StatusNotFound, map[string]any{"error": "not found"})
		return
	}
	var c map[string]any
	if err := json.NewDecoder(r.Body).Decode(&c); err != nil {
		writeJSONAnswer(w, http.StatusBadRequest, map[string]any{"error": err.Error()})
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	status := http.StatusOK
	email, _ := c["contact"].(map[string]any)["email"].(string)
	switch {
	case e.unavailable[number] > 0:
		e.unavailable[number]--
		status = http.StatusServiceUnavailable
	case !strings.Contains(email, "@"):
		status = http.StatusUnprocessableEntity
	default:
		e.customers[number] = c
	}
	e.puts = append(e.puts, erpPut{number: number, idempotencyKey: r.Header.Get("Idempotency-Key"), status: status})
	switch status {
	case http.StatusServiceUnavailable:
		writeJSONAnswer(w, status, map[string]any{"error": "maintenance, try again"})
	case http.StatusUnprocessableEntity:
		writeJSONAnswer(w, status, map[string]any{"error": "contact.email: " + email + " is not an email address"})
	default:
		writeJSONAnswer(w, status, c)
	}
}

// state returns the customers stored and the PUTs received, in order.
func (e *fakeERP) state() (map[string]map[string]any, []erpPut) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.customers, slices.Clone(e.puts)
}

func writeJSONAnswer(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func setupRestToRest(t *testing.T) (*fakeCRM, *fakeERP, *engine.Program, func(string) (string, error)) {
	crm, crmURL := newFakeCRM(t)
	erp, erpURL := newFakeERP(t)
	prog := load(t, "rest-to-rest", []string{"CRM_URL=" + crmURL, "ERP_URL=" + erpURL})
	return crm, erp, prog, secrets(map[string]string{"crm_token": "crm-token", "erp_api_key": "erp-key"})
}

// checkERP checks what the ERP holds and received after one run over the
// five contacts: 1, 3 and 5 stored (3 after a 503 and a retry with the same
// idempotency key), 4 refused once with 422 and not retried, 2 (deleted) never sent.
func checkERP(t *testing.T, erp *fakeERP) {
	t.Helper()
	customers, puts := erp.state()
	if got := slices.Sorted(maps.Keys(customers)); strings.Join(got, ",") != "C000001,C000003,C000005" {
		t.Errorf("ERP customers %v, want C000001,C000003,C000005", got)
	}
	byNumber := map[string][]erpPut{}
	for _, p := range puts {
		byNumber[p.number] = append(byNumber[p.number], p)
	}
	if p := byNumber["C000003"]; len(p) != 2 || p[0].status != 503 || p[1].status != 200 || p[0].idempotencyKey == "" || p[0].idempotencyKey != p[1].idempotencyKey {
		t.Errorf("C000003: want a 503 and a retry with the same Idempotency-Key, got %+v", p)
	}
	if p := byNumber["C000004"]; len(p) != 1 || p[0].status != 422 {
		t.Errorf("C000004: want one PUT answered 422 (permanent: no retry), got %+v", p)
	}
	if p := byNumber["C000001"]; len(p) != 1 || p[0].idempotencyKey == byNumber["C000005"][0].idempotencyKey {
		t.Errorf("C000001: %+v (each write its own idempotency key)", p)
	}
	if _, sent := byNumber["C000002"]; sent {
		t.Errorf("the deleted contact was sent")
	}
	anna := customers["C000001"]
	want := `{"address":{"city":"Amsterdam","country":"NL","country_name":"Netherlands"},"contact":{"email":"anna@brouwer-fietsen.nl","first_name":"Anna","last_name":"De Vries","phone":"+31201234567"},"external_ref":"crm:1","name":"Brouwer Fietsen B.V.","newsletter":true,"number":"C000001","segment":"key_account","source_updated_at":"2025-03-01T10:00:00Z"}`
	if b, _ := json.Marshal(anna); string(b) != want {
		t.Errorf("C000001 =\n%s\nwant\n%s", b, want)
	}
}

func TestRestToRestInMemory(t *testing.T) {
	crm, erp, prog, secret := setupRestToRest(t)
	var slept []time.Duration
	res, err := prog.Run(testCtx(t), restIntegration, engine.RunOptions{Secrets: secret,
		Sleep: func(ctx context.Context, d time.Duration) error { slept = append(slept, d); return ctx.Err() }})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != engine.RunPartial || res.Counts.Total != 5 || res.Counts.Success != 3 || res.Counts.Failed != 1 || res.Counts.Skipped != 1 {
		t.Fatalf("run: %s %+v %s", res.Status, res.Counts, res.Error)
	}
	if len(res.Failures) != 1 || res.Failures[0].Key != "4" || res.Failures[0].Category != connectors.CategoryPermanent || !strings.Contains(res.Failures[0].Message, "422") {
		t.Errorf("failures: %+v", res.Failures)
	}
	if len(slept) != 1 {
		t.Errorf("retry waits %v, want one (the 503)", slept)
	}
	checkERP(t, erp)
	// Three pages of two (the CRM's cap), each with the page size asked.
	if q := crm.requests(); len(q) != 3 || !strings.Contains(q[0], "limit=100") || strings.Contains(q[0], "cursor=") || !strings.Contains(q[2], "cursor=4") {
		t.Errorf("CRM requests: %q", q)
	}
}

func TestRestToRestDurable(t *testing.T) {
	crm, erp, prog, secret := setupRestToRest(t)
	rt := openRuntime(t)
	ctx := testCtx(t)
	tenant := prog.Config.Tenant()
	run := func() *engine.RunResult {
		t.Helper()
		res, err := rt.Run(ctx, tenant, prog, restIntegration, runtime.RunOptions{Trigger: "test", Secrets: secret})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}

	res := run()
	if res.Status != engine.RunPartial || res.Counts.Total != 5 || res.Counts.Success != 3 || res.Counts.Failed != 1 || res.Counts.Skipped != 1 {
		t.Fatalf("run: %s %+v %s", res.Status, res.Counts, res.Error)
	}
	checkERP(t, erp)

	// The 422 is in the DLQ with its error, after one attempt.
	dlq, err := rt.DLQ().List(ctx, tenant, runtime.DLQFilter{Integration: restIntegration})
	if err != nil {
		t.Fatal(err)
	}
	if len(dlq.Entries) != 1 {
		t.Fatalf("%d DLQ entries, want 1", len(dlq.Entries))
	}
	e := dlq.Entries[0]
	if e.Key != "4" || e.RunID != res.ID || e.Category != connectors.CategoryPermanent || e.Stage != engine.StageExecute ||
		!strings.Contains(e.Error, "422") || !strings.Contains(e.Error, "not an email address") || len(e.Attempts) != 1 {
		t.Errorf("DLQ entry: %+v", e)
	}
	if !strings.Contains(string(e.Record), "jan.at.example.com") {
		t.Errorf("the DLQ keeps the source record: %s", e.Record)
	}

	// The cursor moved past the failed record too: it is settled, in the DLQ.
	// Contact 1 changes; the next run asks the CRM for what changed since.
	cur, err := rt.Cursors().Get(ctx, tenant, restIntegration)
	if err != nil || cur.Value != "2025-03-05T10:00:00Z" {
		t.Fatalf("cursor %+v %v", cur, err)
	}
	crm.put(map[string]any{"id": 1, "first_name": "anna", "last_name": "de vries", "company": "Brouwer Fietsen B.V.", "email": "anna@brouwer-fietsen.nl", "city": "Utrecht", "country": "NL", "lifetime_value": 19000, "marketing_opt_in": true, "updated_at": "2025-03-10T08:00:00Z"})
	before := len(crm.requests())
	res = run()
	if res.Status != engine.RunSucceeded || res.Counts.Total != 1 || res.Counts.Success != 1 {
		t.Fatalf("second run: %s %+v %s", res.Status, res.Counts, res.Error)
	}
	if q := crm.requests()[before:]; len(q) != 1 || !strings.Contains(q[0], "updated_since=2025-03-05T10%3A00%3A00Z") {
		t.Errorf("second run's CRM requests: %q", q)
	}
	customers, _ := erp.state()
	if city := customers["C000001"]["address"].(map[string]any)["city"]; city != "Utrecht" {
		t.Errorf("C000001 city = %v after the change", city)
	}
}
