package lang

import (
	"strings"
	"testing"
	"time"
)

// A webhook's dedupe_window is how long its delivery ids are remembered:
// a duration from 1s to 72h, 24h without the attribute. It is not one of
// the verify mode's settings (Config), which the webhook package checks.
func TestWebhookDedupeWindow(t *testing.T) {
	webhook := func(attr string) string {
		return integ(okSource + okTarget + "webhook {\n  verify = \"shopify\"\n" + attr + "\n}")
	}
	for value, want := range map[string]time.Duration{`"5h"`: 5 * time.Hour, `"1s"`: time.Second, `"72h"`: 72 * time.Hour, `"90m"`: 90 * time.Minute} {
		cfg := mustLoad(t, map[string]string{"main.hcl": webhook("  dedupe_window = " + value)}, LoadOptions{})
		w := cfg.Integrations["i"].Webhook
		if w.DedupeWindow != want {
			t.Errorf("dedupe_window = %s: %s, want %s", value, w.DedupeWindow, want)
		}
		if _, ok := w.Config["dedupe_window"]; ok {
			t.Errorf("dedupe_window is passed on to the verify mode's settings: %v", w.Config)
		}
	}
	cfg := mustLoad(t, map[string]string{"main.hcl": webhook("")}, LoadOptions{})
	if got := cfg.Integrations["i"].Webhook.DedupeWindow; got != 24*time.Hour {
		t.Errorf("dedupe_window without the attribute = %s, want 24h", got)
	}

	for name, tc := range map[string]struct {
		value, summary string
		fragments      []string
	}{
		"not a duration": {`"4 hours"`, "Invalid duration", []string{`"4 hours" is not a valid duration for "dedupe_window"`}},
		"no unit":        {`3600`, "Invalid duration", []string{`"3600" is not a valid duration for "dedupe_window"`, "missing unit"}},
		"zero":           {`"0s"`, "Invalid duration", []string{"it must be positive"}},
		"negative":       {`"-1h"`, "Invalid duration", []string{"it must be positive"}},
		"too short":      {`"500ms"`, "Invalid dedupe window", []string{"500ms is shorter than 1s", `from "1s" to "72h"`, `"5h" for Shopify`, `it is "24h"`}},
		"too long":       {`"96h"`, "Invalid dedupe window", []string{"96h is longer than 72h", `from "1s" to "72h"`}},
		"a week":         {`"168h30m"`, "Invalid dedupe window", []string{"168h30m is longer than 72h"}},
		"not a string":   {`["4h"]`, "Incorrect attribute value type", nil},
	} {
		t.Run(name, func(t *testing.T) {
			src := webhook("  dedupe_window = " + tc.value)
			cfg, diags := load(t, map[string]string{"main.hcl": src}, LoadOptions{})
			d := wantDiag(t, diags, tc.summary, tc.fragments...)
			// The error points at the value, on the dedupe_window line.
			line := strings.Count(src[:strings.Index(src, "dedupe_window =")], "\n") + 1
			if d.Subject == nil || d.Subject.Start.Line != line {
				t.Errorf("subject %v, want line %d", d.Subject, line)
			}
			if len(diags) != 1 {
				t.Errorf("%d diagnostics, want 1:\n%s", len(diags), diagString(cfg, diags))
			}
		})
	}
}

// A REST client may set the window when it writes an integration block.
func TestBlockHCLWebhookDedupeWindow(t *testing.T) {
	got, err := BlockHCL("integration", "sync", map[string]any{
		"source":  map[string]any{"connection": "files", "path": "in.json"},
		"target":  map[string]any{"connection": "api"},
		"webhook": map[string]any{"verify": "shopify", "dedupe_window": "5h"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(got), `dedupe_window = "5h"`) {
		t.Errorf("the webhook's dedupe_window is not written:\n%s", got)
	}
}

// dedupe_window on a webhook whose deliveries carry no id (a mode other than
// shopify without id_header) would silently do nothing: a warning says so.
func TestWebhookDedupeWindowWithoutDeliveryID(t *testing.T) {
	src := integ(okSource + okTarget + "webhook {\n  verify = \"none\"\n  dedupe_window = \"5h\"\n}")
	cfg, diags := load(t, map[string]string{"main.hcl": src}, LoadOptions{})
	d := wantDiag(t, diags, "dedupe_window without a delivery id", "Set id_header")
	if diags.HasErrors() || d.Subject == nil || cfg.Integrations["i"] == nil {
		t.Fatalf("want only a warning on dedupe_window:\n%s", diagString(cfg, diags))
	}
	for _, ok := range []string{
		"webhook {\n  verify = \"none\"\n  id_header = \"X-Delivery\"\n  dedupe_window = \"5h\"\n}",
		"webhook {\n  verify = \"none\"\n}",
	} {
		if _, diags := load(t, map[string]string{"main.hcl": integ(okSource + okTarget + ok)}, LoadOptions{}); len(diags) != 0 {
			t.Errorf("%s:\n%v", ok, diags)
		}
	}
}
