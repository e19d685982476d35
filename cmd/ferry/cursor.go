package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/ferryhq/ferry/engine"
	"github.com/ferryhq/ferry/runtime"
)

func init() {
	register(&command{
		name:  "cursor",
		usage: "cursor show|reset INTEGRATION [flags]",
		summary: `Show or reset an incremental integration's cursor.

The cursor is the highest cursor-field value (with the entity key as tie-breaker) whose
records all settled; the next run reads after it.`,
		examples: `  ferry cursor show orders_to_erp
  ferry cursor reset orders_to_erp   # the next run reads from the start`,
		subs: []*command{cursorShow(), cursorReset()},
	})
}

type cursorJSON struct {
	Integration string          `json:"integration"`
	Cursor      *runtime.Cursor `json:"cursor"` // null: none stored, the next run reads from the start
}

// checkIntegration refuses an integration the loaded configuration does not declare.
func checkIntegration(prog *engine.Program, name string) error {
	if prog == nil {
		return nil
	}
	if _, ok := prog.Pipelines[name]; !ok {
		return fmt.Errorf("no integration named %q; the configuration has: %s", name, strings.Join(sortedKeys(prog.Pipelines), ", "))
	}
	return nil
}

func cursorShow() *command {
	var sf storeFlags
	return &command{
		name:    "cursor show",
		usage:   "cursor show INTEGRATION [--json] [--config DIR]",
		summary: "Show an integration's stored cursor: VALUE, KEY, the RUN that set it, UPDATED (UTC).\n" + storeNote,
		examples: `  ferry cursor show orders_to_erp
  ferry cursor show orders_to_erp --json --config tenants/acme`,
		flags: sf.declare,
		run: func(c *ctx, args []string) int {
			if len(args) != 1 {
				return c.errorf("ferry cursor show takes one integration name")
			}
			tenant, prog, ok := sf.readTenant(c)
			if !ok {
				return 1
			}
			if err := checkIntegration(prog, args[0]); err != nil {
				return c.errorf("%v", err)
			}
			return sf.withStore(c, func(ctx context.Context, rt *runtime.Runtime) int {
				cur, err := rt.Cursors().Get(ctx, tenant, args[0])
				if err != nil {
					return storeError(c, err, "cursor of", args[0], tenant, "ferry runs")
				}
				out := cursorJSON{Integration: args[0]}
				if !cur.IsZero() {
					out.Cursor = &cur
				}
				if sf.jsonOut {
					writeJSON(c.stdout, out)
					return 0
				}
				if out.Cursor == nil {
					fmt.Fprintf(c.stdout, "Integration %s has no cursor: its next run reads from the start.\n", args[0])
					return 0
				}
				tw := newTable(c.stdout)
				fmt.Fprintln(tw, "INTEGRATION\tVALUE\tKEY\tRUN\tUPDATED")
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", args[0], cur.Value, orDash(cur.Key), orDash(cur.RunID), fmtTime(cur.Updated))
				tw.Flush()
				return 0
			})
		},
	}
}

func cursorReset() *command {
	var sf storeFlags
	return &command{
		name:     "cursor reset",
		usage:    "cursor reset INTEGRATION [--json] [--config DIR]",
		summary:  "Delete an integration's cursor: its next run reads the source from the start (the target sees those records again).\n" + storeNote,
		examples: `  ferry cursor reset orders_to_erp`,
		flags:    sf.declare,
		run: func(c *ctx, args []string) int {
			if len(args) != 1 {
				return c.errorf("ferry cursor reset takes one integration name")
			}
			tenant, prog, ok := sf.readTenant(c)
			if !ok {
				return 1
			}
			if err := checkIntegration(prog, args[0]); err != nil {
				return c.errorf("%v", err)
			}
			return sf.withStore(c, func(ctx context.Context, rt *runtime.Runtime) int {
				prev, err := rt.Cursors().Get(ctx, tenant, args[0])
				if err != nil {
					return storeError(c, err, "cursor of", args[0], tenant, "ferry runs")
				}
				if err := rt.Cursors().Reset(ctx, tenant, args[0]); err != nil {
					return storeError(c, err, "cursor of", args[0], tenant, "ferry runs")
				}
				if sf.jsonOut {
					out := struct {
						cursorJSON
						Reset bool `json:"reset"`
					}{cursorJSON{Integration: args[0]}, true}
					if !prev.IsZero() {
						out.Cursor = &prev
					}
					writeJSON(c.stdout, out)
					return 0
				}
				if prev.IsZero() {
					fmt.Fprintf(c.stdout, "Integration %s had no cursor; nothing changed: its next run reads from the start.\n", args[0])
					return 0
				}
				fmt.Fprintf(c.stdout, "Reset the cursor of %s (was %s, key %s): its next run reads from the start.\n", args[0], prev.Value, orDash(prev.Key))
				return 0
			})
		},
	}
}
