package runtime

import (
	"context"
	"fmt"
	goruntime "runtime"
	"time"

	"github.com/ferryhq/ferry/connectors"
	"github.com/ferryhq/ferry/engine"
)

// Preparer runs normalize and transform on one record (pure compute). It is the
// shape of *engine.Worker; one Preparer serves one goroutine.
type Preparer interface {
	Prepare(rec *connectors.Record) engine.Prepared
}

// Flusher and ConcurrentSink are the connector SDK's optional sink interfaces:
// the runtime flushes after a message's writes and before settling and acking
// it, and serialises Write calls of sinks that are not concurrent.
type (
	Flusher        = connectors.Flusher
	ConcurrentSink = connectors.ConcurrentSink
)

// Job is one integration ready to run: what the runtime needs of a compiled
// pipeline and its connections. Program adapts an *engine.Program to Jobs; tests
// build Jobs directly.
type Job struct {
	Tenant      string
	Integration string
	// Revision is the configuration revision the job was compiled from.
	Revision string
	// NewPreparer returns a Preparer for one worker goroutine.
	NewPreparer func() Preparer
	// OpenSource and OpenSink open the integration's source and target.
	OpenSource func(ctx context.Context) (connectors.Source, error)
	// OpenSink's opts.Continue is set when a run is resumed or DLQ entries are
	// replayed: earlier output must be kept.
	OpenSink func(ctx context.Context, opts connectors.SinkOptions) (connectors.Sink, error)
	// SinkConnection names the target connection (the per-connection call limit).
	SinkConnection string
	// SinkTimeout bounds each call of the target (the target's timeout);
	// 0: Options.SinkTimeout.
	SinkTimeout time.Duration
	// CursorField makes the integration incremental ("" = full reads).
	CursorField string
	// SkipUnchanged skips records whose content hash did not change.
	SkipUnchanged bool
	Retry         RetryPolicy
	// Workers processing messages in parallel (default GOMAXPROCS).
	Workers int
	// BatchSize is the number of records per sink call (default 100).
	BatchSize int
	// MessageRecords is the number of records per work message (default 1024;
	// a message is also cut at 256 KiB).
	MessageRecords int
	// AllowParallelRuns lets a second run start while one is in progress.
	AllowParallelRuns bool
}

// JobFunc returns the current Job of an integration (DLQ replays use the current
// configuration, not the one of the failed run).
type JobFunc func(integration string) (*Job, error)

func (j *Job) withDefaults() (*Job, error) {
	c := *j
	if err := validName("tenant", c.Tenant); err != nil {
		return nil, err
	}
	if err := validName("integration", c.Integration); err != nil {
		return nil, err
	}
	if c.NewPreparer == nil || c.OpenSink == nil {
		return nil, fmt.Errorf("runtime: job %s: NewPreparer and OpenSink are required", c.Integration)
	}
	if c.Workers <= 0 {
		c.Workers = goruntime.GOMAXPROCS(0)
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 100
	}
	if c.MessageRecords <= 0 {
		c.MessageRecords = 1024
	}
	if c.Retry.MaxAttempts <= 0 {
		c.Retry = DefaultRetry
	}
	if c.SinkConnection == "" {
		c.SinkConnection = c.Integration + "-target"
	}
	return &c, nil
}
