package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ferryhq/ferry/connectors"
	"github.com/ferryhq/ferry/runtime"
)

func init() {
	register(&command{
		name:  "dlq",
		usage: "dlq [ls|show|replay|discard] [flags]",
		summary: `Inspect, replay and discard the records that failed (the dead-letter queue).

A replay runs the record, or an edited copy, through the CURRENT configuration in --config,
or, against a ferry server (--server URL or FERRY_SERVER), the server's current configuration.`,
		examples: `  ferry dlq ls --status pending
  ferry dlq show 3bQkzPqLxV2hM5w9aT0r1c-1-2
  ferry dlq replay 3bQkzPqLxV2hM5w9aT0r1c-1-2 --record fixed.json
  ferry dlq replay --all --integration products_to_items
  ferry dlq discard 3bQkzPqLxV2hM5w9aT0r1c-1-2 --reason "test product"
  FERRY_SERVER=http://127.0.0.1:8080 ferry dlq ls --status pending`,
		subs:       []*command{dlqLs(), dlqShow(), dlqReplay(), dlqDiscard()},
		defaultSub: "ls",
	})
}

// dlqFilterFlags are the entry filters of dlq ls and dlq replay --all.
type dlqFilterFlags struct {
	integration, run, category, status string
}

func (f *dlqFilterFlags) declare(fs *flag.FlagSet, statusDefault string) {
	fs.StringVar(&f.integration, "integration", "", "only entries of this integration")
	fs.StringVar(&f.run, "run", "", "only entries of this run id")
	fs.StringVar(&f.category, "category", "", "only entries of this error category (e.g. permanent, transient, validation, auth)")
	if statusDefault != "-" {
		fs.StringVar(&f.status, "status", statusDefault, "only entries with this status: pending, replayed, discarded")
	}
}

func (f *dlqFilterFlags) filter() (runtime.DLQFilter, error) {
	switch runtime.DLQStatus(f.status) {
	case "", runtime.DLQPending, runtime.DLQReplayed, runtime.DLQDiscarded:
	default:
		return runtime.DLQFilter{}, fmt.Errorf("invalid --status %q: use pending, replayed or discarded", f.status)
	}
	return runtime.DLQFilter{Integration: f.integration, RunID: f.run, Category: connectors.Category(f.category), Status: runtime.DLQStatus(f.status)}, nil
}

func dlqLs() *command {
	var sf storeFlags
	var rf remoteFlags
	var ff dlqFilterFlags
	var page, pageSize int
	return &command{
		name:    "dlq ls",
		usage:   "dlq [ls] [--integration NAME] [--run ID] [--category C] [--status S] [--page N] [--page-size N] [--json] [--config DIR | --server URL]",
		summary: "List DLQ entries, oldest run first and in ingest order within a run: ID, INTEGRATION, RUN, KEY, STAGE, CATEGORY, STATUS, ATTEMPTS, ERROR.\n" + storeNote + "\n" + remoteNote,
		examples: `  ferry dlq ls
  ferry dlq ls --run 3bQkzPqLxV2hM5w9aT0r1c --status pending
  ferry dlq ls --category transient --json --config examples/quickstart`,
		flags: func(fs *flag.FlagSet) {
			sf.declare(fs)
			rf.declare(fs)
			ff.declare(fs, "")
			fs.IntVar(&page, "page", 1, "page number, from 1")
			fs.IntVar(&pageSize, "page-size", 50, "entries per page")
		},
		run: func(c *ctx, args []string) int {
			if len(args) > 0 {
				return c.errorf("unexpected argument %q: ferry dlq ls takes flags only (see: ferry dlq show ID)", args[0])
			}
			f, err := ff.filter()
			if err != nil {
				return c.errorf("%v", err)
			}
			if page < 1 || pageSize < 1 {
				return c.errorf("--page and --page-size start at 1")
			}
			f.Page, f.PageSize = page, pageSize
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
				p, err := cl.listDLQ(ctx, f)
				if err != nil {
					return rf.remoteError(c, err, "DLQ entries", "", "ferry dlq ls")
				}
				if sf.jsonOut {
					writeJSON(c.stdout, p)
					return 0
				}
				printDLQPage(c, p, rf.where())
				return 0
			}
			tenant, _, ok := sf.readTenant(c)
			if !ok {
				return 1
			}
			return sf.withStore(c, func(ctx context.Context, rt *runtime.Runtime) int {
				p, err := rt.DLQ().List(ctx, tenant, f)
				if err != nil {
					return storeError(c, err, "DLQ entries", "", tenant, "ferry dlq ls")
				}
				if p.Entries == nil {
					p.Entries = []*runtime.DLQEntry{}
				}
				if sf.jsonOut {
					writeJSON(c.stdout, p)
					return 0
				}
				printDLQPage(c, p, "tenant "+tenant)
				return 0
			})
		},
	}
}

// printDLQPage prints a page of DLQ entries as a table; where says whose they are.
func printDLQPage(c *ctx, p *runtime.DLQPage, where string) {
	if p.Total == 0 {
		fmt.Fprintf(c.stdout, "No DLQ entries %s match.\n", inOn(where))
		return
	}
	tw := newTable(c.stdout)
	fmt.Fprintln(tw, "ID\tINTEGRATION\tRUN\tKEY\tSTAGE\tCATEGORY\tSTATUS\tATTEMPTS\tERROR")
	for _, e := range p.Entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", e.ID, e.Integration, e.RunID, oneLine(e.Key, 40), e.Stage,
			orDash(string(e.Category)), e.Status, len(e.Attempts), oneLine(e.Error, 80))
	}
	tw.Flush()
	pageFooter(c.stdout, p.Page, p.PageSize, len(p.Entries), p.Total, "entries")
}

func dlqShow() *command {
	var sf storeFlags
	var rf remoteFlags
	return &command{
		name:    "dlq show",
		usage:   "dlq show ID [--json] [--config DIR | --server URL]",
		summary: "Show one DLQ entry: its error, every attempt, the record as it came from the source, and its replays and discards.\n" + storeNote + "\n" + remoteNote,
		examples: `  ferry dlq show 3bQkzPqLxV2hM5w9aT0r1c-1-2
  ferry dlq show 3bQkzPqLxV2hM5w9aT0r1c-1-2 --json | jq .record > fixed.json`,
		flags: func(fs *flag.FlagSet) {
			sf.declare(fs)
			rf.declare(fs)
		},
		run: func(c *ctx, args []string) int {
			if len(args) != 1 {
				return c.errorf("ferry dlq show takes one entry id (see: ferry dlq ls)")
			}
			cl, ok := rf.pick(c)
			if !ok {
				return 1
			}
			if cl != nil {
				ctx, stop := remoteCtx()
				defer stop()
				e, err := cl.getDLQ(ctx, args[0])
				if err != nil {
					return rf.remoteError(c, err, "DLQ entry", args[0], "ferry dlq ls")
				}
				if sf.jsonOut {
					writeJSON(c.stdout, e)
					return 0
				}
				printEntry(c.stdout, e)
				return 0
			}
			tenant, _, ok := sf.readTenant(c)
			if !ok {
				return 1
			}
			return sf.withStore(c, func(ctx context.Context, rt *runtime.Runtime) int {
				e, err := rt.DLQ().Get(ctx, tenant, args[0])
				if err != nil {
					return storeError(c, err, "DLQ entry", args[0], tenant, "ferry dlq ls"+hintFlags(sf.config, &sf.connFlags))
				}
				if sf.jsonOut {
					writeJSON(c.stdout, e)
					return 0
				}
				printEntry(c.stdout, e)
				return 0
			})
		},
	}
}

func printEntry(w io.Writer, e *runtime.DLQEntry) {
	tw := newTable(w)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("Entry", e.ID)
	row("Status", string(e.Status))
	row("Tenant", e.Tenant)
	row("Integration", e.Integration)
	row("Run", e.RunID)
	row("Key", e.Key)
	row("Stage", string(e.Stage))
	row("Category", orDash(string(e.Category)))
	row("Error", e.Error)
	row("Position", orDash(e.Position))
	row("Revision", orDash(e.Revision))
	row("Created", fmtTime(e.Created))
	row("Updated", fmtTime(e.Updated))
	tw.Flush()
	fmt.Fprintf(w, "\nAttempts (%d):\n", len(e.Attempts))
	tw = newTable(w)
	fmt.Fprintln(tw, "  #\tAT\tSTAGE\tCATEGORY\tERROR")
	for i, a := range e.Attempts {
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\n", i+1, fmtTime(a.At), orDash(a.Stage), orDash(string(a.Category)), oneLine(a.Error, 100))
	}
	tw.Flush()
	fmt.Fprintf(w, "\nRecord:\n%s\n", prettyJSON(e.Record))
	if len(e.Events) > 0 {
		fmt.Fprintf(w, "\nEvents (%d):\n", len(e.Events))
		tw = newTable(w)
		fmt.Fprintln(tw, "  AT\tACTION\tRESULT\tREVISION\tEDITED\tDETAIL")
		for _, ev := range e.Events {
			edited := "no"
			if len(ev.Edited) > 0 {
				edited = "yes"
			}
			detail := ev.Error
			if ev.Reason != "" {
				detail = "reason: " + ev.Reason
				if ev.Error != "" {
					detail += "; " + ev.Error
				}
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", fmtTime(ev.At), ev.Action, orDash(ev.Result), orDash(ev.Revision), edited, orDash(oneLine(detail, 100)))
		}
		tw.Flush()
	}
}

func prettyJSON(raw json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return string(raw)
	}
	return b.String()
}

func dlqReplay() *command {
	var sf storeFlags
	var rf remoteFlags
	var ff dlqFilterFlags
	var all bool
	var recordFile, reason string
	return &command{
		name:  "dlq replay",
		usage: "dlq replay ID [--record FILE|-] [--reason TEXT] [--json] [--config DIR | --server URL]\n       ferry dlq replay --all [--integration NAME] [--run ID] [--category C] [--json] [--config DIR | --server URL]",
		summary: `Replay a pending DLQ entry's record (or an edited one) through the current configuration.

The record runs once more through the configuration in --config (normalize, transform,
execute): fix the mapping or the target and replay, or replay an edited record (--record
FILE, or - for stdin). On success or skip the entry becomes
"replayed" and its run's counts move the record from failed to success/skipped; on failure
it stays pending with the attempt added. --all replays every pending entry matching the
filters. Secrets come from FERRY_SECRET_<NAME>. Exit status 1 when a record failed again.

Note: a file target without append = true is truncated when it opens, replays included.
` + storeNote + "\n" + remoteNote + `
On a server the record runs through the tenant's current (last applied) configuration
with the server's secrets; --config plays no part.`,
		examples: `  ferry dlq replay 3bQkzPqLxV2hM5w9aT0r1c-1-2
  ferry dlq show 3bQkzPqLxV2hM5w9aT0r1c-1-2 --json | jq '.record | .title = "Mug"' | ferry dlq replay 3bQkzPqLxV2hM5w9aT0r1c-1-2 --record -
  ferry dlq replay --all --run 3bQkzPqLxV2hM5w9aT0r1c
  ferry dlq replay 3bQkzPqLxV2hM5w9aT0r1c-1-2 --record fixed.json --server https://ferry.example.com`,
		flags: func(fs *flag.FlagSet) {
			sf.declare(fs)
			rf.declare(fs)
			ff.declare(fs, "-")
			fs.BoolVar(&all, "all", false, "replay every pending entry matching --integration, --run, --category")
			fs.StringVar(&recordFile, "record", "", "replay this edited record (a JSON object) instead of the original: a file, or - for stdin")
			fs.StringVar(&reason, "reason", "", "why, kept in the entry's events")
		},
		run: func(c *ctx, args []string) int {
			switch {
			case all && len(args) > 0:
				return c.errorf("give an entry id or --all, not both")
			case all && recordFile != "":
				return c.errorf("--record replays one entry: give its id instead of --all")
			case !all && len(args) != 1:
				return c.errorf("ferry dlq replay takes one entry id, or --all with filters (see: ferry dlq ls)")
			case !all && (ff.integration != "" || ff.run != "" || ff.category != ""):
				return c.errorf("--integration, --run and --category select entries for --all")
			}
			var record json.RawMessage
			if recordFile != "" {
				var err error
				if record, err = readRecord(recordFile); err != nil {
					return c.errorf("%v", err)
				}
			}
			cl, ok := rf.pick(c)
			if !ok {
				return 1
			}
			if cl != nil {
				ctx, stop := remoteCtx()
				defer stop()
				if all {
					f, _ := ff.filter()
					cl.hc.Timeout = 30 * time.Minute // every matching entry runs before the answer
					s, err := cl.replayDLQMany(ctx, f, reason)
					if err != nil {
						return rf.remoteError(c, err, "DLQ entries", "", "ferry dlq ls")
					}
					return printReplaySummary(c, s, sf.jsonOut)
				}
				id := args[0]
				e, err := cl.replayDLQ(ctx, id, record, reason)
				if err != nil {
					return rf.dlqRemoteOpError(ctx, c, cl, err, "replay", id)
				}
				run, _ := cl.getRun(ctx, e.RunID)
				return printReplay(c, e, run, toAPIRun(run), sf.jsonOut)
			}
			tenant, prog, ok := sf.loadForReplay(c)
			if !ok {
				return 1
			}
			revision := revisionOf(prog.Config)
			jobs := func(integration string) (*runtime.Job, error) { return localJob(tenant, prog, integration, revision) }
			opts := runtime.ReplayOptions{Record: record, Reason: reason}
			return sf.withStore(c, func(ctx context.Context, rt *runtime.Runtime) int {
				if all {
					f, _ := ff.filter()
					f.Status = runtime.DLQPending
					s, err := rt.DLQ().ReplayMany(ctx, tenant, f, jobs, opts)
					if err != nil {
						return storeError(c, err, "DLQ entries", "", tenant, "ferry dlq ls")
					}
					return printReplaySummary(c, s, sf.jsonOut)
				}
				id := args[0]
				e, err := rt.DLQ().Replay(ctx, tenant, id, jobs, opts)
				if err != nil {
					return dlqOpError(c, err, "replay", id, tenant, &sf)
				}
				run, _ := rt.Runs().Get(ctx, tenant, e.RunID)
				return printReplay(c, e, run, run, sf.jsonOut)
			})
		},
	}
}

// printReplaySummary prints the outcome of replay --all; exit 1 when a
// record failed again.
func printReplaySummary(c *ctx, s *runtime.ReplaySummary, jsonOut bool) int {
	if jsonOut {
		writeJSON(c.stdout, s)
	} else {
		fmt.Fprintf(c.stdout, "Replayed %d of %d pending entries; %d failed again and stay pending.\n", s.Replayed, s.Matched, s.Failed)
		for _, id := range sortedKeys(s.Errors) {
			fmt.Fprintf(c.stdout, "  %s: %s\n", id, oneLine(s.Errors[id], 120))
		}
	}
	if s.Failed > 0 || len(s.Errors) > 0 {
		return 1
	}
	return 0
}

// printReplay prints the outcome of one replay: the entry and its run's
// counts (run may be nil); jsonRun is the run as --json prints it (a typed
// nil pointer is left out). Exit 1 when the record failed again.
func printReplay[R any](c *ctx, e *runtime.DLQEntry, run *runtime.Run, jsonRun *R, jsonOut bool) int {
	var last runtime.DLQEvent
	if len(e.Events) > 0 {
		last = e.Events[len(e.Events)-1]
	}
	if jsonOut {
		writeJSON(c.stdout, struct {
			Entry *runtime.DLQEntry `json:"entry"`
			Run   *R                `json:"run,omitempty"`
		}{e, jsonRun})
	} else {
		if e.Status == runtime.DLQReplayed {
			fmt.Fprintf(c.stdout, "Replayed %s: %s. The entry is %s.\n", e.ID, last.Result, e.Status)
		} else {
			fmt.Fprintf(c.stdout, "Replay of %s failed: %s\nThe entry stays %s; fix the configuration or the record (--record) and replay again.\n", e.ID, oneLine(last.Error, 200), e.Status)
		}
		if run != nil {
			fmt.Fprintf(c.stdout, "Run %s  status=%s  %s\n", run.ID, run.Status, countsLine(run.Counts))
		}
	}
	if e.Status != runtime.DLQReplayed {
		return 1
	}
	return 0
}

// readRecord reads an edited record: a JSON object from a file or stdin ("-").
func readRecord(name string) (json.RawMessage, error) {
	var b []byte
	var err error
	if name == "-" {
		b, err = io.ReadAll(os.Stdin)
	} else {
		b, err = os.ReadFile(name)
	}
	if err != nil {
		return nil, fmt.Errorf("read --record: %v", err)
	}
	var obj map[string]any
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, fmt.Errorf("--record %s must hold one JSON object (the record as the source would deliver it): %v", name, err)
	}
	return json.RawMessage(bytes.TrimSpace(b)), nil
}

func dlqOpError(c *ctx, err error, op, id, tenant string, sf *storeFlags) int {
	if errors.Is(err, runtime.ErrNotPending) {
		return c.errorf("DLQ entry %s is no longer pending, so there is nothing to %s (see: ferry dlq show %s%s)", id, op, id, hintFlags(sf.config, &sf.connFlags))
	}
	return storeError(c, err, "DLQ entry", id, tenant, "ferry dlq ls"+hintFlags(sf.config, &sf.connFlags))
}

func dlqDiscard() *command {
	var sf storeFlags
	var rf remoteFlags
	var reason string
	return &command{
		name:  "dlq discard",
		usage: "dlq discard ID [--reason TEXT] [--json] [--config DIR | --server URL]",
		summary: `Mark a pending DLQ entry discarded: it is not replayed, its record stays counted as failed.

The entry and its record are kept.
` + storeNote + "\n" + remoteNote,
		examples: `  ferry dlq discard 3bQkzPqLxV2hM5w9aT0r1c-1-2 --reason "test product, not for the ERP"`,
		flags: func(fs *flag.FlagSet) {
			sf.declare(fs)
			rf.declare(fs)
			fs.StringVar(&reason, "reason", "", "why, kept in the entry's events")
		},
		run: func(c *ctx, args []string) int {
			if len(args) != 1 {
				return c.errorf("ferry dlq discard takes one entry id (see: ferry dlq ls)")
			}
			cl, ok := rf.pick(c)
			if !ok {
				return 1
			}
			if cl != nil {
				ctx, stop := remoteCtx()
				defer stop()
				e, err := cl.discardDLQ(ctx, args[0], reason)
				if err != nil {
					return rf.dlqRemoteOpError(ctx, c, cl, err, "discard", args[0])
				}
				return printDiscard(c, e, sf.jsonOut)
			}
			tenant, _, ok := sf.readTenant(c)
			if !ok {
				return 1
			}
			return sf.withStore(c, func(ctx context.Context, rt *runtime.Runtime) int {
				e, err := rt.DLQ().Discard(ctx, tenant, args[0], reason)
				if err != nil {
					return dlqOpError(c, err, "discard", args[0], tenant, &sf)
				}
				return printDiscard(c, e, sf.jsonOut)
			})
		},
	}
}

func printDiscard(c *ctx, e *runtime.DLQEntry, jsonOut bool) int {
	if jsonOut {
		writeJSON(c.stdout, e)
		return 0
	}
	fmt.Fprintf(c.stdout, "Discarded %s (key %s); its record stays counted as failed in run %s.\n", e.ID, e.Key, e.RunID)
	return 0
}
