package apiserver

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"
)

// A webhook serves deliveries on the revision it read before, without
// reading the revision pointer each time, yet a new revision takes over:
// at once after an apply on the same server, within milliseconds after one
// on another server (the schedules' watch of the pointers), and within
// webhookRevisionTTL when that watch is not running.
func TestWebhookFollowsRevisions(t *testing.T) {
	defer func(d time.Duration) { webhookRevisionTTL = d }(webhookRevisionTTL)
	webhookRevisionTTL = time.Hour // only a newer program ends a cached revision
	e := newRunEnv(t)
	newGate(t, "revs", nil)
	ctx := t.Context()
	if err := e.s.CreateTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	// Server B shares A's NATS, as a second node of a cluster would.
	b, err := New(e.rt, Options{AdminKey: testAdminKey, MasterKey: bytes.Repeat([]byte{7}, 32), WebhookRateLimit: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = b.Close(c)
	})
	p := &Principal{Tenant: "acme", KeyID: "test", Role: RoleUser}
	with, without := gateWebhookFiles("revs"), gateConfig("revs", "r1")["files"].(map[string]string)
	rev := 0
	apply := func(s *Server, files map[string]string) {
		t.Helper()
		r, err := s.apply(ctx, p, applyArgs{planned: rev, files: files})
		if err != nil {
			t.Fatal(err)
		}
		rev = r.Revision
	}
	n := 0
	post := func() int {
		n++
		return e.do("POST", "/v1/webhooks/acme/items", "", fmt.Sprintf(`{"id":%d,"name":"x"}`, n), "X-Delivery", fmt.Sprint(n)).status
	}
	waitStatus := func(want int, what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for got := post(); got != want; got = post() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: still %d, want %d", what, got, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	apply(e.s, with)
	if got := post(); got != 202 {
		t.Fatalf("webhook of revision 1: %d", got)
	}
	// An apply on this server: at once.
	apply(e.s, without)
	if got := post(); got != 404 {
		t.Fatalf("right after revision 2 removed the webhook on this server: %d, want 404", got)
	}
	apply(e.s, with)
	if got := post(); got != 202 {
		t.Fatalf("right after revision 3 brought it back: %d", got)
	}
	// An apply on server B reaches A through the watch.
	apply(b, without)
	waitStatus(404, "revision 4, applied on another server")
	apply(b, with)
	waitStatus(202, "revision 5, applied on another server")

	// Without the watch, a cached revision serves until webhookRevisionTTL:
	// what a server may lag behind another one's apply, at most.
	e.s.sched.stop()
	webhookRevisionTTL = 300 * time.Millisecond
	time.Sleep(webhookRevisionTTL) // revision 5 is due to be read again
	read := time.Now()
	if got := post(); got != 202 {
		t.Fatalf("revision 5: %d", got)
	}
	apply(b, without)
	if got := post(); got != 202 && time.Since(read) < webhookRevisionTTL {
		t.Fatalf("revision 5 was read again before webhookRevisionTTL (%d): the cache is not used", got)
	}
	time.Sleep(webhookRevisionTTL)
	if got := post(); got != 404 {
		t.Fatalf("%s after revision 6 removed the webhook on another server: %d, want 404", webhookRevisionTTL, got)
	}
}
