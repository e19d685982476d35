package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	Page        int // 1-based (default 1)
	PageSize    int // default 50
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
	if err := validName("tenant", tenant); err != nil {
		return nil, err
	}
	entries, err := listValues(ctx, s.rt.runsKV, tenant+".>")
	if err != nil {
		return nil, err
	}
	var all []*Run
	for _, e := range entries {
		var r Run
		if json.Unmarshal(e.Value(), &r) != nil {
			continue
		}
		if (f.Integration == "" || r.Integration == f.Integration) && (f.Status == "" || r.Status == f.Status) {
			all = append(all, &r)
		}
	}
	sort.Slice(all, func(i, j int) bool {
		if !all[i].Queued.Equal(all[j].Queued) {
			return all[i].Queued.After(all[j].Queued)
		}
		return all[i].ID > all[j].ID
	})
	p := &RunPage{Total: len(all)}
	p.Page, p.PageSize, all = paginate(all, f.Page, f.PageSize)
	p.Runs = all
	return p, nil
}

// Errors returns the per-entity failures of a run (records that ended in the DLQ),
// in ingest order. Records are not included; the DLQ entries hold them.
func (s *Runs) Errors(ctx context.Context, tenant, runID string) ([]engine.RecordFailure, error) {
	if _, err := s.Get(ctx, tenant, runID); err != nil {
		return nil, err
	}
	sets, err := s.rt.settlements(ctx, tenant, runID)
	if err != nil {
		return nil, err
	}
	var out []engine.RecordFailure
	for _, st := range sets {
		for _, d := range st.s.Dead {
			out = append(out, engine.RecordFailure{
				Key: d.Key, Stage: d.Stage, Category: d.Category, Message: d.Error,
				Attempts: len(d.Attempts), Position: d.Position,
			})
		}
	}
	return out, nil
}

type namedSettlement struct {
	id string
	s  settlement
}

// settlements reads every settlement of a run, ordered by origin batch.
func (rt *Runtime) settlements(ctx context.Context, tenant, runID string) ([]namedSettlement, error) {
	entries, err := listValues(ctx, rt.settleKV, settledPrefix(tenant, runID)+">")
	if err != nil {
		return nil, err
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
	sets, err := rt.settlements(ctx, tenant, runID)
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

// listValues returns the current values of the keys matching filter.
func listValues(ctx context.Context, kv jetstream.KeyValue, filter string) ([]jetstream.KeyValueEntry, error) {
	w, err := kv.Watch(ctx, filter, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("runtime: list %s: %w", kv.Bucket(), err)
	}
	defer w.Stop()
	var out []jetstream.KeyValueEntry
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok || e == nil {
				return out, nil
			}
			out = append(out, e)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
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
