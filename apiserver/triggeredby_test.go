package apiserver

import (
	"strings"
	"testing"
)

// TestRunsRecordWhoTriggeredThem: a run shows the id (never the key) of
// the API key that started it - queued, running, ended, cancelled before it
// ran - in GET /v1/runs/{id}, GET /v1/sync-events/{id} and list items, and
// runs can be listed by it. Schedules have no key: "schedule".
func TestRunsRecordWhoTriggeredThem(t *testing.T) {
	e := newRunEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	trig := e.key("acme", RoleTrigger)
	userID, _ := parseKeyID(user)
	trigID, _ := parseKeyID(trig)
	g := newGate(t, "triggeredby", nil)
	g.sinkHold = make(chan struct{})
	e.expect(e.do("PUT", "/v1/config", user, gateConfig("triggeredby", "r1"), "If-Match", "0"), 200)
	input := func(id int) map[string]any {
		return map[string]any{"integration": "items", "input": []any{map[string]any{"id": id, "name": "n"}}}
	}
	triggeredBy := func(path string) any {
		t.Helper()
		r := e.expect(e.do("GET", path, user, nil), 200)
		for _, k := range []string{user, trig} {
			if strings.Contains(string(r.body), k) {
				t.Errorf("GET %s shows an API key: %s", path, r.body)
			}
		}
		return r.json(t)["triggeredBy"]
	}

	running := e.expect(e.do("POST", "/v1/sync-events", trig, input(1)), 202).json(t)
	if running["triggeredBy"] != trigID {
		t.Errorf("the answer to POST /v1/sync-events: triggeredBy %v, want %s", running["triggeredBy"], trigID)
	}
	runningID := running["id"].(string)
	<-g.writing // executing, held in its sink
	queuedID := e.expect(e.do("POST", "/v1/sync-events", user, input(2)), 202).json(t)["id"].(string)
	for id, want := range map[string]string{runningID: trigID, queuedID: userID} {
		for _, path := range []string{"/v1/runs/" + id, "/v1/sync-events/" + id} {
			if got := triggeredBy(path); got != want {
				t.Errorf("GET %s: triggeredBy %v, want %s", path, got, want)
			}
		}
	}

	// Cancelled before it ran: its record is created then, with who.
	e.expect(e.do("POST", "/v1/runs/"+queuedID+"/cancel", user, nil), 202)
	if m := e.pollRun(user, queuedID); m["status"] != "cancelled" || m["triggeredBy"] != userID {
		t.Errorf("cancelled queued run: %v", m)
	}
	close(g.sinkHold)
	if m := e.pollRun(user, runningID); m["status"] != "succeeded" || m["triggeredBy"] != trigID {
		t.Errorf("ended run: %v", m)
	}

	// A schedule's fire (what the scheduler calls).
	schedID, err := e.s.StartRun(t.Context(), TriggerRequest{Tenant: "acme", Integration: "items", Trigger: "schedule"})
	if err != nil {
		t.Fatal(err)
	}
	if m := e.pollRun(user, schedID); m["triggeredBy"] != "schedule" {
		t.Errorf("scheduled run: %v", m)
	}

	// Lists carry it, and filter by it.
	items := e.expect(e.do("GET", "/v1/runs", user, nil), 200).json(t)["items"].([]any)
	got := map[string]any{}
	for _, it := range items {
		m := it.(map[string]any)
		got[m["id"].(string)] = m["triggeredBy"]
	}
	if got[runningID] != trigID || got[queuedID] != userID || got[schedID] != "schedule" {
		t.Errorf("list: %v", got)
	}
	byTrig := e.expect(e.do("GET", "/v1/runs?filter=triggeredBy[eq]"+trigID, user, nil), 200).json(t)["items"].([]any)
	if len(byTrig) != 1 || byTrig[0].(map[string]any)["id"] != runningID {
		t.Errorf("runs triggered by %s: %v", trigID, byTrig)
	}
}

// TestWebhookRunTriggeredBy: a webhook delivery has no key: its run says
// "webhook".
func TestWebhookRunTriggeredBy(t *testing.T) {
	e := newRunEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	newGate(t, "hooked", nil)
	cfg := gateConfig("hooked", "r1")
	files := cfg["files"].(map[string]string)
	files["main.hcl"] = strings.Replace(files["main.hcl"], "  retry {", "  webhook {\n    verify = \"token\"\n    token  = secret(\"hook\")\n  }\n  retry {", 1)
	e.expect(e.do("PUT", "/v1/secrets/hook", user, map[string]any{"value": "hook-token"}), 201)
	e.expect(e.do("PUT", "/v1/config", user, cfg, "If-Match", "0"), 200)
	r := e.expect(e.do("POST", "/v1/webhooks/acme/items", "", []byte(`[{"id":1,"name":"n"}]`), "Authorization", "Bearer hook-token"), 202).json(t)
	id := r["runId"].(string)
	if run := e.waitEnded(id); run.TriggeredBy != "webhook" {
		t.Errorf("stored run: triggeredBy %q", run.TriggeredBy)
	}
	if m := e.expect(e.do("GET", "/v1/runs/"+id, user, nil), 200).json(t); m["triggeredBy"] != "webhook" {
		t.Errorf("GET /v1/runs/%s: %v", id, m)
	}
}
