package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// cmdServeTest runs ferry serve in the test process on a random loopback
// port until the script ends, and points $FERRY_SERVER and $FERRY_API_KEY at
// it: serve-test DIR does what ferry serve --dev DIR does (tenant, key, DIR
// applied); serve-test -tenant NAME only creates the tenant and its key.
// Its data is in $WORK/.ferry-server-test; its output is logged at the end.
func cmdServeTest(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 || len(args) > 2 || (len(args) == 2) != (args[0] == "-tenant") {
		ts.Fatalf("usage: serve-test DIR | serve-test -tenant NAME")
	}
	out := &lockedBuffer{}
	c := &ctx{stdout: out, stderr: out}
	o := &serveOptions{listen: "127.0.0.1:0", conn: connFlags{dataDir: ts.MkAbs(".ferry-server-test")}}
	var lc *localConfig
	if args[0] != "-tenant" {
		if lc = loadDev(c, ts.MkAbs(args[0])); lc == nil {
			ts.Fatalf("serve-test %s:\n%s", args[0], out)
		}
		o.dev, o.devTenant = ts.MkAbs(args[0]), lc.tenant
	}
	ctx := context.Background()
	s, err := startServer(ctx, c, o)
	if err != nil {
		ts.Fatalf("serve-test: %v\n%s", err, out)
	}
	ts.Defer(func() {
		if err := s.shutdown(); err != nil {
			ts.Logf("serve-test shutdown: %v", err)
		}
		ts.Logf("serve-test output:\n%s", out)
	})
	var key string
	defer s.serve()
	if args[0] == "-tenant" {
		key, err = s.devKey(ctx, args[1])
		ts.Check(err)
	} else {
		if code := s.dev(ctx, c, ts.MkAbs(args[0]), lc); code != 0 {
			ts.Fatalf("serve-test %s: exit %d\n%s", args[0], code, out)
		}
		key = strings.TrimSpace(ts.ReadFile(".ferry-server-test/" + devKeyFile))
	}
	ts.Setenv("FERRY_SERVER", s.url)
	ts.Setenv("FERRY_API_KEY", key)
}

// lockedBuffer is a bytes.Buffer safe for the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// cmdHTTPGet gets a URL and writes the body to stdout; it fails unless the
// status is 200 (with !, unless it is not). -wait retries for up to 30s
// until the answer is 200: httpget [-wait] URL.
func cmdHTTPGet(ts *testscript.TestScript, neg bool, args []string) {
	wait := len(args) == 2 && args[0] == "-wait"
	if wait {
		args = args[1:]
	}
	if len(args) != 1 || (wait && neg) {
		ts.Fatalf("usage: httpget [-wait] URL")
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(args[0])
		if wait && (err != nil || resp.StatusCode != http.StatusOK) && time.Now().Before(deadline) {
			if err == nil {
				resp.Body.Close()
			}
			time.Sleep(20 * time.Millisecond)
			continue
		}
		ts.Check(err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		ts.Check(err)
		ts.Stdout().Write(b)
		if ok := resp.StatusCode == http.StatusOK; ok == neg {
			ts.Fatalf("GET %s: %s", args[0], resp.Status)
		}
		return
	}
}

// cmdAPI calls the REST API of $FERRY_SERVER with $FERRY_API_KEY and writes
// the answer's body to stdout; it fails unless the status is 2xx (with !,
// unless it is not): api METHOD PATH [JSON].
func cmdAPI(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 || len(args) > 3 {
		ts.Fatalf("usage: api METHOD PATH [JSON]")
	}
	var body io.Reader
	if len(args) == 3 {
		body = strings.NewReader(args[2])
	}
	req, err := http.NewRequest(args[0], ts.Getenv("FERRY_SERVER")+args[1], body)
	ts.Check(err)
	req.Header.Set("Authorization", "ApiKey "+ts.Getenv("FERRY_API_KEY"))
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	ts.Check(err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	ts.Check(err)
	ts.Stdout().Write(b)
	if ok := resp.StatusCode/100 == 2; ok == neg {
		ts.Fatalf("%s %s: %s", args[0], args[1], resp.Status)
	}
}

// cmdFreePort sets VAR to a free loopback TCP port: freeport VAR.
func cmdFreePort(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: freeport VAR")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	port := ln.Addr().(*net.TCPAddr).Port
	ts.Check(ln.Close())
	ts.Setenv(args[0], strconv.Itoa(port))
}

// cmdWaitFile waits up to 60s for a file to exist and be non-empty (a
// background process writing it): waitfile FILE.
func cmdWaitFile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waitfile FILE")
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if fi, err := os.Stat(ts.MkAbs(args[0])); err == nil && fi.Size() > 0 {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("%s did not appear within 60s", args[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cmdExitCode runs a program and checks its exit status; stdout and stderr
// are checked as after exec: exitcode N PROG [ARGS...].
func cmdExitCode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exitcode N PROG [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("%s: %v", args[1], err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("%s exited with %d, want %d", strings.Join(args[1:], " "), got, want)
	}
}

// cmdEnvFile sets VAR to the content of FILE without surrounding space:
// envfile VAR FILE.
func cmdEnvFile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: envfile VAR FILE")
	}
	ts.Setenv(args[0], strings.TrimSpace(ts.ReadFile(args[1])))
}
