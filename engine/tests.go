package engine

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/ferryhq/ferry/connectors"
	"github.com/ferryhq/ferry/lang"
)

// TestResult is the outcome of one `test` block.
type TestResult struct {
	Name   string
	Passed bool
	// Diff lists differing paths as "- expected" / "+ got" lines.
	Diff string
	// Err is set when the test could not run or a record failed unexpectedly.
	Err string
}

// RunTests runs the config's test blocks whose names match filter (nil: all), in
// name order.
//
// A mapping test maps Input with the mapping and compares the output to Expect;
// an integration test feeds Records through the integration with an in-memory
// source and sink (nothing is written anywhere) and compares the captured writes
// to ExpectWrites, in order, and the counts to ExpectCounts.
//
// Comparison is on JSON values (numbers compare by value, 1 == 1.0) and is a
// subset match for objects: every key of the expectation must match, keys the
// expectation does not mention are ignored; an expected null matches a missing
// key. Lists and scalars must be equal.
func (p *Program) RunTests(ctx context.Context, filter *regexp.Regexp) []TestResult {
	var out []TestResult
	for _, name := range sortedKeys(p.Config.Tests) {
		t := p.Config.Tests[name]
		if t == nil || (filter != nil && !filter.MatchString(name)) {
			continue
		}
		var r TestResult
		switch {
		case t.Mapping != "":
			r = p.runMappingTest(t)
		case t.Integration != "":
			r = p.runIntegrationTest(ctx, t)
		default:
			r = TestResult{Err: "the test names neither a mapping nor an integration"}
		}
		r.Name = name
		out = append(out, r)
	}
	return out
}

func (p *Program) runMappingTest(t *lang.Test) TestResult {
	m, ok := p.Mappings[t.Mapping]
	if !ok {
		return TestResult{Err: fmt.Sprintf("unknown mapping %q", t.Mapping)}
	}
	in, err := normalizeJSON(t.Input)
	if err != nil {
		return TestResult{Err: fmt.Sprintf("input: %v", err)}
	}
	obj, ok := in.(map[string]any)
	if !ok {
		return TestResult{Err: fmt.Sprintf("input must be an object, got %s", describe(in))}
	}
	res, err := m.NewEvaluator().Apply(obj)
	if err != nil {
		return TestResult{Err: err.Error()}
	}
	switch {
	case t.ExpectSkip && res.Skipped:
		return TestResult{Passed: true}
	case t.ExpectSkip:
		return TestResult{Diff: "- skipped by the filter\n+ not skipped\n"}
	case res.Skipped:
		return TestResult{Diff: "- mapped\n+ skipped by the filter\n"}
	}
	got, err := normalizeJSON(res.Record)
	if err != nil {
		return TestResult{Err: fmt.Sprintf("output: %v", err)}
	}
	want, err := normalizeJSON(t.Expect)
	if err != nil {
		return TestResult{Err: fmt.Sprintf("expect: %v", err)}
	}
	if t.Expect == nil {
		want = map[string]any{}
	}
	var d differ
	d.diff("", want, got)
	return TestResult{Passed: d.b.Len() == 0, Diff: d.b.String()}
}

func (p *Program) runIntegrationTest(ctx context.Context, t *lang.Test) TestResult {
	if _, ok := p.Pipelines[t.Integration]; !ok {
		return TestResult{Err: fmt.Sprintf("unknown integration %q", t.Integration)}
	}
	src := &MemorySource{}
	for i, r := range t.Records {
		n, err := normalizeJSON(r)
		if err != nil {
			return TestResult{Err: fmt.Sprintf("record %d: %v", i, err)}
		}
		obj, ok := n.(map[string]any)
		if !ok {
			return TestResult{Err: fmt.Sprintf("record %d must be an object, got %s", i, describe(n))}
		}
		src.Records = append(src.Records, connectors.Record{Data: obj, Position: "record " + strconv.Itoa(i)})
	}
	sink := &MemorySink{}
	res, err := p.Run(ctx, t.Integration, RunOptions{Source: src, Sink: sink, Workers: 1})
	if err != nil {
		return TestResult{Err: err.Error()}
	}
	var d differ
	if t.ExpectWrites != nil {
		got := make([]any, len(sink.Writes))
		for i, w := range sink.Writes {
			g, err := normalizeJSON(w.Record)
			if err != nil {
				return TestResult{Err: fmt.Sprintf("write %d: %v", i, err)}
			}
			got[i] = g
		}
		want, err := normalizeJSON(t.ExpectWrites)
		if err != nil {
			return TestResult{Err: fmt.Sprintf("expect_writes: %v", err)}
		}
		d.diff("writes", want, any(got))
	}
	if t.ExpectCounts != nil {
		gotCounts := map[string]int64{
			"total": res.Counts.Total, "success": res.Counts.Success,
			"failed": res.Counts.Failed, "skipped": res.Counts.Skipped, "retried": res.Counts.Retried,
		}
		for _, k := range sortedKeys(t.ExpectCounts) {
			g, ok := gotCounts[k]
			if !ok {
				d.line("counts."+k, "a count: total, success, failed, skipped or retried", "unknown count")
				continue
			}
			if int64(t.ExpectCounts[k]) != g {
				d.line("counts."+k, strconv.Itoa(t.ExpectCounts[k]), strconv.FormatInt(g, 10))
			}
		}
	}
	r := TestResult{Passed: d.b.Len() == 0, Diff: d.b.String()}
	if !r.Passed && len(res.Failures) > 0 {
		var msgs []string
		for _, f := range res.Failures {
			msgs = append(msgs, fmt.Sprintf("%s (%s): %s", f.Position, f.Stage, f.Message))
		}
		r.Err = "failed records: " + strings.Join(msgs, "; ")
	}
	return r
}

// differ writes "- expected / + got" lines per differing JSON path.
type differ struct{ b strings.Builder }

func (d *differ) line(path, want, got string) {
	if path == "" {
		path = "(record)"
	}
	fmt.Fprintf(&d.b, "%s\n  - %s\n  + %s\n", path, want, got)
}

func (d *differ) diff(path string, want, got any) {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			d.line(path, render(want), render(got))
			return
		}
		keys := make([]string, 0, len(w))
		for k := range w {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			gv, present := g[k]
			if w[k] == nil && (!present || gv == nil) {
				continue
			}
			if !present {
				d.line(joinPath(path, k), render(w[k]), "(missing)")
				continue
			}
			d.diff(joinPath(path, k), w[k], gv)
		}
	case []any:
		g, ok := got.([]any)
		if !ok {
			d.line(path, render(want), render(got))
			return
		}
		for i := 0; i < max(len(w), len(g)); i++ {
			p := path + "[" + strconv.Itoa(i) + "]"
			switch {
			case i >= len(g):
				d.line(p, render(w[i]), "(missing)")
			case i >= len(w):
				d.line(p, "(nothing)", render(g[i]))
			default:
				d.diff(p, w[i], g[i])
			}
		}
	default:
		if !scalarEqual(want, got) {
			d.line(path, render(want), render(got))
		}
	}
}

func scalarEqual(a, b any) bool {
	switch x := a.(type) {
	case float64:
		y, ok := b.(float64)
		return ok && x == y
	case map[string]any, []any:
		return false
	}
	return a == b
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func render(v any) string {
	if v == nil {
		return "null"
	}
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	s, _ := stringify(v)
	return s
}

// MemorySource is a connectors.Source over records held in memory (tests, replays).
type MemorySource struct {
	Records []connectors.Record
}

// Read emits every record in order.
func (s *MemorySource) Read(ctx context.Context, _ connectors.ReadRequest, emit func(connectors.Record) error) error {
	for _, r := range s.Records {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := emit(r); err != nil {
			return err
		}
	}
	return nil
}

// MemorySink is a connectors.Sink that captures successful writes in memory.
// Fail, when set, is asked for every write attempt and may return an error for it.
type MemorySink struct {
	mu     sync.Mutex
	Writes []connectors.Write
	// Calls counts Write calls.
	Calls int
	// Fail returns an error for a write (attempt counts from 1 per key).
	Fail     func(w connectors.Write, attempt int) error
	attempts map[string]int
	Closed   bool
}

// Write records the writes that Fail does not fail.
func (s *MemorySink) Write(_ context.Context, writes []connectors.Write) []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Calls++
	var errs []error
	for i, w := range writes {
		if s.Fail != nil {
			if s.attempts == nil {
				s.attempts = map[string]int{}
			}
			s.attempts[w.Key]++
			if err := s.Fail(w, s.attempts[w.Key]); err != nil {
				if errs == nil {
					errs = make([]error, len(writes))
				}
				errs[i] = err
				continue
			}
		}
		s.Writes = append(s.Writes, w)
	}
	return errs
}

// Close marks the sink closed.
func (s *MemorySink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Closed = true
	return nil
}

var (
	_ connectors.Source = (*MemorySource)(nil)
	_ connectors.Sink   = (*MemorySink)(nil)
)
