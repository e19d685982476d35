package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/runtime"
)

// fastEvents retry at once: tests never wait out real backoff.
var fastEvents = EventOptions{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Timeout: 2 * time.Second}

// newEventsEnv is newEnv with event options; the dispatcher stops before the
// runtime closes.
func newEventsEnv(t *testing.T, eo EventOptions) *env {
	t.Helper()
	rt, err := runtime.Open(context.Background(), runtime.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return serverOn(t, rt, eo)
}

// serverOn starts another Server on rt.
func serverOn(t *testing.T, rt *runtime.Runtime, eo EventOptions) *env {
	t.Helper()
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	// Its tests point file connections at absolute temporary directories.
	s, err := New(rt, Options{AdminKey: testAdminKey, MasterKey: bytes.Repeat([]byte{7}, 32), MaxBodyBytes: 64 << 10, Now: c.Now, Events: eo, HostFiles: true, AllowNetworks: loopbackNetworks})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stopEvents)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &env{t: t, s: s, rt: rt, srv: srv, clock: c}
}

type received struct {
	header http.Header
	body   []byte
}

// receiver is an event receiver; respond chooses the status of its n-th
// request (1-based; nil: 200).
type receiver struct {
	*httptest.Server
	mu      sync.Mutex
	reqs    []received
	respond func(n int) int
}

func newReceiver(t *testing.T, respond func(n int) int) *receiver {
	rc := &receiver{respond: respond}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.reqs = append(rc.reqs, received{header: r.Header.Clone(), body: b})
		n := len(rc.reqs)
		rc.mu.Unlock()
		status := 200
		if rc.respond != nil {
			status = rc.respond(n)
		}
		if status == 0 { // hang past the attempt's timeout
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte("receiver says " + http.StatusText(status)))
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.reqs...)
}

// waitFor polls cond for up to 15 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *env) subscribe(key string, body map[string]any) (id, secret string) {
	e.t.Helper()
	m := e.expect(e.do("POST", "/v1/subscriptions", key, body), 201).json(e.t)
	return m["id"].(string), m["secret"].(string)
}

func (e *env) deliveries(key, subID string) []EventDelivery {
	e.t.Helper()
	var l listOf[EventDelivery]
	r := e.expect(e.do("GET", "/v1/subscriptions/"+subID+"/deliveries", key, nil), 200)
	if err := json.Unmarshal(r.body, &l); err != nil {
		e.t.Fatal(err)
	}
	return l.Items
}

func TestConfigAppliedIsDeliveredSigned(t *testing.T) {
	e := newEventsEnv(t, fastEvents)
	key := e.tenantWithKey("acme", RoleUser)
	rc := newReceiver(t, nil)
	subID, secret := e.subscribe(key, map[string]any{"url": rc.URL + "/hooks/ferry", "types": []string{"config.applied"}})
	if !strings.HasPrefix(secret, "whsec_") || len(secret) < 30 {
		t.Fatalf("secret %q", secret)
	}
	e.expect(e.apply(key, "acme", "a", "0"), 200)

	waitFor(t, "the delivery", func() bool { return len(rc.requests()) == 1 })
	got := rc.requests()[0]
	if ct := got.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/cloudevents+json") {
		t.Errorf("Content-Type %q", ct)
	}
	var ce map[string]any
	if err := json.Unmarshal(got.body, &ce); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, got.body)
	}
	for k, want := range map[string]any{"specversion": "1.0", "source": "/ferry/acme", "type": "dev.ferry.config.applied",
		"subject": "revisions/1", "datacontenttype": "application/json", "time": "2026-03-01T12:00:00Z"} {
		if ce[k] != want {
			t.Errorf("%s = %v, want %v", k, ce[k], want)
		}
	}
	if id, _ := ce["id"].(string); !strings.HasPrefix(id, "evt_") {
		t.Errorf("id %v", ce["id"])
	}
	data, _ := ce["data"].(map[string]any)
	if data["revision"] != float64(1) || data["action"] != "config.apply" || data["appliedBy"] == "" {
		t.Errorf("data %v", data)
	}

	// The signature verifies with the secret, and only with the secret, the
	// exact body and a recent timestamp.
	sig := got.header.Get("Ferry-Signature")
	if !strings.HasPrefix(sig, "t=") || !strings.Contains(sig, ",v1=") {
		t.Fatalf("Ferry-Signature %q", sig)
	}
	now := e.clock.Now()
	if err := VerifySignature(secret, sig, got.body, 5*time.Minute, now); err != nil {
		t.Errorf("valid signature rejected: %v", err)
	}
	tampered := bytes.Replace(got.body, []byte(`"revision":1`), []byte(`"revision":2`), 1)
	if bytes.Equal(tampered, got.body) {
		t.Fatal("tampering did not change the body")
	}
	if err := VerifySignature(secret, sig, tampered, 5*time.Minute, now); !errors.Is(err, ErrSignature) {
		t.Errorf("tampered body: %v", err)
	}
	if err := VerifySignature(secret+"x", sig, got.body, 5*time.Minute, now); !errors.Is(err, ErrSignature) {
		t.Errorf("wrong secret: %v", err)
	}
	if err := VerifySignature(secret, sig, got.body, 5*time.Minute, now.Add(10*time.Minute)); !errors.Is(err, ErrSignature) {
		t.Errorf("replayed 10 minutes later: %v", err)
	}
	if got.header.Get("Ferry-Attempt") != "1" || !strings.HasPrefix(got.header.Get("Ferry-Delivery"), "dlv_") {
		t.Errorf("headers %v", got.header)
	}

	// The history has it.
	var ds []EventDelivery
	waitFor(t, "the delivered status", func() bool {
		ds = e.deliveries(key, subID)
		return len(ds) == 1 && ds[0].Status == DeliveryDelivered
	})
	d := ds[0]
	if d.ID != got.header.Get("Ferry-Delivery") || d.EventID != ce["id"] || d.EventType != "config.applied" || d.Subject != "revisions/1" ||
		d.AttemptCount != 1 || len(d.Attempts) != 1 || d.Attempts[0].StatusCode != 200 || d.Attempts[0].Error != "" {
		t.Errorf("delivery %+v", d)
	}
	// A plan (no revision) and an apply of the same files (no change) emit nothing.
	e.expect(e.do("POST", "/v1/config/plan", key, config("acme", "a")), 200)
	e.expect(e.apply(key, "acme", "a", "1"), 200)
	time.Sleep(100 * time.Millisecond)
	if n := len(rc.requests()); n != 1 {
		t.Errorf("%d deliveries, want 1", n)
	}
}

func TestSubscriptionSecretIsShownOnce(t *testing.T) {
	e := newEventsEnv(t, fastEvents)
	key := e.tenantWithKey("acme", RoleUser)
	viewer := e.key("acme", RoleViewer)
	rc := newReceiver(t, nil)
	id, secret := e.subscribe(key, map[string]any{"url": rc.URL, "types": []string{"run.failed", "run.completed", "run.failed"}, "description": "ops"})
	g := e.expect(e.do("GET", "/v1/subscriptions/"+id, viewer, nil), 200)
	etag := g.header.Get("ETag")
	put := e.expect(e.do("PUT", "/v1/subscriptions/"+id, key, map[string]any{"url": rc.URL + "/v2", "types": []string{"run.failed"}}, "If-Match", etag), 200)
	list := e.expect(e.do("GET", "/v1/subscriptions", viewer, nil), 200)
	test := e.expect(e.do("POST", "/v1/subscriptions/"+id+"/test", key, nil), 200)
	dl := e.expect(e.do("GET", "/v1/subscriptions/"+id+"/deliveries", viewer, nil), 200)
	for _, r := range []resp{g, put, list, test, dl} {
		if strings.Contains(string(r.body), secret) || strings.Contains(string(r.body), "whsec_") || strings.Contains(string(r.body), `"secret`) {
			t.Errorf("an answer shows the secret: %s", r.body)
		}
	}
	// Stored encrypted, not in clear.
	kv, err := e.s.events.subs.Get(t.Context(), "acme."+id)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(kv.Value(), []byte(secret)) || bytes.Contains(kv.Value(), []byte("whsec_")) {
		t.Errorf("the secret is stored in clear: %s", kv.Value())
	}
	// The test event was signed with it, all the same.
	reqs := rc.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want the test event", len(reqs))
	}
	if err := VerifySignature(secret, reqs[0].header.Get("Ferry-Signature"), reqs[0].body, time.Minute, e.clock.Now()); err != nil {
		t.Error(err)
	}
	var ce map[string]any
	_ = json.Unmarshal(reqs[0].body, &ce)
	if ce["type"] != "dev.ferry.test" || ce["subject"] != "subscriptions/"+id {
		t.Errorf("test event %v", ce)
	}
	var d EventDelivery
	_ = json.Unmarshal(test.body, &d)
	if !d.Test || d.Status != DeliveryDelivered || d.AttemptCount != 1 {
		t.Errorf("test delivery %+v", d)
	}
	var sub Subscription
	_ = json.Unmarshal(put.body, &sub)
	if sub.URL != rc.URL+"/v2" || len(sub.Types) != 1 || sub.Description != "" || !sub.Enabled {
		t.Errorf("after PUT: %+v", sub)
	}
}

func TestSubscriptionValidationAndConcurrency(t *testing.T) {
	e := newEventsEnv(t, fastEvents)
	key := e.tenantWithKey("acme", RoleUser)
	viewer := e.key("acme", RoleViewer)
	for _, body := range []map[string]any{
		{"url": "ftp://example.com/x", "types": []string{"run.failed"}},
		{"url": "example.com/x", "types": []string{"run.failed"}},
		{"url": "https://user:pw@example.com/x", "types": []string{"run.failed"}},
		{"url": "https://example.com/x"},
		{"url": "https://example.com/x", "types": []string{"run.exploded"}},
		{"url": "https://example.com/x", "types": []string{"config.applied"}, "integration": "orders"},
		{"url": "https://example.com/x", "types": []string{"run.failed"}, "integration": "bad name"},
	} {
		r := e.do("POST", "/v1/subscriptions", key, body)
		if r.status != 422 || !strings.HasPrefix(r.header.Get("Content-Type"), "application/problem+json") {
			t.Errorf("%v: %d %s", body, r.status, r.body)
		}
	}
	e.expect(e.do("POST", "/v1/subscriptions", key, map[string]any{"url": "https://example.com/x", "types": []string{"run.failed"}, "bogus": 1}), 400)
	e.expect(e.do("POST", "/v1/subscriptions", viewer, map[string]any{"url": "https://example.com/x", "types": []string{"run.failed"}}), 403)

	id, _ := e.subscribe(key, map[string]any{"url": "https://example.com/x", "types": []string{"run.failed"}})
	body := map[string]any{"url": "https://example.com/y", "types": []string{"run.completed"}, "enabled": false}
	e.expect(e.do("PUT", "/v1/subscriptions/"+id, key, body), 428)
	e.expect(e.do("PUT", "/v1/subscriptions/"+id, key, body, "If-Match", `"999"`), 412)
	e.expect(e.do("PUT", "/v1/subscriptions/"+id, viewer, body, "If-Match", "*"), 403)
	etag := e.expect(e.do("GET", "/v1/subscriptions/"+id, key, nil), 200).header.Get("ETag")
	p := e.expect(e.do("PUT", "/v1/subscriptions/"+id, key, body, "If-Match", etag), 200)
	if m := p.json(t); m["enabled"] != false || m["url"] != "https://example.com/y" {
		t.Errorf("after PUT: %v", m)
	}
	e.expect(e.do("DELETE", "/v1/subscriptions/"+id, key, nil, "If-Match", etag), 412)
	e.expect(e.do("DELETE", "/v1/subscriptions/"+id, key, nil), 428)
	e.expect(e.do("DELETE", "/v1/subscriptions/"+id, key, nil, "If-Match", p.header.Get("ETag")), 204)
	e.expect(e.do("GET", "/v1/subscriptions/"+id, key, nil), 404)
	e.expect(e.do("GET", "/v1/subscriptions/"+id+"/deliveries", key, nil), 404)
	e.expect(e.do("GET", "/v1/subscriptions/sub_*", key, nil), 404)
	if l := e.expect(e.do("GET", "/v1/subscriptions", key, nil), 200).json(t); l["total"] != float64(0) {
		t.Errorf("list after delete: %v", l)
	}
	audit := mustAudit(t, e, "acme")
	var actions []string
	for _, a := range audit {
		if strings.HasPrefix(a.Action, "subscription.") {
			actions = append(actions, a.Action)
		}
	}
	if strings.Join(actions, " ") != "subscription.create subscription.update subscription.delete" {
		t.Errorf("audit %v", actions)
	}
}

func TestIntegrationFilter(t *testing.T) {
	e := newEventsEnv(t, fastEvents)
	key := e.tenantWithKey("acme", RoleUser)
	e.tenantWithKey("beta", RoleUser)
	orders, all := newReceiver(t, nil), newReceiver(t, nil)
	e.subscribe(key, map[string]any{"url": orders.URL, "types": []string{"run.failed"}, "integration": "orders"})
	e.subscribe(key, map[string]any{"url": all.URL, "types": []string{"run.failed", "dlq.added"}})
	e.subscribe(key, map[string]any{"url": orders.URL, "types": []string{"run.failed", "dlq.added"}, "enabled": false})
	ctx := t.Context()
	for _, ev := range []Event{
		{Type: EventRunFailed, Tenant: "acme", Integration: "orders", Subject: "runs/r1", Data: map[string]any{"runId": "r1"}},
		{Type: EventRunFailed, Tenant: "acme", Integration: "billing", Subject: "runs/r2"},
		{Type: EventRunCompleted, Tenant: "acme", Integration: "orders", Subject: "runs/r3"}, // no subscriber
		{Type: EventRunFailed, Tenant: "beta", Integration: "orders", Subject: "runs/r4"},    // another tenant
		{Type: EventDLQAdded, Tenant: "acme", Integration: "orders", Subject: "dlq/d1"},
	} {
		if err := e.s.Emit(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the deliveries", func() bool { return len(orders.requests()) == 1 && len(all.requests()) == 3 })
	time.Sleep(100 * time.Millisecond)
	if n := len(orders.requests()); n != 1 {
		t.Errorf("orders got %d", n)
	}
	var ce map[string]any
	_ = json.Unmarshal(orders.requests()[0].body, &ce)
	if ce["subject"] != "runs/r1" || ce["ferryintegration"] != "orders" || ce["type"] != "dev.ferry.run.failed" {
		t.Errorf("orders got %v", ce)
	}
	subjects := map[string]bool{}
	for _, r := range all.requests() {
		var ce map[string]any
		_ = json.Unmarshal(r.body, &ce)
		subjects[ce["subject"].(string)] = true
	}
	if !subjects["runs/r1"] || !subjects["runs/r2"] || !subjects["dlq/d1"] {
		t.Errorf("all got %v", subjects)
	}

	if err := e.s.Emit(ctx, Event{Type: "run.exploded", Tenant: "acme"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown type: %v", err)
	}
	if err := e.s.Emit(ctx, Event{Type: EventRunFailed, Tenant: "acme", Data: strings.Repeat("x", 300<<10)}); !errors.Is(err, ErrInvalid) {
		t.Errorf("huge data: %v", err)
	}
	if err := e.s.Emit(ctx, Event{Type: EventRunFailed, Tenant: "no.such>"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad tenant: %v", err)
	}
}

func TestDeliveryRetriesUntilDelivered(t *testing.T) {
	e := newEventsEnv(t, EventOptions{MaxAttempts: 5, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Timeout: 200 * time.Millisecond})
	key := e.tenantWithKey("acme", RoleUser)
	// A timeout, a 500, then 200.
	rc := newReceiver(t, func(n int) int {
		switch n {
		case 1:
			return 0 // hangs
		case 2:
			return 500
		}
		return 200
	})
	id, secret := e.subscribe(key, map[string]any{"url": rc.URL, "types": []string{"run.completed"}})
	if err := e.s.Emit(t.Context(), Event{Type: EventRunCompleted, Tenant: "acme", Integration: "orders", Subject: "runs/r1"}); err != nil {
		t.Fatal(err)
	}
	var ds []EventDelivery
	waitFor(t, "delivered", func() bool {
		ds = e.deliveries(key, id)
		return len(ds) == 1 && ds[0].Status == DeliveryDelivered
	})
	d := ds[0]
	if d.AttemptCount != 3 || len(d.Attempts) != 3 {
		t.Fatalf("attempts %+v", d.Attempts)
	}
	a := d.Attempts
	if a[0].StatusCode != 0 || !strings.Contains(a[0].Error, "timeout") || a[0].DurationMs < 150 {
		t.Errorf("attempt 1 %+v", a[0])
	}
	if a[1].StatusCode != 500 || !strings.Contains(a[1].Error, "500") || !strings.Contains(a[1].Response, "receiver says") {
		t.Errorf("attempt 2 %+v", a[1])
	}
	if a[2].StatusCode != 200 || a[2].Error != "" || a[2].Attempt != 3 || d.NextAttemptAt != nil {
		t.Errorf("attempt 3 %+v", a[2])
	}
	time.Sleep(200 * time.Millisecond)
	reqs := rc.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3", len(reqs))
	}
	// The same event every time, freshly signed.
	for i, r := range reqs {
		if !bytes.Equal(r.body, reqs[0].body) {
			t.Errorf("attempt %d sent another body", i+1)
		}
		if r.header.Get("Ferry-Attempt") != string(rune('1'+i)) {
			t.Errorf("attempt %d: Ferry-Attempt %q", i+1, r.header.Get("Ferry-Attempt"))
		}
		if err := VerifySignature(secret, r.header.Get("Ferry-Signature"), r.body, time.Minute, e.clock.Now()); err != nil {
			t.Errorf("attempt %d: %v", i+1, err)
		}
	}
	// Filters and order on the history.
	var l listOf[EventDelivery]
	r := e.expect(e.do("GET", "/v1/subscriptions/"+id+"/deliveries?filter=status[eq]failed", key, nil), 200)
	_ = json.Unmarshal(r.body, &l)
	if l.Total != 0 {
		t.Errorf("failed deliveries: %d", l.Total)
	}
	e.expect(e.do("GET", "/v1/subscriptions/"+id+"/deliveries?filter=attempts[eq]1", key, nil), 400)
}

func TestDeliveryFailsAfterMaxAttempts(t *testing.T) {
	e := newEventsEnv(t, fastEvents) // 3 attempts
	key := e.tenantWithKey("acme", RoleUser)
	rc := newReceiver(t, func(int) int { return 503 })
	id, _ := e.subscribe(key, map[string]any{"url": rc.URL, "types": []string{"dlq.added"}})
	if err := e.s.Emit(t.Context(), Event{Type: EventDLQAdded, Tenant: "acme", Integration: "orders", Subject: "dlq/e1"}); err != nil {
		t.Fatal(err)
	}
	var ds []EventDelivery
	waitFor(t, "failed", func() bool {
		ds = e.deliveries(key, id)
		return len(ds) == 1 && ds[0].Status == DeliveryFailed
	})
	if ds[0].AttemptCount != 3 || ds[0].NextAttemptAt != nil {
		t.Errorf("delivery %+v", ds[0])
	}
	for i, a := range ds[0].Attempts {
		if a.StatusCode != 503 || a.Attempt != i+1 {
			t.Errorf("attempt %+v", a)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(rc.requests()); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
	// A network error counts as a failed attempt too: the receiver is gone.
	rc.Close()
	id2, _ := e.subscribe(key, map[string]any{"url": rc.URL, "types": []string{"run.started"}})
	_ = e.s.Emit(t.Context(), Event{Type: EventRunStarted, Tenant: "acme", Subject: "runs/x"})
	waitFor(t, "failed", func() bool {
		ds = e.deliveries(key, id2)
		return len(ds) == 1 && ds[0].Status == DeliveryFailed
	})
	if ds[0].Attempts[0].Error == "" || ds[0].Attempts[0].StatusCode != 0 {
		t.Errorf("attempt %+v", ds[0].Attempts[0])
	}
}

func TestTwoServersDeliverEachEventOnce(t *testing.T) {
	e1 := newEventsEnv(t, fastEvents)
	e2 := serverOn(t, e1.rt, fastEvents)
	key := e1.tenantWithKey("acme", RoleUser)
	rc := newReceiver(t, nil)
	id, _ := e2.subscribe(key, map[string]any{"url": rc.URL, "types": []string{"run.started", "config.applied"}})
	// e1 learns of the subscription through its watch.
	waitFor(t, "the subscription on the other node", func() bool {
		subs, known := e1.s.events.subsCache.matching(storedEvent{Tenant: "acme", Type: EventRunStarted, Integration: "orders"})
		return known && len(subs) == 1
	})
	const n = 20
	for i := range n {
		s := e1.s
		if i%2 == 1 {
			s = e2.s
		}
		ev := Event{Type: EventRunStarted, Tenant: "acme", Integration: "orders", Subject: "runs/r" + string(rune('a'+i))}
		if err := s.Emit(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
		if err := s.Emit(t.Context(), ev); err != nil { // a re-emit: the same event
			t.Fatal(err)
		}
	}
	e1.expect(e1.apply(key, "acme", "a", "0"), 200)
	e2.expect(e2.apply(key, "acme", "b", "1"), 200)
	waitFor(t, "every event", func() bool { return len(rc.requests()) >= n+2 })
	time.Sleep(300 * time.Millisecond)
	ids := map[string]int{}
	for _, r := range rc.requests() {
		var ce map[string]any
		_ = json.Unmarshal(r.body, &ce)
		ids[ce["id"].(string)]++
	}
	if len(ids) != n+2 || len(rc.requests()) != n+2 {
		t.Errorf("%d requests of %d events, want %d of %d", len(rc.requests()), len(ids), n+2, n+2)
	}
	for id, c := range ids {
		if c != 1 {
			t.Errorf("event %s delivered %d times", id, c)
		}
	}
	if ds := e1.deliveries(key, id); len(ds) != n+2 {
		t.Errorf("%d deliveries in the history", len(ds))
	}
}

func TestBackoffGrowsFromInitialToMax(t *testing.T) {
	o := EventOptions{}.withDefaults()
	prev := time.Duration(0)
	for n := 1; n < o.MaxAttempts; n++ {
		d := o.backoff(n)
		if n == 1 && (d < 800*time.Millisecond || d > 1200*time.Millisecond) {
			t.Errorf("first wait %s", d)
		}
		if n == o.MaxAttempts-1 && (d < 48*time.Minute || d > 72*time.Minute) {
			t.Errorf("last wait %s", d)
		}
		if n > 1 && d < prev/2 {
			t.Errorf("wait %d (%s) shrank from %s", n, d, prev)
		}
		prev = d
	}
}

func TestDenyPrivateTargets(t *testing.T) {
	e := newEventsEnv(t, EventOptions{DenyPrivateTargets: true})
	key := e.tenantWithKey("acme", RoleUser)
	for _, u := range []string{"http://127.0.0.1:9/x", "http://localhost/x", "http://[::1]/x", "http://169.254.169.254/latest", "http://10.1.2.3/"} {
		if r := e.do("POST", "/v1/subscriptions", key, map[string]any{"url": u, "types": []string{"run.failed"}}); r.status != 422 {
			t.Errorf("%s: %d", u, r.status)
		}
	}
	e.expect(e.do("POST", "/v1/subscriptions", key, map[string]any{"url": "https://hooks.example.com/x", "types": []string{"run.failed"}}), 201)
	for addr, internal := range map[string]bool{"127.0.0.1": true, "::ffff:10.0.0.1": true, "100.64.1.1": true, "fd00::1": true, "0.0.0.0": true, "93.184.216.34": false, "2606:4700::1": false} {
		if got := internalAddr(netip.MustParseAddr(addr)); got != internal {
			t.Errorf("internalAddr(%s) = %v", addr, got)
		}
	}
	// The dial-time check, for names resolving to such addresses.
	rc := newReceiver(t, nil)
	a := e.s.attempt(t.Context(), "acme", rc.URL, "whsec_x", []byte("{}"), "dlv_x", 1)
	if a.ok() || !strings.Contains(a.Error, "DenyPrivateTargets") {
		t.Errorf("attempt to loopback: %+v", a)
	}
}

// Events no subscription asks for are not recorded: a tenant without
// subscriptions does not pay for two stored events per run.
func TestEventsWithoutSubscribersAreNotRecorded(t *testing.T) {
	e := newEventsEnv(t, fastEvents)
	key := e.tenantWithKey("acme", RoleUser)
	recorded := func() uint64 {
		t.Helper()
		st, err := e.s.js.Stream(t.Context(), EventsStream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}
	emit := func(typ string, subject string) {
		t.Helper()
		if err := e.s.Emit(t.Context(), Event{Type: typ, Tenant: "acme", Integration: "orders", Subject: subject}); err != nil {
			t.Fatal(err)
		}
	}
	emit(EventRunStarted, "runs/a")
	if n := recorded(); n != 0 {
		t.Fatalf("%d events recorded without a subscription", n)
	}
	rc := newReceiver(t, nil)
	id, _ := e.subscribe(key, map[string]any{"url": rc.URL, "types": []string{"run.completed"}})
	emit(EventRunStarted, "runs/b") // not subscribed to
	emit(EventRunCompleted, "runs/b")
	if n := recorded(); n != 1 {
		t.Fatalf("%d events recorded, want the one subscribed to", n)
	}
	waitFor(t, "the delivery", func() bool { return len(rc.requests()) == 1 })
	e.expect(e.do("DELETE", "/v1/subscriptions/"+id, key, nil, "If-Match", "*"), 204)
	emit(EventRunCompleted, "runs/c")
	if n := recorded(); n != 1 {
		t.Fatalf("%d events recorded after the subscription was deleted, want 1", n)
	}
}
