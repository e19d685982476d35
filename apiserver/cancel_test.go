package apiserver

import (
	"fmt"
	"testing"
)

// A running run and a queued one are cancelled over REST: the running one
// ends cancelled with what it wrote counted, the queued one ends without
// running, and the next run of the integration starts at once.
func TestCancelRuns(t *testing.T) {
	e := newRunEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	viewer := e.key("acme", RoleViewer)
	g := newGate(t, "cancel", nil)
	g.sinkHold = make(chan struct{})
	e.expect(e.do("PUT", "/v1/config", user, gateConfig("cancel", "r1"), "If-Match", "0"), 200)
	var ids []string
	for i := range 3 {
		body := map[string]any{"integration": "items", "input": []any{map[string]any{"id": i, "name": "n"}}}
		ids = append(ids, e.expect(e.do("POST", "/v1/sync-events", user, body), 202).json(t)["id"].(string))
		if i == 0 {
			<-g.writing // the first run is executing, held in its sink
		}
	}

	e.expect(e.do("POST", "/v1/runs/"+ids[0]+"/cancel", viewer, nil), 403)
	e.expect(e.do("POST", "/v1/runs/nope/cancel", user, nil), 404)
	e.expect(e.do("POST", "/v1/runs/"+ids[1]+"/cancel", user, nil), 202) // queued
	e.expect(e.do("POST", "/v1/runs/"+ids[0]+"/cancel", user, nil), 202) // running

	for _, id := range ids[:2] {
		m := e.pollRun(user, id)
		total, success, failed, skipped := counts(t, m)
		if m["status"] != "cancelled" || m["outcome"] != "cancelled" || total != success+failed+skipped {
			t.Fatalf("run %s: %v", id, m)
		}
	}
	// The third run was not held up by the cancelled ones.
	close(g.sinkHold)
	if m := e.pollRun(user, ids[2]); m["status"] != "succeeded" {
		t.Fatalf("third run: %v", m)
	}
	if w := g.Written(); len(w) != 1 || fmt.Sprint(w[0]["id"]) != "2" {
		t.Fatalf("written: %v (the cancelled runs' records must not be)", w)
	}
	p := e.expect(e.do("POST", "/v1/runs/"+ids[0]+"/cancel", user, nil), 409).json(t)
	if p["detail"] == nil {
		t.Fatalf("409 without a detail: %v", p)
	}
	if m := e.expect(e.do("GET", "/v1/runs?status=cancelled", user, nil), 200).json(t); m["total"].(float64) != 2 {
		t.Fatalf("cancelled runs: %v", m)
	}
}
