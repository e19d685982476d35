package apiserver

import (
	"context"
	"encoding/json"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/apiserver/listquery"
	"github.com/ferryhq/ferry/engine"
	"github.com/ferryhq/ferry/runtime"
	"github.com/nats-io/nats.go/jetstream"
)

// TestListRunsPages: GET /v1/runs decodes only the page it returns; what
// it returns is what listing every run through listquery returns (the
// oracle below is how the list was built before), for pages, page sizes,
// filters, listquery's filter= and order=, runs not started yet (listed
// first) and ids that do not sort like their runs.
func TestListRunsPages(t *testing.T) {
	e := newRunEnv(t)
	ctx := context.Background()
	viewer := e.tenantWithKey("acme", RoleViewer)
	seedRuns(t, e.s, "acme", 40)
	seedRuns(t, e.s, "other", 3)
	runs, err := e.s.js.KeyValue(ctx, runtime.BucketRuns)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, r := range []runtime.Run{
		// Chosen ids: queued last but sorting first, and two queued at once.
		{ID: "aaa", Integration: "int1", Trigger: "cli", Status: engine.RunRunning, Queued: t0.Add(time.Hour), Started: t0.Add(time.Hour)},
		{ID: "zzz", Integration: "int1", Trigger: "api", Status: engine.RunSucceeded, Queued: t0.Add(10 * time.Second)},
		{ID: "yyy", Integration: "int2", Trigger: "api", Status: engine.RunFailed, Queued: t0.Add(10 * time.Second)},
	} {
		r.Tenant = "acme"
		b, _ := json.Marshal(r)
		if _, err := runs.Put(ctx, "acme."+r.ID, b); err != nil {
			t.Fatal(err)
		}
	}
	// Requests of runs not started yet, on a live server elsewhere (the
	// scan leaves them), and one that could not start.
	for _, rr := range []runRequest{
		{RunID: newRunID(t0.Add(2 * time.Hour)), Integration: "int1", Trigger: "api"},
		{RunID: newRunID(t0.Add(3 * time.Hour)), Integration: "int3", Trigger: "schedule"},
		{RunID: newRunID(t0.Add(4 * time.Hour)), Integration: "int1", Trigger: "api", Error: "compiling revision 1: boom"},
	} {
		rr.Tenant, rr.Revision, rr.Queued = "acme", 1, t0.Add(time.Hour)
		rr.Owner, rr.LeaseUntil = "elsewhere", time.Now().Add(time.Hour)
		b, _ := json.Marshal(rr)
		if _, err := e.s.runs.reqs.Create(ctx, requestKey("acme", rr.RunID), b); err != nil {
			t.Fatal(err)
		}
	}

	for _, q := range []string{
		"", "?page=2", "?pageSize=1", "?pageSize=2&page=2", "?pageSize=7&page=3", "?pageSize=7&page=7",
		"?pageSize=500", "?page=99", "?page=9223372036854775807&pageSize=500",
		"?integration=int1", "?integration=int1&pageSize=4&page=2", "?integration=nope",
		"?status=failed", "?status=queued", "?status=running", "?trigger=schedule", "?trigger=api&integration=int2&pageSize=3&page=2",
		"?from=2026-01-01T00:00:05Z&to=2026-01-01T00:00:20Z", "?from=2026-01-01T00:30:00Z",
		"?filter=status[eq]succeeded&pageSize=5&page=2", "?order=queued[asc]&pageSize=6", "?order=id&filter=integration[ne]int1",
	} {
		got := e.expect(e.do("GET", "/v1/runs"+q, viewer, nil), 200).body
		want := oracleRuns(t, e, "acme", q)
		if string(got) != string(want) {
			t.Errorf("GET /v1/runs%s:\n got %s\nwant %s", q, got, want)
		}
	}
}

// oracleRuns is GET /v1/runs as it was built before: every run decoded,
// sorted by Queued then id, the requests not started yet first, every item
// through listquery.Apply.
func oracleRuns(t *testing.T, e *env, tenant, rawQuery string) []byte {
	t.Helper()
	ctx := context.Background()
	v, _ := url.ParseQuery(strings.TrimPrefix(rawQuery, "?"))
	var route Route
	for _, r := range e.s.Routes() {
		if r.Method == "GET" && r.Pattern == "/v1/runs" {
			route = r
		}
	}
	q, err := listquery.Parse(v, route.ListFields)
	if err != nil {
		t.Fatal(err)
	}
	runs, err := e.s.js.KeyValue(ctx, runtime.BucketRuns)
	if err != nil {
		t.Fatal(err)
	}
	w, err := runs.Watch(ctx, tenant+".>", jetstream.IgnoreDeletes())
	if err != nil {
		t.Fatal(err)
	}
	var all []*runtime.Run
	for en := range w.Updates() {
		if en == nil {
			break
		}
		var r runtime.Run
		if json.Unmarshal(en.Value(), &r) == nil {
			all = append(all, &r)
		}
	}
	w.Stop()
	sort.Slice(all, func(i, j int) bool {
		if !all[i].Queued.Equal(all[j].Queued) {
			return all[i].Queued.After(all[j].Queued)
		}
		return all[i].ID > all[j].ID
	})
	known := map[string]bool{}
	for _, r := range all {
		known[r.ID] = true
	}
	pending, err := e.s.pendingRuns(ctx, tenant, func(id string) bool { return known[id] })
	if err != nil {
		t.Fatal(err)
	}
	var from, to time.Time
	if s := v.Get("from"); s != "" {
		from, _ = time.Parse(time.RFC3339Nano, s)
	}
	if s := v.Get("to"); s != "" {
		to, _ = time.Parse(time.RFC3339Nano, s)
	}
	items := []RunInfo{}
	for _, run := range append(pending, all...) {
		if (v.Get("integration") != "" && run.Integration != v.Get("integration")) || (v.Get("status") != "" && string(run.Status) != v.Get("status")) ||
			(v.Get("trigger") != "" && run.Trigger != v.Get("trigger")) {
			continue
		}
		at := run.Started
		if at.IsZero() {
			at = run.Queued
		}
		if (!from.IsZero() && at.Before(from)) || (!to.IsZero() && !at.Before(to)) {
			continue
		}
		items = append(items, runInfo(run))
	}
	page, total, err := listquery.Apply(items, q)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(listOf[RunInfo]{Items: page, Page: q.Page, PageSize: q.PageSize, Total: total})
	return append(b, '\n')
}

// TestRunRequestsBounded: an ended run's request leaves nothing behind in
// the requests bucket once its purge marker expired (a KV delete would leave
// a marker per run, read by every scan and run list), and the bucket has a
// TTL.
func TestRunRequestsBounded(t *testing.T) {
	defer func(d time.Duration) { requestMarkerTTL = d }(requestMarkerTTL)
	requestMarkerTTL = time.Second
	e := newRunEnv(t)
	ctx := context.Background()
	seedRuns(t, e.s, "acme", 5) // stores and ends 5 runs' requests
	var info *jetstream.StreamInfo
	for deadline := time.Now().Add(15 * time.Second); ; {
		var err error
		if info, err = e.s.runs.reqStream.Info(ctx); err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs == 0 && info.State.NumSubjects == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("requests bucket holds %d messages of %d keys 15s after its runs ended", info.State.Msgs, info.State.NumSubjects)
		}
		time.Sleep(100 * time.Millisecond)
	}
	runRetention, _ := e.rt.Retention()
	if want := max(runRetention, runtime.DefaultRunRetention); info.Config.MaxAge != want {
		t.Errorf("requests bucket TTL %s, want %s", info.Config.MaxAge, want)
	}
	if keys, err := keysOf(ctx, e.s.runs.reqs, ">"); err != nil || len(keys) != 0 {
		t.Errorf("keys %v %v", keys, err)
	}
}
