package apiserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/ferryhq/ferry/connectors"
	"github.com/ferryhq/ferry/engine"
	"github.com/ferryhq/ferry/runtime"
)

// runRoutes are sync events, run logs and the DLQ.
func (s *Server) runRoutes() []Route {
	syncRoles := []Role{RoleUser, RoleTrigger}
	syncRead := []Role{RoleUser, RoleViewer, RoleTrigger}
	runFields := []string{"id", "integration", "trigger", "triggeredBy", "status", "outcome", "revision", "queued", "started", "ended", "error"}
	dlqFields := []string{"id", "integration", "runId", "key", "stage", "category", "status", "revision", "created", "updated"}
	return []Route{
		// Sync events: trigger a run, poll it by correlation id.
		{Method: "POST", Pattern: "/v1/sync-events", Roles: syncRoles, TenantScoped: true,
			Summary: "Trigger a run of an integration (optionally with input records in place of its source); " +
				"with wait, answer when it ended (200) or the wait elapsed (202). Idempotency-Key: a retried trigger returns the same run",
			Tag: "sync-events", Request: syncEventRequest{}, Response: RunInfo{}, Status: http.StatusAccepted, Handle: s.postSyncEvent},
		{Method: "GET", Pattern: "/v1/sync-events/{correlationId}", Roles: syncRead, TenantScoped: true,
			Summary: "A sync event's run: status, counts, outcome", Tag: "sync-events", Response: RunInfo{},
			Query: map[string]string{"wait": "wait up to this long (e.g. 30s, at most 5m) for the run to end"}, Handle: s.getSyncEvent},

		// Run logs.
		{Method: "GET", Pattern: "/v1/runs", Roles: tenantRead, TenantScoped: true, Summary: "List runs, newest first", Tag: "runs",
			Response: listOf[RunInfo]{}, List: true, ListFields: runFields, Query: map[string]string{
				"integration": "only runs of this integration",
				"status":      "queued, running, succeeded, partial, failed or cancelled",
				"trigger":     "what started the run: api, webhook, schedule, cli, ...",
				"from":        "runs started (or, not started yet, queued) at or after this time (RFC 3339)",
				"to":          "runs started (or queued) before this time (RFC 3339)",
			}, Handle: s.listRuns},
		{Method: "GET", Pattern: "/v1/runs/{run}", Roles: tenantRead, TenantScoped: true, Summary: "Get a run (by its id, the correlation id)", Tag: "runs", Response: RunInfo{}, Handle: s.getRun},
		{Method: "POST", Pattern: "/v1/runs/{run}/cancel", Roles: tenantWrite, TenantScoped: true,
			Summary: "Cancel a queued or running run: it ends as cancelled with the counts of what settled; records not processed yet are dropped",
			Tag:     "runs", Response: RunInfo{}, Status: http.StatusAccepted, Handle: s.cancelRun},
		{Method: "GET", Pattern: "/v1/runs/{run}/errors", Roles: tenantRead, TenantScoped: true, Summary: "The run's failed records, per entity: key, stage, category, message, attempts",
			Tag: "runs", Response: listOf[RunError]{}, List: true, ListFields: []string{"key", "stage", "category", "attempts", "position", "entry", "entryStatus"}, Handle: s.runErrors},

		// The dead-letter queue.
		{Method: "GET", Pattern: "/v1/dlq", Roles: tenantRead, TenantScoped: true, Summary: "List DLQ entries, oldest run first", Tag: "dlq",
			Response: listOf[runtime.DLQEntry]{}, List: true, ListFields: dlqFields, Query: map[string]string{
				"integration": "only entries of this integration",
				"run":         "only entries of this run",
				"category":    "transient or permanent",
				"status":      "pending, replayed or discarded",
			}, Handle: s.listDLQ},
		{Method: "GET", Pattern: "/v1/dlq/{entry}", Roles: tenantRead, TenantScoped: true, Summary: "Get a DLQ entry with its record, error and attempts", Tag: "dlq", Response: runtime.DLQEntry{}, Handle: s.getDLQEntry},
		{Method: "POST", Pattern: "/v1/dlq/{entry}/replay", Roles: tenantWrite, TenantScoped: true,
			Summary: "Replay an entry's record (or an edited record) through the current configuration",
			Tag:     "dlq", Request: dlqReplayRequest{}, Response: dlqReplayResponse{}, Handle: s.replayDLQEntry},
		{Method: "POST", Pattern: "/v1/dlq/replay", Roles: tenantWrite, TenantScoped: true,
			Summary: "Replay every pending entry matching a filter through the current configuration",
			Tag:     "dlq", Request: dlqReplayManyRequest{}, Response: runtime.ReplaySummary{}, Handle: s.replayDLQ},
		{Method: "DELETE", Pattern: "/v1/dlq/{entry}", Roles: tenantWrite, TenantScoped: true,
			Summary: "Discard a pending entry (its record stays counted as failed); optional If-Match: the entry's ETag",
			Tag:     "dlq", Response: runtime.DLQEntry{}, Query: map[string]string{"reason": "why the entry is discarded (recorded on it)"}, Handle: s.discardDLQEntry},
	}
}

// RunInfo is a run (a sync event) as the API shows it.
type RunInfo struct {
	ID string `json:"id"`
	// CorrelationID is the run's id, under the name sync-event clients use.
	CorrelationID string `json:"correlationId"`
	Integration   string `json:"integration"`
	Trigger       string `json:"trigger,omitempty"`
	// TriggeredBy is who started the run: the id of the API key (never the
	// key), or webhook or schedule, which have none.
	TriggeredBy string `json:"triggeredBy,omitempty"`
	// Revision is the configuration revision the run runs on.
	Revision string `json:"revision,omitempty"`
	// Status: queued, running, succeeded, partial, failed.
	Status engine.RunStatus `json:"status"`
	// Outcome is the final status once the run ended (succeeded, partial, failed, cancelled).
	Outcome engine.RunStatus `json:"outcome,omitempty"`
	// Counts: total == success + failed + skipped once the run ended.
	Counts  engine.Counts `json:"counts"`
	Queued  time.Time     `json:"queued"`
	Started *time.Time    `json:"started,omitempty"`
	Ended   *time.Time    `json:"ended,omitempty"`
	Error   string        `json:"error,omitempty"`
	Resumes int           `json:"resumes,omitempty"`
	Replays int           `json:"replays,omitempty"`
	Links   RunLinks      `json:"links"`
}

// RunLinks are the URLs of a run's resources.
type RunLinks struct {
	Self   string `json:"self"`
	Run    string `json:"run"`
	Errors string `json:"errors"`
	DLQ    string `json:"dlq"`
}

func runInfo(r *runtime.Run) RunInfo {
	ri := RunInfo{ID: r.ID, CorrelationID: r.ID, Integration: r.Integration, Trigger: r.Trigger, TriggeredBy: r.TriggeredBy, Revision: r.Revision,
		Status: r.Status, Counts: r.Counts, Queued: r.Queued, Error: r.Error, Resumes: r.Resumes, Replays: r.Replays,
		Links: RunLinks{Self: "/v1/sync-events/" + r.ID, Run: "/v1/runs/" + r.ID, Errors: "/v1/runs/" + r.ID + "/errors", DLQ: "/v1/dlq?run=" + r.ID}}
	if r.Finished() {
		ri.Outcome = r.Status
	}
	if !r.Started.IsZero() {
		t := r.Started
		ri.Started = &t
	}
	if !r.Ended.IsZero() {
		t := r.Ended
		ri.Ended = &t
	}
	return ri
}

// RunError is one failed record of a run.
type RunError struct {
	Key      string              `json:"key"`
	Stage    engine.Stage        `json:"stage"`
	Category connectors.Category `json:"category"`
	Message  string              `json:"message"`
	Attempts int                 `json:"attempts"`
	Position string              `json:"position,omitempty"`
	// Entry is the record's DLQ entry (GET /v1/dlq/{entry}) and EntryStatus its status.
	Entry       string            `json:"entry,omitempty"`
	EntryStatus runtime.DLQStatus `json:"entryStatus,omitempty"`
}

// runNotFound is the 404 of a run id, of this tenant or not.
func runNotFound(id string) *Problem {
	return notFound(fmt.Sprintf("run %q", id))
}

// ErrRunEnded: a run that already ended cannot be cancelled.
var ErrRunEnded = errors.New("the run already ended")

// CancelRun asks for a run to end as cancelled. The server executing it
// stops it at once when that is this server, else at its next lease renewal
// (a third of Options.RunLease); a run waiting to start ends without
// running. It is also the schedules' replace policy.
func (s *Server) CancelRun(ctx context.Context, tenant, runID string) error {
	m := s.runs
	key := requestKey(tenant, runID)
	found := false
	if err := m.update(ctx, key, func(r *runRequest) bool {
		found = true
		if r.Cancel || r.Error != "" {
			return false
		}
		r.Cancel = true
		return true
	}); err != nil {
		return err
	}
	if !found {
		run, err := s.rt.Runs().Get(ctx, tenant, runID)
		if err != nil {
			return err // runtime.ErrNotFound
		}
		if run.Finished() {
			return fmt.Errorf("run %s: %w (%s)", runID, ErrRunEnded, run.Status)
		}
		// A run without a request is not executed by a server (ferry run
		// against the same NATS): the process running it owns it.
		return fmt.Errorf("run %s is not executed by a ferry server (a ferry run process?): stop that process: %w", runID, ErrRunEnded)
	}
	m.mu.Lock()
	ar := m.active[key]
	m.mu.Unlock()
	if ar != nil && ar.cancel != nil {
		ar.cancel(runtime.ErrCancelled)
	}
	return nil
}

func (s *Server) cancelRun(w http.ResponseWriter, r *http.Request, p *Principal) error {
	id := r.PathValue("run")
	if !nameRe.MatchString(id) {
		return runNotFound(id)
	}
	err := s.CancelRun(r.Context(), p.Tenant, id)
	switch {
	case errors.Is(err, runtime.ErrNotFound):
		return runNotFound(id)
	case errors.Is(err, ErrRunEnded):
		return newProblem(http.StatusConflict, probConflict, "%s", err.Error())
	case err != nil:
		return err
	}
	s.audit(r.Context(), p.Tenant, p, "run.cancel", "runs/"+id, 0, "")
	run, err := s.runState(r.Context(), p.Tenant, id)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/runs/"+id)
	writeJSON(w, r, http.StatusAccepted, runInfo(run))
	return nil
}

func (s *Server) getRun(w http.ResponseWriter, r *http.Request, p *Principal) error {
	id := r.PathValue("run")
	run, err := s.runState(r.Context(), p.Tenant, id)
	if err != nil {
		if errors.Is(err, runtime.ErrNotFound) || errors.Is(err, runtime.ErrInvalidName) {
			return runNotFound(id)
		}
		return err
	}
	writeJSON(w, r, http.StatusOK, runInfo(run))
	return nil
}

func (s *Server) listRuns(w http.ResponseWriter, r *http.Request, p *Principal) error {
	q, prob := parseList(r, s.routeFor(r))
	if prob != nil {
		return prob
	}
	v := r.URL.Query()
	var from, to time.Time
	for _, b := range []struct {
		name string
		t    *time.Time
	}{{"from", &from}, {"to", &to}} {
		if raw := v.Get(b.name); raw != "" {
			t, err := time.Parse(time.RFC3339Nano, raw)
			if err != nil {
				return newProblem(http.StatusBadRequest, probBadRequest, "%s=%q: write a time as RFC 3339, e.g. 2026-03-01T12:00:00Z", b.name, raw)
			}
			*b.t = t
		}
	}
	status := engine.RunStatus(v.Get("status"))
	switch status {
	case "", engine.RunQueued, engine.RunRunning, engine.RunSucceeded, engine.RunPartial, engine.RunFailed, engine.RunCancelled:
	default:
		return newProblem(http.StatusBadRequest, probBadRequest, "status=%q: use queued, running, succeeded, partial or failed", status)
	}
	f := runtime.RunFilter{Integration: v.Get("integration"), Status: status, Trigger: v.Get("trigger"), From: from, To: to}
	sel, err := s.rt.Runs().Select(r.Context(), p.Tenant, f)
	if err != nil {
		if errors.Is(err, runtime.ErrInvalidName) {
			return newProblem(http.StatusBadRequest, probBadRequest, "%s", err.Error())
		}
		return err
	}
	pending, err := s.pendingRuns(r.Context(), p.Tenant, sel.Known)
	if err != nil {
		return err
	}
	// Not started yet: newest, before the runtime's runs.
	var queued []*runtime.Run
	for _, run := range pending {
		if f.Match(run) {
			queued = append(queued, run)
		}
	}
	if len(q.Filters) > 0 || len(q.Order) > 0 {
		// filter= and order= may use any field: listquery sees every run.
		all := append(queued, sel.Runs(0, sel.Total())...)
		items := make([]RunInfo, 0, len(all))
		for _, run := range all {
			items = append(items, runInfo(run))
		}
		return writeList(w, r, items, q)
	}
	// Only the page is decoded and built; the numbers are listquery.Apply's
	// without filters or order (a page past the end is empty).
	total := len(queued) + sel.Total()
	start := total
	if q.Page-1 <= total/q.PageSize {
		start = min((q.Page-1)*q.PageSize, total)
	}
	end := start + min(q.PageSize, total-start)
	items := make([]RunInfo, 0, end-start)
	for _, run := range queued[min(start, len(queued)):min(end, len(queued))] {
		items = append(items, runInfo(run))
	}
	if end > len(queued) {
		for _, run := range sel.Runs(max(start, len(queued))-len(queued), end-len(queued)) {
			items = append(items, runInfo(run))
		}
	}
	writeJSON(w, r, http.StatusOK, listOf[RunInfo]{Items: items, Page: q.Page, PageSize: q.PageSize, Total: total})
	return nil
}

func (s *Server) runErrors(w http.ResponseWriter, r *http.Request, p *Principal) error {
	q, prob := parseList(r, s.routeFor(r))
	if prob != nil {
		return prob
	}
	id := r.PathValue("run")
	run, err := s.runState(r.Context(), p.Tenant, id)
	if err != nil {
		if errors.Is(err, runtime.ErrNotFound) || errors.Is(err, runtime.ErrInvalidName) {
			return runNotFound(id)
		}
		return err
	}
	items := []RunError{}
	if run.Status == engine.RunQueued {
		return writeList(w, r, items, q)
	}
	failures, err := s.rt.Runs().Errors(r.Context(), p.Tenant, id)
	if err != nil {
		if errors.Is(err, runtime.ErrNotFound) {
			return writeList(w, r, items, q)
		}
		return err
	}
	// The DLQ entries of the run, by entity key and position.
	entries, err := s.rt.DLQ().List(r.Context(), p.Tenant, runtime.DLQFilter{RunID: id, PageSize: 1 << 30})
	if err != nil {
		return err
	}
	byRec := map[string][]*runtime.DLQEntry{}
	for _, e := range entries.Entries {
		k := e.Key + "\x00" + e.Position
		byRec[k] = append(byRec[k], e)
	}
	for _, f := range failures {
		re := RunError{Key: f.Key, Stage: f.Stage, Category: f.Category, Message: f.Message, Attempts: f.Attempts, Position: f.Position}
		if es := byRec[f.Key+"\x00"+f.Position]; len(es) == 1 {
			re.Entry, re.EntryStatus = es[0].ID, es[0].Status
		}
		items = append(items, re)
	}
	return writeList(w, r, items, q)
}

// decodeOptionalJSON decodes a JSON body strictly, if there is one.
func (s *Server) decodeOptionalJSON(w http.ResponseWriter, r *http.Request, v any) *Problem {
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes))
	if err != nil {
		return jsonProblem(err, s.opts.MaxBodyBytes)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	return s.decodeJSON(w, r, v)
}

// pathID reads a path parameter that must be a runtime name; ok is false
// for anything else (which cannot exist).
func pathID(r *http.Request, name string) (string, bool) {
	v := r.PathValue(name)
	return v, nameRe.MatchString(v) && !strings.Contains(v, ".")
}
