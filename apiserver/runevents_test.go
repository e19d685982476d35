package apiserver

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// A run started through a sync event announces itself to subscriptions:
// run.started, then run.completed with its counts, and dlq.added because one
// record failed.
func TestRunEventsReachSubscriptions(t *testing.T) {
	e := newEventsEnv(t, fastEvents)
	user := e.tenantWithKey("acme", RoleUser)
	rc := newReceiver(t, nil)
	e.subscribe(user, map[string]any{"url": rc.URL, "types": []string{"run.started", "run.completed", "run.failed", "dlq.added"}})
	dir := t.TempDir()
	e.expect(e.do("PUT", "/v1/config", user, fileConfig(dir), "If-Match", "0"), 200)

	in := []map[string]any{{"id": 1, "name": "a"}, {"id": 2}} // 2 lacks name: DLQ
	m := e.expect(e.do("POST", "/v1/sync-events", user, map[string]any{"integration": "items", "input": in, "wait": "30s"}), 200).json(t)
	runID := m["correlationId"].(string)

	waitFor(t, "three run events", func() bool { return len(rc.requests()) >= 3 })
	var types []string
	userID, _ := parseKeyID(user)
	var completed map[string]any
	for _, r := range rc.requests() {
		var ce map[string]any
		if err := json.Unmarshal(r.body, &ce); err != nil {
			t.Fatal(err)
		}
		if ce["subject"] != "runs/"+runID || ce["ferryintegration"] != "items" {
			t.Errorf("event %v", ce)
		}
		types = append(types, ce["type"].(string))
		// Who started the run: the key's id, never the key.
		if data, _ := ce["data"].(map[string]any); ce["type"] != "dev.ferry.dlq.added" && data["triggeredBy"] != userID {
			t.Errorf("%s: triggeredBy %v, want %s", ce["type"], data["triggeredBy"], userID)
		}
		if strings.Contains(string(r.body), user) {
			t.Errorf("%s carries the API key", ce["type"])
		}
		if ce["type"] == "dev.ferry.run.completed" {
			completed, _ = ce["data"].(map[string]any)
		}
	}
	slices.Sort(types)
	if want := []string{"dev.ferry.dlq.added", "dev.ferry.run.completed", "dev.ferry.run.started"}; !slices.Equal(types, want) {
		t.Fatalf("event types %v, want %v", types, want)
	}
	c, _ := completed["counts"].(map[string]any)
	if completed["status"] != "partial" || c["total"] != float64(2) || c["failed"] != float64(1) {
		t.Errorf("run.completed data %v", completed)
	}
}
