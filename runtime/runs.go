package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ferryhq/ferry/connectors"
	"github.com/ferryhq/ferry/engine"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrNotFound is returned for a run, DLQ entry or cursor that does not exist.
var ErrNotFound = errors.New("not found")

// Run is the tracked state of one run (KV ferry_v1_runs, key <tenant>.<run id>).
type Run struct {
	ID          string           `json:"id"` // the correlation id
	Tenant      string           `json:"tenant"`
	Integration string           `json:"integration"`
	Trigger     string           `json:"trigger,omitempty"`
	TriggeredBy string           `json:"triggeredBy,omitempty"` // who: an API key's id (never the key), "webhook", "schedule"
	Revision    string           `json:"revision,omitempty"`
	Status      engine.RunStatus `json:"status"`
	Counts      engine.Counts    `json:"counts"`
	Queued      time.Time        `json:"queued"`
	Started     time.Time        `json:"started,omitzero"`
	Ended       time.Time        `json:"ended,omitzero"`
	Error       string           `json:"error,omitempty"`
	// Batches is the number of work messages ingest published; set when ingest ended.
	Batches    int64 `json:"batches"`
	IngestDone bool  `json:"ingestDone"`
	// CursorFrom is the cursor the run reads after (a resumed run reads the same).
	CursorFrom *Cursor `json:"cursorFrom,omitempty"`
	// Resumes counts how often the run was resumed after its process ended.
	Resumes int `json:"resumes,omitempty"`
	// Replays counts DLQ entries of this run replayed successfully.
	Replays int `json:"replays,omitempty"`
}

// Finished reports whether the run reached a final status.
func (r *Run) Finished() bool {
	switch r.Status {
	case engine.RunSucceeded, engine.RunPartial, engine.RunFailed, engine.RunCancelled:
		return true
	}
	return false
}

// Result converts the run to the engine's result shape.
func (r *Run) Result(failures []engine.RecordFailure) *engine.RunResult {
	return &engine.RunResult{
		ID: r.ID, Integration: r.Integration, Status: r.Status, Counts: r.Counts,
		Started: r.Started, Ended: r.Ended, Error: r.Error, Failures: failures,
	}
}

// settledRecord is one record that did not succeed in a message.
type settledRecord struct {
	Idx      int                 `json:"idx"`
	Key      string              `json:"key,omitempty"`
	Position string              `json:"pos,omitempty"`
	Stage    engine.Stage        `json:"stage"`
	Category connectors.Category `json:"category"`
	Error    string              `json:"error"`
	Attempts []Attempt           `json:"attempts"`
}

// settlement is the committed outcome of one work message (KV ferry_v1_settled,
// key <tenant>.<run>.<id>: id b<seq> for a batch, r<seq>_<attempt> for a retry,
// p<entry> for a DLQ replay). It is created once (KV Create), before the
// message's side effects (retry message, DLQ entries) and before the ack, so a
// redelivered message finds it, redoes the idempotent side effects and acks
// without executing again. Run counts are the sum of a run's settlements.
type settlement struct {
	Kind    string `json:"kind"` // batch | retry | replay
	Records int64  `json:"records,omitempty"`
	Success int64  `json:"success,omitempty"`
	Skipped int64  `json:"skipped,omitempty"`
	Failed  int64  `json:"failed,omitempty"`
	Retried int64  `json:"retried,omitempty"`
	// RetryAt is the not-before time of the retry message this settlement scheduled.
	RetryAt time.Time       `json:"retryAt,omitzero"`
	Retries []settledRecord `json:"retries,omitempty"`
	Dead    []settledRecord `json:"dead,omitempty"`
	At      time.Time       `json:"at"`
}

// Runs reads tracked runs.
type Runs struct{ rt *Runtime }

// Runs returns the run store.
func (rt *Runtime) Runs() *Runs { return &Runs{rt} }

// Get returns a run by its id.
func (s *Runs) Get(ctx context.Context, tenant, runID string) (*Run, error) {
	r, _, err := s.rt.getRun(ctx, tenant, runID)
	return r, err
}

// EndCancelledRun is EndCancelled for the run that run describes (tenant,
// id, integration, trigger, triggeredBy, revision, queued): one that never
// started is recorded with all of them, so it still shows who started it.
func (rt *Runtime) EndCancelledRun(ctx context.Context, run Run) (*engine.RunResult, error) {
	_, _, err := rt.getRun(ctx, run.Tenant, run.ID)
	if errors.Is(err, ErrNotFound) {
		rec := Run{ID: run.ID, Tenant: run.Tenant, Integration: run.Integration, Trigger: run.Trigger, TriggeredBy: run.TriggeredBy,
			Revision: run.Revision, Status: engine.RunQueued, Queued: run.Queued}
		if rec.Queued.IsZero() {
			rec.Queued = rt.opts.Now()
		}
		b, _ := json.Marshal(rec)
		if _, err = rt.runsKV.Create(ctx, runKey(run.Tenant, run.ID), b); errors.Is(err, jetstream.ErrKeyExists) {
			err = nil // it started meanwhile: EndCancelled ends it
		}
	}
	if err != nil {
		return nil, fmt.Errorf("runtime: record cancelled run %s: %w", run.ID, err)
	}
	return rt.EndCancelled(ctx, run.Tenant, run.Integration, run.ID, run.Trigger, run.Revision)
}

func (rt *Runtime) getRun(ctx context.Context, tenant, runID string) (*Run, uint64, error) {
	return getRecord[Run](ctx, rt.runsKV, tenant, "run", "run id", runID, runKey(tenant, runID))
}

// getRecord reads a tenant's JSON record (a run, a DLQ entry) and its KV
// revision; what names it in errors, idName its id.
func getRecord[T any](ctx context.Context, kv jetstream.KeyValue, tenant, what, idName, id, key string) (*T, uint64, error) {
	if err := validName("tenant", tenant); err != nil {
		return nil, 0, err
	}
	if err := validName(idName, id); err != nil {
		return nil, 0, err
	}
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, fmt.Errorf("%s %s of tenant %s: %w", what, id, tenant, ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("runtime: read %s %s: %w", what, id, err)
	}
	var r T
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return nil, 0, fmt.Errorf("runtime: %s %s: %w", what, id, err)
	}
	return &r, e.Revision(), nil
}

// updateRun applies fn to the stored run with compare-and-set, retrying on conflict.
func (rt *Runtime) updateRun(ctx context.Context, tenant, runID string, fn func(*Run) error) (*Run, error) {
	for range 50 {
		r, rev, err := rt.getRun(ctx, tenant, runID)
		if err != nil {
			return nil, err
		}
		if err := fn(r); err != nil {
			return nil, err
		}
		b, _ := json.Marshal(r)
		if _, err := rt.runsKV.Update(ctx, runKey(tenant, runID), b, rev); err != nil {
			if errors.Is(err, jetstream.ErrKeyExists) || strings.Contains(err.Error(), "wrong last sequence") {
				continue
			}
			return nil, fmt.Errorf("runtime: update run %s: %w", runID, err)
		}
		return r, nil
	}
	return nil, fmt.Errorf("runtime: update run %s: too many concurrent updates", runID)
}

// RunFilter selects runs to list. Zero fields match everything.
type RunFilter struct {
	Integration string
	Status      engine.RunStatus
	Trigger     string
	// From and To select runs started (or, not started yet, queued) at or
	// after From and before To.
	From, To time.Time
	Page     int // 1-based (default 1)
	PageSize int // default 50
}

// Match reports whether f selects r (Page and PageSize aside).
func (f RunFilter) Match(r *Run) bool {
	return f.match(r.Integration, r.Trigger, r.Status, r.Queued, r.Started)
}

func (f RunFilter) match(integration, trigger string, status engine.RunStatus, queued, started time.Time) bool {
	if (f.Integration != "" && integration != f.Integration) || (f.Status != "" && status != f.Status) ||
		(f.Trigger != "" && trigger != f.Trigger) {
		return false
	}
	at := started
	if at.IsZero() {
		at = queued
	}
	return (f.From.IsZero() || !at.Before(f.From)) && (f.To.IsZero() || at.Before(f.To))
}

// RunPage is one page of runs, newest first.
type RunPage struct {
	Runs     []*Run `json:"runs"`
	Total    int    `json:"total"`
	Page     int    `json:"page"`
	PageSize int    `json:"pageSize"`
}

// List returns the runs of a tenant matching f, newest first.
func (s *Runs) List(ctx context.Context, tenant string, f RunFilter) (*RunPage, error) {
	sel, err := s.Select(ctx, tenant, f)
	if err != nil {
		return nil, err
	}
	p := &RunPage{Total: sel.Total()}
	var heads []runHead
	p.Page, p.PageSize, heads = paginate(sel.heads, f.Page, f.PageSize)
	if p.Total > 0 { // none: nil, as it always was
		p.Runs = decodeRuns(heads)
	}
	return p, nil
}

// RunSelection is the runs of a tenant that matched a filter, newest first.
// Only what ordering and filtering need is decoded; Runs decodes a range.
// It is not safe for concurrent use.
type RunSelection struct {
	heads  []runHead // matching, ordered
	allIDs []string  // of every run read
	ids    map[string]bool
}

// Select reads the runs of a tenant matching f (Page and PageSize are
// ignored), newest first: by Queued, then by id.
//
// Every run is read: runs are ordered by Queued, which only their values
// hold (a server's run ids are time-ordered, but by when the run was
// requested, not queued at the runtime, and a caller may choose any id),
// and the total counts every match. What makes it fast is reading them in
// one stream and decoding only the fields that filter and order them.
func (s *Runs) Select(ctx context.Context, tenant string, f RunFilter) (*RunSelection, error) {
	if err := validName("tenant", tenant); err != nil {
		return nil, err
	}
	entries, err := listValues(ctx, s.rt.runsKV, tenant+".>")
	if err != nil {
		return nil, err
	}
	sel := &RunSelection{heads: make([]runHead, 0, len(entries)), allIDs: make([]string, 0, len(entries))}
	for _, e := range entries {
		var h runHead
		if decodeRunHead(e.Value(), &h) != nil {
			continue // not a run record (as Get would fail on it)
		}
		sel.allIDs = append(sel.allIDs, h.ID)
		if f.match(h.Integration, h.Trigger, h.Status, h.Queued, h.Started) {
			h.raw = e.Value()
			sel.heads = append(sel.heads, h)
		}
	}
	slices.SortFunc(sel.heads, func(a, b runHead) int {
		if c := b.Queued.Compare(a.Queued); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	return sel, nil
}

// Total is the number of runs that matched.
func (sel *RunSelection) Total() int { return len(sel.heads) }

// Known reports whether the tenant has a run with this id, matching or not.
func (sel *RunSelection) Known(id string) bool {
	if sel.ids == nil { // most lists ask nothing
		sel.ids = make(map[string]bool, len(sel.allIDs))
		for _, id := range sel.allIDs {
			sel.ids[id] = true
		}
	}
	return sel.ids[id]
}

// Runs returns the matching runs at positions [lo, hi) (clamped), decoded.
func (sel *RunSelection) Runs(lo, hi int) []*Run {
	lo, hi = max(0, min(lo, len(sel.heads))), max(0, min(hi, len(sel.heads)))
	if lo >= hi {
		return []*Run{}
	}
	return decodeRuns(sel.heads[lo:hi])
}

func decodeRuns(heads []runHead) []*Run {
	out := make([]*Run, 0, len(heads))
	for _, h := range heads {
		var r Run
		if json.Unmarshal(h.raw, &r) == nil {
			out = append(out, &r)
		}
	}
	return out
}

// Errors returns the per-entity failures of a run (records that ended in the DLQ),
// in ingest order. Records are not included; the DLQ entries hold them.
func (s *Runs) Errors(ctx context.Context, tenant, runID string) ([]engine.RecordFailure, error) {
	if _, err := s.Get(ctx, tenant, runID); err != nil {
		return nil, err
	}
	sets, err := s.rt.settlements(ctx, tenant, runID, false)
	if err != nil {
		return nil, err
	}
	return failuresOf(sets), nil
}

// failuresOf are the records of sets that went to the DLQ.
func failuresOf(sets []namedSettlement) []engine.RecordFailure {
	var out []engine.RecordFailure
	for _, st := range sets {
		for _, d := range st.s.Dead {
			out = append(out, engine.RecordFailure{
				Key: d.Key, Stage: d.Stage, Category: d.Category, Message: d.Error,
				Attempts: len(d.Attempts), Position: d.Position,
			})
		}
	}
	return out
}

type namedSettlement struct {
	id string
	s  settlement
}

// settlements reads every settlement of a run, ordered by origin batch.
// With keep, it also rewrites those written long ago (keepSettlements): its
// callers write the run's record next.
func (rt *Runtime) settlements(ctx context.Context, tenant, runID string, keep bool) ([]namedSettlement, error) {
	entries, err := listValues(ctx, rt.settleKV, settledPrefix(tenant, runID)+">")
	if err != nil {
		return nil, err
	}
	if keep {
		if err := rt.keepSettlements(ctx, entries); err != nil {
			return nil, err
		}
	}
	out := make([]namedSettlement, 0, len(entries))
	for _, e := range entries {
		var s settlement
		if err := json.Unmarshal(e.Value(), &s); err != nil {
			return nil, fmt.Errorf("runtime: settlement %s: %w", e.Key(), err)
		}
		out = append(out, namedSettlement{id: strings.TrimPrefix(e.Key(), settledPrefix(tenant, runID)), s: s})
	}
	sort.SliceStable(out, func(i, j int) bool { return settlementLess(out[i].id, out[j].id) })
	return out, nil
}

// keepSettlements rewrites the settlements written more than half the
// settle margin ago. A run's counts and errors derive from its settlements,
// so they must outlive its record: the record is rewritten whenever the run
// changes (every second while it runs, at its end, when one of its DLQ
// entries is replayed), a settlement is written once. Every writer of a
// record keeps the run's settlements close to it (at the end, at a replay,
// at a resume, every keepEvery while it runs), and settlements live a
// margin longer than records: one kept within half the margin of the
// record's last write expires after it.
func (rt *Runtime) keepSettlements(ctx context.Context, entries []jetstream.KeyValueEntry) error {
	if rt.runRetention <= 0 {
		return nil
	}
	// Entry times are the server's clock, not Options.Now.
	cutoff := time.Now().Add(-settleMargin(rt.runRetention) / 2)
	for _, e := range entries {
		if !e.Created().Before(cutoff) {
			continue
		}
		// Settlements never change: writing the same value again is safe,
		// even against a concurrent delivery of the same message.
		if _, err := rt.settleKV.Put(ctx, e.Key(), e.Value()); err != nil {
			return fmt.Errorf("runtime: keep settlement %s: %w", e.Key(), err)
		}
	}
	return nil
}

// keepEvery is how often a run in flight keeps its settlements and, while
// it waits for its integration, its record.
func (rt *Runtime) keepEvery() time.Duration { return settleMargin(rt.runRetention) / 4 }

// keepRun rewrites a run's record unchanged every keepEvery until stop is
// called, so it does not expire while the run waits to start.
func (rt *Runtime) keepRun(ctx context.Context, tenant, runID string) (stop func()) {
	if rt.runRetention <= 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(rt.keepEvery())
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if _, err := rt.updateRun(ctx, tenant, runID, func(*Run) error { return nil }); err != nil && ctx.Err() == nil {
					rt.log.Warn("keeping a waiting run's record failed", "run", runID, "err", err)
				}
			}
		}
	}()
	return func() { cancel(); <-done }
}

// settlementLess orders b<seq> / r<seq>_<n> ids by seq then attempt, replays last.
func settlementLess(a, b string) bool {
	ka, kb := settlementOrder(a), settlementOrder(b)
	for i := range ka {
		if ka[i] != kb[i] {
			return ka[i] < kb[i]
		}
	}
	return a < b
}

func settlementOrder(id string) [3]int64 {
	var seq, att int64
	switch {
	case strings.HasPrefix(id, "b"):
		fmt.Sscanf(id[1:], "%d", &seq)
		return [3]int64{0, seq, 1}
	case strings.HasPrefix(id, "r"):
		fmt.Sscanf(id[1:], "%d_%d", &seq, &att)
		return [3]int64{0, seq, att}
	}
	return [3]int64{1, 0, 0}
}

// countsOf sums settlements into run counts.
func countsOf(sets []namedSettlement) engine.Counts {
	var c engine.Counts
	for _, st := range sets {
		c.Total += st.s.Records
		c.Success += st.s.Success
		c.Skipped += st.s.Skipped
		c.Failed += st.s.Failed
		c.Retried += st.s.Retried
	}
	return c
}

// recount derives a run's counts from its settlements and, for a finished run,
// stores them with the status they imply.
func (rt *Runtime) recount(ctx context.Context, tenant, runID string) (*Run, error) {
	sets, err := rt.settlements(ctx, tenant, runID, true)
	if err != nil {
		return nil, err
	}
	c := countsOf(sets)
	replays := 0
	for _, st := range sets {
		if st.s.Kind == "replay" {
			replays++
		}
	}
	return rt.updateRun(ctx, tenant, runID, func(r *Run) error {
		r.Counts, r.Replays = c, replays
		if r.Finished() {
			var runErr error
			if r.Error != "" {
				runErr = errors.New(r.Error)
			}
			r.Status = engine.StatusFor(c, runErr)
		}
		return nil
	})
}

func paginate[T any](all []T, page, size int) (int, int, []T) {
	if page < 1 {
		page = 1
	}
	if size <= 0 {
		size = 50
	}
	// (page-1)*size overflows for a huge page; past the end is empty.
	lo := len(all)
	if page-1 <= len(all)/size {
		lo = min((page-1)*size, len(all))
	}
	hi := lo + min(size, len(all)-lo)
	return page, size, all[lo:hi]
}
