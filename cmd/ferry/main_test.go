package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"ferry": func() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) },
	})
}

// TestScripts runs the CLI stories in testdata/script/*.txtar. Each script gets
// $EXAMPLES pointing at the repository's examples directory.
func TestScripts(t *testing.T) {
	examples, err := filepath.Abs("../../examples")
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Dir: "../../testdata/script",
		Setup: func(env *testscript.Env) error {
			env.Setenv("EXAMPLES", examples)
			return nil
		},
		RequireExplicitExec: true,
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){"cpdir": cmdCpdir, "jsonget": cmdJSONGet, "nats-server": cmdNATSServer,
			"serve-test": cmdServeTest, "httpget": cmdHTTPGet, "freeport": cmdFreePort, "waitfile": cmdWaitFile,
			"exitcode": cmdExitCode, "envfile": cmdEnvFile, "api": cmdAPI, "fake-shopify": cmdFakeShopify},
	})
}

// cmdCpdir copies a directory tree: cpdir SRC DST.
func cmdCpdir(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: cpdir SRC DST")
	}
	src, dst := ts.MkAbs(args[0]), ts.MkAbs(args[1])
	ts.Check(os.CopyFS(dst, os.DirFS(src)))
}

// cmdJSONGet sets an environment variable from a JSON file: jsonget FILE PATH VAR.
// PATH is dotted; numbers index arrays (entries.0.id). Use after "cp stdout FILE".
func cmdJSONGet(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: jsonget FILE PATH VAR")
	}
	var v any
	ts.Check(json.Unmarshal([]byte(ts.ReadFile(args[0])), &v))
	for _, step := range strings.Split(args[1], ".") {
		switch x := v.(type) {
		case map[string]any:
			v = x[step]
		case []any:
			i, err := strconv.Atoi(step)
			if err != nil || i < 0 || i >= len(x) {
				ts.Fatalf("jsonget %s: no element %q in an array of %d", args[1], step, len(x))
			}
			v = x[i]
		default:
			ts.Fatalf("jsonget %s: %q not found", args[1], step)
		}
	}
	if v == nil {
		ts.Fatalf("jsonget %s: not found", args[1])
	}
	if s, ok := v.(string); ok {
		ts.Setenv(args[2], s)
		return
	}
	ts.Setenv(args[2], fmt.Sprint(v))
}

// cmdNATSServer starts an external NATS with JetStream on a random loopback
// port for the rest of the script and sets $NATS_URL: nats-server.
func cmdNATSServer(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: nats-server")
	}
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: ts.MkAbs("nats-data"), NoSigs: true, NoLog: true})
	ts.Check(err)
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ts.Fatalf("nats-server did not start")
	}
	ts.Defer(ns.Shutdown)
	ts.Setenv("NATS_URL", ns.ClientURL())
}
