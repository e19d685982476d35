package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhq/ferry/connectors"
	"github.com/ferryhq/ferry/connectors/secretscrub"
	"github.com/ferryhq/ferry/engine"
	"github.com/ferryhq/ferry/lang"
	"github.com/hashicorp/hcl/v2"
)

// defaultConnectionTestTimeout is the server's bound on a check
// (apiserver.connectionTestTimeout), so both modes give up alike.
const defaultConnectionTestTimeout = 15 * time.Second

func init() {
	register(&command{
		name:  "connection",
		usage: "connection test NAME [DIR] [flags]",
		summary: `Check that a connection works: its credentials, and that its system answers.

ferry connection test opens the connection as a run would and asks the connector
to check it (Shopify: the shop query; PostgreSQL: SELECT 1; http: a GET of
test_path; file: the directory).`,
		examples: `  ferry connection test shop
  ferry connection test warehouse examples/shopify-to-postgres --json`,
		subs: []*command{connectionTest()},
	})
}

// connectionTestJSON is what --json prints: the server's answer to
// POST /v1/connections/{name}/test with the connection's name and type.
type connectionTestJSON struct {
	Connection string `json:"connection"`
	Type       string `json:"type"`
	OK         bool   `json:"ok"`
	Error      string `json:"error,omitempty"`
	DurationMs int64  `json:"durationMs"`
}

func connectionTest() *command {
	var cf configFlags
	var sf serverFlags
	var jsonOut bool
	var timeout time.Duration
	return &command{
		name:  "connection test",
		usage: "connection test NAME [DIR] [--json] [--timeout 15s] [-var name=value] [--server URL] [--api-key KEY]",
		summary: `Open connection NAME of the configuration in DIR (default ".") and run its connector's check.

Prints "connection NAME (TYPE): ok (12ms)", or the error and exit status 1.
Secrets come from FERRY_SECRET_<NAME>, as for ferry run.

Against a server: with --server URL, or FERRY_SERVER set and neither DIR nor
-var/-var-file given, the server tests the connection of the key's tenant
with the tenant's secrets (POST /v1/connections/NAME/test).`,
		examples: `  FERRY_SECRET_SHOPIFY_ADMIN_TOKEN=shpat_... ferry connection test shop
  ferry connection test warehouse examples/shopify-to-postgres
  ferry connection test shop --server https://ferry.example.com --json`,
		flags: func(fs *flag.FlagSet) {
			cf.declare(fs)
			sf.declare(fs)
			fs.BoolVar(&jsonOut, "json", false, "print the result as JSON")
			fs.DurationVar(&timeout, "timeout", defaultConnectionTestTimeout, "give up on the check after this long (a server applies its own limit, 15s)")
		},
		run: func(c *ctx, args []string) int {
			if len(args) < 1 || len(args) > 2 {
				return c.errorf("ferry connection test takes a connection name and an optional directory, e.g. ferry connection test shop .")
			}
			if timeout <= 0 {
				return c.errorf("--timeout must be positive, e.g. --timeout 30s")
			}
			name, dir := args[0], "."
			if len(args) == 2 {
				dir = args[1]
			}
			local := len(args) == 2 || len(cf.vars) > 0 || len(cf.varFiles) > 0
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			if sf.server != "" || (!local && os.Getenv("FERRY_SERVER") != "") {
				if local {
					return c.errorf("--server tests the server's connection: it takes no DIR, -var or -var-file")
				}
				return testRemoteConnection(ctx, c, &sf, name, jsonOut, timeout)
			}
			if sf.apiKey != "" {
				return c.errorf("--api-key is for a ferry server: add --server URL or set FERRY_SERVER")
			}
			return testLocalConnection(ctx, c, &cf, dir, name, jsonOut, timeout)
		},
	}
}

func testLocalConnection(ctx context.Context, c *ctx, cf *configFlags, dir, name string, jsonOut bool, timeout time.Duration) int {
	opts, err := cf.options()
	if err != nil {
		return c.errorf("%v", err)
	}
	cfg, diags := lang.Load(dir, opts)
	if diags.HasErrors() {
		var files map[string]*hcl.File
		if cfg != nil {
			files = cfg.Files
		}
		lang.WriteDiagnostics(c.stderr, files, diags, false)
		return 1
	}
	conn := cfg.Connections[name]
	if conn == nil {
		names := sortedKeys(cfg.Connections)
		return c.errorf("no connection named %q in %s.%s%s", name, dir, suggestName(name, names), listOf("The configuration has", names))
	}
	if _, ok := connectors.Lookup(conn.Type); !ok {
		return c.errorf("connection %q has type %q, which this ferry does not have; it has: %s", name, conn.Type, strings.Join(connectors.Types(), ", "))
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// Errors may quote what they were given (a path, a URL); the values of
	// secrets are scrubbed, as a run's and the server's are, since this often
	// runs in CI logs.
	sc := secretscrub.New(envSecret)
	start := time.Now()
	err = checkConnection(ctx, cfg, name, sc.Resolve)
	if errors.Is(err, errNoCheck) {
		return c.errorf("connectors of type %q have no connection check; run an integration that uses connection %q to try it", conn.Type, name)
	}
	if err != nil && ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("the check did not finish within %s (raise it with --timeout): %w", timeout, err)
	}
	res := connectionTestJSON{Connection: name, Type: conn.Type, OK: err == nil, DurationMs: time.Since(start).Milliseconds()}
	if err != nil {
		res.Error = sc.Scrub(err.Error())
	}
	return printConnectionTest(c, res, jsonOut)
}

// errNoCheck says a connector implements no connectors.Tester.
var errNoCheck = errors.New("the connector has no connection check")

// checkConnection opens a connection as a run does, runs the connector's
// check and closes what it opened.
func checkConnection(ctx context.Context, cfg *lang.Config, name string, secrets func(string) (string, error)) error {
	conn, err := engine.OpenConnection(cfg, name, secrets)
	if err != nil {
		return err
	}
	if cl, ok := conn.(interface{ Close() error }); ok {
		defer cl.Close()
	}
	tester, ok := conn.(connectors.Tester)
	if !ok {
		return errNoCheck
	}
	return tester.Test(ctx)
}

func printConnectionTest(c *ctx, res connectionTestJSON, jsonOut bool) int {
	code := 0
	if !res.OK {
		code = 1
	}
	if jsonOut {
		writeJSON(c.stdout, res)
		return code
	}
	if res.OK {
		fmt.Fprintf(c.stdout, "connection %s (%s): ok (%dms)\n", res.Connection, res.Type, res.DurationMs)
		return 0
	}
	fmt.Fprintf(c.stdout, "connection %s (%s): failed (%dms)\n", res.Connection, res.Type, res.DurationMs)
	return c.errorf("%s", res.Error)
}

func testRemoteConnection(ctx context.Context, c *ctx, sf *serverFlags, name string, jsonOut bool, timeout time.Duration) int {
	cl, err := sf.client()
	if err != nil {
		return c.errorf("%v", err)
	}
	cl.hc.Timeout = timeout + 30*time.Second // the server bounds the check itself
	path := "/v1/connections/" + url.PathEscape(name)
	var conn struct {
		Type string `json:"type"`
	}
	if _, err := cl.do(ctx, http.MethodGet, path, nil, nil, &conn); err != nil {
		if statusOf(err) == http.StatusNotFound {
			var l apiList[struct {
				Name string `json:"name"`
			}]
			var names []string
			if _, lerr := cl.do(ctx, http.MethodGet, "/v1/connections?pageSize="+strconv.Itoa(maxRemotePageSize), nil, nil, &l); lerr == nil {
				for _, it := range l.Items {
					names = append(names, it.Name)
				}
			}
			return c.errorf("no connection named %q on the server %s.%s%s", name, cl.base.Redacted(), suggestName(name, names), listOf("The tenant has", names))
		}
		return c.errorf("%v", err)
	}
	var res connectionTestJSON
	if _, err := cl.do(ctx, http.MethodPost, path+"/test", nil, nil, &res); err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.status == http.StatusUnprocessableEntity && ae.problem.Detail != "" {
			return c.errorf("%s", ae.problem.Detail)
		}
		return c.errorf("%v", err)
	}
	res.Connection, res.Type = name, conn.Type
	return printConnectionTest(c, res, jsonOut)
}

// suggestName returns ` Did you mean "x"?` for the name closest to given, or "".
func suggestName(given string, names []string) string {
	best, bestD := "", max(3, len(given)/3+1)
	for _, n := range names {
		if d := editDistance(given, n); d < bestD {
			best, bestD = n, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" Did you mean %q?", best)
}

func listOf(lead string, names []string) string {
	if len(names) == 0 {
		return " " + lead + " no connections."
	}
	return " " + lead + ": " + strings.Join(names, ", ") + "."
}
