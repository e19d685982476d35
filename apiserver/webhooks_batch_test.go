package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/runtime"
)

// gateWebhookFiles is gateConfig with a webhook on "items" (verify none,
// delivery ids in X-Delivery).
func gateWebhookFiles(gate string) map[string]string {
	files := gateConfig(gate, "r1")["files"].(map[string]string)
	files["main.hcl"] = strings.Replace(files["main.hcl"], "  retry {\n    max_attempts = 1\n  }\n}", `  retry {
    max_attempts = 1
  }
  webhook {
    verify    = "none"
    id_header = "X-Delivery"
  }
}`, 1)
	return files
}

// Deliveries answered 202 survive a crash: they joined a run queued behind
// one in flight (several deliveries per run, each stored before its 202);
// the process dies before either run executes; a new server on the same
// data resumes both, and every record of every accepted delivery reaches
// the target, positioned by its delivery. A repeated delivery id maps to
// the run its first delivery joined, before and after the crash.
func TestWebhookDeliveriesSurviveACrash(t *testing.T) {
	dataDir := t.TempDir()
	ctx := t.Context()
	open := func() (*runtime.Runtime, *Server, *httptest.Server) {
		// Both runs hold or want the integration's run lock; the new
		// server may resume the second first, which then waits for the
		// dead holder's lock to go stale (LockTTL).
		rt, err := runtime.Open(ctx, runtime.Options{DataDir: dataDir, LockTTL: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		s, err := New(rt, Options{AdminKey: testAdminKey, MasterKey: bytes.Repeat([]byte{7}, 32),
			RunLease: time.Second, WebhookRateLimit: -1})
		if err != nil {
			t.Fatal(err)
		}
		return rt, s, httptest.NewServer(s.Handler())
	}
	rt, s, srv := open()
	if err := s.CreateTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	p := &Principal{Tenant: "acme", KeyID: "test", Role: RoleUser}
	if _, err := s.apply(ctx, p, applyArgs{planned: 0, files: gateWebhookFiles("crash")}); err != nil {
		t.Fatal(err)
	}
	g := newGate(t, "crash", nil)
	g.sinkHold = make(chan struct{}) // the first run holds the integration
	post := func(url, id, body string) resp {
		return doRaw(t, mustRequest(url+"/v1/webhooks/acme/items", []byte(body), "X-Delivery", id))
	}

	r := post(srv.URL, "d-0", `{"id":0,"name":"first"}`)
	if r.status != 202 {
		t.Fatalf("first delivery: %d %s", r.status, r.body)
	}
	first := r.json(t)["runId"].(string)
	<-g.writing

	// Deliveries of 2 records each (one without a name: it fails
	// normalize and lands in the DLQ with its position), concurrently.
	const n = 40
	runOf := make([]string, n+1)
	var wg sync.WaitGroup
	for i := 1; i <= n; i++ {
		wg.Go(func() {
			name := `"name":"n"`
			if i == 7 {
				name = `"nameless":true`
			}
			body := fmt.Sprintf(`[{"id":%d,"name":"a"},{"id":%d,%s}]`, 2*i, 2*i+1, name)
			r := post(srv.URL, fmt.Sprintf("d-%d", i), body)
			if r.status != 202 {
				t.Errorf("delivery %d: %d %s", i, r.status, r.body)
				return
			}
			runOf[i] = r.json(t)["runId"].(string)
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	runs := map[string]bool{}
	for _, id := range runOf[1:] {
		if id == first {
			t.Fatalf("a delivery joined run %s, which was executing", id)
		}
		runs[id] = true
	}
	if len(runs) != 1 {
		t.Errorf("%d deliveries made %d runs behind the one in flight, want them to join one", n, len(runs))
	}
	dup := post(srv.URL, "d-5", `{"id":999,"name":"again"}`)
	if m := dup.json(t); dup.status != 200 || m["duplicate"] != true || m["runId"] != runOf[5] {
		t.Fatalf("repeated delivery: %d %s", dup.status, dup.body)
	}

	// The crash: NATS goes away under the server, which finishes nothing.
	srv.Close()
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		c, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_ = s.Close(c) // ends the dead server's goroutines
	}()

	// A new process on the same data; the old one's sink writes nowhere
	// that counts.
	g2 := newGate(t, "crash", nil)
	rt, s, srv = open()
	defer rt.Close()
	defer s.Close(context.Background())
	defer srv.Close()
	for _, id := range []string{first, runOf[1]} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			run, err := rt.Runs().Get(ctx, "acme", id)
			if err == nil && run.Finished() {
				if id == runOf[1] && (run.Counts.Total != 2*n || run.Counts.Failed != 1 || run.Trigger != "webhook") {
					t.Errorf("run %s: %+v", id, run)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("run %s was not resumed: %+v %v", id, run, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	written := map[string]int{}
	for _, rec := range g2.Written() {
		written[fmt.Sprint(rec["id"])]++
	}
	for id := 0; id <= 2*n+1; id++ {
		if id == 1 || id == 15 { // no such record; 15 has no name
			continue
		}
		if written[fmt.Sprint(id)] != 1 {
			t.Errorf("record %d written %d times", id, written[fmt.Sprint(id)])
		}
	}
	if len(written) != 2*n {
		t.Errorf("%d records written, want %d", len(written), 2*n)
	}
	dlq, err := rt.DLQ().List(ctx, "acme", runtime.DLQFilter{RunID: runOf[1]})
	if err != nil || dlq.Total != 1 || dlq.Entries[0].Position != "webhook:d-7[1]" {
		t.Fatalf("DLQ %+v %v", dlq, err)
	}
	again := post(srv.URL, "d-5", `{"id":999,"name":"again"}`)
	if m := again.json(t); again.status != 200 || m["runId"] != runOf[5] {
		t.Errorf("repeated delivery after the crash: %d %s", again.status, again.body)
	}
}

// A delivery refused because its integration is deactivated leaves no
// trace: the sender's retry, once it is active again, is accepted (not a
// duplicate of a run that never came).
func TestWebhookRefusedDeliveryIsNotADuplicate(t *testing.T) {
	e, user, _ := webhookEnv(t)
	products := productsFixture(t)
	e.expect(e.do("POST", "/v1/integrations/products/deactivate", user, nil), 200)
	e.expect(e.do("POST", "/v1/webhooks/acme/products", "", products, shopifyHeaders(productsHMAC, "retried")...), 409)
	// Its delivery id is not claimed (a claimed id of a run that was
	// never stored would hold the retry up while it waits for that run).
	if _, err := e.s.runs.idem.Get(t.Context(), idempotencyKey("acme", "products", "webhook:retried")); !isNotFound(err) {
		t.Errorf("the refused delivery's id is stored: %v", err)
	}
	e.expect(e.do("POST", "/v1/integrations/products/activate", user, nil), 200)
	m := e.expect(e.do("POST", "/v1/webhooks/acme/products", "", products, shopifyHeaders(productsHMAC, "retried")...), 202).json(t)
	if run := e.waitEnded(m["runId"].(string)); run.Counts.Success != 1 {
		t.Errorf("run %+v", run)
	}
}

// A delivery joins the open run even when the run's lease was renewed
// since the last one joined (its request was rewritten in between).
func TestWebhookJoinsARenewedRun(t *testing.T) {
	e := newRunEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	g := newGate(t, "renewed", nil)
	g.sinkHold = make(chan struct{})
	e.expect(e.do("PUT", "/v1/config", user, map[string]any{"files": gateWebhookFiles("renewed")}, "If-Match", "0"), 200)
	post := func(id, body string) string {
		return e.expect(e.do("POST", "/v1/webhooks/acme/items", "", []byte(body), "X-Delivery", id), 202).json(t)["runId"].(string)
	}
	post("a", `{"id":1,"name":"a"}`)
	<-g.writing
	open := post("b", `{"id":2,"name":"b"}`)
	if err := e.s.runs.update(t.Context(), requestKey("acme", open), func(r *runRequest) bool {
		r.LeaseUntil = r.LeaseUntil.Add(time.Second)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if id := post("c", `{"id":3,"name":"c"}`); id != open {
		t.Errorf("delivery c joined run %s, want %s", id, open)
	}
	close(g.sinkHold)
	if run := e.waitEnded(open); run.Counts.Success != 2 {
		t.Errorf("run %+v", run)
	}
}

// Positioned input messages read back as written; a damaged one is an
// error, never a panic; a JSON array (sync events) is positioned input[i].
func TestInputChunk(t *testing.T) {
	recs := []json.RawMessage{json.RawMessage(`{"id":1}`), json.RawMessage(`{"id":2,"s":"` + strings.Repeat("x", 300) + `"}`)}
	pos := []string{"webhook:a[0]", "webhook:b[0]"}
	b := encodeInputChunk(pos, recs)
	c, err := decodeInputChunk(b)
	if err != nil || !slices.Equal(c.Positions, pos) || len(c.Records) != 2 || string(c.Records[1]) != string(recs[1]) {
		t.Fatalf("round trip: %+v %v", c, err)
	}
	for n := 2; n < len(b); n++ {
		if c, err := decodeInputChunk(b[:n]); err == nil && len(c.Records) == 2 {
			t.Errorf("truncated to %d bytes: read whole", n)
		}
	}
	if _, err := decodeInputChunk([]byte{'P', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}); err == nil {
		t.Error("a bad length was read")
	}
	c, err = decodeInputChunk([]byte(`[{"id":1}]`))
	if err != nil || c.Positions != nil || len(c.Records) != 1 {
		t.Errorf("JSON array: %+v %v", c, err)
	}
}
