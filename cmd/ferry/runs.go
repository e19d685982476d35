package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"strings"

	"github.com/ferryhq/ferry/apiserver"
	"github.com/ferryhq/ferry/engine"
	"github.com/ferryhq/ferry/runtime"
)

func init() {
	register(&command{
		name:    "runs",
		usage:   "runs [ls|show|cancel] [flags]",
		summary: "List the run history and show one run with its per-entity errors.\n\nThey read the local data of --config (default \".\"), or, with --server URL or FERRY_SERVER\nset, the ferry server's; explicit local flags (--data-dir, --config, ...) win.",
		examples: `  ferry runs
  ferry runs --integration products_to_items --status partial
  ferry runs show 3bQkzPqLxV2hM5w9aT0r1c
  ferry runs show nightly-2025-03-18 --config examples/quickstart --json`,
		subs:       []*command{runsLs(), runsShow(), runsCancel()},
		defaultSub: "ls",
	})
}

const storeNote = `
The run data is read from the embedded runtime's data directory CONFIG/.ferry, where
ferry run keeps it (--data-dir elsewhere, --nats-url for an external NATS). CONFIG is
--config (default "."); its ferry { tenant } names the tenant (else --tenant, else "default").`

func runsLs() *command {
	var sf storeFlags
	var rf remoteFlags
	var integration, status string
	var page, pageSize int
	return &command{
		name:    "runs ls",
		usage:   "runs [ls] [--integration NAME] [--status S] [--page N] [--page-size N] [--json] [--config DIR | --server URL]",
		summary: "List runs, newest first: ID, INTEGRATION, STATUS, counts, STARTED (UTC), DURATION.\n" + storeNote + "\n" + remoteNote,
		examples: `  ferry runs
  ferry runs --integration products_to_items --status failed --json
  ferry runs --page 2 --page-size 20 --config examples/quickstart
  FERRY_SERVER=http://127.0.0.1:8080 ferry runs --status partial`,
		flags: func(fs *flag.FlagSet) {
			sf.declare(fs)
			rf.declare(fs)
			fs.StringVar(&integration, "integration", "", "only runs of this integration")
			fs.StringVar(&status, "status", "", "only runs with this status: queued, running, succeeded, partial, failed")
			fs.IntVar(&page, "page", 1, "page number, from 1")
			fs.IntVar(&pageSize, "page-size", 50, "runs per page")
		},
		run: func(c *ctx, args []string) int {
			if len(args) > 0 {
				return c.errorf("unexpected argument %q: ferry runs ls takes flags only (the configuration directory is --config DIR)", args[0])
			}
			switch engine.RunStatus(status) {
			case "", engine.RunQueued, engine.RunRunning, engine.RunSucceeded, engine.RunPartial, engine.RunFailed, engine.RunCancelled:
			default:
				return c.errorf("invalid --status %q: use queued, running, succeeded, partial or failed", status)
			}
			if page < 1 || pageSize < 1 {
				return c.errorf("--page and --page-size start at 1")
			}
			cl, ok := rf.pick(c)
			if !ok {
				return 1
			}
			if cl != nil {
				if pageSize > maxRemotePageSize {
					return c.errorf("--page-size is at most %d against a server", maxRemotePageSize)
				}
				ctx, stop := remoteCtx()
				defer stop()
				p, err := cl.listRuns(ctx, integration, status, page, pageSize)
				if err != nil {
					return rf.remoteError(c, err, "runs", "", "ferry runs")
				}
				if sf.jsonOut {
					writeJSON(c.stdout, toAPIRunPage(p))
					return 0
				}
				printRuns(c, p, rf.where())
				return 0
			}
			tenant, _, ok := sf.readTenant(c)
			if !ok {
				return 1
			}
			return sf.withStore(c, func(ctx context.Context, rt *runtime.Runtime) int {
				p, err := rt.Runs().List(ctx, tenant, runtime.RunFilter{Integration: integration, Status: engine.RunStatus(status), Page: page, PageSize: pageSize})
				if err != nil {
					return storeError(c, err, "runs", "", tenant, "ferry runs")
				}
				if p.Runs == nil {
					p.Runs = []*runtime.Run{}
				}
				if sf.jsonOut {
					writeJSON(c.stdout, p)
					return 0
				}
				printRuns(c, p, "tenant "+tenant)
				return 0
			})
		},
	}
}

// printRuns prints a page of runs as a table; where says whose runs they are.
func printRuns(c *ctx, p *runtime.RunPage, where string) {
	if p.Total == 0 {
		fmt.Fprintf(c.stdout, "No runs %s match.\n", inOn(where))
		return
	}
	tw := newTable(c.stdout)
	fmt.Fprintln(tw, "ID\tINTEGRATION\tSTATUS\tTOTAL\tSUCCESS\tFAILED\tSKIPPED\tSTARTED\tDURATION")
	for _, r := range p.Runs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", r.ID, r.Integration, r.Status,
			r.Counts.Total, r.Counts.Success, r.Counts.Failed, r.Counts.Skipped, fmtTime(r.Started), fmtDuration(r.Started, r.Ended))
	}
	tw.Flush()
	pageFooter(c.stdout, p.Page, p.PageSize, len(p.Runs), p.Total, "runs")
}

// inOn turns "tenant acme" into "in tenant acme"; a server's where ("on the
// server URL") stays as it is.
func inOn(where string) string {
	if strings.HasPrefix(where, "on ") {
		return where
	}
	return "in " + where
}

// runError is one per-entity error of a run, with its DLQ entry.
type runError struct {
	engine.RecordFailure
	Record    any    `json:"record,omitempty"` // hide the engine's record field: the DLQ entry holds it
	DLQID     string `json:"dlqId,omitempty"`
	DLQStatus string `json:"dlqStatus,omitempty"`
}

func runsShow() *command {
	var sf storeFlags
	var rf remoteFlags
	return &command{
		name:    "runs show",
		usage:   "runs show ID [--json] [--config DIR | --server URL]",
		summary: "Show one run (its id is the correlation id) with its per-entity errors.\n\nThe errors table has KEY, STAGE, CATEGORY, ATTEMPTS, the DLQ entry and its status, MESSAGE.\n" + storeNote + "\n" + remoteNote,
		examples: `  ferry runs show 3bQkzPqLxV2hM5w9aT0r1c
  ferry runs show nightly-2025-03-18 --json
  ferry runs show 3bQkzPqLxV2hM5w9aT0r1c --server https://ferry.example.com`,
		flags: func(fs *flag.FlagSet) {
			sf.declare(fs)
			rf.declare(fs)
		},
		run: func(c *ctx, args []string) int {
			if len(args) != 1 {
				return c.errorf("ferry runs show takes one run id (see: ferry runs)")
			}
			id := args[0]
			cl, ok := rf.pick(c)
			if !ok {
				return 1
			}
			if cl != nil {
				ctx, stop := remoteCtx()
				defer stop()
				r, err := cl.getRun(ctx, id)
				if err != nil {
					return rf.remoteError(c, err, "run", id, "ferry runs")
				}
				errs, err := cl.runErrors(ctx, id)
				if err != nil {
					return rf.remoteError(c, err, "run", id, "ferry runs")
				}
				if sf.jsonOut {
					writeJSON(c.stdout, struct {
						*apiRun
						Errors []runError `json:"errors"`
					}{toAPIRun(r), errs})
					return 0
				}
				printRunDetail(c, r, errs, rf.base, rf.hint())
				return 0
			}
			tenant, _, ok := sf.readTenant(c)
			if !ok {
				return 1
			}
			return sf.withStore(c, func(ctx context.Context, rt *runtime.Runtime) int {
				r, err := rt.Runs().Get(ctx, tenant, id)
				if err != nil {
					return storeError(c, err, "run", id, tenant, "ferry runs"+hintFlags(sf.config, &sf.connFlags))
				}
				failures, err := rt.Runs().Errors(ctx, tenant, id)
				if err != nil {
					return c.errorf("%v", err)
				}
				errs := []runError{}
				if len(failures) > 0 {
					entries, err := rt.DLQ().List(ctx, tenant, runtime.DLQFilter{RunID: id, PageSize: 1 << 30})
					if err != nil {
						return c.errorf("%v", err)
					}
					byPos := map[[2]string]*runtime.DLQEntry{}
					for _, e := range entries.Entries {
						byPos[[2]string{e.Key, e.Position}] = e
					}
					for _, f := range failures {
						f.Record = nil
						re := runError{RecordFailure: f}
						if e := byPos[[2]string{f.Key, f.Position}]; e != nil {
							re.DLQID, re.DLQStatus = e.ID, string(e.Status)
						}
						errs = append(errs, re)
					}
				}
				if sf.jsonOut {
					writeJSON(c.stdout, struct {
						*runtime.Run
						Errors []runError `json:"errors"`
					}{r, errs})
					return 0
				}
				printRunDetail(c, r, errs, "", hintFlags(sf.config, &sf.connFlags))
				return 0
			})
		},
	}
}

func runsCancel() *command {
	var rf remoteFlags
	var jsonOut bool
	return &command{
		name:  "runs cancel",
		usage: "runs cancel ID [--json] [--server URL]",
		summary: "Cancel a queued or running run on a ferry server: it ends as cancelled with the counts of what settled; records not processed yet are dropped.\n\n" +
			"A local ferry run is stopped with Ctrl-C in its terminal (it stays resumable). " + remoteNote,
		examples: `  ferry runs cancel 20260301T120500.000Z-3f9a1c2b4d5e6f70 --server https://ferry.example.com`,
		flags: func(fs *flag.FlagSet) {
			rf.declare(fs)
			fs.BoolVar(&jsonOut, "json", false, "print the run as JSON")
		},
		run: func(c *ctx, args []string) int {
			if len(args) != 1 {
				return c.errorf("ferry runs cancel takes one run id (see: ferry runs)")
			}
			id := args[0]
			cl, ok := rf.pick(c)
			if !ok {
				return 1
			}
			if cl == nil {
				return c.errorf("ferry runs cancel works on a server: set --server or FERRY_SERVER (a local ferry run is stopped with Ctrl-C)")
			}
			ctx, stop := remoteCtx()
			defer stop()
			var ri apiserver.RunInfo
			if _, err := cl.do(ctx, http.MethodPost, runPath(id)+"/cancel", nil, nil, &ri); err != nil {
				return rf.remoteError(c, err, "run", id, "ferry runs")
			}
			if jsonOut {
				writeJSON(c.stdout, ri)
				return 0
			}
			fmt.Fprintf(c.stdout, "Run %s: cancel requested (status %s); see: ferry runs show %s%s\n", id, ri.Status, id, rf.hint())
			return 0
		},
	}
}

// printRunDetail prints a run and its per-entity errors. server is the server the
// run was read from ("" for the local data; the Tenant row then names the
// tenant), hint the flags follow-up commands need.
func printRunDetail(c *ctx, r *runtime.Run, errs []runError, server, hint string) {
	tw := newTable(c.stdout)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("Run", r.ID)
	if server != "" {
		row("Server", server)
	} else {
		row("Tenant", r.Tenant)
	}
	row("Integration", r.Integration)
	row("Status", string(r.Status))
	row("Counts", countsLine(r.Counts))
	row("Trigger", orDash(r.Trigger))
	if r.TriggeredBy != "" {
		row("Triggered by", r.TriggeredBy)
	}
	row("Revision", orDash(r.Revision))
	row("Queued", fmtTime(r.Queued))
	row("Started", fmtTime(r.Started))
	row("Ended", fmtTime(r.Ended))
	row("Duration", fmtDuration(r.Started, r.Ended))
	if r.CursorFrom != nil && !r.CursorFrom.IsZero() {
		row("Cursor from", fmt.Sprintf("%s (key %s)", r.CursorFrom.Value, r.CursorFrom.Key))
	}
	if r.Resumes > 0 {
		row("Resumes", fmt.Sprint(r.Resumes))
	}
	if r.Replays > 0 {
		row("Replays", fmt.Sprint(r.Replays))
	}
	if r.Error != "" {
		row("Error", r.Error)
	}
	tw.Flush()
	if len(errs) == 0 {
		fmt.Fprintf(c.stdout, "\nNo per-entity errors.\n")
		return
	}
	fmt.Fprintf(c.stdout, "\nErrors (%d):\n", len(errs))
	tw = newTable(c.stdout)
	fmt.Fprintln(tw, "KEY\tSTAGE\tCATEGORY\tATTEMPTS\tDLQ ENTRY\tDLQ STATUS\tMESSAGE")
	for _, e := range errs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", oneLine(e.Key, 40), e.Stage, orDash(string(e.Category)), e.Attempts,
			orDash(e.DLQID), orDash(e.DLQStatus), oneLine(e.Message, 100))
	}
	tw.Flush()
	fmt.Fprintf(c.stdout, "\nInspect and replay them: ferry dlq ls --run %s%s\n", r.ID, hint)
}
