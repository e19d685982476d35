package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhq/ferry/connectors"
	"github.com/ferryhq/ferry/engine"
	"github.com/ferryhq/ferry/lang"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

// The "faultsink" connector puts a test's faultSink behind a configuration:
// connection "x" { type = "faultsink" name = "<key of faultSinks>" }.
var faultSinks sync.Map // name → *faultSink

type faultSinkConn struct{ s *faultSink }

func (faultSinkConn) Source(cty.Value) (connectors.Source, error) {
	return nil, errors.New("faultsink is a target only")
}
func (c faultSinkConn) Sink(cty.Value) (connectors.Sink, error) { return c.s, nil }

func init() {
	connectors.Register(&connectors.Connector{
		Type:        "faultsink",
		Description: "runtime tests: a target whose calls a test makes fail or hang",
		Connection:  hcldec.ObjectSpec{"name": &hcldec.AttrSpec{Name: "name", Type: cty.String, Required: true}},
		Target:      hcldec.ObjectSpec{},
		Open: func(_ connectors.Env, cfg cty.Value) (connectors.Connection, error) {
			s, ok := faultSinks.Load(cfg.GetAttr("name").AsString())
			if !ok {
				return nil, fmt.Errorf("faultsink: no sink named %s", cfg.GetAttr("name").AsString())
			}
			return faultSinkConn{s.(*faultSink)}, nil
		},
	})
}

// timeoutProgram compiles integrations "bounded" (writing to the sink
// bounded, with timeout = targetTimeout) and "unbounded" (to the sink
// unbounded, without a timeout), each reading n records {"id": i}.
func timeoutProgram(t *testing.T, n int, bounded, unbounded *faultSink, targetTimeout string) *engine.Program {
	t.Helper()
	dir := t.TempDir()
	for name, s := range map[string]*faultSink{"bounded": bounded, "unbounded": unbounded} {
		faultSinks.Store(t.Name()+"/"+name, s)
		t.Cleanup(func() { faultSinks.Delete(t.Name() + "/" + name) })
	}
	var in strings.Builder
	for i := range n {
		fmt.Fprintf(&in, "{\"id\":%d}\n", i)
	}
	if err := os.WriteFile(filepath.Join(dir, "in.ndjson"), []byte(in.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	integration := func(name, timeout string) string {
		return `
connection "` + name + `" {
  type = "faultsink"
  name = "` + t.Name() + "/" + name + `"
}

integration "` + name + `" {
  source {
    connection = connection.files
    path       = "in.ndjson"
    format     = "ndjson"
  }
  target {
    connection = connection.` + name + `
    batch_size = 10
    ` + timeout + `
  }
  retry {
    max_attempts = 1
  }
  workers = 2
}
`
	}
	hcl := `
ferry {
  tenant = "acme"
}

connection "files" {
  type = "file"
  path = "."
}
` + integration("bounded", `timeout = "`+targetTimeout+`"`) + integration("unbounded", "")
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(hcl), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, diags := lang.Load(dir, lang.LoadOptions{})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	prog, diags := engine.Compile(cfg)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	return prog
}

// A target's timeout (timeout = "200ms" in its block) bounds each of its
// calls in place of Options.SinkTimeout: a call that hangs is cancelled at
// 200ms and its records fail transiently, naming the limit; a target
// without a timeout gets Options.SinkTimeout; a DLQ replay goes by the
// target's timeout too.
func TestTargetTimeoutFromConfig(t *testing.T) {
	checkGoroutines(t)
	const n = 30
	// left records the time left before each call's deadline.
	type calls struct {
		mu   sync.Mutex
		left []time.Duration
	}
	var boundedCalls, unboundedCalls calls
	deadlineOf := func(c *calls, ctx context.Context) error {
		dl, ok := ctx.Deadline()
		if !ok {
			return errors.New("a sink call without a deadline")
		}
		c.mu.Lock()
		c.left = append(c.left, time.Until(dl))
		c.mu.Unlock()
		return nil
	}
	var hang atomic.Bool
	hang.Store(true)
	bounded, unbounded := newFaultSink(), newFaultSink()
	bounded.before = func(ctx context.Context, _ []connectors.Write, _ int) error {
		if err := deadlineOf(&boundedCalls, ctx); err != nil || !hang.Load() {
			return err
		}
		// A hung target: only the runtime's limit ends the call (a test
		// without it fails, not hangs).
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Second):
			return connectors.Permanent(errors.New("the runtime did not end a hung call"))
		}
	}
	unbounded.before = func(ctx context.Context, _ []connectors.Write, _ int) error {
		return deadlineOf(&unboundedCalls, ctx)
	}
	prog := timeoutProgram(t, n, bounded, unbounded, "200ms")
	rt := openTest(t, Options{SinkTimeout: time.Hour})
	ctx := context.Background()

	res, err := rt.Run(ctx, "acme", prog, "bounded", RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkCounts(t, res.Counts)
	if res.Status != engine.RunFailed || res.Counts.Failed != n {
		t.Fatalf("run with a hung target: %s %+v, want all %d failed", res.Status, res.Counts, n)
	}
	p, err := rt.DLQ().List(ctx, "acme", DLQFilter{RunID: res.ID, PageSize: n})
	if err != nil || p.Total != n {
		t.Fatalf("DLQ: %+v %v", p, err)
	}
	for _, e := range p.Entries {
		if e.Category != connectors.CategoryTransient || e.Stage != engine.StageExecute || !strings.Contains(e.Error, "sink timeout (200ms)") {
			t.Fatalf("DLQ entry %s: %s %s %q; want a transient execute failure naming the 200ms limit", e.ID, e.Category, e.Stage, e.Error)
		}
	}

	// The target answers again: a replay goes by its timeout as well.
	hang.Store(false)
	e, err := rt.DLQ().Replay(ctx, "acme", p.Entries[0].ID, ProgramJobs("acme", prog, nil, "r2"), ReplayOptions{})
	if err != nil || e.Status != DLQReplayed {
		t.Fatalf("replay: %+v %v", e, err)
	}

	res, err = rt.Run(ctx, "acme", prog, "unbounded", RunOptions{})
	if err != nil || res.Status != engine.RunSucceeded || res.Counts.Success != n {
		t.Fatalf("run without a target timeout: %+v %v", res, err)
	}

	if len(boundedCalls.left) != n/10+1 || len(unboundedCalls.left) != n/10 {
		t.Fatalf("calls: %d bounded (want %d), %d unbounded (want %d)", len(boundedCalls.left), n/10+1, len(unboundedCalls.left), n/10)
	}
	for _, left := range boundedCalls.left {
		if left > 200*time.Millisecond {
			t.Errorf("a call of the target with timeout = \"200ms\" had %s left", left)
		}
	}
	for _, left := range unboundedCalls.left {
		if left <= 200*time.Millisecond || left > time.Hour {
			t.Errorf("a call of the target without a timeout had %s left, want Options.SinkTimeout (1h)", left)
		}
	}
}
