package engine

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/zclconf/go-cty/cty"

	"github.com/ferryhq/ferry/connectors"
	"github.com/ferryhq/ferry/lang"
)

// RunOptions configure a local in-memory run.
type RunOptions struct {
	// Secrets resolves secret("name") in connection configs (nil: secrets are an error).
	Secrets func(name string) (string, error)
	// Workers is the number of Prepare workers (0: the integration's workers, else NumCPU).
	Workers int
	// Source and Sink replace the integration's connections when set.
	Source connectors.Source
	Sink   connectors.Sink
	// FailedDir is where failed records are written as NDJSON (<run id>.failed.ndjson).
	// "" keeps them in RunResult.Failures only.
	FailedDir string
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// Sleep waits between write retries (nil: a timer honouring ctx). Tests inject
	// a fast one.
	Sleep func(ctx context.Context, d time.Duration) error
	// ReadBatch is how many records the reader hands to a worker at once (default 256).
	ReadBatch int
	// Cursor is the last settled cursor for incremental sources.
	Cursor string
	// SinkTimeout bounds one call of the target when it has no timeout of
	// its own (0: DefaultSinkTimeout); see CallWithin.
	SinkTimeout time.Duration
}

// MaxFailuresInResult caps RunResult.Failures when failures also go to FailedDir,
// so that memory stays flat on large failing inputs.
const MaxFailuresInResult = 1000

const defaultReadBatch = 256

// ErrUnknownIntegration is returned by Run for an integration not in the config.
var ErrUnknownIntegration = errors.New("unknown integration")

// item is one record travelling from the reader through a worker to the writer.
type item struct {
	rec connectors.Record
	pr  Prepared
}

type batch struct {
	seq   int
	items []item
}

// Run runs one integration locally: read the source, prepare records on
// opts.Workers goroutines, write to the sink in input order in batches of
// target.batch_size, retrying transient write errors with backoff. Record
// failures are reported in the result; the error is for runs that cannot start
// (unknown integration, connection that does not open).
func (p *Program) Run(ctx context.Context, integration string, opts RunOptions) (*RunResult, error) {
	pl, ok := p.Pipelines[integration]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownIntegration, integration)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	sleep := opts.Sleep
	if sleep == nil {
		sleep = sleepCtx
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = pl.Integration.Workers
	}
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	readBatch := opts.ReadBatch
	if readBatch <= 0 {
		readBatch = defaultReadBatch
	}

	src := opts.Source
	if src == nil {
		s, err := p.openSource(pl, opts.Secrets)
		if err != nil {
			return nil, err
		}
		if c, ok := s.(io.Closer); ok {
			defer c.Close()
		}
		src = s
	}
	sink := opts.Sink
	if sink == nil {
		s, err := p.openSink(pl, opts.Secrets, connectors.SinkOptions{})
		if err != nil {
			return nil, err
		}
		sink = s
	}

	started := now()
	res := &RunResult{ID: NewRunID(started), Integration: integration, Started: started}
	fw := &failureWriter{res: res}
	if opts.FailedDir != "" {
		fw.path = filepath.Join(opts.FailedDir, res.ID+".failed.ndjson")
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	batches := make(chan batch, workers)
	results := make(chan batch, workers*2)

	// Reader: one goroutine, records in batches, bounded channel.
	var srcErr error
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		defer close(batches)
		seq := 0
		cur := make([]item, 0, readBatch)
		send := func() error {
			select {
			case batches <- batch{seq: seq, items: cur}:
				seq++
				cur = make([]item, 0, readBatch)
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		req := connectors.ReadRequest{Cursor: opts.Cursor}
		if s := pl.Integration.Source; s != nil {
			req.CursorField = s.Cursor
		}
		err := src.Read(ctx, req, func(r connectors.Record) error {
			cur = append(cur, item{rec: r})
			if len(cur) == readBatch {
				return send()
			}
			return nil
		})
		if len(cur) > 0 {
			// Records read before an error or cancellation are still settled.
			batches <- batch{seq: seq, items: cur}
		}
		if err != nil {
			srcErr = fmt.Errorf("reading source of integration %q: %w", integration, err)
		}
	}()

	// Workers: Prepare (decode, normalize, transform) in parallel.
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := pl.NewWorker()
			for b := range batches {
				for i := range b.items {
					it := &b.items[i]
					it.pr = w.Prepare(&it.rec)
				}
				results <- b
			}
		}()
	}
	go func() {
		wg.Wait()
		close(results)
	}()

	// Writer (this goroutine): reorder by batch sequence, write in input order.
	wr := &writer{
		ctx: ctx, pl: pl, sink: sink, sleep: sleep, res: res, fw: fw, limit: sinkLimit(pl, opts.SinkTimeout),
		buf: make([]item, 0, pl.BatchSize),
	}
	pending := map[int]batch{}
	next := 0
	for b := range results {
		pending[b.seq] = b
		for {
			nb, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			next++
			for _, it := range nb.items {
				wr.add(it)
			}
		}
	}
	wr.flush()
	<-readDone

	runErr := srcErr
	if err := sink.Close(context.WithoutCancel(ctx)); err != nil && runErr == nil {
		runErr = fmt.Errorf("closing target of integration %q: %w", integration, err)
	}
	if runErr == nil && ctx.Err() != nil {
		runErr = ctx.Err()
	}
	if err := fw.close(); err != nil && runErr == nil {
		runErr = err
	}
	res.Ended = now()
	res.Status = StatusFor(res.Counts, runErr)
	if runErr != nil {
		res.Error = runErr.Error()
	}
	if fw.wrote {
		res.FailedFile = fw.path
	}
	return res, nil
}

// writer settles prepared records in order: skipped and failed at once, ready
// ones in sink batches with retries.
type writer struct {
	ctx   context.Context
	pl    *Pipeline
	sink  connectors.Sink
	sleep func(context.Context, time.Duration) error
	res   *RunResult
	fw    *failureWriter
	buf   []item
	limit time.Duration // of one sink call
}

// sinkLimit is the limit of one call of the pipeline's target (SinkLimit).
func sinkLimit(pl *Pipeline, run time.Duration) time.Duration {
	var own time.Duration
	if pl.Integration.Target != nil {
		own = pl.Integration.Target.Timeout
	}
	return SinkLimit(own, run)
}

func (w *writer) add(it item) {
	w.res.Counts.Total++
	switch it.pr.Outcome {
	case Skipped:
		w.res.Counts.Skipped++
	case Failed:
		w.fail(it, it.pr.Stage, it.pr.Err, 1)
	default:
		w.buf = append(w.buf, it)
		if len(w.buf) >= w.pl.BatchSize {
			w.flush()
		}
	}
}

func (w *writer) fail(it item, stage Stage, err error, attempts int) {
	w.res.Counts.Failed++
	rec := it.rec.Data
	if rec == nil && it.rec.Raw != nil {
		rec = map[string]any{"_raw": string(it.rec.Raw)}
	}
	key := it.pr.Key
	if key == "" {
		key = it.rec.Key
	}
	w.fw.add(RecordFailure{
		Key:      key,
		Stage:    stage,
		Category: connectors.CategoryOf(err),
		Message:  err.Error(),
		Attempts: attempts,
		Record:   rec,
		Position: it.rec.Position,
	})
}

func (w *writer) flush() {
	if len(w.buf) == 0 {
		return
	}
	todo := w.buf
	attempt := 1
	for len(todo) > 0 {
		if err := w.ctx.Err(); err != nil {
			for _, it := range todo {
				w.fail(it, StageExecute, connectors.Transient(fmt.Errorf("run cancelled before the write: %w", err), 0), attempt-1)
			}
			break
		}
		writes := make([]connectors.Write, len(todo))
		for i, it := range todo {
			writes[i] = it.pr.Write
		}
		cctx, cancel := context.WithTimeout(w.ctx, w.limit)
		errs := CallWithin(w.ctx, cctx, w.limit, len(writes), func(cctx context.Context) []error {
			return safeWrite(cctx, w.sink, writes)
		}, cancel)
		var retry []item
		var retryAfter time.Duration
		for i, it := range todo {
			err := errs[i]
			if err == nil {
				w.res.Counts.Success++
				continue
			}
			if connectors.CategoryOf(err) == connectors.CategoryPermanent || attempt >= w.pl.Retry.MaxAttempts {
				if connectors.CategoryOf(err) != connectors.CategoryPermanent {
					err = connectors.Transient(fmt.Errorf("gave up after %d attempts: %w", attempt, err), 0)
				}
				w.fail(it, StageExecute, err, attempt)
				continue
			}
			retry = append(retry, it)
			retryAfter = max(retryAfter, connectors.RetryAfterOf(err))
		}
		if len(retry) == 0 {
			break
		}
		w.res.Counts.Retried += int64(len(retry))
		d := max(Backoff(w.pl.Retry, attempt), retryAfter)
		if err := w.sleep(w.ctx, d); err != nil {
			// Cancelled while waiting: the loop above fails the rest.
			_ = err
		}
		todo = retry
		attempt++
	}
	w.buf = w.buf[:0]
}

// safeWrite calls the sink and normalises its answer to one error per write. A
// sink that panics or answers with a wrong number of errors gets its first
// error applied to every write.
func safeWrite(ctx context.Context, sink connectors.Sink, writes []connectors.Write) (errs []error) {
	defer func() {
		if r := recover(); r != nil {
			errs = make([]error, len(writes))
			for i := range errs {
				errs[i] = connectors.Permanent(fmt.Errorf("target connector panicked: %v", r))
			}
		}
	}()
	errs = sink.Write(ctx, writes)
	if errs == nil {
		return make([]error, len(writes))
	}
	if len(errs) != len(writes) {
		var first error
		for _, e := range errs {
			if e != nil {
				first = e
				break
			}
		}
		out := make([]error, len(writes))
		for i := range out {
			out[i] = first
		}
		return out
	}
	return errs
}

// Backoff is the delay before retry number attempt (1 = first retry):
// initial * multiplier^(attempt-1), capped at max, with ±jitter.
func Backoff(r lang.Retry, attempt int) time.Duration {
	fillRetryDefaults(&r)
	d := float64(r.Initial) * math.Pow(r.Multiplier, float64(max(attempt-1, 0)))
	if d > float64(r.Max) {
		d = float64(r.Max)
	}
	if r.Jitter > 0 {
		d *= 1 + r.Jitter*(2*mrand.Float64()-1)
	}
	return time.Duration(min(d, float64(r.Max)))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// NewRunID returns a sortable unique run id: UTC time to the millisecond, then
// random hex ("20250101T120000.000Z-9f86d081a2b3c4d5").
func NewRunID(t time.Time) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return t.UTC().Format("20060102T150405.000Z") + "-" + hex.EncodeToString(b[:])
}

// failureWriter keeps failures in the result and appends them to the failed
// file (opened on the first failure).
type failureWriter struct {
	res   *RunResult
	path  string
	f     *os.File
	bw    *bufio.Writer
	err   error
	wrote bool
}

func (fw *failureWriter) add(f RecordFailure) {
	if fw.path == "" || len(fw.res.Failures) < MaxFailuresInResult {
		fw.res.Failures = append(fw.res.Failures, f)
	}
	if fw.path == "" || fw.err != nil {
		return
	}
	if fw.f == nil {
		if err := os.MkdirAll(filepath.Dir(fw.path), 0o755); err != nil {
			fw.err = fmt.Errorf("writing failed records: %w", err)
			return
		}
		f, err := os.OpenFile(fw.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			fw.err = fmt.Errorf("writing failed records: %w", err)
			return
		}
		fw.f, fw.bw, fw.wrote = f, bufio.NewWriter(f), true
	}
	b, err := json.Marshal(f)
	if err != nil {
		b, _ = json.Marshal(RecordFailure{Key: f.Key, Stage: f.Stage, Category: f.Category, Message: f.Message, Attempts: f.Attempts, Position: f.Position})
	}
	b = append(b, '\n')
	if _, err := fw.bw.Write(b); err != nil {
		fw.err = fmt.Errorf("writing failed records to %s: %w", fw.path, err)
	}
}

func (fw *failureWriter) close() error {
	if fw.f != nil {
		if err := fw.bw.Flush(); err != nil && fw.err == nil {
			fw.err = fmt.Errorf("writing failed records to %s: %w", fw.path, err)
		}
		if err := fw.f.Close(); err != nil && fw.err == nil {
			fw.err = err
		}
	}
	return fw.err
}

// openSource opens the integration's source connection with secrets resolved.
func (p *Program) openSource(pl *Pipeline, secrets func(string) (string, error)) (connectors.Source, error) {
	s := pl.Integration.Source
	if s == nil {
		return nil, fmt.Errorf("integration %q has no source", pl.Name)
	}
	conn, err := p.openConnection(s.Connection, secrets)
	if err != nil {
		return nil, fmt.Errorf("integration %q source: %w", pl.Name, err)
	}
	cfg, err := resolve(s.Config, secrets)
	if err != nil {
		closeConn(conn)
		return nil, fmt.Errorf("integration %q source: %w", pl.Name, err)
	}
	src, err := conn.Source(cfg)
	if err != nil {
		closeConn(conn)
		return nil, fmt.Errorf("integration %q source: %w", pl.Name, err)
	}
	return ownSource(src, conn), nil
}

// OpenSource opens an integration's source with secrets resolved. The durable
// runtime opens connections through it too.
func (p *Program) OpenSource(integration string, secrets func(string) (string, error)) (connectors.Source, error) {
	pl, ok := p.Pipelines[integration]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownIntegration, integration)
	}
	return p.openSource(pl, secrets)
}

// OpenSink opens an integration's target with secrets resolved.
func (p *Program) OpenSink(integration string, secrets func(string) (string, error), opts connectors.SinkOptions) (connectors.Sink, error) {
	pl, ok := p.Pipelines[integration]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownIntegration, integration)
	}
	return p.openSink(pl, secrets, opts)
}

func (p *Program) openSink(pl *Pipeline, secrets func(string) (string, error), opts connectors.SinkOptions) (connectors.Sink, error) {
	t := pl.Integration.Target
	if t == nil {
		return nil, fmt.Errorf("integration %q has no target", pl.Name)
	}
	conn, err := p.openConnection(t.Connection, secrets)
	if err != nil {
		return nil, fmt.Errorf("integration %q target: %w", pl.Name, err)
	}
	cfg, err := resolve(t.Config, secrets)
	if err != nil {
		closeConn(conn)
		return nil, fmt.Errorf("integration %q target: %w", pl.Name, err)
	}
	sink, err := connectors.OpenSink(conn, cfg, opts)
	if err != nil {
		closeConn(conn)
		return nil, fmt.Errorf("integration %q target: %w", pl.Name, err)
	}
	return ownSink(sink, conn), nil
}

func (p *Program) openConnection(name string, secrets func(string) (string, error)) (connectors.Connection, error) {
	return OpenConnection(p.Config, name, secrets)
}

// OpenConnection opens connection name of cfg as a run does: secrets
// resolved, relative paths against the configuration's directory, file
// system access confined to cfg.Root and connections to cfg.Net's policy
// when set. The caller closes it when it implements io.Closer (a postgres pool).
func OpenConnection(cfg *lang.Config, name string, secrets func(string) (string, error)) (connectors.Connection, error) {
	c, ok := cfg.Connections[name]
	if !ok || c == nil {
		return nil, fmt.Errorf("connection %q is not declared", name)
	}
	ct, ok := connectors.Lookup(c.Type)
	if !ok {
		return nil, fmt.Errorf("connection %q: unknown connector type %q", name, c.Type)
	}
	v, err := resolve(c.Config, secrets)
	if err != nil {
		return nil, fmt.Errorf("connection %q: %w", name, err)
	}
	conn, err := ct.Open(cfg.Env(), v)
	if err != nil {
		return nil, fmt.Errorf("opening connection %q: %w", name, err)
	}
	return conn, nil
}

func resolve(v cty.Value, secrets func(string) (string, error)) (cty.Value, error) {
	if v.Type() == cty.NilType {
		return cty.EmptyObjectVal, nil
	}
	if secrets == nil {
		secrets = func(name string) (string, error) {
			return "", fmt.Errorf("no secret store is configured (secret %q)", name)
		}
	}
	return lang.ResolveSecrets(v, secrets)
}
