package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ferryhq/ferry/runtime"
)

// After a crash, an integration's unfinished runs resume in the order they
// were queued: first the run that held the integration's run lock in the
// dead process (it takes its own lock over at once), then each run queued
// behind it. A later run resumed first would wait out the dead process's
// lock (LockTTL, 30s here) while the run holding it waited behind it.
func TestRunsResumeInQueueOrderAfterACrash(t *testing.T) {
	dataDir := t.TempDir()
	ctx := t.Context()
	open := func() (*runtime.Runtime, *Server) {
		rt, err := runtime.Open(ctx, runtime.Options{DataDir: dataDir})
		if err != nil {
			t.Fatal(err)
		}
		s, err := New(rt, Options{AdminKey: testAdminKey, MasterKey: bytes.Repeat([]byte{7}, 32)})
		if err != nil {
			rt.Close()
			t.Fatal(err)
		}
		return rt, s
	}
	rt, s := open()
	if err := s.CreateTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	p := &Principal{Tenant: "acme", KeyID: "test", Role: RoleUser}
	if _, err := s.apply(ctx, p, applyArgs{planned: 0, files: gateConfig("order", "r1")["files"].(map[string]string)}); err != nil {
		t.Fatal(err)
	}
	g := newGate(t, "order", nil)
	g.sinkHold = make(chan struct{}) // the first run holds the integration
	const runs = 4
	ids := make([]string, runs)
	for i := range ids {
		id, err := s.StartRun(ctx, TriggerRequest{Tenant: "acme", Integration: "items",
			Input: []json.RawMessage{json.RawMessage(fmt.Sprintf(`{"id": %d, "name": "n%d"}`, i, i))}})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
		if i == 0 {
			<-g.writing
		}
	}

	// The crash: NATS goes away under the server, which finishes nothing
	// and releases no lease.
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		c, cancel := context.WithCancel(context.Background())
		cancel()
		_ = s.Close(c) // ends the dead server's goroutines
	}()

	// A new process on the same data. The dead server's leases expired in
	// reverse queue order (renewals run on their own tickers): the last
	// run's request is the first a scan lists.
	rt, err := runtime.Open(ctx, runtime.Options{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	reqs, err := rt.JetStream().KeyValue(ctx, BucketRunRequests)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range slices.Backward(ids) {
		var rr runRequest
		rev, found, err := getJSON(ctx, reqs, requestKey("acme", id), &rr)
		if err != nil || !found {
			t.Fatalf("the request of run %s after the crash: %v (found %v)", id, err, found)
		}
		rr.Owner, rr.LeaseUntil = "dead", time.Now().Add(-time.Second)
		b, _ := json.Marshal(rr)
		if _, err := reqs.Update(ctx, requestKey("acme", id), b, rev); err != nil {
			t.Fatal(err)
		}
	}
	locks, err := rt.JetStream().KeyValue(ctx, runtime.BucketLocks)
	if err != nil {
		t.Fatal(err)
	}
	var held struct {
		RunID string `json:"runId"`
	}
	if e, err := locks.Get(ctx, "acme.items"); err != nil || json.Unmarshal(e.Value(), &held) != nil || held.RunID != ids[0] {
		t.Fatalf("the integration's lock after the crash: %+v %v; want it held by the first run, %s", held, err, ids[0])
	}

	g2 := newGate(t, "order", nil)
	defer rt.Close()
	s2, err := New(rt, Options{AdminKey: testAdminKey, MasterKey: bytes.Repeat([]byte{7}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close(context.Background())
	for _, id := range ids {
		waitWithin(t, 2*time.Minute, "run "+id+" to end", func() bool {
			run, err := rt.Runs().Get(ctx, "acme", id)
			return err == nil && run.Finished()
		})
		if run, _ := rt.Runs().Get(ctx, "acme", id); run.Status != "succeeded" || run.Counts.Success != 1 {
			t.Errorf("run %s: %+v", id, run)
		}
	}
	var order []string
	for _, rec := range g2.Written() {
		order = append(order, fmt.Sprint(rec["id"]))
	}
	if want := []string{"0", "1", "2", "3"}; !slices.Equal(order, want) {
		t.Fatalf("the runs wrote their records in the order %v; want queue order %v", order, want)
	}
}
