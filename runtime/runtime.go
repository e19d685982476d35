package runtime

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ferryhq/ferry/engine"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Sync policies of the embedded server's file store.
const (
	// SyncDefault is nats-server's default: data is written to the OS at once and
	// fsynced periodically (every 2 minutes). A process crash (kill -9) loses
	// nothing; a power loss may lose the last interval.
	SyncDefault = "default"
	// SyncAlways fsyncs every write before it is acknowledged. Survives power loss;
	// slower.
	SyncAlways = "always"
)

// TLSOptions are the client TLS files for an external NATS.
type TLSOptions struct {
	CAFile   string // PEM file with the CAs to trust ("" = system roots)
	CertFile string // client certificate (mutual TLS), with KeyFile
	KeyFile  string
}

// Options configure Open.
type Options struct {
	// DataDir holds the embedded server's file store (DataDir/jetstream). Required
	// unless NATSURL is set.
	DataDir string
	// NATSURL connects to an external NATS (cluster) instead of starting an
	// embedded server. The sync policy is then the server's business.
	NATSURL   string
	CredsFile string
	TLS       *TLSOptions
	// SyncPolicy is SyncDefault ("" too) or SyncAlways.
	SyncPolicy string
	// MaxMemory and MaxStore limit the embedded JetStream (bytes). Defaults: 64 MiB
	// memory, 10 GiB store.
	MaxMemory int64
	MaxStore  int64
	// Replicas of streams and buckets on an external cluster (default 1).
	Replicas int
	// ConnectionConcurrency limits concurrent sink calls per connection (default 16).
	ConnectionConcurrency int
	// SinkTimeout bounds one call of a target (default 5m; a target's own
	// timeout, Job.SinkTimeout, takes precedence), counted from when
	// the call waits for its connection slot. At the limit the call's context
	// is cancelled and its records fail transiently (they are retried); a
	// target that ignores the cancellation is abandoned a grace period later
	// (min(SinkTimeout, 5s)) and keeps its slot until it returns.
	SinkTimeout time.Duration
	// LockTTL is how long a run lock outlives its last heartbeat (default 30s), so
	// a crashed run does not block its integration forever.
	LockTTL time.Duration
	// RunRetention is how long a run's record and its settlements (per-record
	// outcomes: counts, errors) are kept after their last write (default
	// DefaultRunRetention, at least MinRetention). A run in flight is written
	// at least every second, and its settlements are rewritten before they
	// could expire under it, so only ended (or abandoned) runs expire.
	RunRetention time.Duration
	// DLQRetention is how long a DLQ entry is kept after its last change (its
	// failure, a replay, a discard). 0 (the default) keeps entries, pending or
	// not, until they are deleted: they are records nothing else holds.
	DLQRetention time.Duration
	// KeepRetention: a zero RunRetention or DLQRetention leaves the retention
	// of a bucket that exists as it is (a new one gets the default) instead
	// of setting it to the default. For tools and ferry run, which open a
	// store a server may own and must not undo what it was configured with.
	KeepRetention bool
	// Logger receives the runtime's logs (default: discard).
	Logger *slog.Logger
	// Now is the clock (tests). Default time.Now.
	Now func() time.Time
}

// Runtime is an open connection to JetStream with ferry's streams and buckets.
type Runtime struct {
	unlockDataDir func() // releases the embedded store's directory lock
	opts          Options
	log           *slog.Logger
	ns            *server.Server // nil with an external NATS
	nc            *nats.Conn
	js            jetstream.JetStream

	work     jetstream.Stream
	runsKV   jetstream.KeyValue
	settleKV jetstream.KeyValue
	dlqKV    jetstream.KeyValue
	cursorKV jetstream.KeyValue
	hashKV   jetstream.KeyValue
	lockKV   jetstream.KeyValue

	// runRetention and dlqRetention are the buckets' TTLs in effect (0: none).
	runRetention, dlqRetention time.Duration

	metrics *metrics

	semMu sync.Mutex
	sems  map[string]chan struct{}

	// closing ends when Close starts: runs in flight stop (resumable), and
	// Close waits for them (runs) before it drains the connection.
	closing  context.Context
	stopRuns context.CancelFunc
	runMu    sync.Mutex
	closed   bool
	runs     sync.WaitGroup

	closeOnce sync.Once
}

// ErrClosed is returned by RunJob when the runtime is (or gets) closed; a run
// stopped by Close resumes when it is run again with the same run id.
var ErrClosed = errors.New("runtime closed")

// enterRun registers a run: its context ends when Close starts, and Close
// waits for it to return before draining the connection.
func (rt *Runtime) enterRun(ctx context.Context) (context.Context, func(), error) {
	rt.runMu.Lock()
	defer rt.runMu.Unlock()
	if rt.closed {
		return nil, nil, fmt.Errorf("runtime: %w", ErrClosed)
	}
	rt.runs.Add(1)
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(rt.closing, func() { cancel(ErrClosed) })
	return ctx, func() { stop(); cancel(nil); rt.runs.Done() }, nil
}

// Open starts the embedded server (or connects to NATSURL) and creates the
// streams and buckets if they do not exist (idempotent).
func Open(ctx context.Context, opts Options) (*Runtime, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxMemory == 0 {
		opts.MaxMemory = 64 << 20
	}
	if opts.MaxStore == 0 {
		opts.MaxStore = 10 << 30
	}
	if opts.Replicas == 0 {
		opts.Replicas = 1
	}
	if opts.ConnectionConcurrency <= 0 {
		opts.ConnectionConcurrency = 16
	}
	if opts.LockTTL <= 0 {
		opts.LockTTL = 30 * time.Second
	}
	if opts.SinkTimeout <= 0 {
		opts.SinkTimeout = DefaultSinkTimeout
	}
	keepRuns := opts.KeepRetention && opts.RunRetention == 0
	keepDLQ := opts.KeepRetention && opts.DLQRetention == 0
	if opts.RunRetention == 0 {
		opts.RunRetention = DefaultRunRetention
	}
	if err := checkRetention("run retention", opts.RunRetention); err != nil {
		return nil, err
	}
	if opts.DLQRetention != 0 {
		if err := checkRetention("DLQ retention", opts.DLQRetention); err != nil {
			return nil, err
		}
	}
	switch opts.SyncPolicy {
	case "", SyncDefault, SyncAlways:
	default:
		return nil, fmt.Errorf("runtime: sync policy %q: want %q or %q", opts.SyncPolicy, SyncDefault, SyncAlways)
	}
	rt := &Runtime{opts: opts, log: opts.Logger, sems: map[string]chan struct{}{}, metrics: newMetrics()}
	rt.closing, rt.stopRuns = context.WithCancel(context.Background())
	var err error
	if opts.NATSURL != "" {
		rt.nc, err = connectExternal(opts)
	} else {
		// Two processes on one file store crash the embedded server: the
		// second is refused up front instead.
		if rt.unlockDataDir, err = lockDataDir(opts.DataDir); err != nil {
			if errors.Is(err, ErrDataDirBusy) {
				return nil, fmt.Errorf("runtime: data directory %s: %w", opts.DataDir, err)
			}
			return nil, fmt.Errorf("runtime: lock data directory %s: %w", opts.DataDir, err)
		}
		rt.ns, rt.nc, err = startEmbedded(opts)
		if err != nil {
			rt.unlockDataDir()
		}
	}
	if err != nil {
		return nil, err
	}
	rt.js, err = jetstream.New(rt.nc, jetstream.WithPublishAsyncMaxPending(1024))
	if err != nil {
		rt.Close()
		return nil, fmt.Errorf("runtime: jetstream: %w", err)
	}
	if err := rt.ensureLayout(ctx, keepRuns, keepDLQ); err != nil {
		rt.Close()
		return nil, err
	}
	return rt, nil
}

// Retention bounds.
const (
	// DefaultRunRetention is Options.RunRetention's default.
	DefaultRunRetention = 7 * 24 * time.Hour
	// MinRetention is the shortest RunRetention and DLQRetention: a run in
	// flight rewrites its record every second, which must be well within the
	// retention. (It is a technical floor; a retention is days.)
	MinRetention = 2 * time.Second
)

func checkRetention(what string, d time.Duration) error {
	if d < MinRetention {
		return fmt.Errorf("runtime: %s %s: must be at least %s (e.g. 168h for a week)", what, d, MinRetention)
	}
	return nil
}

// settleMargin is how much longer than run records settlements are kept:
// a record is rewritten when its run changes, its settlements only once
// they are older than half the margin (keepSettlements), so they outlive
// the record they count for.
func settleMargin(runRetention time.Duration) time.Duration { return runRetention / 4 }

// DefaultSinkTimeout is Options.SinkTimeout's default (engine's).
const DefaultSinkTimeout = engine.DefaultSinkTimeout

// ErrDataDirBusy means another process has the embedded store's data directory open.
var ErrDataDirBusy = errors.New("in use by another ferry process")

func startEmbedded(opts Options) (*server.Server, *nats.Conn, error) {
	if opts.DataDir == "" {
		return nil, nil, errors.New("runtime: DataDir is required for the embedded NATS server (or set NATSURL)")
	}
	storeDir := filepath.Join(opts.DataDir, "jetstream")
	if err := os.MkdirAll(storeDir, 0o750); err != nil {
		return nil, nil, fmt.Errorf("runtime: data directory: %w", err)
	}
	sopts := &server.Options{
		ServerName:         "ferry-embedded",
		DontListen:         true,
		JetStream:          true,
		StoreDir:           storeDir,
		JetStreamMaxMemory: opts.MaxMemory,
		JetStreamMaxStore:  opts.MaxStore,
		SyncAlways:         opts.SyncPolicy == SyncAlways,
		MaxPayload:         8 << 20,
		NoSigs:             true,
		NoLog:              true,
	}
	ns, err := server.NewServer(sopts)
	if err != nil {
		return nil, nil, fmt.Errorf("runtime: embedded NATS: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, nil, errors.New("runtime: embedded NATS did not become ready within 30s")
	}
	nc, err := nats.Connect("", append(connLogging(opts.Logger), nats.InProcessServer(ns), nats.Name("ferry"), nats.MaxReconnects(-1))...)
	if err != nil {
		ns.Shutdown()
		return nil, nil, fmt.Errorf("runtime: connect to embedded NATS: %w", err)
	}
	return ns, nc, nil
}

// connLogging sends the client's asynchronous errors (slow consumers, broken
// connections) and reconnects to the runtime's log; nats.go prints them to
// stderr otherwise.
func connLogging(log *slog.Logger) []nats.Option {
	return []nats.Option{
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				log.Warn("NATS client error", "subject", sub.Subject, "err", err)
				return
			}
			log.Warn("NATS client error", "err", err)
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS connection lost; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("NATS connection back", "server", nc.ConnectedUrlRedacted())
		}),
	}
}

func connectExternal(opts Options) (*nats.Conn, error) {
	nopts := append(connLogging(opts.Logger), nats.Name("ferry"), nats.MaxReconnects(-1))
	if opts.CredsFile != "" {
		nopts = append(nopts, nats.UserCredentials(opts.CredsFile))
	}
	if t := opts.TLS; t != nil {
		// Secure first: it sets the TLS config that RootCAs and ClientCert fill in.
		nopts = append(nopts, nats.Secure(&tls.Config{MinVersion: tls.VersionTLS12}))
		if t.CAFile != "" {
			nopts = append(nopts, nats.RootCAs(t.CAFile))
		}
		if t.CertFile != "" || t.KeyFile != "" {
			nopts = append(nopts, nats.ClientCert(t.CertFile, t.KeyFile))
		}
	}
	nc, err := nats.Connect(opts.NATSURL, nopts...)
	if err != nil {
		return nil, fmt.Errorf("runtime: connect to NATS at %s: %w", opts.NATSURL, err)
	}
	return nc, nil
}

// ensureLayout creates or updates the streams and buckets; keepRuns and
// keepDLQ leave the retention of the existing run and DLQ buckets as it is.
func (rt *Runtime) ensureLayout(ctx context.Context, keepRuns, keepDLQ bool) error {
	var err error
	rt.work, err = rt.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        WorkStream,
		Description: "ferry: ingested record batches and per-record retries, per tenant, integration and run",
		Subjects:    []string{workSubjectPrefix + ".>"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    rt.opts.Replicas,
		// The dedup window only saves work: a batch or retry published again
		// (a resumed run re-reads its source with the same message ids) finds
		// its settlement and is acked without executing again (runner.handle).
		// Every id in the window is an entry of the server's memory, so keep it
		// short: a longer one held an hour of messages' ids.
		Duplicates: 2 * time.Minute,
		Discard:    jetstream.DiscardOld,
	})
	if err != nil {
		return fmt.Errorf("runtime: stream %s: %w", WorkStream, err)
	}
	// keep: an existing bucket keeps its TTL.
	kv := func(name, desc string, history uint8, ttl time.Duration, keep bool) (jetstream.KeyValue, error) {
		if keep {
			if s, err := rt.js.Stream(ctx, "KV_"+name); err == nil {
				ttl = s.CachedInfo().Config.MaxAge
			} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
				return nil, fmt.Errorf("runtime: bucket %s: %w", name, err)
			}
		}
		b, err := KeyValue(ctx, rt.js, jetstream.KeyValueConfig{
			Bucket:      name,
			Description: desc,
			History:     history,
			TTL:         ttl,
			Storage:     jetstream.FileStorage,
			Replicas:    rt.opts.Replicas,
		})
		if err != nil {
			return nil, fmt.Errorf("runtime: bucket %s: %w", name, err)
		}
		return b, nil
	}
	runRet := rt.opts.RunRetention
	if rt.runsKV, err = kv(BucketRuns, "ferry: runs by tenant and run id", 1, runRet, keepRuns); err != nil {
		return err
	}
	if rt.settleKV, err = kv(BucketSettled, "ferry: per-message settlements of runs (counts derive from these)", 1, runRet+settleMargin(runRet), keepRuns); err != nil {
		return err
	}
	if rt.dlqKV, err = kv(BucketDLQ, "ferry: dead-letter queue entries", 1, rt.opts.DLQRetention, keepDLQ); err != nil {
		return err
	}
	// What is in effect: with KeepRetention, what the buckets had.
	for _, b := range []struct {
		kv  jetstream.KeyValue
		ttl *time.Duration
	}{{rt.runsKV, &rt.runRetention}, {rt.dlqKV, &rt.dlqRetention}} {
		st, err := b.kv.Status(ctx)
		if err != nil {
			return fmt.Errorf("runtime: bucket %s: %w", b.kv.Bucket(), err)
		}
		*b.ttl = st.TTL()
	}
	if rt.cursorKV, err = kv(BucketCursors, "ferry: incremental cursors per integration", 5, 0, false); err != nil {
		return err
	}
	if rt.hashKV, err = kv(BucketHashes, "ferry: content hashes per entity (skip_unchanged)", 1, 0, false); err != nil {
		return err
	}
	if rt.lockKV, err = kv(BucketLocks, "ferry: run locks per integration (allow_parallel_runs = false)", 1, 0, false); err != nil {
		return err
	}
	return nil
}

// Close stops the runs in flight (they stay resumable), drains the connection
// and shuts the embedded server down cleanly.
func (rt *Runtime) Close() error {
	var err error
	rt.closeOnce.Do(func() {
		rt.runMu.Lock()
		rt.closed = true
		rt.runMu.Unlock()
		rt.stopRuns()
		// A stopped run returns once its sink calls did (bounded by the
		// sink timeout's grace); its last acks then go out with the drain.
		stopped := make(chan struct{})
		go func() { rt.runs.Wait(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(30 * time.Second):
			rt.log.Warn("runs still stopping after 30s; closing under them")
		}
		if rt.nc != nil {
			if derr := rt.nc.Drain(); derr != nil && !errors.Is(derr, nats.ErrConnectionClosed) {
				err = derr
			}
			deadline := time.Now().Add(10 * time.Second)
			for !rt.nc.IsClosed() && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			rt.nc.Close()
		}
		if rt.ns != nil {
			rt.ns.Shutdown()
			rt.ns.WaitForShutdown()
		}
		if rt.unlockDataDir != nil {
			rt.unlockDataDir()
		}
	})
	return err
}

// JetStream returns the JetStream handle (for tooling and tests).
func (rt *Runtime) JetStream() jetstream.JetStream { return rt.js }

// Retention returns how long run records and DLQ entries are kept after
// their last write, as the buckets have it (0: until deleted). With
// KeepRetention it is what the buckets had, not what Options asked.
func (rt *Runtime) Retention() (runs, dlq time.Duration) { return rt.runRetention, rt.dlqRetention }

// semaphore returns the limiter of concurrent sink calls for a connection.
func (rt *Runtime) semaphore(tenant, connection string) chan struct{} {
	rt.semMu.Lock()
	defer rt.semMu.Unlock()
	k := tenant + "/" + connection
	s, ok := rt.sems[k]
	if !ok {
		s = make(chan struct{}, rt.opts.ConnectionConcurrency)
		rt.sems[k] = s
	}
	return s
}
