package main

import (
	"fmt"
	"runtime"
)

func init() {
	register(&command{
		name:    "version",
		usage:   "version",
		summary: "Print ferry's version.",
		run: func(c *ctx, args []string) int {
			fmt.Fprintf(c.stdout, "ferry %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return 0
		},
	})
}
