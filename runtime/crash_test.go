package runtime

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	_ "github.com/ferryhq/ferry/connectors/file"
	"github.com/zclconf/go-cty/cty"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/connectors"
	"github.com/ferryhq/ferry/engine"
)

// The crash helper is this test binary re-executed with FERRY_CRASH_HELPER set:
// it runs (or resumes) a durable run of FERRY_CRASH_N records into the file sink
// FERRY_CRASH_OUT and prints the result as JSON.
func TestCrashHelper(t *testing.T) {
	if os.Getenv("FERRY_CRASH_HELPER") == "" {
		t.Skip("helper process for TestCrashRecovery")
	}
	n, _ := strconv.Atoi(os.Getenv("FERRY_CRASH_N"))
	delay, _ := time.ParseDuration(os.Getenv("FERRY_CRASH_DELAY"))
	flaky, _ := time.ParseDuration(os.Getenv("FERRY_CRASH_FLAKY")) // all writes fail transiently this long
	rt, err := Open(context.Background(), Options{DataDir: os.Getenv("FERRY_CRASH_DATA")})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	sink := newFileSink(t, os.Getenv("FERRY_CRASH_OUT"))
	sink.delay = delay
	start := time.Now()
	var mu sync.Mutex
	tries := map[string]int{}
	if flaky > 0 {
		sink.fail = func(w connectors.Write) error {
			mu.Lock()
			defer mu.Unlock()
			tries[w.Key]++
			// Fail during the outage, and every 10th record's first try in this process.
			if time.Since(start) < flaky || (tries[w.Key] == 1 && len(w.Key) > 0 && w.Key[len(w.Key)-1] == '7') {
				return connectors.Transient(errors.New("503 service unavailable"), 0)
			}
			return nil
		}
	}
	job := testJob("acme", "crash", genSource{n: n}, sink)
	if flaky == 0 {
		// The reliable case writes through the real file connector, so its
		// buffering, Flush and continue-on-resume are what the crash tests.
		job.OpenSink = func(_ context.Context, opts connectors.SinkOptions) (connectors.Sink, error) {
			return realFileSinkOpts(t, os.Getenv("FERRY_CRASH_OUT"), delay, opts), nil
		}
	}
	job.Retry = RetryPolicy{MaxAttempts: 50, Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond, Multiplier: 2, Jitter: 0.2}
	res, err := rt.RunJob(context.Background(), job, RunOptions{RunID: os.Getenv("FERRY_CRASH_RUN"), Trigger: "crash-test"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(res)
	fmt.Printf("RESULT %s\n", b)
}

func countLines(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return bytes.Count(b, []byte{'\n'})
}

func crashChild(t *testing.T, dir, out string, n int, delay, flaky time.Duration) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.v")
	cmd.Env = append(os.Environ(),
		"FERRY_CRASH_HELPER=1",
		"FERRY_CRASH_DATA="+dir,
		"FERRY_CRASH_OUT="+out,
		"FERRY_CRASH_RUN=crashrun",
		"FERRY_CRASH_N="+strconv.Itoa(n),
		"FERRY_CRASH_DELAY="+delay.String(),
		"FERRY_CRASH_FLAKY="+flaky.String(),
	)
	return cmd
}

func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	for _, tc := range []struct {
		name  string
		flaky time.Duration
	}{{"reliable sink", 0}, {"transiently failing sink", 300 * time.Millisecond}} {
		t.Run(tc.name, func(t *testing.T) { crashRecovery(t, tc.flaky) })
	}
}

func crashRecovery(t *testing.T, flaky time.Duration) {
	const n = 50000
	dir := t.TempDir()
	data, out := filepath.Join(dir, "data"), filepath.Join(dir, "out.ndjson")

	// 1. Start the run slowly and kill -9 it in the middle.
	first := crashChild(t, data, out, n, 3*time.Millisecond, flaky)
	var firstOut bytes.Buffer
	first.Stdout, first.Stderr = &firstOut, &firstOut
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for countLines(out) < 8000 {
		if time.Now().After(deadline) {
			first.Process.Kill()
			t.Fatalf("first run wrote too little:\n%s", firstOut.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := first.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	_ = first.Wait()
	written := countLines(out)
	if written >= n {
		t.Fatalf("the first run finished before it was killed (%d lines)", written)
	}
	t.Logf("killed after %d records reached the sink", written)

	// 2. Start it again with the same run id; it resumes.
	second := crashChild(t, data, out, n, 0, flaky)
	outb, err := second.CombinedOutput()
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, outb)
	}
	var res engine.RunResult
	sc := bufio.NewScanner(bytes.NewReader(outb))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if l, ok := bytes.CutPrefix(sc.Bytes(), []byte("RESULT ")); ok {
			if err := json.Unmarshal(l, &res); err != nil {
				t.Fatal(err)
			}
		}
	}

	// 3. Every record reached the sink at least once; the counts reconcile.
	keys := readKeys(t, out)
	missing, dups := 0, 0
	for i := range n {
		switch c := keys[strconv.Itoa(i)]; {
		case c == 0:
			missing++
		case c > 1:
			dups++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d records never reached the sink\n%s", missing, n, outb)
	}
	t.Logf("resumed run: %s %+v; %d records delivered twice (at-least-once)", res.Status, res.Counts, dups)
	if res.Status != engine.RunSucceeded || res.Counts.Total != n || res.Counts.Success != n || res.Counts.Failed != 0 {
		t.Fatalf("result %s %+v", res.Status, res.Counts)
	}
	if flaky > 0 && res.Counts.Retried == 0 {
		t.Fatal("no retries counted with a failing sink")
	}
	rt := openTest(t, Options{DataDir: data})
	run, err := rt.Runs().Get(context.Background(), "acme", "crashrun")
	if err != nil {
		t.Fatal(err)
	}
	checkCounts(t, run.Counts)
	if run.Counts != res.Counts || run.Resumes != 1 || run.Trigger != "crash-test" {
		t.Fatalf("stored run %+v", run)
	}
	if p, _ := rt.DLQ().List(context.Background(), "acme", DLQFilter{}); p.Total != 0 {
		t.Fatalf("DLQ has %d entries", p.Total)
	}
}

// keyedSink wraps the real file sink: it writes {"key", "record"} lines (what
// readKeys expects) and slows writes down so the parent can kill it mid-run.
type keyedSink struct {
	connectors.Sink
	delay time.Duration
}

func (k keyedSink) Write(ctx context.Context, ws []connectors.Write) []error {
	time.Sleep(k.delay)
	wrapped := make([]connectors.Write, len(ws))
	for i, w := range ws {
		wrapped[i] = w
		wrapped[i].Record = map[string]any{"key": w.Key, "record": w.Record}
	}
	return k.Sink.Write(ctx, wrapped)
}

func (k keyedSink) Flush(ctx context.Context) error { return k.Sink.(connectors.Flusher).Flush(ctx) }
func (k keyedSink) ConcurrentWrites() bool          { return true }

func realFileSinkOpts(t *testing.T, path string, delay time.Duration, opts connectors.SinkOptions) connectors.Sink {
	ct, ok := connectors.Lookup("file")
	if !ok {
		t.Fatal("file connector not registered")
	}
	conn, err := ct.Open(connectors.Env{Dir: filepath.Dir(path)}, cty.ObjectVal(map[string]cty.Value{"path": cty.NullVal(cty.String), "format": cty.NullVal(cty.String)}))
	if err != nil {
		t.Fatal(err)
	}
	s, err := connectors.OpenSink(conn, cty.ObjectVal(map[string]cty.Value{
		"path": cty.StringVal(filepath.Base(path)), "format": cty.StringVal("ndjson"),
		"columns": cty.NullVal(cty.List(cty.String)), "append": cty.NullVal(cty.Bool),
	}), opts)
	if err != nil {
		t.Fatal(err)
	}
	return keyedSink{Sink: s, delay: delay}
}
