package lang

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

func TestDiagnosticsJSON(t *testing.T) {
	diags := hcl.Diagnostics{
		{
			Severity: hcl.DiagError,
			Summary:  "Unsupported argument",
			Detail:   "An argument named \"x\" is not expected here.",
			Subject: &hcl.Range{Filename: "main.hcl", Start: hcl.Pos{Line: 3, Column: 5, Byte: 20},
				End: hcl.Pos{Line: 3, Column: 6, Byte: 21}},
		},
		{Severity: hcl.DiagWarning, Summary: "Value for undeclared variable", Detail: "d"},
	}
	b, err := DiagnosticsJSON(diags)
	if err != nil {
		t.Fatal(err)
	}
	var got any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"valid": false,
		"diagnostics": []any{
			map[string]any{
				"severity": "error",
				"summary":  "Unsupported argument",
				"detail":   "An argument named \"x\" is not expected here.",
				"range": map[string]any{
					"filename": "main.hcl",
					"start":    map[string]any{"line": float64(3), "column": float64(5)},
					"end":      map[string]any{"line": float64(3), "column": float64(6)},
				},
			},
			map[string]any{"severity": "warning", "summary": "Value for undeclared variable", "detail": "d"},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %s\nwant %v", b, want)
	}

	// Warnings only: valid. No diagnostics: an empty list, not null.
	b, _ = DiagnosticsJSON(diags[1:])
	if !strings.HasPrefix(string(b), `{"valid":true,`) {
		t.Errorf("warnings only: %s", b)
	}
	b, _ = DiagnosticsJSON(nil)
	if string(b) != `{"valid":true,"diagnostics":[]}` {
		t.Errorf("none: %s", b)
	}
}

func TestWriteDiagnosticsSnippet(t *testing.T) {
	cfg, diags := load(t, map[string]string{"main.hcl": "mapping \"m\" {\n  filtr = \"x\"\n}\n"}, LoadOptions{})
	var sb strings.Builder
	if err := WriteDiagnostics(&sb, cfg.Files, diags, false); err != nil {
		t.Fatal(err)
	}
	out := sb.String()
	for _, want := range []string{"Error: Unsupported argument", "main.hcl line 2", `filtr = "x"`, `Did you mean "filter"?`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	sb.Reset()
	_ = WriteDiagnostics(&sb, cfg.Files, diags, true)
	if !strings.Contains(sb.String(), "\x1b[") {
		t.Error("color output has no escape codes")
	}
	// Files are returned even when parsing fails, so snippets still render.
	cfg, diags = load(t, map[string]string{"main.hcl": "mapping \"m\" {\n  key = \n"}, LoadOptions{})
	if !diags.HasErrors() || len(cfg.Files) != 1 {
		t.Fatalf("files = %d, diags = %v", len(cfg.Files), diags)
	}
}
