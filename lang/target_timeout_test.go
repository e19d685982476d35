package lang

import (
	"strings"
	"testing"
	"time"
)

// A target's timeout bounds each of its sink calls: a positive duration,
// absent by default (the runtime's default applies then).
func TestTargetTimeout(t *testing.T) {
	target := func(attr string) string {
		return integ(okSource + "target {\n  connection = connection.api\n" + attr + "\n}")
	}
	cfg := mustLoad(t, map[string]string{"main.hcl": target(`  timeout = "30s"`)}, LoadOptions{})
	if got := cfg.Integrations["i"].Target.Timeout; got != 30*time.Second {
		t.Errorf("timeout = %s, want 30s", got)
	}
	cfg = mustLoad(t, map[string]string{"main.hcl": target("")}, LoadOptions{})
	if got := cfg.Integrations["i"].Target.Timeout; got != 0 {
		t.Errorf("timeout without the attribute = %s, want 0 (the runtime's default)", got)
	}

	for name, tc := range map[string]struct {
		value     string
		fragments []string
	}{
		"not a duration": {`"soon"`, []string{`"soon" is not a valid duration for "timeout"`, `"30s"`}},
		"no unit":        {`30`, []string{`"30" is not a valid duration for "timeout"`, "missing unit"}},
		"zero":           {`"0s"`, []string{`"0s"`, "it must be positive"}},
		"negative":       {`"-5s"`, []string{`"-5s"`, "it must be positive"}},
		"not a string":   {`["30s"]`, nil},
	} {
		t.Run(name, func(t *testing.T) {
			src := target("  timeout = " + tc.value)
			_, diags := load(t, map[string]string{"main.hcl": src}, LoadOptions{})
			summary := "Invalid duration"
			if name == "not a string" {
				summary = "Incorrect attribute value type"
			}
			d := wantDiag(t, diags, summary, tc.fragments...)
			// The error points at the value, on the timeout line.
			line := strings.Count(src[:strings.Index(src, "timeout =")], "\n") + 1
			if d.Subject == nil || d.Subject.Start.Line != line {
				t.Errorf("subject %v, want line %d", d.Subject, line)
			}
		})
	}
}

// A REST client may set the timeout when it writes an integration block.
func TestBlockHCLTargetTimeout(t *testing.T) {
	got, err := BlockHCL("integration", "sync", map[string]any{
		"source": map[string]any{"connection": "files", "path": "in.json"},
		"target": map[string]any{"connection": "api", "timeout": "45s"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(got), `timeout    = "45s"`) {
		t.Errorf("the target's timeout is not written:\n%s", got)
	}
}
