package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/runtime"
	"github.com/ferryhq/ferry/runtime/scheduler"
	"github.com/nats-io/nats.go/jetstream"
)

// idemMsg is the raw last message of an idempotency key's subject in the
// bucket's stream (a value, or the marker it left).
func idemMsg(t *testing.T, js jetstream.JetStream, key string) *jetstream.RawStreamMsg {
	t.Helper()
	st, err := js.Stream(t.Context(), "KV_"+BucketIdempotency)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(t.Context(), idemSubject+key)
	if err != nil {
		t.Fatalf("key %s: %v", key, err)
	}
	return m
}

// msgTTL is the TTL a stored message carries (0: none).
func msgTTL(t *testing.T, m *jetstream.RawStreamMsg) time.Duration {
	t.Helper()
	h := m.Header.Get(jetstream.MsgTTLHeader)
	if h == "" {
		return 0
	}
	d, err := time.ParseDuration(h)
	if err != nil {
		t.Fatalf("Nats-TTL %q: %v", h, err)
	}
	return d
}

// waitKeyGone polls the bucket until key expired; the server removes it
// when its TTL has passed (no sooner), so the deadline only bounds a hang.
func waitKeyGone(t *testing.T, kv jetstream.KeyValue, key string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := kv.Get(t.Context(), key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("key %s did not expire within 30s", key)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A webhook remembers its delivery ids for its dedupe_window: each claimed
// key carries that TTL, a repeat is a duplicate while the key is there, and
// once it expired the id is a new delivery (a new run), claimed over the
// marker the expiry left.
func TestWebhookDedupeWindowExpires(t *testing.T) {
	defer func(d time.Duration) { idemMarkerTTL = d }(idemMarkerTTL)
	// Markers that outlast the test: the re-delivery below meets one.
	idemMarkerTTL = time.Hour
	e := newRunEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	dir := t.TempDir()
	e.expect(e.do("PUT", "/v1/secrets/shopify_webhook_secret", user, map[string]any{"value": shopSecret}), 201)
	e.expect(e.do("PUT", "/v1/secrets/hook_secret", user, map[string]any{"value": "hmac-key"}), 201)
	cfg := webhookConfig(dir)
	files := cfg["files"].(map[string]string)
	files["main.hcl"] = strings.Replace(files["main.hcl"], `verify = "shopify"`, `verify        = "shopify"
    dedupe_window = "1s"`, 1)
	e.expect(e.do("PUT", "/v1/config", user, cfg, "If-Match", "0"), 200)
	products := productsFixture(t)
	post := func(id string) resp {
		return e.do("POST", "/v1/webhooks/acme/products", "", products, shopifyHeaders(productsHMAC, id)...)
	}
	key := func(id string) string { return idempotencyKey("acme", "products", "webhook:"+id) }

	// While remembered, a repeat is a duplicate, and the claimed key
	// carries the window as its TTL. The window is 1s of real time: only
	// what is done within it must see the key (a slow machine tries again
	// with another id).
	var id, first string
	for attempt := 1; ; attempt++ {
		id = fmt.Sprintf("ev-%d", attempt)
		sent := time.Now()
		first = e.expect(post(id), 202).json(t)["runId"].(string)
		m := idemMsg(t, e.s.js, key(id))
		r := post(id)
		if string(m.Data) == first && r.status == 200 {
			if got := msgTTL(t, m); got != time.Second {
				t.Fatalf("the claimed key's TTL is %s (Nats-TTL %q), want 1s", got, m.Header.Get(jetstream.MsgTTLHeader))
			}
			if d := r.json(t); d["duplicate"] != true || d["runId"] != first {
				t.Fatalf("repeat: %v", d)
			}
			break
		}
		if elapsed := time.Since(sent); elapsed < time.Second || attempt == 5 {
			t.Fatalf("%s after %s: key %q (headers %v); repeat %d %s, want the key and 200 duplicate", id, elapsed, m.Data, m.Header, r.status, r.body)
		}
	}
	e.waitEnded(first)

	waitKeyGone(t, e.s.runs.idem, key(id))
	// What is left is the marker of its expiry.
	if m := idemMsg(t, e.s.js, key(id)); m.Header.Get(jetstream.MarkerReasonHeader) == "" || len(m.Data) != 0 {
		t.Fatalf("after expiry: headers %v, data %q, want a marker", m.Header, m.Data)
	}

	// Expired: a new delivery, a new run, and the id remembered again.
	r := e.expect(post(id), 202).json(t)
	again := r["runId"].(string)
	if again == first || r["duplicate"] != nil {
		t.Fatalf("after expiry: %v, first run %s", r, first)
	}
	m := idemMsg(t, e.s.js, key(id))
	if string(m.Data) != again || msgTTL(t, m) != time.Second {
		t.Errorf("the key claimed again: %q, TTL %q; want %s, 1s", m.Data, m.Header.Get(jetstream.MsgTTLHeader), again)
	}
	if run := e.waitEnded(again); run.Status != "succeeded" || run.Counts.Success != 1 {
		t.Errorf("run after expiry: %+v", run)
	}
	if n := len(readLines(t, filepath.Join(dir, "out.ndjson"))); n < 2 {
		t.Errorf("%d records written, want the first delivery's and the one after expiry", n)
	}
}

// A delivery refused after its id was claimed (a deactivated integration)
// unclaims it with a purge whose marker expires, not a delete marker that
// would stay for the bucket's age limit.
func TestWebhookUnclaimLeavesAnExpiringMarker(t *testing.T) {
	e, user, _ := webhookEnv(t)
	e.expect(e.do("POST", "/v1/integrations/products/deactivate", user, nil), 200)
	e.expect(e.do("POST", "/v1/webhooks/acme/products", "", productsFixture(t), shopifyHeaders(productsHMAC, "refused")...), 409)
	m := idemMsg(t, e.s.js, idempotencyKey("acme", "products", "webhook:refused"))
	if len(m.Data) != 0 || m.Header.Get("KV-Operation") != "PURGE" || msgTTL(t, m) != idemMarkerTTL {
		t.Errorf("what the refused claim left: headers %v, data %q; want a purge marker with TTL %s", m.Header, m.Data, idemMarkerTTL)
	}
}

// A sync event's Idempotency-Key is kept for Options.IdempotencyTTL (24h
// by default), a schedule fire's for the scheduler's claim window, a
// trigger's own IdempotencyTTL rounded up to whole seconds; a key taken
// over from a run never stored keeps a TTL too.
func TestIdempotencyTTLOfSyncEvents(t *testing.T) {
	e, user, _ := webhookEnv(t)
	ctx := t.Context()
	input := []json.RawMessage{json.RawMessage(`{"id":1,"title":"a"}`)}
	key := func(k string) string { return idempotencyKey("acme", "plain", k) }
	var runs []string
	check := func(k, runID string, want time.Duration) {
		t.Helper()
		runs = append(runs, runID)
		m := idemMsg(t, e.s.js, key(k))
		if string(m.Data) != runID || msgTTL(t, m) != want {
			t.Errorf("key %s: %q with Nats-TTL %q, want %s for %s", k, m.Data, m.Header.Get(jetstream.MsgTTLHeader), runID, want)
		}
	}

	body := map[string]any{"integration": "plain", "input": input}
	id := e.expect(e.do("POST", "/v1/sync-events", user, body, "Idempotency-Key", "k-default"), 202).json(t)["id"].(string)
	check("k-default", id, IdempotencyTTL)

	s2, err := New(e.rt, Options{AdminKey: testAdminKey, MasterKey: bytes.Repeat([]byte{7}, 32), HostFiles: true, IdempotencyTTL: 90 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s2.Close(ctx)
	})
	start := func(k string, ttl time.Duration) string {
		t.Helper()
		id, err := s2.StartRun(ctx, TriggerRequest{Tenant: "acme", Integration: "plain", Input: input, IdempotencyKey: k, IdempotencyTTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	check("k-option", start("k-option", 0), 90*time.Minute)
	check("k-asked", start("k-asked", 1500*time.Millisecond), 2*time.Second)
	if _, err := e.s.runs.idem.Put(ctx, key("k-orphan"), []byte("lostrun")); err != nil {
		t.Fatal(err)
	}
	check("k-orphan", start("k-orphan", 0), 90*time.Minute)

	// A schedule's fire keeps the scheduler's window, not the option.
	if err := s2.sched.fire(ctx, scheduler.Fire{Tenant: "acme", Schedule: "nightly", Integration: "plain", At: time.Unix(1767225600, 0)}); err != nil {
		t.Fatal(err)
	}
	fm := idemMsg(t, e.s.js, key("schedule:nightly:1767225600"))
	if got := msgTTL(t, fm); got != scheduler.DedupWindow {
		t.Errorf("a schedule fire's key: TTL %s, want %s", got, scheduler.DedupWindow)
	}
	runs = append(runs, string(fm.Data))
	for _, id := range runs {
		e.waitEnded(id)
	}

	for _, ttl := range []time.Duration{-time.Second, 500 * time.Millisecond, MaxIdempotencyTTL + time.Hour} {
		if _, err := New(e.rt, Options{IdempotencyTTL: ttl}); err == nil || !strings.Contains(err.Error(), "IdempotencyTTL") {
			t.Errorf("IdempotencyTTL %s: %v, want an error naming it", ttl, err)
		}
	}
}

// A bucket made by an earlier version (24h age limit, no markers, keys
// without a TTL) is updated in place when a server opens it: its keys stay,
// new ones expire on their own TTL.
func TestIdempotencyBucketUpgrade(t *testing.T) {
	ctx := t.Context()
	rt, err := runtime.Open(ctx, runtime.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	js := rt.JetStream()
	old, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: BucketIdempotency, History: 1, Storage: jetstream.FileStorage,
		TTL: 24 * time.Hour, Description: "ferry: Idempotency-Key → run id"})
	if err != nil {
		t.Fatal(err)
	}
	before := idempotencyKey("acme", "items", "before")
	if _, err := old.Put(ctx, before, []byte("run-before")); err != nil {
		t.Fatal(err)
	}

	s, err := New(rt, Options{AdminKey: testAdminKey, MasterKey: bytes.Repeat([]byte{7}, 32)})
	if err != nil {
		t.Fatalf("opening the bucket of an earlier version: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Close(ctx)
	})
	st, err := js.Stream(ctx, "KV_"+BucketIdempotency)
	if err != nil {
		t.Fatal(err)
	}
	if c := st.CachedInfo().Config; c.MaxAge != MaxIdempotencyTTL || !c.AllowMsgTTL || c.SubjectDeleteMarkerTTL != idemMarkerTTL {
		t.Errorf("bucket after the upgrade: MaxAge %s, AllowMsgTTL %v, SubjectDeleteMarkerTTL %s", c.MaxAge, c.AllowMsgTTL, c.SubjectDeleteMarkerTTL)
	}
	if v, err := s.runs.idem.Get(ctx, before); err != nil || string(v.Value()) != "run-before" {
		t.Errorf("the key stored before the upgrade: %v", err)
	}

	// Both ways of claiming write a TTL the upgraded bucket honours.
	full, pipelined := idempotencyKey("acme", "items", "full"), idempotencyKey("acme", "items", "pipelined")
	if _, created, err := s.runs.claimIdempotencyKey(ctx, "acme", "items", full, "run-full", time.Second); err != nil || !created {
		t.Fatalf("claim on the upgraded bucket: %v (created %v)", err, created)
	}
	if got := s.runs.createKeys(ctx, []string{pipelined}, []time.Duration{time.Second}, "run-pipelined"); !got[0] {
		t.Fatal("pipelined claim on the upgraded bucket failed")
	}
	for _, k := range []string{full, pipelined} {
		if got := msgTTL(t, idemMsg(t, js, k)); got != time.Second {
			t.Errorf("Nats-TTL %s, want 1s", got)
		}
	}
	waitKeyGone(t, s.runs.idem, full)
	waitKeyGone(t, s.runs.idem, pipelined)
	// A claim of an expired key writes over its marker.
	if id, created, err := s.runs.claimIdempotencyKey(ctx, "acme", "items", full, "run-again", time.Hour); err != nil || !created || id != "run-again" {
		t.Errorf("claim after expiry: %q %v %v", id, created, err)
	}
	if _, err := s.runs.idem.Get(ctx, before); err != nil {
		t.Errorf("the key without a TTL is gone: %v", err)
	}
}
