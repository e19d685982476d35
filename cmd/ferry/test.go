package main

import (
	"context"
	"flag"
	"fmt"
	"regexp"
	"strings"
)

func init() {
	var cf configFlags
	var runPattern string
	var verbose bool
	register(&command{
		name:    "test",
		usage:   "test [DIR] [-run REGEX] [-v]",
		summary: "Run the configuration's test blocks: mapping tests and integration tests (target writes are captured, not executed).",
		examples: `  ferry test
  ferry test -run 'product' examples/quickstart`,
		flags: func(fs *flag.FlagSet) {
			cf.declare(fs)
			fs.StringVar(&runPattern, "run", "", "run only tests whose name matches this regular expression")
			fs.BoolVar(&verbose, "v", false, "also print passing tests")
		},
		run: func(c *ctx, args []string) int {
			dir, err := dirArg(args)
			if err != nil {
				return c.errorf("%v", err)
			}
			var filter *regexp.Regexp
			if runPattern != "" {
				if filter, err = regexp.Compile(runPattern); err != nil {
					return c.errorf("invalid -run pattern: %v", err)
				}
			}
			prog := mustLoad(c, &cf, dir)
			if prog == nil {
				return 1
			}
			results := prog.RunTests(context.Background(), filter)
			passed, failed := 0, 0
			for _, r := range results {
				if r.Passed {
					passed++
					fmt.Fprintf(c.stdout, "PASS  %s\n", r.Name)
					continue
				}
				failed++
				fmt.Fprintf(c.stdout, "FAIL  %s\n", r.Name)
				if r.Err != "" {
					fmt.Fprintf(c.stdout, "      %s\n", indent(r.Err))
				}
				if r.Diff != "" {
					fmt.Fprintf(c.stdout, "      %s\n", indent(r.Diff))
				}
			}
			fmt.Fprintf(c.stdout, "%d passed, %d failed\n", passed, failed)
			if failed > 0 {
				return 1
			}
			if len(results) == 0 && filter != nil {
				fmt.Fprintf(c.stderr, "warning: no test matches -run %q\n", runPattern)
			}
			return 0
		},
	})
}

func indent(s string) string {
	return strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n      ")
}
