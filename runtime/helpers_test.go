package runtime

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhq/ferry/connectors"
	"github.com/ferryhq/ferry/engine"
)

func openTest(t testing.TB, opts Options) *Runtime {
	t.Helper()
	if opts.DataDir == "" && opts.NATSURL == "" {
		opts.DataDir = t.TempDir()
	}
	rt, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

// genSource emits n records {"id": i, "name": "n<i>", "v": i%7} in order; extra
// lets a test set fields per record.
type genSource struct {
	n     int
	start int
	extra func(i int, m map[string]any)
}

func (s genSource) Read(ctx context.Context, _ connectors.ReadRequest, emit func(connectors.Record) error) error {
	for i := s.start; i < s.start+s.n; i++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		m := map[string]any{"id": i, "name": "n" + strconv.Itoa(i), "v": i % 7}
		if s.extra != nil {
			s.extra(i, m)
		}
		raw, _ := json.Marshal(m)
		if err := emit(connectors.Record{Raw: raw, Position: "gen:" + strconv.Itoa(i)}); err != nil {
			return err
		}
	}
	return nil
}

// listSource emits fixed records.
type listSource []map[string]any

func (s listSource) Read(ctx context.Context, _ connectors.ReadRequest, emit func(connectors.Record) error) error {
	for i, m := range s {
		raw, _ := json.Marshal(m)
		if err := emit(connectors.Record{Raw: raw, Position: "list:" + strconv.Itoa(i)}); err != nil {
			return err
		}
	}
	return nil
}

// testPrep is a Preparer: key = id; {"skip":true} is filtered; {"bad":true} fails
// normalize permanently; {"unfixable": true} too. Hash is set when hash is true.
type testPrep struct{ hash bool }

func (p testPrep) Prepare(rec *connectors.Record) engine.Prepared {
	if err := rec.Decode(); err != nil {
		return engine.Prepared{Outcome: engine.Failed, Stage: engine.StageNormalize, Err: err}
	}
	key := fmt.Sprint(rec.Data["id"])
	rec.Key = key
	if b, _ := rec.Data["bad"].(bool); b {
		return engine.Prepared{Outcome: engine.Failed, Key: key, Stage: engine.StageNormalize,
			Err: connectors.Permanent(errors.New("field bad is true"))}
	}
	if b, _ := rec.Data["skip"].(bool); b {
		return engine.Prepared{Outcome: engine.Skipped, Key: key, Stage: engine.StageTransform, Reason: "filter"}
	}
	pr := engine.Prepared{Outcome: engine.Ready, Key: key,
		Write: connectors.Write{Key: key, Operation: connectors.OpUpsert, Record: rec.Data}}
	if p.hash {
		b, _ := json.Marshal(rec.Data)
		h := sha256.Sum256(b)
		pr.Hash = hex.EncodeToString(h[:])
	}
	return pr
}

// fileSink appends one NDJSON line per write with a single write(2) per call,
// so what Write returned is in the file even after kill -9. fail decides per
// write; delay slows every call.
type fileSink struct {
	mu    sync.Mutex
	f     *os.File
	fail  func(w connectors.Write) error
	delay time.Duration
	calls atomic.Int64
}

func newFileSink(t testing.TB, path string) *fileSink {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	return &fileSink{f: f}
}

func (s *fileSink) Write(ctx context.Context, ws []connectors.Write) []error {
	s.calls.Add(1)
	if s.delay > 0 {
		time.Sleep(s.delay)
	}
	var errs []error
	var buf bytes.Buffer
	for i, w := range ws {
		if s.fail != nil {
			if err := s.fail(w); err != nil {
				if errs == nil {
					errs = make([]error, len(ws))
				}
				errs[i] = err
				continue
			}
		}
		b, _ := json.Marshal(map[string]any{"key": w.Key, "record": w.Record})
		buf.Write(b)
		buf.WriteByte('\n')
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.f.Write(buf.Bytes()); err != nil {
		for i := range ws {
			if errs == nil {
				errs = make([]error, len(ws))
			}
			errs[i] = connectors.Transient(err, 0)
		}
	}
	return errs
}

func (s *fileSink) Close(context.Context) error { return nil }

// readKeys counts the lines per key in an NDJSON file written by fileSink.
func readKeys(t testing.TB, path string) map[string]int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l struct{ Key string }
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Key != "" {
			out[l.Key]++
		}
	}
	return out
}

func testJob(tenant, integration string, src connectors.Source, sink connectors.Sink) *Job {
	return &Job{
		Tenant: tenant, Integration: integration, Revision: "rev1",
		NewPreparer: func() Preparer { return testPrep{} },
		OpenSource:  func(context.Context) (connectors.Source, error) { return src, nil },
		OpenSink:    func(context.Context, connectors.SinkOptions) (connectors.Sink, error) { return sink, nil },
		Retry:       RetryPolicy{MaxAttempts: 3, Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond, Multiplier: 2, Jitter: 0.2},
		Workers:     2,
	}
}

func checkCounts(t testing.TB, c engine.Counts) {
	t.Helper()
	if c.Total != c.Success+c.Failed+c.Skipped {
		t.Fatalf("counts do not add up: %+v", c)
	}
}

func jobsOf(j *Job) JobFunc {
	return func(name string) (*Job, error) {
		if name != j.Integration {
			return nil, fmt.Errorf("no integration %s", name)
		}
		return j, nil
	}
}
