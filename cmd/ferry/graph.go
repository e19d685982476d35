package main

import (
	"flag"
)

func init() {
	var cf configFlags
	var integration string
	register(&command{
		name:    "graph",
		usage:   "graph [DIR] [--integration NAME]",
		summary: "Print the stage graph (ingest → normalize → transform → execute → finalize) as Graphviz DOT.",
		examples: `  ferry graph examples/quickstart | dot -Tsvg > graph.svg
  ferry graph --integration products_to_file`,
		flags: func(fs *flag.FlagSet) {
			cf.declare(fs)
			fs.StringVar(&integration, "integration", "", "only this integration")
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
			if err := prog.Graph(c.stdout, integration); err != nil {
				return c.errorf("%v", err)
			}
			return 0
		},
	})
}
