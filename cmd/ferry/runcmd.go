package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"time"

	"github.com/ferryhq/ferry/connectors"
	"github.com/ferryhq/ferry/connectors/secretscrub"
	"github.com/ferryhq/ferry/engine"
	"github.com/ferryhq/ferry/runtime"
	"github.com/nats-io/nuid"
)

func init() {
	var cf configFlags
	var conn connFlags
	var integration, runID string
	var jsonOut, inMemory bool
	register(&command{
		name:  "run",
		usage: "run [DIR] [--integration NAME] [--json] [--data-dir D] [--in-memory] [--nats-url URL] [--creds FILE] [--sync default|always] [--run-id ID]",
		summary: `Run integrations once and print each run's summary.

Runs are durable: they go through JetStream (embedded, data in DIR/.ferry) with retries, run history, a DLQ and cursors that
outlive the process (see ferry runs, ferry dlq, ferry cursor). Secrets come from
FERRY_SECRET_<NAME>. Exit status 1 when a run did not succeed.

Ctrl-C stops a run cleanly; it stays "running" and resumes where it stopped with
--run-id ID (exit status 130). --in-memory runs in-process as a quick experiment:
nothing is written to the data directory, no retries across processes, no DLQ.`,
		examples: `  ferry run examples/quickstart
  ferry run --integration products_to_items --json .
  ferry run --run-id nightly-2025-03-18 .     # choose the run id (resumes it if interrupted)
  ferry run --in-memory examples/quickstart   # in-process, leaves no data behind`,
		flags: func(fs *flag.FlagSet) {
			cf.declare(fs)
			conn.declare(fs)
			conn.declareSync(fs)
			conn.declareSinkTimeout(fs)
			conn.declareRetention(fs, false)
			fs.StringVar(&integration, "integration", "", "run only this integration (default: all, in name order)")
			fs.BoolVar(&jsonOut, "json", false, "print the run summaries as JSON")
			fs.BoolVar(&inMemory, "in-memory", false, "run in-process without JetStream; writes nothing to the data directory")
			fs.StringVar(&runID, "run-id", "", "run id (1-128 of A-Za-z0-9_-); an interrupted run's id resumes it, a finished run's id prints its result")
		},
		run: func(c *ctx, args []string) int {
			dir, err := dirArg(args)
			if err != nil {
				return c.errorf("%v", err)
			}
			if inMemory && (runID != "" || conn.natsURL != "" || conn.dataDir != "" || conn.creds != "") {
				return c.errorf("--in-memory runs in-process: it takes no --run-id, --data-dir, --nats-url or --creds")
			}
			if err := conn.checkSinkTimeout(); err != nil {
				return c.errorf("%v", err)
			}
			prog := mustLoad(c, &cf, dir)
			if prog == nil {
				return 1
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			go func() { <-ctx.Done(); stop() }() // a second Ctrl-C kills
			r := &runner{c: c, dir: dir, conn: &conn, prog: prog, jsonOut: jsonOut}
			if inMemory {
				return r.inMemory(ctx, integration)
			}
			return r.durable(ctx, integration, runID)
		},
	})
}

// runner holds one ferry run invocation.
type runner struct {
	c       *ctx
	dir     string
	conn    *connFlags
	prog    *engine.Program
	jsonOut bool
	results []runJSON
	exit    int
}

type runJSON struct {
	ID          string                 `json:"id"`
	Integration string                 `json:"integration"`
	Status      engine.RunStatus       `json:"status"`
	Counts      engine.Counts          `json:"counts"`
	DurationMS  int64                  `json:"durationMs"`
	Error       string                 `json:"error,omitempty"`
	Failures    []engine.RecordFailure `json:"failures,omitempty"` // --in-memory only; durable runs keep them in the DLQ
}

func (r *runner) inMemory(ctx context.Context, only string) int {
	names, err := integrationNames(r.prog, only)
	if err != nil {
		return r.c.errorf("%v", err)
	}
	for _, name := range names {
		res, err := r.runInMemory(ctx, name)
		if err != nil {
			if ctx.Err() != nil {
				return r.c.errorf("interrupted: integration %q did not finish (an --in-memory run cannot be resumed)", name)
			}
			return r.c.errorf("integration %q: %v", name, err)
		}
		r.add(res, true)
		if !r.jsonOut {
			printFailures(r.c, res.Failures)
		}
	}
	return r.finish()
}

func (r *runner) durable(ctx context.Context, only, runID string) int {
	c := r.c
	rt, err := r.conn.open(ctx, c, r.dir, false)
	if err != nil {
		return c.errorf("%v", err)
	}
	defer rt.Close()
	tenant := configTenant(r.prog.Config)
	names, err := r.namesFor(ctx, rt.Runtime, tenant, only, runID)
	if err != nil {
		return c.errorf("%v", err)
	}
	revision := revisionOf(r.prog.Config)
	for _, name := range names {
		id := runID
		if id == "" {
			id = nuid.Next() // chosen here so an interrupted run can be named
		}
		job, err := localJob(tenant, r.prog, name, revision)
		if err != nil {
			return c.errorf("integration %q: %v", name, err)
		}
		res, err := rt.RunJob(ctx, job, runtime.RunOptions{Trigger: "cli", Revision: revision, RunID: id})
		if err != nil {
			if ctx.Err() != nil {
				fmt.Fprintf(c.stderr, "Interrupted: run %s of integration %s stopped and can be resumed:\n  ferry run %s --integration %s --run-id %s%s\n",
					id, name, r.dir, name, id, runFlags(r.conn))
				return 130
			}
			if errors.Is(err, runtime.ErrRunMismatch) {
				return c.errorf("run id %s belongs to another integration: choose a new --run-id (see: ferry runs%s)", id, hintFlags(r.dir, r.conn))
			}
			return c.errorf("integration %q: %v", name, err)
		}
		r.add(res, false)
		if !r.jsonOut && res.Counts.Failed > 0 {
			fmt.Fprintf(c.stdout, "  %s in the DLQ: ferry dlq ls --run %s%s\n", plural(res.Counts.Failed, "record", "records"), res.ID, hintFlags(r.dir, r.conn))
		}
	}
	return r.finish()
}

// namesFor picks the integrations to run. With --run-id, the id names one run:
// an existing run's integration, or a new run of the one integration chosen.
func (r *runner) namesFor(ctx context.Context, rt *runtime.Runtime, tenant, only, runID string) ([]string, error) {
	if runID != "" {
		prev, err := rt.Runs().Get(ctx, tenant, runID)
		switch {
		case err == nil && only == "":
			only = prev.Integration
		case err == nil && only != prev.Integration:
			return nil, fmt.Errorf("run %s is of integration %s, not %s: drop --integration or choose a new --run-id", runID, prev.Integration, only)
		case err != nil && !errors.Is(err, runtime.ErrNotFound):
			return nil, err
		}
	}
	names, err := integrationNames(r.prog, only)
	if err != nil {
		return nil, err
	}
	if runID != "" && len(names) > 1 {
		return nil, fmt.Errorf("--run-id names one run: choose its integration with --integration (the configuration has: %s)", strings.Join(names, ", "))
	}
	return names, nil
}

func (r *runner) add(res *engine.RunResult, withFailures bool) {
	if res.Status != engine.RunSucceeded {
		r.exit = 1
	}
	j := runJSON{ID: res.ID, Integration: res.Integration, Status: res.Status, Counts: res.Counts,
		DurationMS: res.Ended.Sub(res.Started).Milliseconds(), Error: res.Error}
	if withFailures {
		j.Failures = res.Failures
	}
	r.results = append(r.results, j)
	if !r.jsonOut {
		printRun(r.c, res)
	}
}

func (r *runner) finish() int {
	if r.jsonOut {
		out := struct {
			Runs []runJSON `json:"runs"`
		}{Runs: r.results}
		if out.Runs == nil {
			out.Runs = []runJSON{}
		}
		writeJSON(r.c.stdout, out)
	}
	return r.exit
}

// runFlags are the connection flags to repeat on a resumed ferry run.
func runFlags(f *connFlags) string {
	var b strings.Builder
	if f.natsURL != "" {
		fmt.Fprintf(&b, " --nats-url %s", f.natsURL)
		if f.creds != "" {
			fmt.Fprintf(&b, " --creds %s", f.creds)
		}
	} else if f.dataDir != "" {
		fmt.Fprintf(&b, " --data-dir %s", f.dataDir)
	}
	return b.String()
}

func integrationNames(prog *engine.Program, only string) ([]string, error) {
	if only != "" {
		if _, ok := prog.Pipelines[only]; !ok {
			return nil, fmt.Errorf("no integration named %q; the configuration has: %s", only, strings.Join(sortedKeys(prog.Pipelines), ", "))
		}
		return []string{only}, nil
	}
	names := sortedKeys(prog.Pipelines)
	if len(names) == 0 {
		return nil, fmt.Errorf("the configuration has no integration blocks")
	}
	return names, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func printRun(c *ctx, r *engine.RunResult) {
	fmt.Fprintf(c.stdout, "Run %s  integration=%s  status=%s  duration=%s\n", r.ID, r.Integration, r.Status, r.Ended.Sub(r.Started).Round(time.Millisecond))
	fmt.Fprintf(c.stdout, "  %s\n", countsLine(r.Counts))
	if r.Error != "" {
		fmt.Fprintf(c.stdout, "  error: %s\n", r.Error)
	}
	if r.FailedFile != "" {
		fmt.Fprintf(c.stdout, "  failed records: %s\n", r.FailedFile)
	}
}

// printFailures lists an in-memory run's failed records (at most 20).
func printFailures(c *ctx, fs []engine.RecordFailure) {
	for i, f := range fs {
		if i == 20 {
			fmt.Fprintf(c.stdout, "  ... and %d more (--json lists them all)\n", len(fs)-i)
			break
		}
		fmt.Fprintf(c.stdout, "  failed %s at %s (%s): %s\n", f.Key, f.Stage, f.Category, oneLine(f.Message, 120))
	}
}

// runInMemory runs one integration in-process with its connectors' errors
// scrubbed of the secret values they were given, as the server scrubs them:
// a run's output often ends up in CI logs.
func (r *runner) runInMemory(ctx context.Context, name string) (*engine.RunResult, error) {
	sc := secretscrub.New(envSecret)
	src, err := r.prog.OpenSource(name, sc.Resolve)
	if err != nil {
		return nil, sc.Err(err)
	}
	src = sc.Source(src)
	defer src.(io.Closer).Close() // the engine closes only what it opened itself
	sink, err := r.prog.OpenSink(name, sc.Resolve, connectors.SinkOptions{})
	if err != nil {
		return nil, sc.Err(err)
	}
	return r.prog.Run(ctx, name, engine.RunOptions{Secrets: sc.Resolve, Source: src, Sink: sc.Sink(sink), SinkTimeout: r.conn.sinkTimeout})
}

// localJob is the durable Job of an integration for ferry run and ferry dlq
// replay: secrets from FERRY_SECRET_<NAME>, the errors of its connectors
// scrubbed of their values before the runtime records them (run, DLQ).
func localJob(tenant string, prog *engine.Program, integration, revision string) (*runtime.Job, error) {
	sc := secretscrub.New(envSecret)
	job, err := runtime.ProgramJob(tenant, prog, integration, sc.Resolve, revision)
	if err != nil {
		return nil, err
	}
	job.OpenSource, job.OpenSink = sc.OpenSource(job.OpenSource), sc.OpenSink(job.OpenSink)
	return job, nil
}

// envSecret resolves secret("name") from FERRY_SECRET_<NAME> for local runs.
func envSecret(name string) (string, error) {
	key := "FERRY_SECRET_" + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(name))
	if v, ok := os.LookupEnv(key); ok {
		return v, nil
	}
	return "", fmt.Errorf("secret %q is not set: export %s", name, key)
}
