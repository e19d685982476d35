package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferryhq/ferry/engine"
	"github.com/ferryhq/ferry/lang"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Group commit of webhook deliveries.
//
// A run per delivery cost a run's fixed overhead (its request, the run
// lock, KV records, a consumer, events: tens of JetStream round trips) for
// a record or two, and an integration's runs execute one at a time, so
// under a few thousand deliveries per second the queue of runs grew without
// bound. Instead, the deliveries of an integration join its open run: a run
// started for earlier deliveries that has not begun executing yet (it waits
// behind the integration's run in flight, or for a slot of
// MaxConcurrentRuns). So an integration has at most one run executing (or
// MaxConcurrentRuns, with allow_parallel_runs) and one filling up, however
// many deliveries arrive.
//
// One flusher per integration stores, in one durable write, every delivery
// that arrived while its previous write was in flight (no timer: a lone
// delivery is stored at once, a burst waits at most one write):
//
//  1. each delivery id's idempotency key is claimed for the run (all in
//     one pipelined round, see claim); a repeated id, in the batch or
//     stored, is a duplicate of the run it joined first. Meanwhile the integration must be found
//     active (one KV read per flush), else the claims are undone;
//  2. the records are published to the run's input subject, each with its
//     position (webhook:<delivery id>[i]; input[i] without an id);
//  3. the run request is created (a new run), or its input messages and
//     record count are extended (compare-and-set) while the run is open.
//
// Every delivery of the flush is answered with the run id only after these
// writes were acknowledged by JetStream, so a 202 survives a crash: the run
// request names all of its input. A run is sealed, under the lock a flush
// holds while it appends, right before it reads its input (or is failed or
// handed over); later deliveries start the next run.
const (
	// maxFlushDeliveries bounds one flush (and so the latency it adds).
	maxFlushDeliveries = 1024
	// An open run takes no more deliveries beyond these: a run's request
	// lists its input messages, rewritten by every flush that joins it.
	openRunMaxRecords  = 20_000
	openRunMaxMessages = 1000
	flushTimeout       = 30 * time.Second
)

// delivery is one verified webhook delivery waiting for its flush.
type delivery struct {
	id     string        // delivery id ("" none)
	idem   string        // its idempotency key in BucketIdempotency ("" none)
	ttl    time.Duration // how long idem is kept: the webhook's dedupe_window (keyTTL)
	recs   []json.RawMessage
	rev    int
	prog   *engine.Program
	result chan deliveryResult // buffered: the flusher never blocks
}

type deliveryResult struct {
	runID     string
	duplicate bool
	err       error
}

// ingestQueue collects the deliveries of one integration.
type ingestQueue struct {
	m                   *runManager
	tenant, integration string

	mu       sync.Mutex
	pending  []*delivery
	flushing bool     // a flusher goroutine is running
	open     *openRun // the run deliveries join; nil: the next flush starts one
}

// openRun is a run that still takes deliveries.
type openRun struct {
	q     *ingestQueue
	mu    sync.Mutex // held by a flush joining the run, and by seal
	rr    runRequest // as stored
	kvrev uint64     // its KV revision, 0: read it again
	// sealed: the run reads its input; nothing joins it any more.
	sealed bool
}

// seal closes the run to deliveries once a flush joining it finished, and
// returns its request as stored then.
func (o *openRun) seal() runRequest {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.sealed = true
	o.q.mu.Lock()
	if o.q.open == o {
		o.q.open = nil
	}
	o.q.mu.Unlock()
	return o.rr
}

// join adds input messages to the stored request of the open run (locked),
// with compare-and-set on the revision it wrote last; when the lease's
// renewal wrote in between, on the request read again.
func (o *openRun) join(ctx context.Context, seqs []uint64, records int) error {
	m := o.q.m
	key := requestKey(o.rr.Tenant, o.rr.RunID)
	rr, kvrev := o.rr, o.kvrev
	for range 20 {
		if kvrev == 0 {
			rr = runRequest{}
			rev, found, err := getJSON(ctx, m.reqs, key, &rr)
			if err != nil {
				return err
			}
			if !found || rr.Error != "" || rr.Owner != m.node {
				// Failed, or taken over by a server that found its lease
				// expired and may be reading its input already.
				return errors.New("it is gone, failed or taken over")
			}
			kvrev = rev
		}
		next := rr
		next.InputSeqs = append(slices.Clip(rr.InputSeqs), seqs...)
		next.InputRecords += records
		b, _ := json.Marshal(next)
		rev, err := m.reqs.Update(ctx, key, b, kvrev)
		if err == nil {
			o.rr, o.kvrev = next, rev
			return nil
		}
		if !isConflict(err) && !strings.Contains(err.Error(), "wrong last sequence") {
			return err
		}
		kvrev = 0
	}
	return errors.New("too many concurrent updates")
}

// deliver stores a webhook delivery's records durably in the integration's
// open run (or a new one) and returns the run id; duplicate is true when
// deliveryID was seen before, runID then being the run it joined. prog and
// rev are the tenant's current program (the run keeps that revision). The
// errors are StartRun's.
func (m *runManager) deliver(ctx context.Context, tenant, integration string, rev int, prog *engine.Program, deliveryID string, recs []json.RawMessage) (runID string, duplicate bool, err error) {
	if pl, ok := prog.Pipelines[integration]; !ok || pl == nil {
		return "", false, fmt.Errorf("%w %q: revision %d does not declare it", ErrUnknownIntegration, integration, rev)
	}
	d := &delivery{id: deliveryID, recs: recs, rev: rev, prog: prog, result: make(chan deliveryResult, 1)}
	if deliveryID != "" {
		// Namespaced, so a delivery id never meets a sync event's
		// Idempotency-Key.
		d.idem = idempotencyKey(tenant, integration, "webhook:"+deliveryID)
		window := lang.DefaultDedupeWindow
		if prog.Config != nil {
			if in := prog.Config.Integrations[integration]; in != nil && in.Webhook != nil {
				window = in.Webhook.DedupeWindow
			}
		}
		d.ttl = m.keyTTL(window)
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return "", false, ErrShuttingDown
	}
	if m.ingest == nil {
		m.ingest = map[string]*ingestQueue{}
	}
	k := tenant + "/" + integration
	q := m.ingest[k]
	if q == nil {
		q = &ingestQueue{m: m, tenant: tenant, integration: integration}
		m.ingest[k] = q
	}
	m.mu.Unlock()

	q.mu.Lock()
	q.pending = append(q.pending, d)
	if !q.flushing {
		q.flushing = true
		go q.flushLoop()
	}
	q.mu.Unlock()
	select {
	case r := <-d.result:
		return r.runID, r.duplicate, r.err
	case <-ctx.Done():
		// The sender left; the delivery may still be stored (its retry is
		// then a duplicate).
		return "", false, ctx.Err()
	}
}

// flushLoop flushes what is pending until nothing is.
func (q *ingestQueue) flushLoop() {
	for {
		q.mu.Lock()
		if len(q.pending) == 0 {
			q.flushing = false
			q.mu.Unlock()
			return
		}
		// One revision per flush: a run keeps the revision it started on.
		n := 1
		for n < len(q.pending) && n < maxFlushDeliveries && q.pending[n].rev == q.pending[0].rev {
			n++
		}
		batch := q.pending[:n:n]
		q.pending = append([]*delivery(nil), q.pending[n:]...)
		q.mu.Unlock()
		q.flush(batch)
	}
}

// flush stores a batch of deliveries of one revision and answers each.
func (q *ingestQueue) flush(batch []*delivery) {
	m := q.m
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	rev, prog := batch[0].rev, batch[0].prog
	records := 0
	for _, d := range batch {
		records += len(d.recs)
	}

	// Join the open run unless it is sealed, full or of another revision;
	// holding its lock keeps it from being sealed meanwhile.
	q.mu.Lock()
	o := q.open
	q.mu.Unlock()
	if o != nil {
		o.mu.Lock()
		if !o.sealed && o.rr.Revision == rev && o.rr.InputRecords+records <= openRunMaxRecords && len(o.rr.InputSeqs) < openRunMaxMessages {
			defer o.mu.Unlock()
			q.store(ctx, batch, o, rev)
			return
		}
		o.mu.Unlock()
	}
	if !m.enter() {
		for _, d := range batch {
			d.result <- deliveryResult{err: ErrShuttingDown}
		}
		return
	}
	if o = q.store(ctx, batch, nil, rev); o == nil {
		m.wg.Done() // nothing stored: no run
		return
	}
	m.launch(o.rr, prog, o)
}

// store claims the deliveries' idempotency keys, stores their records in
// the open run o (locked by the caller) or, when o is nil, in a new run,
// and answers every delivery. It returns the run they joined, nil when
// nothing was stored.
func (q *ingestQueue) store(ctx context.Context, batch []*delivery, o *openRun, rev int) *openRun {
	m := q.m
	runID := newRunID(m.s.now())
	if o != nil {
		runID = o.rr.RunID
	}
	// Whether the integration is active is read while the keys are claimed
	// (a round trip each); the claims are undone when it is not.
	inactive := make(chan error, 1)
	go func() {
		active, err := m.s.IntegrationActive(ctx, q.tenant, q.integration)
		if err == nil && !active {
			err = fmt.Errorf("%w: %q", ErrIntegrationInactive, q.integration)
		}
		inactive <- err
	}()
	accepted, repeats, claimed := q.claim(ctx, batch, runID)
	if len(accepted) == 0 {
		return nil
	}
	answer := func(res deliveryResult) {
		for _, d := range accepted {
			d.result <- res
		}
		if res.err == nil {
			res.duplicate = true
		}
		for _, d := range repeats {
			d.result <- res
		}
	}
	undo := func(err error) *openRun {
		bg := context.WithoutCancel(ctx)
		for _, k := range claimed {
			m.unclaim(bg, k)
		}
		answer(deliveryResult{err: err})
		return nil
	}
	if err := <-inactive; err != nil {
		return undo(err)
	}

	// The records in delivery order, each positioned by its delivery.
	base := 0
	if o != nil {
		base = o.rr.InputRecords
	}
	var recs []json.RawMessage
	var positions []string
	for _, d := range accepted {
		for i, r := range d.recs {
			recs = append(recs, r)
			if d.id != "" {
				positions = append(positions, "webhook:"+d.id+"["+strconv.Itoa(i)+"]")
			} else {
				positions = append(positions, "input["+strconv.Itoa(base+len(positions))+"]")
			}
		}
	}
	seqs, err := m.storeInput(ctx, q.tenant, runID, recs, positions)
	if err != nil {
		if o == nil {
			m.purgeInput(context.WithoutCancel(ctx), q.tenant, runID)
		}
		// Stored input messages of an open run stay under its subject and
		// are purged with it; its request does not name them.
		return undo(err)
	}

	if o == nil {
		rr := runRequest{RunID: runID, Tenant: q.tenant, Integration: q.integration, Trigger: "webhook",
			Revision: rev, Queued: m.s.now().UTC(), Owner: m.node, LeaseUntil: time.Now().Add(m.lease),
			HasInput: true, InputRecords: len(recs), InputSeqs: seqs}
		b, _ := json.Marshal(rr)
		kvrev, err := m.reqs.Create(ctx, requestKey(q.tenant, runID), b)
		if err != nil {
			m.purgeInput(context.WithoutCancel(ctx), q.tenant, runID)
			return undo(fmt.Errorf("storing run %s: %w", runID, err))
		}
		o = &openRun{q: q, rr: rr, kvrev: kvrev}
		q.mu.Lock()
		q.open = o
		q.mu.Unlock()
	} else {
		if err := o.join(ctx, seqs, len(recs)); err != nil {
			// Later deliveries start another run.
			q.mu.Lock()
			if q.open == o {
				q.open = nil
			}
			q.mu.Unlock()
			return undo(fmt.Errorf("adding to run %s: %w", runID, err))
		}
	}
	answer(deliveryResult{runID: runID})
	return o
}

// claim claims the idempotency keys of the batch's deliveries for runID
// (pipelined) and answers the deliveries seen before. It returns the
// deliveries to store, the repeats of one of those in the same batch (they
// share its outcome) and the keys it claimed.
func (q *ingestQueue) claim(ctx context.Context, batch []*delivery, runID string) (accepted, repeats []*delivery, claimed []string) {
	type claimResult struct {
		runID   string
		created bool
		err     error
	}
	first := map[string]int{} // key → index in keys
	var keys []string
	var ttls []time.Duration // the first delivery's, of one webhook: all the same
	for _, d := range batch {
		if d.idem != "" {
			if _, ok := first[d.idem]; !ok {
				first[d.idem] = len(keys)
				keys = append(keys, d.idem)
				ttls = append(ttls, d.ttl)
			}
		}
	}
	res := make([]claimResult, len(keys))
	// Every key is first created in one pipelined round: what
	// KeyValue.Create sends (a put that expects no message on the key's
	// subject), published asynchronously, then awaited together. A key
	// that was not created so (stored already; expired or unclaimed
	// since, its marker still there: Create then writes over the marker;
	// or no answer) takes the full path,
	// which tells a duplicate from an orphaned key.
	created := q.m.createKeys(ctx, keys, ttls, runID)
	var wg sync.WaitGroup
	for i, k := range keys {
		if created[i] {
			res[i] = claimResult{runID, true, nil}
			continue
		}
		wg.Go(func() {
			id, created, err := q.m.claimIdempotencyKey(ctx, q.tenant, q.integration, k, runID, ttls[i])
			res[i] = claimResult{id, created, err}
		})
	}
	wg.Wait()
	for i, r := range res {
		if r.err == nil && r.created {
			claimed = append(claimed, keys[i])
		}
	}
	seen := map[string]bool{}
	for _, d := range batch {
		if d.idem == "" {
			accepted = append(accepted, d)
			continue
		}
		r := res[first[d.idem]]
		switch {
		case r.err != nil:
			d.result <- deliveryResult{err: r.err}
		case !r.created:
			d.result <- deliveryResult{runID: r.runID, duplicate: true}
		case seen[d.idem]:
			repeats = append(repeats, d)
		default:
			seen[d.idem] = true
			accepted = append(accepted, d)
		}
	}
	return accepted, repeats, claimed
}

// idemSubject is the subject of BucketIdempotency's key k, as the KV API
// writes it (no JetStream domain or API prefix: ferry's connection has
// none).
const idemSubject = "$KV." + BucketIdempotency + "."

// createKeys creates the idempotency keys with value runID, each to expire
// ttls[i] later, as KeyValue.Create with KeyTTL would when none exists,
// pipelined: created[i] is whether keys[i] was created by this call. A key
// not created (stored already; expired or unclaimed, with its marker still
// there; JetStream not answering in time) is false; the caller takes the
// full path for it.
func (m *runManager) createKeys(ctx context.Context, keys []string, ttls []time.Duration, runID string) []bool {
	created := make([]bool, len(keys))
	futures := make([]jetstream.PubAckFuture, len(keys))
	value := []byte(runID)
	for i, k := range keys {
		msg := &nats.Msg{Subject: idemSubject + k, Data: value,
			Header: nats.Header{jetstream.ExpectedLastSubjSeqHeader: []string{"0"}, jetstream.MsgTTLHeader: []string{ttls[i].String()}}}
		f, err := m.s.js.PublishMsgAsync(msg)
		if err != nil {
			break // the rest take the full path
		}
		futures[i] = f
	}
	for i, f := range futures {
		if f == nil {
			break
		}
		select {
		case <-f.Ok():
			created[i] = true
		case <-f.Err():
		case <-ctx.Done():
			return created
		}
	}
	return created
}
