package apiserver

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferryhq/ferry/connectors"
	"github.com/ferryhq/ferry/engine"
	"github.com/ferryhq/ferry/lang"
	"github.com/ferryhq/ferry/runtime"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The run manager is the one way the server starts runs: sync events and
// schedules call StartRun, webhooks deliver (their deliveries join an open
// run, webhooks_batch.go).
//
// A started run is durable before StartRun returns: its request (tenant,
// integration, trigger, the revision it started on, its input) is stored,
// then it executes asynchronously through runtime.RunJob on the compiled
// program of that revision, at most Options.MaxConcurrentRuns at a time per
// server (the others wait, queued). When the run ended, its request is
// deleted. A request whose run did not end (the process died, or Close
// interrupted it) is resumed with the same run id by the next server that
// finds it: the runtime resumes a run by id, and the input is read again from
// the stream, in the same order.
//
// Several servers may share one NATS: a request carries a lease (owner, until)
// that its owner renews while the run is in flight; another server takes a
// request over only once its lease expired. Close releases the leases of the
// runs it interrupts, so a restarted server resumes them at once; after a
// crash they are taken over when the lease expires (Options.RunLease).
//
// Layout (version 1):
//
//	KV ferry_v1_run_requests  <tenant>.<run id>                          runRequest (until the run ended)
//	KV ferry_v1_idempotency   <tenant>.<b64url integration>.<sha256 key>  run id (a TTL per key, see claimIdempotencyKey)
//	stream FERRY_INPUTS_V1    ferry.v1.input.<tenant>.<run id>           the run's input, in chunks:
//	                          a JSON array of records, or positioned records (inputChunk)
const (
	BucketRunRequests = "ferry_v1_run_requests"
	BucketIdempotency = "ferry_v1_idempotency"
	InputStream       = "FERRY_INPUTS_V1"
	inputSubject      = "ferry.v1.input."

	// IdempotencyTTL is how long an Idempotency-Key returns the same run,
	// when Options.IdempotencyTTL is 0. (A webhook's delivery ids are kept
	// for its dedupe_window.)
	IdempotencyTTL = 24 * time.Hour
	// MaxIdempotencyTTL is the longest any idempotency key is kept: the age
	// limit of BucketIdempotency, so no key's own TTL outlives it. One fixed
	// limit, so servers with other settings sharing a NATS agree on the
	// bucket's configuration.
	MaxIdempotencyTTL = lang.MaxDedupeWindow
	// DefaultMaxConcurrentRuns is Options.MaxConcurrentRuns when it is 0.
	DefaultMaxConcurrentRuns = 4

	// DefaultRunLease is Options.RunLease when it is 0. A lease is renewed,
	// and every server scans for expired ones, every third of it.
	DefaultRunLease = 30 * time.Second
	// inputChunkBytes keeps each input message well under NATS's default
	// 1 MiB max payload.
	inputChunkBytes = 256 << 10
)

// Errors of StartRun (see startRunProblem for their HTTP statuses).
var (
	ErrUnknownIntegration  = errors.New("unknown integration")
	ErrIntegrationInactive = errors.New("integration is deactivated")
	ErrShuttingDown        = errors.New("the server is shutting down")
	ErrRunIDInUse          = errors.New("run id belongs to another integration")
	ErrInvalidInput        = errors.New("invalid input")
)

// idemMarkerTTL is how long the marker a key of BucketIdempotency leaves
// when it expires (or its claim is undone) stays. Nothing watches the
// bucket, and a marker holds its subject in the server's index as a key
// does, so the shortest JetStream allows; a claim on a marked key takes the
// slow path (Create reads the marker), see claimIdempotencyKey. (A
// variable for tests.)
var idemMarkerTTL = time.Second

// requestMarkerTTL is how long the marker of an ended run's request stays:
// long enough for every watcher to see it. (A variable for tests.)
var requestMarkerTTL = time.Minute

// errLeaseLost stops a run on a server that no longer holds its lease.
var errLeaseLost = errors.New("the run's lease was lost")

// TriggerRequest asks StartRun for a run.
type TriggerRequest struct {
	Tenant, Integration string
	// Trigger says what started the run: "api" (sync events), "webhook",
	// "schedule", ... (default "api").
	Trigger string
	// TriggeredBy is the id of the API key that asked for the run (never the
	// key); empty for triggers without a key (see runRequest.triggeredBy).
	TriggeredBy string
	// Input are records (JSON objects) read in place of the integration's
	// source; nil reads the source. A run with input does not use or move the
	// integration's incremental cursor.
	Input []json.RawMessage
	// IdempotencyKey: the same key for the same tenant and integration returns
	// the same run id, without starting another run, for IdempotencyTTL.
	IdempotencyKey string
	// IdempotencyTTL is how long IdempotencyKey is remembered after the run
	// it started (rounded up to whole seconds, at most MaxIdempotencyTTL);
	// 0: Options.IdempotencyTTL.
	IdempotencyTTL time.Duration
	// RunID is the run's id; a sortable unique id when empty. A RunID that
	// exists already returns that run (ErrRunIDInUse if it is another
	// integration's).
	RunID string
}

// runRequest is a started run until it ended (KV ferry_v1_run_requests).
type runRequest struct {
	RunID       string    `json:"runId"`
	Tenant      string    `json:"tenant"`
	Integration string    `json:"integration"`
	Trigger     string    `json:"trigger"`
	TriggeredBy string    `json:"triggeredBy,omitempty"` // see triggeredBy
	Revision    int       `json:"revision"`
	Queued      time.Time `json:"queued"`
	// HasInput: the run reads InputRecords records from the input stream's
	// messages InputSeqs instead of its source.
	HasInput     bool     `json:"hasInput,omitempty"`
	InputRecords int      `json:"inputRecords,omitempty"`
	InputSeqs    []uint64 `json:"inputSeqs,omitempty"`
	// Owner is the server executing the run, until LeaseUntil.
	Owner      string    `json:"owner,omitempty"`
	LeaseUntil time.Time `json:"leaseUntil,omitzero"`
	// Error is set when the run could not be started at all (final).
	Error string `json:"error,omitempty"`
	// Cancel asks the server executing the run to end it as cancelled
	// (CancelRun); the owner sees it at its next lease renewal, or at once
	// when the cancel reached the server executing it.
	Cancel bool `json:"cancel,omitempty"`
}

func requestKey(tenant, runID string) string { return tenant + "." + runID }

// triggeredBy is who started the run, for its record: the key id of the
// request that asked for it, or, for the triggers that have no key
// (webhooks, schedules), the trigger itself.
func (rr *runRequest) triggeredBy() string {
	if rr.TriggeredBy == "" && (rr.Trigger == "webhook" || rr.Trigger == "schedule") {
		return rr.Trigger
	}
	return rr.TriggeredBy
}

func idempotencyKey(tenant, integration, key string) string {
	sum := sha256.Sum256([]byte(key))
	return tenant + "." + base64.RawURLEncoding.EncodeToString([]byte(integration)) + "." + hex.EncodeToString(sum[:])
}

// nameRe is what the runtime accepts as an integration name or run id.
var nameRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// newRunID is sortable (UTC time to the millisecond) and unique (random).
func newRunID(t time.Time) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return t.UTC().Format("20060102T150405") + fmt.Sprintf("%03dZ-", t.UTC().Nanosecond()/1e6) + hex.EncodeToString(b[:])
}

type activeRun struct {
	done chan struct{} // closed when the run's execution in this process ended
	// cancel stops the execution (with runtime.ErrCancelled: ends it as
	// cancelled); nil until the execution started.
	cancel context.CancelCauseFunc
	// rr is the run's request as launched: its integration and place in
	// the queue (awaitTurn).
	rr runRequest
	// slotted is closed once the run holds its integration's slot here, or
	// needs none (parallel runs).
	slotted  chan struct{}
	slotOnce sync.Once
}

// slot marks the run as holding its integration's slot (awaitTurn).
func (ar *activeRun) slot() {
	if ar != nil {
		ar.slotOnce.Do(func() { close(ar.slotted) })
	}
}

// queuedBefore orders runs as they were queued: by Queued, then run id
// (sortable: a time, then random).
func queuedBefore(a, b *runRequest) bool {
	if !a.Queued.Equal(b.Queued) {
		return a.Queued.Before(b.Queued)
	}
	return a.RunID < b.RunID
}

type runManager struct {
	s      *Server
	reqs   jetstream.KeyValue
	idem   jetstream.KeyValue
	inputs jetstream.Stream
	node   string
	sem    chan struct{}
	lease  time.Duration // Options.RunLease
	// idemTTL is how long a sync event's Idempotency-Key is kept
	// (Options.IdempotencyTTL, defaulted).
	idemTTL time.Duration

	// reqStream is reqs's stream (tests inspect it).
	reqStream jetstream.Stream

	ctx    context.Context // cancelled when Close gives up waiting: runs stop, resumable
	cancel context.CancelFunc

	mu      sync.Mutex
	closed  bool
	closing chan struct{}
	active  map[string]*activeRun // requestKey → run executing here
	// intLocks queue the runs of one integration (tenant/integration).
	intLocks map[string]chan struct{}
	// ingest collects webhook deliveries per integration (tenant/integration)
	// into its open run (webhooks_batch.go).
	ingest map[string]*ingestQueue
	wg     sync.WaitGroup // executing runs
	scanWG sync.WaitGroup
}

func newRunManager(ctx context.Context, s *Server) (*runManager, error) {
	m := &runManager{s: s, node: randomBase62(12), active: map[string]*activeRun{}, intLocks: map[string]chan struct{}{}, closing: make(chan struct{})}
	n := s.opts.MaxConcurrentRuns
	if n <= 0 {
		n = DefaultMaxConcurrentRuns
	}
	m.sem = make(chan struct{}, n)
	if m.lease = s.opts.RunLease; m.lease <= 0 {
		m.lease = DefaultRunLease
	}
	var err error
	// A request lives while its run does: its lease is rewritten every third
	// of RunLease, waiting or running. The TTL bounds the requests of runs
	// that could not start (shown as failed runs: as long as run history is
	// kept) and those no server took up for that long.
	runRetention, _ := s.rt.Retention()
	if m.reqs, err = runtime.KeyValue(ctx, s.js, jetstream.KeyValueConfig{
		Bucket: BucketRunRequests, History: 1, Storage: jetstream.FileStorage, Replicas: s.opts.Replicas,
		Description: "ferry: started runs until they ended (resumed after a restart)",
		TTL:         max(runRetention, runtime.DefaultRunRetention),
		// An ended run's request is purged with a marker that expires
		// (finish): watchers see the purge, scans do not read it forever.
		LimitMarkerTTL: requestMarkerTTL,
	}); err != nil {
		return nil, fmt.Errorf("apiserver: creating bucket %s: %w", BucketRunRequests, err)
	}
	if m.reqStream, err = s.js.Stream(ctx, "KV_"+BucketRunRequests); err != nil {
		return nil, fmt.Errorf("apiserver: bucket %s: %w", BucketRunRequests, err)
	}
	if m.idemTTL = s.opts.IdempotencyTTL; m.idemTTL == 0 {
		m.idemTTL = IdempotencyTTL
	}
	if m.idemTTL < time.Second || m.idemTTL > MaxIdempotencyTTL {
		return nil, fmt.Errorf("apiserver: Options.IdempotencyTTL %s is out of range: use 1s to %gh (0: %gh)", m.idemTTL, MaxIdempotencyTTL.Hours(), IdempotencyTTL.Hours())
	}
	// Each key carries its own TTL (the Nats-TTL header: a sync event's
	// Options.IdempotencyTTL, a webhook's dedupe_window), which needs the
	// limit markers; the bucket's age limit only bounds them. A bucket of
	// an earlier version (24h age limit, no markers, keys without a TTL) is
	// updated in place: its keys then live up to MaxIdempotencyTTL.
	if m.idem, err = runtime.KeyValue(ctx, s.js, jetstream.KeyValueConfig{
		Bucket: BucketIdempotency, History: 1, Storage: jetstream.FileStorage, Replicas: s.opts.Replicas,
		TTL: MaxIdempotencyTTL, LimitMarkerTTL: idemMarkerTTL, Description: "ferry: Idempotency-Key → run id",
	}); err != nil {
		return nil, fmt.Errorf("apiserver: creating bucket %s: %w", BucketIdempotency, err)
	}
	if m.inputs, err = s.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        InputStream,
		Description: "ferry: input records of runs (sync events, webhooks) until the run ended",
		Subjects:    []string{inputSubject + ">"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Replicas:    s.opts.Replicas,
		// Runs read their input by sequence: a direct get returns the raw
		// message, not base64 in JSON (a tenth of a webhook's cost). On a
		// cluster any replica answers a direct get, and a follower may not
		// have the input stored a moment ago yet: there the leader answers
		// (see runtime.KeyValue).
		AllowDirect: s.opts.Replicas <= 1,
	}); err != nil {
		return nil, fmt.Errorf("apiserver: creating stream %s: %w", InputStream, err)
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	return m, nil
}

// start resumes the runs found unfinished, now and every third of the lease.
func (m *runManager) start() {
	m.scanWG.Add(1)
	go func() {
		defer m.scanWG.Done()
		t := time.NewTicker(m.lease / 3)
		defer t.Stop()
		for {
			m.scan()
			select {
			case <-m.closing:
				return
			case <-t.C:
			}
		}
	}()
}

// enter registers a run about to execute; false once Close started.
func (m *runManager) enter() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.wg.Add(1)
	return true
}

// StartRun starts a run of an integration of tenant's current configuration
// and returns its id (the correlation id) once the run is stored durably; the
// run executes asynchronously. It refuses, before storing anything, an
// integration the current revision does not declare (ErrUnknownIntegration),
// a deactivated one (ErrIntegrationInactive), a tenant without configuration
// (ErrNoConfig), invalid input (ErrInvalidInput) and, once Close started,
// everything (ErrShuttingDown).
//
// The run keeps the compiled program of the revision it started on; a new
// apply affects later runs only.
func (s *Server) StartRun(ctx context.Context, req TriggerRequest) (string, error) {
	m := s.runs
	if !m.enter() {
		return "", ErrShuttingDown
	}
	launched := false
	defer func() {
		if !launched {
			m.wg.Done()
		}
	}()
	if !tenantNameRe.MatchString(req.Tenant) {
		return "", fmt.Errorf("%w: invalid tenant %q", ErrUnknownIntegration, req.Tenant)
	}
	if req.Trigger == "" {
		req.Trigger = "api"
	}
	if !nameRe.MatchString(req.Integration) {
		return "", fmt.Errorf("%w %q", ErrUnknownIntegration, req.Integration)
	}
	if req.RunID != "" && !nameRe.MatchString(req.RunID) {
		return "", fmt.Errorf("%w: run id %q must be 1-128 letters, digits, '_' or '-'", ErrInvalidInput, req.RunID)
	}
	for i, rec := range req.Input {
		if t := strings.TrimLeft(string(rec), " \t\r\n"); !strings.HasPrefix(t, "{") || !json.Valid(rec) {
			return "", fmt.Errorf("%w: input[%d] is not a JSON object", ErrInvalidInput, i)
		}
	}
	prog, rev, err := s.CurrentProgram(ctx, req.Tenant)
	if err != nil {
		return "", err
	}
	if pl, ok := prog.Pipelines[req.Integration]; !ok || pl == nil {
		return "", fmt.Errorf("%w %q: revision %d does not declare it", ErrUnknownIntegration, req.Integration, rev)
	}
	active, err := s.IntegrationActive(ctx, req.Tenant, req.Integration)
	if err != nil {
		return "", err
	}
	if !active {
		return "", fmt.Errorf("%w: %q", ErrIntegrationInactive, req.Integration)
	}

	runID := req.RunID
	if runID != "" {
		if id, done, err := m.existing(ctx, req.Tenant, req.Integration, runID); done || err != nil {
			return id, err
		}
	} else {
		runID = newRunID(s.now())
	}
	var idemKey string
	if req.IdempotencyKey != "" {
		idemKey = idempotencyKey(req.Tenant, req.Integration, req.IdempotencyKey)
		if id, created, err := m.claimIdempotencyKey(ctx, req.Tenant, req.Integration, idemKey, runID, m.keyTTL(req.IdempotencyTTL)); err != nil || !created {
			return id, err // the run this key started
		}
	}
	undo := func() {
		bg := context.WithoutCancel(ctx)
		if idemKey != "" {
			m.unclaim(bg, idemKey)
		}
		if req.Input != nil {
			m.purgeInput(bg, req.Tenant, runID)
		}
	}
	rr := runRequest{RunID: runID, Tenant: req.Tenant, Integration: req.Integration, Trigger: req.Trigger, TriggeredBy: req.TriggeredBy,
		Revision: rev, Queued: s.now().UTC(), Owner: m.node, LeaseUntil: time.Now().Add(m.lease)}
	if req.Input != nil {
		rr.HasInput, rr.InputRecords = true, len(req.Input)
		if rr.InputSeqs, err = m.storeInput(ctx, req.Tenant, runID, req.Input, nil); err != nil {
			undo()
			return "", err
		}
	}
	b, _ := json.Marshal(rr)
	if _, err := m.reqs.Create(ctx, requestKey(req.Tenant, runID), b); err != nil {
		undo()
		if errors.Is(err, jetstream.ErrKeyExists) && req.RunID != "" {
			id, _, err := m.existing(ctx, req.Tenant, req.Integration, runID)
			return id, err
		}
		return "", fmt.Errorf("storing run %s: %w", runID, err)
	}
	launched = true
	m.launch(rr, prog, nil)
	return runID, nil
}

// claimIdempotencyKey stores key → runID, to expire ttl later (keyTTL),
// unless the key is stored already; it returns the run id the key stands
// for, and created when it is runID by this call. A key whose run was never
// stored (its StartRun died between the key and the request) is taken over.
//
// A key that expired or was unclaimed leaves a marker for idemMarkerTTL:
// Create reads it and writes over it. When the marker expires between the
// two, the write finds no message where it expected the marker: a conflict
// like a concurrent claim's, so the key is read again.
func (m *runManager) claimIdempotencyKey(ctx context.Context, tenant, integration, key, runID string, ttl time.Duration) (string, bool, error) {
	for range 3 {
		if _, err := m.idem.Create(ctx, key, []byte(runID), jetstream.KeyTTL(ttl)); err == nil {
			return runID, true, nil
		} else if !errors.Is(err, jetstream.ErrKeyExists) && !isWrongLastSeq(err) {
			return "", false, fmt.Errorf("storing the idempotency key: %w", err)
		}
		e, err := m.idem.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // expired meanwhile
		}
		if err != nil {
			return "", false, fmt.Errorf("reading the idempotency key: %w", err)
		}
		id := string(e.Value())
		// The request is stored right after the key; give a concurrent
		// StartRun a moment before declaring the key orphaned.
		for i := 0; ; i++ {
			if _, found, err := m.existing(ctx, tenant, integration, id); found || err != nil {
				if errors.Is(err, ErrRunIDInUse) {
					err = nil
				}
				return id, false, err
			}
			if i == 20 || time.Since(e.Created()) > time.Minute {
				break
			}
			select {
			case <-ctx.Done():
				return "", false, ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
		// Not KeyValue.Update: it writes without a TTL, and the key would
		// then stay for the bucket's age limit.
		if _, err := m.s.js.PublishMsg(ctx, &nats.Msg{Subject: idemSubject + key, Data: []byte(runID)},
			jetstream.WithExpectLastSequencePerSubject(e.Revision()), jetstream.WithMsgTTL(ttl)); err == nil {
			return runID, true, nil
		}
	}
	return "", false, fmt.Errorf("storing the idempotency key: too many concurrent triggers")
}

// keyTTL is the TTL of an idempotency key asked to be kept for d (0:
// Options.IdempotencyTTL): JetStream counts TTLs in whole seconds,
// truncating, so it is rounded up, and bounded by the bucket's age limit.
func (m *runManager) keyTTL(d time.Duration) time.Duration {
	if d <= 0 {
		d = m.idemTTL
	}
	if r := d % time.Second; r != 0 {
		d += time.Second - r
	}
	return min(d, MaxIdempotencyTTL)
}

// unclaim removes a claimed idempotency key whose run was not stored. A
// purge, not a delete: its marker expires (idemMarkerTTL) where a delete
// marker would stay for the bucket's age limit.
func (m *runManager) unclaim(ctx context.Context, key string) {
	_ = m.idem.Purge(ctx, key, jetstream.PurgeTTL(idemMarkerTTL))
}

// isWrongLastSeq is a compare-and-set conflict of a JetStream publish: the
// subject's last message is not the one expected. (Code 10071, or 10164 on
// a replicated stream, which jetstream.ErrKeyExists does not match.)
func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// existing looks for a run with a caller-chosen id: done is true when it
// exists (as a request or a run), err is ErrRunIDInUse when it is another
// integration's.
func (m *runManager) existing(ctx context.Context, tenant, integration, runID string) (string, bool, error) {
	var rr runRequest
	if _, found, err := getJSON(ctx, m.reqs, requestKey(tenant, runID), &rr); err != nil {
		return "", true, err
	} else if found {
		if rr.Integration != integration {
			return "", true, fmt.Errorf("%w: %s", ErrRunIDInUse, runID)
		}
		return runID, true, nil
	}
	run, err := m.s.rt.Runs().Get(ctx, tenant, runID)
	switch {
	case errors.Is(err, runtime.ErrNotFound):
		return "", false, nil
	case err != nil:
		return "", true, err
	case run.Integration != integration:
		return "", true, fmt.Errorf("%w: %s", ErrRunIDInUse, runID)
	}
	return runID, true, nil
}

// An input message is a JSON array of records (positioned input[i]) or,
// with the records' positions (webhook deliveries: which delivery each
// record came from), 'P' then per record its uvarint-prefixed position and
// JSON: the records are valid already, and re-scanning their JSON to
// encode and split it was a tenth of a webhook's cost.
type inputChunk struct {
	Positions []string
	Records   []json.RawMessage
}

// storeInput publishes the records in chunks of about inputChunkBytes and
// returns the messages' sequence numbers. positions, when not nil, are the
// records' positions (one each).
func (m *runManager) storeInput(ctx context.Context, tenant, runID string, recs []json.RawMessage, positions []string) ([]uint64, error) {
	var seqs []uint64
	subject := inputSubject + tenant + "." + runID
	done := 0 // records stored
	flush := func(chunk []json.RawMessage) error {
		var b []byte
		if positions != nil {
			b = encodeInputChunk(positions[done:done+len(chunk)], chunk)
		} else {
			b, _ = json.Marshal(chunk)
		}
		done += len(chunk)
		ack, err := m.s.js.Publish(ctx, subject, b)
		if err != nil {
			return fmt.Errorf("storing the input of run %s: %w", runID, err)
		}
		seqs = append(seqs, ack.Sequence)
		return nil
	}
	var chunk []json.RawMessage
	size := 0
	for _, r := range recs {
		if len(chunk) > 0 && size+len(r) > inputChunkBytes {
			if err := flush(chunk); err != nil {
				return nil, err
			}
			chunk, size = nil, 0
		}
		chunk = append(chunk, r)
		size += len(r) + 1
	}
	if len(chunk) > 0 {
		if err := flush(chunk); err != nil {
			return nil, err
		}
	}
	return seqs, nil
}

// loadInput reads a run's input back, in order.
func (m *runManager) loadInput(ctx context.Context, rr runRequest) ([]connectors.Record, error) {
	out := make([]connectors.Record, 0, rr.InputRecords)
	for _, seq := range rr.InputSeqs {
		msg, err := m.inputs.GetMsg(ctx, seq)
		if err != nil {
			return nil, fmt.Errorf("reading the input of run %s (message %d): %w", rr.RunID, seq, err)
		}
		chunk, err := decodeInputChunk(msg.Data)
		if err != nil {
			return nil, fmt.Errorf("decoding the input of run %s (message %d): %w", rr.RunID, seq, err)
		}
		for i, r := range chunk.Records {
			pos := "input[" + strconv.Itoa(len(out)) + "]"
			if chunk.Positions != nil {
				pos = chunk.Positions[i]
			}
			out = append(out, connectors.Record{Raw: r, Position: pos})
		}
	}
	return out, nil
}

func encodeInputChunk(positions []string, recs []json.RawMessage) []byte {
	n := 1
	for i, r := range recs {
		n += len(positions[i]) + len(r) + 2*binary.MaxVarintLen32
	}
	b := make([]byte, 1, n)
	b[0] = 'P'
	for i, r := range recs {
		b = binary.AppendUvarint(b, uint64(len(positions[i])))
		b = append(b, positions[i]...)
		b = binary.AppendUvarint(b, uint64(len(r)))
		b = append(b, r...)
	}
	return b
}

// decodeInputChunk reads an input message; positions are nil for a JSON
// array. The records share data's memory.
func decodeInputChunk(data []byte) (inputChunk, error) {
	var c inputChunk
	if len(data) == 0 || data[0] != 'P' {
		err := json.Unmarshal(data, &c.Records)
		return c, err
	}
	b := data[1:]
	next := func() ([]byte, error) {
		n, w := binary.Uvarint(b)
		if w <= 0 || uint64(len(b)-w) < n {
			return nil, fmt.Errorf("malformed input message at byte %d", len(data)-len(b))
		}
		v := b[w : w+int(n)]
		b = b[w+int(n):]
		return v, nil
	}
	for len(b) > 0 {
		p, err := next()
		if err != nil {
			return c, err
		}
		r, err := next()
		if err != nil {
			return c, err
		}
		c.Positions = append(c.Positions, string(p))
		c.Records = append(c.Records, r)
	}
	return c, nil
}

func (m *runManager) purgeInput(ctx context.Context, tenant, runID string) {
	if err := m.inputs.Purge(ctx, jetstream.WithPurgeSubject(inputSubject+tenant+"."+runID)); err != nil {
		m.s.log.Warn("removing the input of a run", "tenant", tenant, "run", runID, "error", err)
	}
}

// launch executes a registered (enter) run asynchronously. prog is the
// compiled program of rr.Revision, nil to compile it; open is set for a run
// that takes webhook deliveries until it is sealed (webhooks_batch.go).
func (m *runManager) launch(rr runRequest, prog *engine.Program, open *openRun) {
	key := requestKey(rr.Tenant, rr.RunID)
	ar := &activeRun{done: make(chan struct{}), rr: rr, slotted: make(chan struct{})}
	m.mu.Lock()
	m.active[key] = ar
	m.mu.Unlock()
	go func() {
		defer m.wg.Done()
		defer func() {
			m.mu.Lock()
			delete(m.active, key)
			m.mu.Unlock()
			close(ar.done)
		}()
		m.execute(rr, prog, open)
	}()
}

// integrationLock is the one-slot queue of an integration's runs here.
func (m *runManager) integrationLock(tenant, integration string) chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := tenant + "/" + integration
	lk := m.intLocks[k]
	if lk == nil {
		lk = make(chan struct{}, 1)
		m.intLocks[k] = lk
	}
	return lk
}

// awaitTurn waits until every run of rr's integration executing here that
// was queued before it holds the integration's slot or ended (false: ctx
// ended first), so runs take the slot in queue order whatever order they
// were launched in. After a crash this matters: the earliest run is the
// one that held the integration's run lock in the dead process; a later
// run in the slot first would wait out that lock's TTL (runtime
// Options.LockTTL) while the earlier run waited behind it.
func (m *runManager) awaitTurn(ctx context.Context, rr *runRequest) bool {
	for {
		var before *activeRun
		m.mu.Lock()
		for _, ar := range m.active {
			if ar.rr.Tenant != rr.Tenant || ar.rr.Integration != rr.Integration || !queuedBefore(&ar.rr, rr) {
				continue
			}
			select {
			case <-ar.slotted:
			case <-ar.done:
			default:
				before = ar
			}
			if before != nil {
				break
			}
		}
		m.mu.Unlock()
		if before == nil {
			return true
		}
		select {
		case <-before.slotted:
		case <-before.done:
		case <-ctx.Done():
			return false
		}
	}
}

// doneChan is closed when the run's execution in this process ended; nil when
// it does not execute here.
func (m *runManager) doneChan(tenant, runID string) <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ar := m.active[requestKey(tenant, runID)]; ar != nil {
		return ar.done
	}
	return nil
}

func (m *runManager) execute(rr runRequest, prog *engine.Program, open *openRun) {
	log := m.s.log.With("tenant", rr.Tenant, "integration", rr.Integration, "run", rr.RunID)
	key := requestKey(rr.Tenant, rr.RunID)
	runCtx, loseLease := context.WithCancelCause(m.ctx)
	defer loseLease(nil)
	m.mu.Lock()
	ar := m.active[key]
	if ar != nil {
		ar.cancel = loseLease
	}
	m.mu.Unlock()
	if rr.Cancel {
		loseLease(runtime.ErrCancelled) // cancelled before it ran
	}
	stopLease := m.keepLease(key, loseLease)
	defer stopLease()

	// An open run takes deliveries until it is sealed, which must happen
	// before it reads its input, is failed, or is released to another
	// server: each of them would miss what joined later.
	seal := func() {
		if open != nil {
			rr, open = open.seal(), nil
		}
	}
	interrupted := func() {
		seal()
		stopLease()
		m.release(key)
	}
	// stopped handles a run stopped before it reached the runtime: cancelled
	// (it ends as cancelled), its lease lost (another server has it), or
	// the server shutting down (released, resumed later).
	stopped := func() {
		switch cause := context.Cause(runCtx); {
		case errors.Is(cause, runtime.ErrCancelled):
			seal()
			stopLease()
			res, err := m.s.rt.EndCancelledRun(context.Background(), *rr.asRun())
			if err != nil {
				log.Error("recording the cancelled run; it is retried", "error", err)
				m.release(key)
				return
			}
			log.Info("run cancelled before it started")
			m.emitEnded(rr, res)
			m.finish(context.Background(), rr)
		case errors.Is(cause, errLeaseLost):
			seal()
			log.Warn("run stopped here; another server resumes it", "error", cause)
		default:
			interrupted()
		}
	}
	var err error
	if prog == nil {
		if prog, err = m.programAt(m.ctx, rr.Tenant, rr.Revision); err != nil {
			if m.ctx.Err() != nil {
				interrupted()
				return
			}
			seal()
			m.fail(rr, fmt.Errorf("compiling revision %d: %w", rr.Revision, err))
			return
		}
	}
	revision := strconv.Itoa(rr.Revision)
	job, secrets, err := m.s.programJob(rr.Tenant, prog, rr.Integration, revision) // errors scrubbed of secret values
	if err != nil {
		seal()
		m.fail(rr, err)
		return
	}
	if rr.HasInput {
		// The input replaces the source; the source's cursor is neither used
		// nor moved.
		job.CursorField = ""
		job.OpenSource = func(ctx context.Context) (connectors.Source, error) {
			recs, err := m.loadInput(ctx, rr) // rr as sealed: called after seal

			if err != nil {
				return nil, err
			}
			return &engine.MemorySource{Records: recs}, nil
		}
	}

	// Runs of one integration run one after another (unless it allows
	// parallel runs): queue here, in order, rather than in a slot of the
	// semaphore waiting for the runtime's integration lock.
	if !job.AllowParallelRuns {
		if !m.awaitTurn(runCtx, &rr) {
			stopped()
			return
		}
		lk := m.integrationLock(rr.Tenant, rr.Integration)
		select {
		case lk <- struct{}{}:
		case <-runCtx.Done():
			stopped()
			return
		}
		defer func() { <-lk }()
	}
	ar.slot()
	select {
	case m.sem <- struct{}{}:
	case <-runCtx.Done():
		stopped()
		return
	}
	defer func() { <-m.sem }()

	seal()
	log.Info("run starting", "trigger", rr.Trigger, "revision", rr.Revision)
	m.emit(rr, EventRunStarted, map[string]any{"runId": rr.RunID, "trigger": rr.Trigger, "triggeredBy": rr.triggeredBy(), "revision": rr.Revision})
	res, err := m.s.rt.RunJob(runCtx, job, runtime.RunOptions{Trigger: rr.Trigger, TriggeredBy: rr.triggeredBy(), Secrets: secrets, Revision: revision, RunID: rr.RunID})
	stopLease()
	switch {
	case err != nil && errors.Is(context.Cause(runCtx), errLeaseLost):
		// Not released: the lease is (or may be) another server's.
		log.Warn("run stopped here; another server resumes it", "error", context.Cause(runCtx))
	case err == nil:
		log.Info("run ended", "status", res.Status, "total", res.Counts.Total, "success", res.Counts.Success,
			"failed", res.Counts.Failed, "skipped", res.Counts.Skipped)
		m.emitEnded(rr, res)
		m.finish(context.Background(), rr)
	case m.ctx.Err() != nil:
		log.Warn("run interrupted by shutdown; it resumes when a server starts", "error", err)
		m.release(key)
	case errors.Is(err, runtime.ErrRunMismatch), errors.Is(err, runtime.ErrInvalidName):
		m.fail(rr, err)
	default:
		// Infrastructure: the request stays; a scan takes it up again.
		log.Error("run stopped; it is retried", "error", err)
		m.release(key)
	}
}

// emit sends a run event to the tenant's subscriptions. The event id is derived
// from the run, so a resumed run does not announce its start twice; a failure
// to record it is logged, never fatal to the run.
func (m *runManager) emit(rr runRequest, typ string, data any) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := m.s.Emit(ctx, Event{Type: typ, Tenant: rr.Tenant, Integration: rr.Integration, Subject: "runs/" + rr.RunID, Data: data})
	if err != nil {
		m.s.log.Warn("recording a run event", "type", typ, "run", rr.RunID, "error", err)
	}
}

// emitEnded announces a finished run: run.failed when it failed, else
// run.completed; and dlq.added when records of it went to the DLQ.
func (m *runManager) emitEnded(rr runRequest, res *engine.RunResult) {
	data := map[string]any{"runId": rr.RunID, "trigger": rr.Trigger, "triggeredBy": rr.triggeredBy(), "revision": rr.Revision, "status": res.Status,
		"counts": res.Counts, "started": res.Started, "ended": res.Ended, "error": res.Error}
	typ := EventRunCompleted
	if res.Status == engine.RunFailed {
		typ = EventRunFailed
	}
	m.emit(rr, typ, data)
	if res.Counts.Failed > 0 {
		m.emit(rr, EventDLQAdded, map[string]any{"runId": rr.RunID, "entries": res.Counts.Failed,
			"links": map[string]string{"dlq": "/v1/dlq?run=" + rr.RunID}})
	}
}

// programAt is the compiled program of a tenant's revision n.
func (m *runManager) programAt(ctx context.Context, tenant string, n int) (*engine.Program, error) {
	if prog, cur, err := m.s.CurrentProgram(ctx, tenant); err == nil && cur == n {
		return prog, nil
	}
	rev, found, err := m.s.revision(ctx, tenant, n)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("revision %d of tenant %s not found", n, tenant)
	}
	comp, err := m.s.compile(tenant, rev.Files)
	if err != nil {
		return nil, err
	}
	return comp.prog, nil
}

// finish removes the request and the input of an ended run.
func (m *runManager) finish(ctx context.Context, rr runRequest) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if rr.HasInput {
		m.purgeInput(ctx, rr.Tenant, rr.RunID)
	}
	// A KV delete would leave a marker per run, read again by every scan
	// and run list until the bucket's TTL; removing the message from the
	// stream without a marker makes a key lister that counted it wait for
	// it forever (nats.go's watcher waits for as many messages as were
	// pending when it started). A purge marker that expires does neither.
	if err := m.reqs.Purge(ctx, requestKey(rr.Tenant, rr.RunID), jetstream.PurgeTTL(requestMarkerTTL)); err != nil {
		m.s.log.Warn("removing the request of an ended run", "run", rr.RunID, "error", err)
	}
}

// fail records that a run could not start at all; it stays visible as failed.
func (m *runManager) fail(rr runRequest, cause error) {
	m.s.log.Error("run could not start", "tenant", rr.Tenant, "integration", rr.Integration, "run", rr.RunID, "error", cause)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = m.update(ctx, requestKey(rr.Tenant, rr.RunID), func(r *runRequest) bool {
		r.Error, r.Owner, r.LeaseUntil = cause.Error(), "", time.Time{}
		return true
	})
	if rr.HasInput {
		m.purgeInput(ctx, rr.Tenant, rr.RunID)
	}
}

// release gives up this server's lease, so the run is resumed at once by the
// next scan of any server.
func (m *runManager) release(key string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = m.update(ctx, key, func(r *runRequest) bool {
		if r.Owner != m.node {
			return false
		}
		r.Owner, r.LeaseUntil = "", time.Time{}
		return true
	})
}

// keepLease renews the lease of a run executing here until stop is called.
//
// A run must execute on one server at a time, so the run stops here (lost
// is called with errLeaseLost) once another server owns the request, or
// when renewing failed for two thirds of the lease: by then another server
// may find it expired and take it over.
func (m *runManager) keepLease(key string, lost context.CancelCauseFunc) (stop func()) {
	quit := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// The lease was taken (StartRun, takeOver) a moment before this.
		renewed := time.Now()
		t := time.NewTicker(m.lease / 3)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), min(5*time.Second, m.lease/3))
				owner, at, cancelled := m.node, time.Now(), false
				err := m.update(ctx, key, func(r *runRequest) bool {
					if owner = r.Owner; owner != m.node {
						return false
					}
					cancelled = r.Cancel
					r.LeaseUntil = at.Add(m.lease)
					return true
				})
				cancel()
				switch {
				case err == nil && owner == m.node && cancelled:
					lost(runtime.ErrCancelled) // CancelRun reached another server
					// keep renewing: the run ends as cancelled under this lease
				case err == nil && owner != m.node:
					lost(fmt.Errorf("%w: server %q took %s over", errLeaseLost, owner, key))
					return
				case err == nil:
					renewed = at
				case time.Since(renewed) > m.lease*2/3:
					lost(fmt.Errorf("%w: not renewed for %s (%v)", errLeaseLost, time.Since(renewed).Round(time.Millisecond), err))
					return
				default:
					m.s.log.Warn("renewing a run's lease", "key", key, "error", err)
				}
			}
		}
	}()
	return func() { once.Do(func() { close(quit); wg.Wait() }) }
}

// update changes a stored request with compare-and-set; fn returns false to
// leave it unchanged. A request that is gone is not an error.
func (m *runManager) update(ctx context.Context, key string, fn func(*runRequest) bool) error {
	for range 20 {
		var rr runRequest
		rev, found, err := getJSON(ctx, m.reqs, key, &rr)
		if err != nil || !found {
			return err
		}
		if !fn(&rr) {
			return nil
		}
		b, _ := json.Marshal(rr)
		if _, err := m.reqs.Update(ctx, key, b, rev); err != nil {
			if isConflict(err) || strings.Contains(err.Error(), "wrong last sequence") {
				continue
			}
			return err
		}
		return nil
	}
	return fmt.Errorf("updating %s: too many concurrent updates", key)
}

// scan takes up the requests whose run did not end and whose lease expired:
// runs of a server that died or shut down.
func (m *runManager) scan() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A listing whose watcher landed on a NATS node that just stopped waits
	// until its context ends: give up soon and list again at the next scan,
	// so a dead server's runs are not held up for long.
	lctx, lcancel := context.WithTimeout(ctx, max(m.lease, 5*time.Second))
	keys, err := keysOf(lctx, m.reqs, ">")
	lcancel()
	if err != nil {
		if !errors.Is(err, jetstream.ErrNoKeysFound) {
			m.s.log.Warn("scanning for runs to resume", "error", err)
		}
		return
	}
	// Resumed in queue order, so an integration's runs take its slot here in
	// that order (awaitTurn); and not past an earlier run of the same
	// integration that another server leases: if that server died, the
	// earlier run held the integration's run lock, and a later one taken
	// up first would wait out that lock (runtime Options.LockTTL). Once the
	// lease expired, the earlier run is resumed first.
	type request struct {
		key string
		rr  runRequest
		rev uint64
	}
	reqs := make([]request, 0, len(keys))
	for _, key := range keys {
		var rr runRequest
		rev, found, err := getJSON(ctx, m.reqs, key, &rr)
		if err != nil || !found || rr.Error != "" {
			continue
		}
		reqs = append(reqs, request{key, rr, rev})
	}
	sort.Slice(reqs, func(i, j int) bool { return queuedBefore(&reqs[i].rr, &reqs[j].rr) })
	leasedElsewhere := map[string]bool{} // tenant/integration
	for _, r := range reqs {
		select {
		case <-m.closing:
			return
		default:
		}
		integration := r.rr.Tenant + "/" + r.rr.Integration
		m.mu.Lock()
		_, here := m.active[r.key]
		m.mu.Unlock()
		switch {
		case here:
		case leasedElsewhere[integration]:
		case r.rr.Owner != "" && time.Now().Before(r.rr.LeaseUntil):
			leasedElsewhere[integration] = true // executing on a live server
		case !m.takeOver(ctx, r.key, r.rr, r.rev):
			leasedElsewhere[integration] = true // another server was quicker
		}
	}
}

// takeOver resumes the request rr (revision rev) of a run whose lease
// expired; false when another server took it first.
func (m *runManager) takeOver(ctx context.Context, key string, rr runRequest, rev uint64) bool {
	if run, err := m.s.rt.Runs().Get(ctx, rr.Tenant, rr.RunID); err == nil && run.Finished() {
		m.finish(ctx, rr) // ended; its process died before removing the request
		return true
	}
	if !m.enter() {
		return true
	}
	rr.Owner, rr.LeaseUntil = m.node, time.Now().Add(m.lease)
	b, _ := json.Marshal(rr)
	if _, err := m.reqs.Update(ctx, key, b, rev); err != nil {
		m.wg.Done() // another server was quicker (or the request changed: the next scan sees it)
		return false
	}
	m.s.log.Info("resuming run", "tenant", rr.Tenant, "integration", rr.Integration, "run", rr.RunID, "revision", rr.Revision)
	m.launch(rr, nil, nil)
	return true
}

// Close stops starting runs (StartRun returns ErrShuttingDown), waits for the
// runs in flight until ctx is done, then cancels those still running: they
// stay resumable and the next server on the same data (or, on a cluster, any
// other server) resumes them. Call it before closing the runtime.
func (s *Server) Close(ctx context.Context) error {
	m := s.runs
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	close(m.closing)
	inFlight := len(m.active)
	m.mu.Unlock()
	m.scanWG.Wait()

	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	if inFlight > 0 {
		s.log.Info("waiting for runs in flight", "runs", inFlight)
	}
	// The event dispatcher stops last, so the events of runs ending now are
	// still recorded (delivery resumes on any node).
	defer s.stopEvents()
	select {
	case <-done:
		m.cancel()
		return nil
	case <-ctx.Done():
	}
	m.mu.Lock()
	left := len(m.active)
	m.mu.Unlock()
	m.cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		return fmt.Errorf("apiserver: %d runs did not stop within 30s of being cancelled", left)
	}
	s.log.Warn("runs interrupted at shutdown; they resume when a server starts", "runs", left)
	return nil
}

// runState is a run as the API shows it: the runtime's run, or the stored
// request of a run that has not started yet (queued) or could not start.
func (s *Server) runState(ctx context.Context, tenant, runID string) (*runtime.Run, error) {
	if !nameRe.MatchString(runID) {
		return nil, runtime.ErrNotFound
	}
	run, err := s.rt.Runs().Get(ctx, tenant, runID)
	if err == nil || !errors.Is(err, runtime.ErrNotFound) {
		return run, err
	}
	var rr runRequest
	_, found, gerr := getJSON(ctx, s.runs.reqs, requestKey(tenant, runID), &rr)
	if gerr != nil {
		return nil, gerr
	}
	if !found {
		// The run is created before its request is removed: it may have
		// started and ended between the two reads (a small run does).
		return s.rt.Runs().Get(ctx, tenant, runID)
	}
	return rr.asRun(), nil
}

func (rr *runRequest) asRun() *runtime.Run {
	run := &runtime.Run{ID: rr.RunID, Tenant: rr.Tenant, Integration: rr.Integration, Trigger: rr.Trigger, TriggeredBy: rr.triggeredBy(),
		Revision: strconv.Itoa(rr.Revision), Status: engine.RunQueued, Queued: rr.Queued}
	if rr.Error != "" {
		run.Status, run.Error, run.Ended = engine.RunFailed, rr.Error, rr.Queued
	}
	return run
}

// pendingRuns are the tenant's stored requests whose run the runtime does
// not know yet (queued, or could not start).
func (s *Server) pendingRuns(ctx context.Context, tenant string, known func(id string) bool) ([]*runtime.Run, error) {
	keys, err := keysOf(ctx, s.runs.reqs, tenant+".*")
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, err
	}
	var out []*runtime.Run
	for _, k := range keys {
		id := strings.TrimPrefix(k, tenant+".")
		if known(id) {
			continue
		}
		var rr runRequest
		if _, found, err := getJSON(ctx, s.runs.reqs, k, &rr); err != nil {
			return nil, err
		} else if found {
			if _, err := s.rt.Runs().Get(ctx, tenant, id); err == nil {
				continue // started since the list was read
			}
			out = append(out, rr.asRun())
		}
	}
	return out, nil
}

// waitRun waits until the run ended, d passed, ctx is done or the server
// shuts down, and returns its state then.
func (s *Server) waitRun(ctx context.Context, tenant, runID string, d time.Duration) (*runtime.Run, error) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		run, err := s.runState(ctx, tenant, runID)
		if err != nil || run.Finished() {
			return run, err
		}
		done := s.runs.doneChan(tenant, runID)
		select {
		case <-done: // nil when executing elsewhere: the ticker polls
		case <-tick.C:
		case <-deadline.C:
			return s.runState(ctx, tenant, runID)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.runs.closing:
			return s.runState(ctx, tenant, runID)
		}
	}
}
