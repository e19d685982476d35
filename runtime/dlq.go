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

// DLQStatus is the state of a DLQ entry.
type DLQStatus string

const (
	DLQPending   DLQStatus = "pending"
	DLQReplayed  DLQStatus = "replayed"
	DLQDiscarded DLQStatus = "discarded"
)

// ErrNotPending is returned when replaying or discarding an entry that was
// already replayed successfully or discarded.
var ErrNotPending = errors.New("DLQ entry is not pending")

// DLQEvent records one replay or discard of an entry.
type DLQEvent struct {
	Action string    `json:"action"` // replay | discard
	At     time.Time `json:"at"`
	// Result of a replay: success | skipped | failed.
	Result string `json:"result,omitempty"`
	Error  string `json:"error,omitempty"`
	// Edited is the record the replay used when it was edited.
	Edited   json.RawMessage `json:"edited,omitempty"`
	Reason   string          `json:"reason,omitempty"`
	Revision string          `json:"revision,omitempty"` // configuration the replay ran through
}

// DLQEntry is a record that could not be delivered (KV ferry_v1_dlq, key
// <tenant>.<id>; id = <run id>-<batch seq>-<index>, so a record enters the DLQ once).
type DLQEntry struct {
	ID          string              `json:"id"`
	Tenant      string              `json:"tenant"`
	Integration string              `json:"integration"`
	RunID       string              `json:"runId"`
	Key         string              `json:"key"`
	Stage       engine.Stage        `json:"stage"`
	Category    connectors.Category `json:"category"`
	Error       string              `json:"error"`
	Attempts    []Attempt           `json:"attempts"`
	// Record is the original record as it came from the source.
	Record   json.RawMessage `json:"record"`
	Position string          `json:"position,omitempty"`
	Revision string          `json:"revision,omitempty"` // configuration of the failed run
	Status   DLQStatus       `json:"status"`
	Created  time.Time       `json:"created"`
	Updated  time.Time       `json:"updated"`
	Events   []DLQEvent      `json:"events,omitempty"`
}

func dlqID(runID string, seq int64, idx int) string {
	return fmt.Sprintf("%s-%d-%d", runID, seq, idx)
}

// DLQFilter selects entries. Zero fields match everything.
type DLQFilter struct {
	Integration string
	RunID       string
	Category    connectors.Category
	Status      DLQStatus
	Page        int // 1-based (default 1)
	PageSize    int // default 50
}

func (f DLQFilter) match(e *DLQEntry) bool {
	return (f.Integration == "" || e.Integration == f.Integration) &&
		(f.RunID == "" || e.RunID == f.RunID) &&
		(f.Category == "" || e.Category == f.Category) &&
		(f.Status == "" || e.Status == f.Status)
}

// DLQPage is one page of entries, oldest first.
type DLQPage struct {
	Entries  []*DLQEntry `json:"entries"`
	Total    int         `json:"total"`
	Page     int         `json:"page"`
	PageSize int         `json:"pageSize"`
}

// ReplayOptions configure a replay.
type ReplayOptions struct {
	// Record replaces the original record (an edited record); nil replays the original.
	Record json.RawMessage
	Reason string
}

// ReplaySummary is the outcome of ReplayMany.
type ReplaySummary struct {
	Matched  int `json:"matched"`
	Replayed int `json:"replayed"` // success or skipped
	Failed   int `json:"failed"`   // still pending
	// Errors maps entry id to the error of entries that could not be replayed at all.
	Errors map[string]string `json:"errors,omitempty"`
}

// DLQ is the dead-letter queue.
type DLQ struct{ rt *Runtime }

// DLQ returns the dead-letter queue.
func (rt *Runtime) DLQ() *DLQ { return &DLQ{rt} }

func (d *DLQ) create(ctx context.Context, e *DLQEntry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if _, err := d.rt.dlqKV.Create(ctx, dlqKey(e.Tenant, e.ID), b); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("runtime: write DLQ entry %s: %w", e.ID, err)
	}
	return nil
}

// List returns the entries of a tenant matching f, oldest first, paged.
func (d *DLQ) List(ctx context.Context, tenant string, f DLQFilter) (*DLQPage, error) {
	all, err := d.all(ctx, tenant, f)
	if err != nil {
		return nil, err
	}
	p := &DLQPage{Total: len(all)}
	p.Page, p.PageSize, p.Entries = paginate(all, f.Page, f.PageSize)
	return p, nil
}

func (d *DLQ) all(ctx context.Context, tenant string, f DLQFilter) ([]*DLQEntry, error) {
	if err := validName("tenant", tenant); err != nil {
		return nil, err
	}
	entries, err := listValues(ctx, d.rt.dlqKV, tenant+".>")
	if err != nil {
		return nil, err
	}
	var all []*DLQEntry
	for _, kv := range entries {
		var e DLQEntry
		if json.Unmarshal(kv.Value(), &e) != nil {
			continue
		}
		if f.match(&e) {
			all = append(all, &e)
		}
	}
	// Oldest run first (by its first entry), then in ingest order within a run.
	first := map[string]time.Time{}
	for _, e := range all {
		if t, ok := first[e.RunID]; !ok || e.Created.Before(t) {
			first[e.RunID] = e.Created
		}
	}
	sort.Slice(all, func(i, j int) bool {
		a, b := all[i], all[j]
		if a.RunID != b.RunID {
			if ta, tb := first[a.RunID], first[b.RunID]; !ta.Equal(tb) {
				return ta.Before(tb)
			}
		}
		return dlqIDLess(a.ID, b.ID)
	})
	return all, nil
}

// dlqIDLess orders ids of one run by batch and index numerically.
func dlqIDLess(a, b string) bool {
	ra, sa, ia := splitDLQID(a)
	rb, sb, ib := splitDLQID(b)
	if ra != rb {
		return ra < rb
	}
	if sa != sb {
		return sa < sb
	}
	return ia < ib
}

func splitDLQID(id string) (string, int64, int64) {
	var seq, idx int64
	i := strings.LastIndexByte(id, '-')
	if i < 0 {
		return id, 0, 0
	}
	j := strings.LastIndexByte(id[:i], '-')
	if j < 0 {
		return id, 0, 0
	}
	fmt.Sscanf(id[j+1:], "%d-%d", &seq, &idx)
	return id[:j], seq, idx
}

// Get returns one entry.
func (d *DLQ) Get(ctx context.Context, tenant, id string) (*DLQEntry, error) {
	e, _, err := d.get(ctx, tenant, id)
	return e, err
}

func (d *DLQ) get(ctx context.Context, tenant, id string) (*DLQEntry, uint64, error) {
	return getRecord[DLQEntry](ctx, d.rt.dlqKV, tenant, "DLQ entry", "DLQ entry id", id, dlqKey(tenant, id))
}

// update applies fn with compare-and-set, retrying on conflict.
func (d *DLQ) update(ctx context.Context, tenant, id string, fn func(*DLQEntry) error) (*DLQEntry, error) {
	for range 50 {
		e, rev, err := d.get(ctx, tenant, id)
		if err != nil {
			return nil, err
		}
		if err := fn(e); err != nil {
			return nil, err
		}
		e.Updated = d.rt.opts.Now()
		b, _ := json.Marshal(e)
		if _, err := d.rt.dlqKV.Update(ctx, dlqKey(tenant, id), b, rev); err != nil {
			if errors.Is(err, jetstream.ErrKeyExists) || strings.Contains(err.Error(), "wrong last sequence") {
				continue
			}
			return nil, fmt.Errorf("runtime: update DLQ entry %s: %w", id, err)
		}
		return e, nil
	}
	return nil, fmt.Errorf("runtime: update DLQ entry %s: too many concurrent updates", id)
}

// Discard marks a pending entry discarded; the record stays counted as failed.
func (d *DLQ) Discard(ctx context.Context, tenant, id, reason string) (*DLQEntry, error) {
	return d.update(ctx, tenant, id, func(e *DLQEntry) error {
		if e.Status != DLQPending {
			return fmt.Errorf("discard %s: %w (it is %s)", id, ErrNotPending, e.Status)
		}
		e.Status = DLQDiscarded
		e.Events = append(e.Events, DLQEvent{Action: "discard", At: d.rt.opts.Now(), Reason: reason})
		return nil
	})
}

// Replay runs a pending entry's record (or an edited one) through the current
// configuration of its integration — normalize, transform, execute — once. On
// success or skip the entry becomes replayed and its run's counts move the record
// from failed to success/skipped; on failure the entry stays pending with the
// attempt added. Either way the replay is recorded on the entry.
func (d *DLQ) Replay(ctx context.Context, tenant, id string, jobs JobFunc, opts ReplayOptions) (*DLQEntry, error) {
	rp := &replayer{d: d, jobs: jobs, sinks: map[string]connectors.Sink{}}
	defer rp.close(ctx)
	e, err := rp.replay(ctx, tenant, id, opts)
	if rerr := rp.recount(ctx, tenant); rerr != nil && err == nil {
		err = rerr
	}
	return e, err
}

// ReplayMany replays every pending entry matching f (Page/PageSize ignored).
func (d *DLQ) ReplayMany(ctx context.Context, tenant string, f DLQFilter, jobs JobFunc, opts ReplayOptions) (*ReplaySummary, error) {
	f.Status = DLQPending
	all, err := d.all(ctx, tenant, f)
	if err != nil {
		return nil, err
	}
	rp := &replayer{d: d, jobs: jobs, sinks: map[string]connectors.Sink{}}
	defer rp.close(ctx)
	sum := &ReplaySummary{Matched: len(all)}
	for _, e := range all {
		if ctx.Err() != nil {
			return sum, ctx.Err()
		}
		got, err := rp.replay(ctx, tenant, e.ID, opts)
		switch {
		case err != nil:
			if sum.Errors == nil {
				sum.Errors = map[string]string{}
			}
			sum.Errors[e.ID] = err.Error()
		case got.Status == DLQReplayed:
			sum.Replayed++
		default:
			sum.Failed++
		}
	}
	return sum, rp.recount(ctx, tenant)
}

type replayer struct {
	d     *DLQ
	runs  map[string]bool // runs whose counts moved
	jobs  JobFunc
	js    map[string]*Job
	sinks map[string]connectors.Sink
}

// recount stores the counts of the runs whose records were replayed.
func (rp *replayer) recount(ctx context.Context, tenant string) error {
	for id := range rp.runs {
		if _, err := rp.d.rt.recount(ctx, tenant, id); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	rp.runs = nil
	return nil
}

func (rp *replayer) close(ctx context.Context) {
	for _, s := range rp.sinks {
		_ = s.Close(context.WithoutCancel(ctx))
	}
}

func (rp *replayer) job(ctx context.Context, integration string) (*Job, connectors.Sink, error) {
	if rp.js == nil {
		rp.js = map[string]*Job{}
	}
	if j, ok := rp.js[integration]; ok {
		return j, rp.sinks[integration], nil
	}
	j, err := rp.jobs(integration)
	if err != nil {
		return nil, nil, fmt.Errorf("replay: integration %s: %w", integration, err)
	}
	if j, err = j.withDefaults(); err != nil {
		return nil, nil, err
	}
	s, err := j.OpenSink(ctx, connectors.SinkOptions{Continue: true})
	if err != nil {
		return nil, nil, fmt.Errorf("replay: open target of %s: %w", integration, err)
	}
	rp.js[integration], rp.sinks[integration] = j, s
	return j, s, nil
}

func (rp *replayer) replay(ctx context.Context, tenant, id string, opts ReplayOptions) (*DLQEntry, error) {
	d, rt := rp.d, rp.d.rt
	e, err := d.Get(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	if e.Status != DLQPending {
		return e, fmt.Errorf("replay %s: %w (it is %s)", id, ErrNotPending, e.Status)
	}
	job, sink, err := rp.job(ctx, e.Integration)
	if err != nil {
		return nil, err
	}
	raw := e.Record
	if opts.Record != nil {
		raw = opts.Record
	}
	now := rt.opts.Now()
	rec := connectors.Record{Key: e.Key, Raw: raw, Position: e.Position}
	pr := job.NewPreparer().Prepare(&rec)
	result, stage, failErr := "", engine.Stage(""), error(nil)
	switch pr.Outcome {
	case engine.Skipped:
		result = "skipped"
	case engine.Success:
		result = "success"
	case engine.Ready:
		errs := rt.callSink(ctx, rt.sinkTimeout(job), sink, rt.semaphore(tenant, job.SinkConnection), nil, []connectors.Write{pr.Write})
		if len(errs) > 0 && errs[0] != nil {
			stage, failErr = engine.StageExecute, errs[0]
		} else if f, ok := sink.(Flusher); ok {
			if err := f.Flush(ctx); err != nil {
				stage, failErr = engine.StageExecute, err
			}
		}
		if failErr == nil {
			result = "success"
			if job.SkipUnchanged && pr.Hash != "" && pr.Key != "" {
				_ = rt.Hashes().Put(ctx, tenant, e.Integration, pr.Key, pr.Hash)
			}
		}
	default:
		stage, failErr = pr.Stage, pr.Err
		if failErr == nil {
			failErr = errors.New("failed without an error")
		}
	}
	ev := DLQEvent{Action: "replay", At: now, Reason: opts.Reason, Revision: job.Revision}
	if opts.Record != nil {
		ev.Edited = opts.Record
	}
	if failErr != nil {
		ev.Result, ev.Error = "failed", failErr.Error()
		return d.update(ctx, tenant, id, func(e *DLQEntry) error {
			e.Events = append(e.Events, ev)
			e.Attempts = append(e.Attempts, Attempt{At: now, Stage: string(stage), Category: connectors.CategoryOf(failErr), Error: failErr.Error()})
			e.Error, e.Stage, e.Category = failErr.Error(), stage, connectors.CategoryOf(failErr)
			return nil
		})
	}
	ev.Result = result
	// Commit the count move first (once per entry), then the entry's status.
	delta := settlement{Kind: "replay", Failed: -1, At: now}
	if result == "skipped" {
		delta.Skipped = 1
	} else {
		delta.Success = 1
	}
	b, _ := json.Marshal(delta)
	if _, err := rt.settleKV.Create(ctx, settledPrefix(tenant, e.RunID)+"p"+id, b); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return nil, fmt.Errorf("runtime: record replay of %s: %w", id, err)
	}
	got, err := d.update(ctx, tenant, id, func(e *DLQEntry) error {
		e.Status = DLQReplayed
		e.Events = append(e.Events, ev)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if rp.runs == nil {
		rp.runs = map[string]bool{}
	}
	rp.runs[e.RunID] = true
	return got, nil
}
