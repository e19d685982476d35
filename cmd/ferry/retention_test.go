package main

import (
	"context"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/runtime"
)

const day = 24 * time.Hour

// TestRetentionFlags: --run-retention and --dlq-retention (or their
// variables) reach the runtime; ferry serve's unset ones are the defaults,
// ferry run's leave the store's; bad values are refused with what to write.
func TestRetentionFlags(t *testing.T) {
	t.Setenv("FERRY_RUN_RETENTION", "")
	t.Setenv("FERRY_DLQ_RETENTION", "")
	parse := func(owner bool, args ...string) *connFlags {
		t.Helper()
		var f connFlags
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		f.declareRetention(fs, owner)
		if err := fs.Parse(args); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return &f
	}
	apply := func(f *connFlags) (runtime.Options, error) {
		var o runtime.Options
		err := f.retention.apply(&o)
		return o, err
	}

	o, err := apply(parse(true, "--run-retention", "30d", "--dlq-retention", "12h"))
	if err != nil || o.RunRetention != 30*day || o.DLQRetention != 12*time.Hour || o.KeepRetention {
		t.Errorf("serve flags: %+v %v", o, err)
	}
	if o, err := apply(parse(true)); err != nil || o.RunRetention != 0 || o.DLQRetention != 0 || o.KeepRetention {
		t.Errorf("serve without flags: %+v %v", o, err)
	}
	if o, err := apply(parse(false)); err != nil || !o.KeepRetention || o.RunRetention != 0 {
		t.Errorf("run without flags: %+v %v", o, err)
	}
	if o, err := apply(parse(false, "--run-retention=90m")); err != nil || !o.KeepRetention || o.RunRetention != 90*time.Minute || o.DLQRetention != 0 {
		t.Errorf("run with --run-retention: %+v %v", o, err)
	}
	// Tools that declare no retention flags keep the store's.
	if o, err := apply(&connFlags{}); err != nil || !o.KeepRetention {
		t.Errorf("tool: %+v %v", o, err)
	}

	t.Setenv("FERRY_RUN_RETENTION", "14d")
	t.Setenv("FERRY_DLQ_RETENTION", "0")
	if o, err := apply(parse(true, "--dlq-retention", "60d")); err != nil || o.RunRetention != 14*day || o.DLQRetention != 60*day {
		t.Errorf("variables under flags: %+v %v", o, err)
	}
	if o, err := apply(parse(true)); err != nil || o.RunRetention != 14*day || o.DLQRetention != 0 {
		t.Errorf("variables: %+v %v", o, err)
	}
	t.Setenv("FERRY_RUN_RETENTION", "")
	t.Setenv("FERRY_DLQ_RETENTION", "")

	for _, c := range []struct {
		owner bool
		args  []string
		want  string
	}{
		{true, []string{"--run-retention", "1s"}, "--run-retention 1s: must be at least"},
		{true, []string{"--run-retention", "0"}, "--run-retention 0s: must be at least"},
		{false, []string{"--dlq-retention", "0"}, "only be set by ferry serve"},
	} {
		if _, err := apply(parse(c.owner, c.args...)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
	var fs = flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var f connFlags
	f.declareRetention(fs, true)
	for _, bad := range []string{"week", "-1h", "3.5d", "-2d"} {
		if err := fs.Parse([]string{"--run-retention", bad}); err == nil || !strings.Contains(err.Error(), "30d") {
			t.Errorf("--run-retention %s: %v", bad, err)
		}
	}
	t.Setenv("FERRY_DLQ_RETENTION", "forever")
	if _, err := apply(parse(true)); err == nil || !strings.Contains(err.Error(), "FERRY_DLQ_RETENTION") {
		t.Errorf("FERRY_DLQ_RETENTION=forever: %v", err)
	}
}

// TestRetentionOfAStore: ferry serve's retention is the store's; ferry run
// on that store without the flags leaves it, with one flag changes that one.
func TestRetentionOfAStore(t *testing.T) {
	t.Setenv("FERRY_RUN_RETENTION", "")
	t.Setenv("FERRY_DLQ_RETENTION", "")
	dir := t.TempDir()
	open := func(owner bool, args ...string) (runs, dlq time.Duration) {
		t.Helper()
		f := connFlags{dataDir: dir}
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		f.declareRetention(fs, owner)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		st, err := f.open(context.Background(), &ctx{stdout: io.Discard, stderr: io.Discard}, dir, false)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		return st.Retention()
	}
	if r, d := open(true, "--run-retention", "30d", "--dlq-retention", "90d"); r != 30*day || d != 90*day {
		t.Fatalf("serve: %s %s", r, d)
	}
	if r, d := open(false); r != 30*day || d != 90*day {
		t.Errorf("run without flags changed the store's retention: %s %s", r, d)
	}
	if r, d := open(false, "--run-retention", "10d"); r != 10*day || d != 90*day {
		t.Errorf("run --run-retention 10d: %s %s", r, d)
	}
	if r, d := open(true); r != runtime.DefaultRunRetention || d != 0 {
		t.Errorf("serve without flags: %s %s", r, d)
	}
}
