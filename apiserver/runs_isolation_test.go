package apiserver

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/ferryhq/ferry/engine"
	"github.com/ferryhq/ferry/runtime"
)

// isolationRunFixtures stores a finished run of tenant acme with a pending
// DLQ entry, both carrying the marker "acmerunmarker", for TestTenantIsolation.
func isolationRunFixtures(t *testing.T, e *env) (runID, entryID string) {
	t.Helper()
	runID, entryID = "acmerun1", "acmerun1-1-0"
	now := time.Now().UTC()
	run := runtime.Run{ID: runID, Tenant: "acme", Integration: "acme_only_secret", Trigger: "api", Revision: "2",
		Status: engine.RunFailed, Counts: engine.Counts{Total: 1, Failed: 1}, Queued: now, Started: now, Ended: now,
		Error: "acmerunmarker", IngestDone: true, Batches: 1}
	entry := runtime.DLQEntry{ID: entryID, Tenant: "acme", Integration: "acme_only_secret", RunID: runID, Key: "acmerunmarker",
		Stage: engine.StageExecute, Category: "permanent", Error: "acmerunmarker", Record: json.RawMessage(`{"id":1,"acmerunmarker":true}`),
		Revision: "2", Status: runtime.DLQPending, Created: now, Updated: now}
	js := e.rt.JetStream()
	for _, f := range []struct {
		bucket, key string
		v           any
	}{{runtime.BucketRuns, "acme." + runID, run}, {runtime.BucketDLQ, "acme." + entryID, entry}} {
		kv, err := js.KeyValue(t.Context(), f.bucket)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(f.v)
		if _, err := kv.Put(t.Context(), f.key, b); err != nil {
			t.Fatal(err)
		}
	}
	return runID, entryID
}

// checkIsolationRunFixtures: acme's run and DLQ entry are unchanged.
func checkIsolationRunFixtures(t *testing.T, e *env, runID, entryID string) {
	t.Helper()
	run, err := e.rt.Runs().Get(t.Context(), "acme", runID)
	if err != nil || run.Status != engine.RunFailed || run.Counts.Failed != 1 || run.Replays != 0 {
		t.Errorf("acme's run changed: %+v %v", run, err)
	}
	en, err := e.rt.DLQ().Get(t.Context(), "acme", entryID)
	if err != nil || en.Status != runtime.DLQPending || len(en.Events) != 0 {
		t.Errorf("acme's DLQ entry changed: %+v %v", en, err)
	}
}
