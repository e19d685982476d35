package runtime

import (
	"context"
	"fmt"

	"github.com/ferryhq/ferry/connectors"
	"github.com/ferryhq/ferry/engine"
	"github.com/ferryhq/ferry/lang"
)

// Run runs one integration of a compiled configuration durably (see RunJob).
// tenant "" takes the configuration's ferry { tenant }.
func (rt *Runtime) Run(ctx context.Context, tenant string, prog *engine.Program, integration string, opts RunOptions) (*engine.RunResult, error) {
	job, err := ProgramJob(tenant, prog, integration, opts.Secrets, opts.Revision)
	if err != nil {
		return nil, err
	}
	return rt.RunJob(ctx, job, opts)
}

// ProgramJobs returns the Jobs of a compiled configuration, for DLQ replays
// through the current configuration.
func ProgramJobs(tenant string, prog *engine.Program, secrets func(string) (string, error), revision string) JobFunc {
	return func(integration string) (*Job, error) {
		return ProgramJob(tenant, prog, integration, secrets, revision)
	}
}

// ProgramJob builds the Job of one integration of a compiled configuration.
func ProgramJob(tenant string, prog *engine.Program, integration string, secrets func(string) (string, error), revision string) (*Job, error) {
	if prog == nil || prog.Config == nil {
		return nil, fmt.Errorf("runtime: no compiled configuration")
	}
	if t := prog.Config.Ferry; t != nil && t.Tenant != "" {
		if tenant == "" {
			tenant = t.Tenant
		} else if tenant != t.Tenant {
			return nil, fmt.Errorf("runtime: the configuration belongs to tenant %q, not %q", t.Tenant, tenant)
		}
	}
	if tenant == "" {
		return nil, fmt.Errorf("runtime: no tenant: set ferry { tenant = \"...\" } in the configuration")
	}
	pl, ok := prog.Pipelines[integration]
	if !ok || pl == nil {
		return nil, fmt.Errorf("runtime: integration %q is not declared", integration)
	}
	in := pl.Integration
	if in.Source == nil || in.Target == nil {
		return nil, fmt.Errorf("runtime: integration %q needs a source and a target", integration)
	}
	retry := pl.Retry
	j := &Job{
		Tenant:            tenant,
		Integration:       integration,
		Revision:          revision,
		NewPreparer:       func() Preparer { return pl.NewWorker() },
		SinkConnection:    in.Target.Connection,
		SinkTimeout:       in.Target.Timeout,
		CursorField:       in.Source.Cursor,
		SkipUnchanged:     pl.SkipUnchanged,
		Retry:             RetryPolicyOf(&retry),
		Workers:           in.Workers,
		BatchSize:         pl.BatchSize,
		AllowParallelRuns: in.AllowParallelRuns,
		OpenSource: func(context.Context) (connectors.Source, error) {
			return prog.OpenSource(integration, secrets)
		},
		OpenSink: func(_ context.Context, opts connectors.SinkOptions) (connectors.Sink, error) {
			return prog.OpenSink(integration, secrets, opts)
		},
	}
	return j, nil
}

// RetryPolicyOf converts the config's retry block, filling defaults.
func RetryPolicyOf(r *lang.Retry) RetryPolicy {
	p := DefaultRetry
	if r == nil {
		return p
	}
	if r.MaxAttempts > 0 {
		p.MaxAttempts = r.MaxAttempts
	}
	if r.Initial > 0 {
		p.Initial = r.Initial
	}
	if r.Max > 0 {
		p.Max = r.Max
	}
	if r.Multiplier >= 1 {
		p.Multiplier = r.Multiplier
	}
	if r.Jitter >= 0 && r.Jitter <= 1 {
		p.Jitter = r.Jitter
	}
	return p
}
