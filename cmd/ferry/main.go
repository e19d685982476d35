// Command ferry is the CLI of ferry: validate, format, test, graph and run
// integrations written in HCL. It is thin: flags and output only.
package main

import (
	"os"

	_ "github.com/ferryhq/ferry/connectors/file"
)

var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
