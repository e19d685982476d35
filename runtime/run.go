package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferryhq/ferry/connectors"
	"github.com/ferryhq/ferry/engine"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// RunOptions configure one durable run.
type RunOptions struct {
	// Trigger says what started the run ("cli", "schedule:<name>", "sync-event", ...).
	Trigger string
	// TriggeredBy says who: an API key's id, "webhook", "schedule" (Run.TriggeredBy).
	TriggeredBy string
	// Secrets resolves secret("name") values of connections (Program adapter).
	Secrets func(name string) (string, error)
	// Revision of the configuration; defaults to the Job's.
	Revision string
	// RunID is the correlation id. Empty: a new id. An existing unfinished run's id
	// resumes that run; a finished run's id returns its result without running.
	RunID string
}

const maxMessageBytes = 256 << 10

// pullExpiry is how long a pull request of the run's workers waits at the
// server. Missing heartbeats (every half of it) are noticed after it and the
// pull is sent again: when the consumer's leader moved to another NATS node
// (one stopped), work resumes within pullExpiry instead of nats.go's 30s.
const pullExpiry = 5 * time.Second

// ErrCancelled is the cause to cancel a RunJob's context with to cancel the
// run (rather than stop it resumably): RunJob then ends it as cancelled.
var ErrCancelled = errors.New("run cancelled")

// EndCancelled ends a run as cancelled: the work it has not processed yet is
// dropped, and its record gets the counts of what settled, status cancelled
// and its end time. A run that never started is recorded as cancelled too; a
// run that already ended is returned as it is.
func (rt *Runtime) EndCancelled(ctx context.Context, tenant, integration, runID, trigger, revision string) (*engine.RunResult, error) {
	if err := validName("run id", runID); err != nil {
		return nil, err
	}
	run, _, err := rt.getRun(ctx, tenant, runID)
	switch {
	case errors.Is(err, ErrNotFound):
		run = &Run{ID: runID, Tenant: tenant, Integration: integration, Trigger: trigger, Revision: revision,
			Status: engine.RunQueued, Queued: rt.opts.Now()}
		b, _ := json.Marshal(run)
		if _, err := rt.runsKV.Create(ctx, runKey(tenant, runID), b); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("runtime: record cancelled run %s: %w", runID, err)
		}
	case err != nil:
		return nil, err
	}
	if run.Finished() {
		return rt.result(ctx, run)
	}
	if err := rt.js.DeleteConsumer(ctx, WorkStream, consumerName(tenant, runID)); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("runtime: cancel run %s: %w", runID, err)
	}
	stream, err := rt.js.Stream(ctx, WorkStream)
	if err != nil {
		return nil, fmt.Errorf("runtime: cancel run %s: %w", runID, err)
	}
	if err := stream.Purge(ctx, jetstream.WithPurgeSubject(workSubject(tenant, integration, runID))); err != nil {
		return nil, fmt.Errorf("runtime: cancel run %s: dropping its work: %w", runID, err)
	}
	return rt.endRun(ctx, tenant, runID, engine.RunCancelled, "cancelled")
}

// endRun stores a run's end: counts derived from its settlements, status
// (from the counts and runErr when ""), its end time and runErr (when set).
//
// These are a run's last writes: they ride out a short NATS outage
// (ridingOutages), so a blip as the run ends does not fail a run whose
// records all settled.
//
// settled are the ids of the settlements the caller knows were stored. On a
// NATS cluster a listing is served by one replica, which may not hold the
// latest writes yet (nats-server places a watch's consumer on any peer of
// the stream): a listing without all of them is read again, as an outage
// is, instead of counting short.
func (rt *Runtime) endRun(ctx context.Context, tenant, runID string, status engine.RunStatus, runErr string, settled ...string) (*engine.RunResult, error) {
	ended := rt.opts.Now()
	var (
		run  *Run
		sets []namedSettlement // of the attempt that stored the end
	)
	err := rt.ridingOutages(ctx, "store the end of run "+runID, func(ctx context.Context) error {
		var err error
		sets, err = rt.settlements(ctx, tenant, runID, true)
		if err != nil {
			return err
		}
		if missing := missingSettlements(sets, settled); missing != "" {
			return fmt.Errorf("runtime: listing the settlements of run %s: %w: %s not listed yet", runID, errReplicaBehind, missing)
		}
		c := countsOf(sets)
		st := status
		if st == "" {
			var e error
			if runErr != "" {
				e = errors.New(runErr)
			}
			st = engine.StatusFor(c, e)
		}
		run, err = rt.updateRun(ctx, tenant, runID, func(run *Run) error {
			run.Counts, run.Status, run.Ended = c, st, ended
			if runErr != "" {
				run.Error = runErr
			}
			return nil
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	rt.metrics.finished(run)
	// The failures come from the settlements the counts came from.
	return run.Result(failuresOf(sets)), nil
}

// endOutage bounds how long the writes that end a run wait for a lost NATS
// connection to come back: a server restart or a leader election takes
// seconds; beyond this the run returns its error and stays resumable.
const endOutage = time.Minute

// natsAttempt bounds one attempt of such a write. While the connection is
// down a request waits in the client's reconnect buffer, and is sent when
// it is back: the attempt may still succeed. (A variable for tests.)
var natsAttempt = 5 * time.Second

// ridingOutages runs op (what names it in logs) until it succeeds, fails for
// another reason than NATS being unreachable, ctx ends or endOutage passed.
// op must be safe to repeat: an attempt that timed out may have been
// applied.
func (rt *Runtime) ridingOutages(ctx context.Context, what string, op func(ctx context.Context) error) error {
	deadline := time.Now().Add(endOutage)
	wait := 50 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, natsAttempt)
		err := op(actx)
		cancel()
		if err == nil || ctx.Err() != nil || !natsUnavailable(err) || time.Now().Add(wait).After(deadline) {
			return err
		}
		rt.log.Warn("NATS unavailable; trying again", "op", what, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// errReplicaBehind: a read was served by a replica that does not hold a
// write known to be stored yet; reading again reaches another or a
// caught-up one.
var errReplicaBehind = errors.New("the replica read is behind")

// missingSettlements names the first of ids that sets lacks ("" none).
func missingSettlements(sets []namedSettlement, ids []string) string {
	if len(ids) == 0 {
		return ""
	}
	have := make(map[string]bool, len(sets))
	for _, s := range sets {
		have[s.id] = true
	}
	for _, id := range ids {
		if !have[id] {
			return id
		}
	}
	return ""
}

// natsUnavailable reports whether err says NATS or JetStream could not be
// reached or is recovering (not that the request was refused). A closed
// connection is final: the runtime is closing.
func natsUnavailable(err error) bool {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, jetstream.ErrConnectionClosed):
		return false
	case errors.Is(err, errReplicaBehind):
		return true
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout),
		errors.Is(err, nats.ErrNoResponders), errors.Is(err, nats.ErrConnectionReconnecting),
		errors.Is(err, nats.ErrDisconnected), errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, jetstream.ErrServerShutdown):
		return true
	case errors.As(err, &apiErr):
		// 503: JetStream not (yet) enabled or temporarily unavailable,
		// as while a restarted server recovers its streams.
		return apiErr.Code == 503
	}
	return false
}

// result is an ended run's result with its per-entity failures.
func (rt *Runtime) result(ctx context.Context, run *Run) (*engine.RunResult, error) {
	failures, err := rt.Runs().Errors(ctx, run.Tenant, run.ID)
	if err != nil {
		return nil, err
	}
	return run.Result(failures), nil
}

// ErrRunMismatch is returned when a run id is reused for another integration.
var ErrRunMismatch = errors.New("run id belongs to another integration")

// RunJob runs (or resumes) one integration durably through JetStream and waits
// until every record settled. Run-level failures (source or target could not open,
// source read error) end the run as failed/partial and are reported in the result
// with a nil error; the error is for infrastructure problems and cancellation, and
// leaves the run resumable. Close stops a run in flight with ErrClosed.
func (rt *Runtime) RunJob(ctx context.Context, job *Job, opts RunOptions) (*engine.RunResult, error) {
	ctx, done, err := rt.enterRun(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	if opts.RunID == "" {
		opts.RunID = nuid.Next()
	}
	res, err := rt.runJob(ctx, job, opts)
	if err != nil && errors.Is(context.Cause(ctx), ErrCancelled) {
		return rt.EndCancelled(context.WithoutCancel(ctx), job.Tenant, job.Integration, opts.RunID, opts.Trigger, opts.Revision)
	}
	if err != nil && errors.Is(context.Cause(ctx), ErrClosed) {
		return nil, fmt.Errorf("runtime: run %s stopped by Close; run it again with the same run id to resume: %w", opts.RunID, ErrClosed)
	}
	return res, err
}

func (rt *Runtime) runJob(ctx context.Context, job *Job, opts RunOptions) (*engine.RunResult, error) {
	job, err := job.withDefaults()
	if err != nil {
		return nil, err
	}
	runID := opts.RunID
	if runID == "" {
		runID = nuid.Next()
	}
	if err := validName("run id", runID); err != nil {
		return nil, err
	}
	revision := opts.Revision
	if revision == "" {
		revision = job.Revision
	}
	tenant := job.Tenant
	run, _, err := rt.getRun(ctx, tenant, runID)
	resume := false
	switch {
	case err == nil:
		if run.Integration != job.Integration {
			return nil, fmt.Errorf("runtime: run %s is of integration %s, not %s: %w", runID, run.Integration, job.Integration, ErrRunMismatch)
		}
		if run.Finished() {
			return rt.result(ctx, run)
		}
		resume = true
	case errors.Is(err, ErrNotFound):
		run = &Run{ID: runID, Tenant: tenant, Integration: job.Integration, Trigger: opts.Trigger, TriggeredBy: opts.TriggeredBy,
			Revision: revision, Status: engine.RunQueued, Queued: rt.opts.Now()}
		b, _ := json.Marshal(run)
		if _, err := rt.runsKV.Create(ctx, runKey(tenant, runID), b); err != nil {
			return nil, fmt.Errorf("runtime: create run %s: %w", runID, err)
		}
	default:
		return nil, err
	}

	var lock *heldLock
	if !job.AllowParallelRuns {
		// A run may wait longer than the run retention: its record must not
		// expire meanwhile.
		stopKeeping := rt.keepRun(ctx, tenant, runID)
		lock, err = rt.acquireLock(ctx, tenant, job.Integration, runID, func() {
			rt.log.Info("run queued behind a running run", "tenant", tenant, "integration", job.Integration, "run", runID)
		})
		stopKeeping()
		if err != nil {
			return nil, fmt.Errorf("runtime: run %s waiting for its integration: %w", runID, err)
		}
	}
	r := &runner{rt: rt, job: job, tenant: tenant, runID: runID, revision: revision,
		subject: workSubject(tenant, job.Integration, runID), tr: newTracker()}
	res, err := r.execute(ctx, resume)
	if lock != nil {
		// A cancelled run is over: the next run of the integration must not
		// wait out the lock's TTL.
		if err != nil && !errors.Is(context.Cause(ctx), ErrCancelled) {
			lock.abandon()
		} else {
			lock.release(context.WithoutCancel(ctx))
		}
	}
	return res, err
}

type runner struct {
	rt       *Runtime
	job      *Job
	tenant   string
	runID    string
	revision string
	subject  string
	tr       *tracker

	sink   connectors.Sink
	serial chan struct{} // one call at a time; nil for concurrent sinks
	sem    chan struct{}
}

func (r *runner) execute(ctx context.Context, resume bool) (*engine.RunResult, error) {
	rt, job := r.rt, r.job
	var from Cursor
	run, err := rt.updateRun(ctx, r.tenant, r.runID, func(run *Run) error {
		run.Status = engine.RunRunning
		if run.Started.IsZero() {
			run.Started = rt.opts.Now()
		}
		if resume {
			run.Resumes++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if job.CursorField != "" {
		if run.CursorFrom != nil {
			from = *run.CursorFrom
		} else {
			if from, err = rt.Cursors().Get(ctx, r.tenant, job.Integration); err != nil {
				return nil, err
			}
			if _, err := rt.updateRun(ctx, r.tenant, r.runID, func(run *Run) error { run.CursorFrom = &from; return nil }); err != nil {
				return nil, err
			}
		}
	}

	// Open the target before consuming anything.
	sink, err := job.OpenSink(ctx, connectors.SinkOptions{Continue: resume})
	if err != nil {
		return r.finish(ctx, fmt.Errorf("open target: %w", err))
	}
	r.sink = sink
	defer func() {
		if err := sink.Close(context.WithoutCancel(ctx)); err != nil {
			rt.log.Warn("target close failed", "integration", job.Integration, "run", r.runID, "err", err)
		}
	}()
	if cs, ok := sink.(ConcurrentSink); !ok || !cs.ConcurrentWrites() {
		r.serial = make(chan struct{}, 1)
	}
	r.sem = rt.semaphore(r.tenant, job.SinkConnection)

	cname := consumerName(r.tenant, r.runID)
	cons, err := r.freshConsumer(ctx)
	if err != nil {
		return nil, err
	}
	defer func() {
		if ctx.Err() == nil {
			_ = rt.js.DeleteConsumer(context.WithoutCancel(ctx), WorkStream, cname)
		}
	}()

	// Settlements of a previous process of this run count already.
	sets, err := rt.settlements(ctx, r.tenant, r.runID, true)
	if err != nil {
		return nil, err
	}
	kept := time.Now()
	for _, s := range sets {
		r.tr.add(s.id, s.s)
	}

	wctx, stopWorkers := context.WithCancel(ctx)
	workersDone, err := r.startWorkers(wctx, cons)
	if err != nil {
		stopWorkers()
		return nil, err
	}
	defer func() { stopWorkers(); <-workersDone }()

	type ingestResult struct {
		batches int64
		max     *Cursor
		err     error
	}
	ingestDone := make(chan ingestResult, 1)
	go func() {
		n, max, err := r.ingest(ctx, from)
		ingestDone <- ingestResult{n, max, err}
	}()

	var (
		runErr  error
		maxPos  *Cursor
		ingDone bool
	)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if ingDone && r.tr.done() {
			// Everything is settled; wait until the last acks reached the server
			// (side effects of settlements loaded from a previous process are
			// only known to be applied once their message is acked).
			var idle bool
			if err := rt.ridingOutages(ctx, "check the last acks of run "+r.runID, func(ctx context.Context) error {
				var err error
				idle, err = consumerIdle(ctx, cons)
				return err
			}); err != nil {
				return nil, err
			}
			if idle {
				break
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case res := <-ingestDone:
			ingDone = true
			if res.err != nil && ctx.Err() != nil {
				return nil, ctx.Err()
			}
			var infra *infraError
			if errors.As(res.err, &infra) {
				return nil, infra.err
			}
			runErr, maxPos = res.err, res.max
			r.tr.setExpected(res.batches)
			if err := rt.ridingOutages(ctx, "store the ingest of run "+r.runID, func(ctx context.Context) error {
				_, err := rt.updateRun(ctx, r.tenant, r.runID, func(run *Run) error {
					run.Batches, run.IngestDone = res.batches, true
					return nil
				})
				return err
			}); err != nil {
				return nil, err
			}
		case <-r.tr.wake:
		case <-tick.C:
			if ingDone && !r.tr.done() {
				r.relist(ctx, cons)
			}
			c := r.tr.snapshot()
			if _, err := rt.updateRun(ctx, r.tenant, r.runID, func(run *Run) error { run.Counts = c; return nil }); err != nil {
				rt.log.Warn("run progress update failed", "run", r.runID, "err", err)
			}
			// The record was just rewritten; a long run's first settlements
			// must not expire before it ends.
			if rt.runRetention > 0 && time.Since(kept) >= rt.keepEvery() {
				if _, err := rt.settlements(ctx, r.tenant, r.runID, true); err != nil {
					rt.log.Warn("keeping the run's settlements failed", "run", r.runID, "err", err)
				} else {
					kept = time.Now()
				}
			}
		}
	}
	stopWorkers()
	<-workersDone
	if testHookSettled != nil {
		testHookSettled(r.runID)
	}
	if runErr == nil && maxPos != nil {
		maxPos.RunID, maxPos.Updated = r.runID, rt.opts.Now()
		if err := rt.ridingOutages(ctx, "store the cursor of run "+r.runID, func(ctx context.Context) error {
			return rt.Cursors().set(ctx, r.tenant, job.Integration, *maxPos)
		}); err != nil {
			return nil, err
		}
	}
	return r.finish(ctx, runErr)
}

// testHookSettled, when set (tests), is called once every record of a run
// settled and its workers stopped, before the writes that end the run.
var testHookSettled func(runID string)

// freshConsumer (re)creates the run's consumer, at a (re)start and after a
// lost NATS connection came back: the work stream is a work queue, so acked
// messages are gone and a new consumer delivers exactly what is left, at once
// (no waiting out the ack wait of deliveries a dead process never acked, or
// whose acks or messages were lost with the connection).
func (r *runner) freshConsumer(ctx context.Context) (jetstream.Consumer, error) {
	cname := consumerName(r.tenant, r.runID)
	if err := r.rt.js.DeleteConsumer(ctx, WorkStream, cname); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("runtime: reset consumer of run %s: %w", r.runID, err)
	}
	cons, err := r.rt.js.CreateOrUpdateConsumer(ctx, WorkStream, jetstream.ConsumerConfig{
		Durable:       cname,
		Description:   "ferry run " + r.runID + " of " + r.job.Integration,
		FilterSubject: r.subject,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       2 * time.Minute,
		MaxDeliver:    -1,
		MaxAckPending: 20000,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		// Its state need not outlive the process: every (re)start makes a
		// fresh consumer. Kept in memory, creating and deleting it writes
		// no files: that was a third of a small run's CPU.
		MemoryStorage: true,
	})
	if err != nil {
		return nil, fmt.Errorf("runtime: consumer of run %s: %w", r.runID, err)
	}
	return cons, nil
}

func consumerIdle(ctx context.Context, c jetstream.Consumer) (bool, error) {
	info, err := c.Info(ctx)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return false, nil // being re-created after a reconnect
	}
	if err != nil {
		return false, fmt.Errorf("runtime: consumer info: %w", err)
	}
	return info.NumPending == 0 && info.NumAckPending == 0, nil
}

// relist counts settlements stored by an earlier process of the run that
// this process did not list when it started: on a NATS cluster that
// listing may come from a replica behind. Their messages were acked, so they
// will not come again; without them the run would wait for good. Only when
// nothing is left to deliver or acknowledge (the consumer is idle).
func (r *runner) relist(ctx context.Context, cons jetstream.Consumer) {
	if idle, err := consumerIdle(ctx, cons); err != nil || !idle {
		return
	}
	sets, err := r.rt.settlements(ctx, r.tenant, r.runID, false)
	if err != nil {
		r.rt.log.Warn("listing the run's settlements again failed", "run", r.runID, "err", err)
		return
	}
	for _, s := range sets {
		if r.tr.add(s.id, s.s) {
			r.rt.log.Info("counted a settlement the first listing lacked", "run", r.runID, "settlement", s.id)
		}
	}
}

// finish stores the run's final status with counts derived from its settlements.
func (r *runner) finish(ctx context.Context, runErr error) (*engine.RunResult, error) {
	msg := ""
	if runErr != nil {
		msg = runErr.Error()
	}
	return r.rt.endRun(ctx, r.tenant, r.runID, "", msg, r.tr.ids()...)
}

// maxInflightPublishes bounds ingest's unacknowledged publishes.
const maxInflightPublishes = 16

// infraError marks an ingest failure of JetStream (not of the source): the run is
// left resumable instead of being ended.
type infraError struct{ err error }

func (e *infraError) Error() string { return e.err.Error() }

// ingest reads the source and publishes batches with message ids <run>.b<seq>; a
// resumed run's source re-emits the same records in the same order, so the ids
// repeat and JetStream drops the duplicates.
func (r *runner) ingest(ctx context.Context, from Cursor) (int64, *Cursor, error) {
	job := r.job
	if job.OpenSource == nil {
		return 0, nil, errors.New("integration has no source")
	}
	src, err := job.OpenSource(ctx)
	if err != nil {
		return 0, nil, fmt.Errorf("open source: %w", err)
	}
	if c, ok := src.(interface{ Close() error }); ok {
		defer c.Close()
	}
	var (
		seq     int64
		batch   []connectors.Record
		bytes   int
		buf     []byte
		pending []jetstream.PubAckFuture
		maxPos  *Cursor
		prep    Preparer
	)
	if job.CursorField != "" {
		prep = job.NewPreparer()
	}
	await := func(keep int) error {
		for len(pending) > keep {
			f := pending[0]
			pending = pending[1:]
			select {
			case <-f.Ok():
			case err := <-f.Err():
				// Publish again synchronously; the message id makes this safe.
				var perr error
				for try := 0; try < 5; try++ {
					if _, perr = r.rt.js.PublishMsg(ctx, f.Msg(), jetstream.WithMsgID(f.Msg().Header.Get(nats.MsgIdHdr))); perr == nil {
						break
					}
					time.Sleep(time.Duration(try+1) * 100 * time.Millisecond)
				}
				if perr != nil {
					return &infraError{fmt.Errorf("runtime: publish work: %w (first: %v)", perr, err)}
				}
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		seq++
		buf = encodeBatch(buf, batch)
		m := nats.NewMsg(r.subject)
		m.Data = append([]byte(nil), buf...)
		m.Header.Set(hdrKind, kindBatch)
		m.Header.Set(hdrSeq, strconv.FormatInt(seq, 10))
		m.Header.Set(hdrRun, r.runID)
		f, err := r.rt.js.PublishMsgAsync(m, jetstream.WithMsgID(r.runID+".b"+strconv.FormatInt(seq, 10)))
		if err != nil {
			return &infraError{fmt.Errorf("runtime: publish work: %w", err)}
		}
		pending = append(pending, f)
		batch, bytes = batch[:0], 0
		// Bound what is in flight: each message holds up to maxMessageBytes,
		// and hundreds of unacknowledged publishes were most of a run's memory.
		if len(pending) >= maxInflightPublishes {
			return await(maxInflightPublishes / 2)
		}
		return nil
	}
	err = src.Read(ctx, connectors.ReadRequest{Cursor: from.Value, CursorField: job.CursorField}, func(rec connectors.Record) error {
		raw, err := rawOf(&rec)
		if err != nil {
			return err
		}
		if prep != nil {
			probe := connectors.Record{Key: rec.Key, Raw: raw, Position: rec.Position}
			if err := probe.Decode(); err == nil {
				if v, ok := cursorValue(probe.Data, job.CursorField); ok {
					pos := Cursor{Value: v, Key: prep.Prepare(&probe).Key}
					if !from.IsZero() && compareCursor(pos, from) <= 0 {
						return nil // settled by an earlier run
					}
					if maxPos == nil || compareCursor(pos, *maxPos) > 0 {
						maxPos = &pos
					}
				}
			}
		}
		rec.Raw, rec.Data = raw, nil
		batch = append(batch, rec)
		bytes += len(raw) + len(rec.Position) + len(rec.Key)
		if len(batch) >= job.MessageRecords || bytes >= maxMessageBytes {
			return flush()
		}
		return nil
	})
	// Records read before a source error are delivered too.
	var infra0 *infraError
	if ctx.Err() == nil && !errors.As(err, &infra0) {
		if ferr := flush(); ferr != nil {
			err = ferr // JetStream trouble wins: the run stays resumable
		}
	}
	if werr := await(0); werr != nil {
		err = werr
	}
	var infra *infraError
	if err != nil && !errors.As(err, &infra) && ctx.Err() == nil {
		err = fmt.Errorf("read source: %w", err)
	}
	return seq, maxPos, err
}

// startWorkers pulls the run's messages and processes them on job.Workers goroutines.
func (r *runner) startWorkers(ctx context.Context, cons jetstream.Consumer) (<-chan struct{}, error) {
	n := r.job.Workers
	it, err := cons.Messages(jetstream.PullMaxMessages(2*n), jetstream.PullExpiry(pullExpiry))
	if err != nil {
		return nil, fmt.Errorf("runtime: pull run %s: %w", r.runID, err)
	}
	reconnected := r.rt.reconnects(ctx)
	msgs := make(chan jetstream.Msg)
	go func() {
		defer close(msgs)
		for r.feed(ctx, it, msgs, reconnected) {
			r.rt.log.Info("NATS connection back: re-creating the run's consumer to deliver unacknowledged work again", "run", r.runID)
			if it, err = r.repull(ctx); err != nil {
				return
			}
		}
	}()
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := r.job.NewPreparer()
			for m := range msgs {
				r.handle(ctx, p, m)
			}
		}()
	}
	go func() { wg.Wait(); close(done) }()
	return done, nil
}

// feed passes the iterator's messages to msgs until ctx ends or the iterator
// closes (false), or the NATS connection came back after an outage (true).
func (r *runner) feed(ctx context.Context, it jetstream.MessagesContext, msgs chan<- jetstream.Msg, reconnected <-chan struct{}) bool {
	var again atomic.Bool
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-ctx.Done():
		case <-reconnected:
			again.Store(true)
		case <-stop:
		}
		it.Stop()
	}()
	for {
		m, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
				return again.Load() && ctx.Err() == nil
			}
			r.rt.log.Debug("pull", "run", r.runID, "err", err)
			continue
		}
		select {
		case msgs <- m:
		case <-ctx.Done():
			return false
		}
	}
}

// repull re-creates the run's consumer and pulls from it, trying again while
// JetStream is still recovering.
func (r *runner) repull(ctx context.Context) (jetstream.MessagesContext, error) {
	for {
		cons, err := r.freshConsumer(ctx)
		if err == nil {
			it, err := cons.Messages(jetstream.PullMaxMessages(2*r.job.Workers), jetstream.PullExpiry(pullExpiry))
			if err == nil {
				return it, nil
			}
		}
		r.rt.log.Warn("re-creating the run's consumer failed; trying again", "run", r.runID, "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// reconnects signals each time the NATS connection is back after being lost,
// until ctx ends.
func (rt *Runtime) reconnects(ctx context.Context) <-chan struct{} {
	out := make(chan struct{}, 1)
	status := rt.nc.StatusChanged(nats.RECONNECTING, nats.CONNECTED)
	go func() {
		defer rt.nc.RemoveStatusListener(status)
		down := false
		for {
			select {
			case <-ctx.Done():
				return
			case st, ok := <-status:
				if !ok {
					return
				}
				if st == nats.RECONNECTING {
					down = true
				} else if down {
					down = false
					select {
					case out <- struct{}{}:
					default:
					}
				}
			}
		}
	}()
	return out
}

// handle settles one work message: execute its records unless a settlement exists,
// commit the settlement, apply its side effects, then ack.
func (r *runner) handle(ctx context.Context, p Preparer, m jetstream.Msg) {
	log := r.rt.log
	w, err := parseWorkMsg(m.Headers(), m.Data())
	if err != nil {
		log.Error("dropping malformed work message", "run", r.runID, "err", err)
		_ = m.Term()
		return
	}
	if w.kind == kindRetry {
		if wait := w.notBefore.Sub(r.rt.opts.Now()); wait > 0 {
			_ = m.NakWithDelay(wait)
			return
		}
	}
	// Keep the message ours while a slow target works through it.
	working := make(chan struct{})
	defer close(working)
	go func() {
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-working:
				return
			case <-t.C:
				_ = m.InProgress()
			}
		}
	}()
	key := settledPrefix(r.tenant, r.runID) + w.settlementID()
	var s settlement
	e, err := r.rt.settleKV.Get(ctx, key)
	switch {
	case err == nil:
		if err := json.Unmarshal(e.Value(), &s); err != nil {
			log.Error("bad settlement", "key", key, "err", err)
			_ = m.Term()
			return
		}
	case errors.Is(err, jetstream.ErrKeyNotFound):
		s, err = r.process(ctx, p, w)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("work message not settled, redelivering", "run", r.runID, "seq", w.seq, "err", err)
				_ = m.NakWithDelay(time.Second)
			}
			return
		}
		b, _ := json.Marshal(s)
		if _, err := r.rt.settleKV.Create(ctx, key, b); err != nil {
			if !errors.Is(err, jetstream.ErrKeyExists) {
				_ = m.NakWithDelay(time.Second)
				return
			}
			// A concurrent delivery settled first: its outcome counts.
			e, gerr := r.rt.settleKV.Get(ctx, key)
			if gerr != nil || json.Unmarshal(e.Value(), &s) != nil {
				_ = m.NakWithDelay(time.Second)
				return
			}
		}
	default:
		if ctx.Err() == nil {
			_ = m.NakWithDelay(time.Second)
		}
		return
	}
	if err := r.sideEffects(ctx, w, &s); err != nil {
		if ctx.Err() == nil {
			log.Warn("settlement side effects failed, redelivering", "run", r.runID, "err", err)
			_ = m.NakWithDelay(time.Second)
		}
		return
	}
	_ = m.Ack()
	if r.tr.add(w.settlementID(), s) {
		r.rt.metrics.settled(r.tenant, r.job.Integration, &s)
	}
}

type readyRec struct {
	it   *item
	prep engine.Prepared
}

// process runs the records of a message through the stages and returns the
// outcome; an error means nothing may be settled (the message is redelivered).
func (r *runner) process(ctx context.Context, p Preparer, w *workMsg) (settlement, error) {
	job, now := r.job, r.rt.opts.Now()
	s := settlement{Kind: w.kind, At: now}
	if w.kind == kindBatch {
		s.Records = int64(len(w.items))
	}
	var maxRetryAfter time.Duration
	fail := func(it *item, stage engine.Stage, err error) {
		cat := connectors.CategoryOf(err)
		hist := append(append([]Attempt(nil), it.Attempts...), Attempt{At: now, Stage: string(stage), Category: cat, Error: err.Error()})
		sr := settledRecord{Idx: it.Idx, Key: it.Key, Position: it.Position, Stage: stage, Category: cat, Error: err.Error(), Attempts: hist}
		if cat == connectors.CategoryTransient && len(hist) < job.Retry.MaxAttempts {
			s.Retries = append(s.Retries, sr)
			s.Retried++
			maxRetryAfter = max(maxRetryAfter, connectors.RetryAfterOf(err))
			return
		}
		s.Dead = append(s.Dead, sr)
		s.Failed++
	}
	var ready []readyRec
	for i := range w.items {
		it := &w.items[i]
		rec := it.Rec
		pr := p.Prepare(&rec)
		if pr.Key != "" {
			it.Key = pr.Key
		}
		switch pr.Outcome {
		case engine.Ready:
			if job.SkipUnchanged && pr.Hash != "" && it.Key != "" {
				h, err := r.rt.Hashes().Get(ctx, r.tenant, job.Integration, it.Key)
				if err != nil {
					return s, err
				}
				if h == pr.Hash {
					s.Skipped++
					continue
				}
			}
			ready = append(ready, readyRec{it, pr})
		case engine.Skipped:
			s.Skipped++
		case engine.Success:
			s.Success++
		default:
			err := pr.Err
			if err == nil {
				err = connectors.Permanent(errors.New("failed without an error"))
			}
			stage := pr.Stage
			if stage == "" {
				stage = engine.StageTransform
			}
			fail(it, stage, err)
		}
	}
	for lo := 0; lo < len(ready); lo += job.BatchSize {
		chunk := ready[lo:min(lo+job.BatchSize, len(ready))]
		writes := make([]connectors.Write, len(chunk))
		for i := range chunk {
			writes[i] = chunk[i].prep.Write
		}
		errs := r.write(ctx, writes)
		if ctx.Err() != nil {
			return s, ctx.Err()
		}
		if errs != nil && len(errs) != len(writes) {
			err := connectors.Transient(fmt.Errorf("target returned %d results for %d writes", len(errs), len(writes)), 0)
			errs = make([]error, len(writes))
			for i := range errs {
				errs[i] = err
			}
		}
		for i, c := range chunk {
			if errs != nil && errs[i] != nil {
				fail(c.it, engine.StageExecute, errs[i])
				continue
			}
			s.Success++
			if job.SkipUnchanged && c.prep.Hash != "" && c.it.Key != "" {
				if err := r.rt.Hashes().Put(ctx, r.tenant, job.Integration, c.it.Key, c.prep.Hash); err != nil {
					return s, err
				}
			}
		}
	}
	if f, ok := r.sink.(Flusher); ok && len(ready) > 0 {
		if err := f.Flush(ctx); err != nil {
			return s, fmt.Errorf("flush target: %w", err)
		}
	}
	if len(s.Retries) > 0 {
		s.RetryAt = now.Add(job.Retry.Backoff(w.attempt, maxRetryAfter, nil))
	}
	return s, nil
}

func (r *runner) write(ctx context.Context, writes []connectors.Write) []error {
	return r.rt.callSink(ctx, r.rt.sinkTimeout(r.job), r.sink, r.sem, r.serial, writes)
}

// sinkTimeout is the limit of one call of the job's target: its own timeout,
// else Options.SinkTimeout.
func (rt *Runtime) sinkTimeout(job *Job) time.Duration {
	return engine.SinkLimit(job.SinkTimeout, rt.opts.SinkTimeout)
}

// callSink calls sink.Write within limit (see sinkTimeout), counted from when the
// call starts waiting for its connection slot (sem) and, for a sink that is
// not concurrent, for the sink (serial). Records of a call that does not end
// in time fail transiently and are retried. A target that ignores its
// cancelled context is abandoned after a grace period: a worker must not
// hang with it, and the retry may write the records twice (at least once).
// The abandoned call keeps its slot and the serial sink until it returns, so
// the limits still hold.
func (rt *Runtime) callSink(ctx context.Context, limit time.Duration, sink connectors.Sink, sem, serial chan struct{}, writes []connectors.Write) []error {
	cctx, cancel := context.WithTimeout(ctx, limit)
	select {
	case sem <- struct{}{}:
	case <-cctx.Done():
		cancel()
		return engine.AllErrors(len(writes), engine.SinkTimedOut(ctx, limit, "had no free connection slot"))
	}
	if serial != nil {
		select {
		case serial <- struct{}{}:
		case <-cctx.Done():
			<-sem
			cancel()
			return engine.AllErrors(len(writes), engine.SinkTimedOut(ctx, limit, "was busy with another call"))
		}
	}
	return engine.CallWithin(ctx, cctx, limit, len(writes), func(cctx context.Context) []error {
		return sink.Write(cctx, writes)
	}, func() {
		if serial != nil {
			<-serial
		}
		<-sem
		cancel()
	})
}

// sideEffects publishes the settlement's retry message and writes its DLQ
// entries. Both are idempotent (message id; create-if-absent), so a redelivered
// message may run them again.
func (r *runner) sideEffects(ctx context.Context, w *workMsg, s *settlement) error {
	byIdx := make(map[int]*item, len(w.items))
	for i := range w.items {
		byIdx[w.items[i].Idx] = &w.items[i]
	}
	if len(s.Retries) > 0 {
		items := make([]item, 0, len(s.Retries))
		for _, sr := range s.Retries {
			it, ok := byIdx[sr.Idx]
			if !ok {
				return fmt.Errorf("retry of record %d not in message", sr.Idx)
			}
			items = append(items, item{Idx: sr.Idx, Key: sr.Key, Position: it.Position, Raw: it.Raw, Attempts: sr.Attempts})
		}
		body, err := json.Marshal(items)
		if err != nil {
			return err
		}
		next := w.attempt + 1
		m := nats.NewMsg(r.subject)
		m.Data = body
		m.Header.Set(hdrKind, kindRetry)
		m.Header.Set(hdrSeq, strconv.FormatInt(w.seq, 10))
		m.Header.Set(hdrAttempt, strconv.Itoa(next))
		m.Header.Set(hdrNotBefore, strconv.FormatInt(s.RetryAt.UnixNano(), 10))
		m.Header.Set(hdrRun, r.runID)
		id := r.runID + ".r" + strconv.FormatInt(w.seq, 10) + "_" + strconv.Itoa(next)
		if _, err := r.rt.js.PublishMsg(ctx, m, jetstream.WithMsgID(id)); err != nil {
			return fmt.Errorf("publish retry: %w", err)
		}
	}
	for _, d := range s.Dead {
		it, ok := byIdx[d.Idx]
		if !ok {
			return fmt.Errorf("dead record %d not in message", d.Idx)
		}
		e := &DLQEntry{
			ID:          dlqID(r.runID, w.seq, d.Idx),
			Tenant:      r.tenant,
			Integration: r.job.Integration,
			RunID:       r.runID,
			Key:         d.Key,
			Stage:       d.Stage,
			Category:    d.Category,
			Error:       d.Error,
			Attempts:    d.Attempts,
			Record:      it.Raw,
			Position:    it.Position,
			Revision:    r.revision,
			Status:      DLQPending,
			Created:     s.At,
			Updated:     s.At,
		}
		if err := r.rt.DLQ().create(ctx, e); err != nil {
			return err
		}
	}
	return nil
}

// tracker follows a run's settlements in memory to know when it is done.
type tracker struct {
	mu                        sync.Mutex
	seen                      map[string]bool
	counts                    engine.Counts
	batches                   int64
	retriesScheduled, retries int64
	expected                  int64 // -1 until ingest ended
	wake                      chan struct{}
}

func newTracker() *tracker {
	return &tracker{expected: -1, wake: make(chan struct{}, 1), seen: map[string]bool{}}
}

// add counts a settlement once (by id) after its side effects were applied.
// add counts a settlement once and reports whether it was new.
func (t *tracker) add(id string, s settlement) bool {
	t.mu.Lock()
	if t.seen[id] || s.Kind == "replay" {
		t.mu.Unlock()
		return false
	}
	t.seen[id] = true
	t.counts.Total += s.Records
	t.counts.Success += s.Success
	t.counts.Skipped += s.Skipped
	t.counts.Failed += s.Failed
	t.counts.Retried += s.Retried
	switch s.Kind {
	case kindBatch:
		t.batches++
	case kindRetry:
		t.retries++
	}
	if len(s.Retries) > 0 {
		t.retriesScheduled++
	}
	t.mu.Unlock()
	t.signal()
	return true
}

func (t *tracker) signal() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

func (t *tracker) setExpected(n int64) {
	t.mu.Lock()
	t.expected = n
	t.mu.Unlock()
	t.signal()
}

func (t *tracker) done() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.expected >= 0 && t.batches >= t.expected && t.retries >= t.retriesScheduled
}

// ids are the settlements counted.
func (t *tracker) ids() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, len(t.seen))
	for id := range t.seen {
		out = append(out, id)
	}
	return out
}

func (t *tracker) snapshot() engine.Counts {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.counts
}
