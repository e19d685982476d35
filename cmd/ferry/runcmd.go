package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ferryhq/ferry/engine"
)

func init() {
	var cf configFlags
	var integration, dataDir string
	var jsonOut bool
	register(&command{
		name:    "run",
		usage:   "run [DIR] [--integration NAME] [--json] [--data-dir DIR]",
		summary: "Run integrations once, locally, and print each run's summary. Secrets come from FERRY_SECRET_<NAME>.",
		examples: `  ferry run examples/quickstart
  ferry run --integration products_to_file --json .`,
		flags: func(fs *flag.FlagSet) {
			cf.declare(fs)
			fs.StringVar(&integration, "integration", "", "run only this integration (default: all, in name order)")
			fs.BoolVar(&jsonOut, "json", false, "print the run summaries as JSON")
			fs.StringVar(&dataDir, "data-dir", "", "where run data (failed records) is kept (default: DIR/.ferry)")
		},
		run: func(c *ctx, args []string) int {
			dir, err := dirArg(args)
			if err != nil {
				return c.errorf("%v", err)
			}
			prog := mustLoad(c, &cf, dir)
			if prog == nil {
				return 1
			}
			names, err := integrationNames(prog, integration)
			if err != nil {
				return c.errorf("%v", err)
			}
			if dataDir == "" {
				dataDir = filepath.Join(dir, ".ferry")
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			var results []*engine.RunResult
			exit := 0
			for _, name := range names {
				res, err := prog.Run(ctx, name, engine.RunOptions{
					Secrets:   envSecret,
					FailedDir: filepath.Join(dataDir, "failed"),
				})
				if err != nil {
					return c.errorf("integration %q: %v", name, err)
				}
				if res.Status != engine.RunSucceeded {
					exit = 1
				}
				results = append(results, res)
				if !jsonOut {
					printRun(c, res)
				}
			}
			if jsonOut {
				type runJSON struct {
					ID          string           `json:"id"`
					Integration string           `json:"integration"`
					Status      engine.RunStatus `json:"status"`
					Counts      engine.Counts    `json:"counts"`
					DurationMS  int64            `json:"durationMs"`
					Error       string           `json:"error,omitempty"`
					FailedFile  string           `json:"failedFile,omitempty"`
				}
				out := struct {
					Runs []runJSON `json:"runs"`
				}{Runs: []runJSON{}}
				for _, r := range results {
					out.Runs = append(out.Runs, runJSON{r.ID, r.Integration, r.Status, r.Counts, r.Ended.Sub(r.Started).Milliseconds(), r.Error, r.FailedFile})
				}
				enc := json.NewEncoder(c.stdout)
				enc.SetIndent("", "  ")
				enc.Encode(out)
			}
			return exit
		},
	})
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
	fmt.Fprintf(c.stdout, "  total=%d success=%d failed=%d skipped=%d\n", r.Counts.Total, r.Counts.Success, r.Counts.Failed, r.Counts.Skipped)
	if r.Error != "" {
		fmt.Fprintf(c.stdout, "  error: %s\n", r.Error)
	}
	if r.FailedFile != "" {
		fmt.Fprintf(c.stdout, "  failed records: %s\n", r.FailedFile)
	}
}

// envSecret resolves secret("name") from FERRY_SECRET_<NAME> for local runs.
func envSecret(name string) (string, error) {
	key := "FERRY_SECRET_" + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(name))
	if v, ok := os.LookupEnv(key); ok {
		return v, nil
	}
	return "", fmt.Errorf("secret %q is not set: export %s", name, key)
}
