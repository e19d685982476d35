package main

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/lang"
)

// A short load: every kind of request is sent and answered without error,
// every accepted record reaches the sink, and the report has its table,
// memory lines and run counts.
func TestLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node and loads it for seconds")
	}
	var out strings.Builder
	if err := load(loadOptions{duration: 2 * time.Second, webhooks: 2, triggers: 1, reads: 1}, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	report := out.String()
	t.Log("\n" + report)
	for _, kind := range []string{"webhook (202)", "sync event, wait (200)", "GET /v1/runs", "GET /v1/runs/{id}", "GET /v1/config", "GET /v1/dlq"} {
		m := regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(kind) + `\s+(\d+)\s+\S+\s+\S+\s+\S+\s+(\d+)$`).FindStringSubmatch(report)
		if m == nil {
			t.Errorf("no row for %s", kind)
			continue
		}
		if n, _ := strconv.Atoi(m[1]); n == 0 && kind != "GET /v1/runs/{id}" {
			t.Errorf("%s: no requests", kind)
		}
		if m[2] != "0" {
			t.Errorf("%s: %s errors", kind, m[2])
		}
	}
	for _, want := range []string{"start ", "during, at ", "end (runs settled) ", "retained in JetStream", " 0 missing from the sink"} {
		if !strings.Contains(report, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	if m := regexp.MustCompile(`records: (\d+) accepted`).FindStringSubmatch(report); m == nil || m[1] == "0" {
		t.Errorf("no records accepted")
	}
}

// With -load-retention the webhook keeps its delivery ids that long.
func TestConfigForRetention(t *testing.T) {
	for _, d := range []time.Duration{0, 20 * time.Second} {
		cfg, diags := lang.LoadSources(t.TempDir(), map[string][]byte{"main.hcl": []byte(configFor(d))}, lang.LoadOptions{})
		if diags.HasErrors() {
			t.Fatalf("retention %s: %v", d, diags)
		}
		want := d
		if d == 0 {
			want = lang.DefaultDedupeWindow
		}
		if got := cfg.Integrations["products"].Webhook.DedupeWindow; got != want {
			t.Errorf("retention %s: dedupe_window %s, want %s", d, got, want)
		}
	}
}
