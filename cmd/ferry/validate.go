package main

import (
	"flag"
	"fmt"

	"github.com/ferryhq/ferry/lang"
)

func init() {
	var cf configFlags
	var jsonOut bool
	register(&command{
		name:    "validate",
		usage:   "validate [DIR] [--json] [-var name=value] [-var-file FILE]",
		summary: "Check a configuration: HCL, references, connector attributes, schedules and expressions.",
		examples: `  ferry validate                    # the configuration in the current directory
  ferry validate examples/quickstart
  ferry validate --json . | jq .    # machine-readable diagnostics`,
		flags: func(fs *flag.FlagSet) {
			cf.declare(fs)
			fs.BoolVar(&jsonOut, "json", false, "print diagnostics as JSON")
		},
		run: func(c *ctx, args []string) int {
			dir, err := dirArg(args)
			if err != nil {
				return c.errorf("%v", err)
			}
			_, diags, files := loadProgram(c, &cf, dir)
			if jsonOut {
				out, err := lang.DiagnosticsJSON(diags)
				if err != nil {
					return c.errorf("%v", err)
				}
				fmt.Fprintln(c.stdout, string(out))
			} else if len(diags) > 0 {
				lang.WriteDiagnostics(c.stderr, files, diags, false)
			}
			if diags.HasErrors() {
				return 1
			}
			if !jsonOut {
				fmt.Fprintln(c.stdout, "Success! The configuration is valid.")
			}
			return 0
		},
	})
}
