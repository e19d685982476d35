// Command ferry is the CLI of ferry: validate, format, test, graph and run
// integrations written in HCL. It is thin: flags and output only.
package main

import (
	"os"

	_ "github.com/ferryhq/ferry/connectors/file"
	_ "github.com/ferryhq/ferry/connectors/http"
	_ "github.com/ferryhq/ferry/connectors/postgres"
	_ "github.com/ferryhq/ferry/connectors/shopify"
)

var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
