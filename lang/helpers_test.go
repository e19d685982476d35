package lang

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"

	"github.com/ferryhq/ferry/connectors"
)

// Test connectors (the stand-in "file" one is in corpus_test.go): "test" is a
// minimal one; "sink" cannot be a source.
func init() {
	connectors.Register(&connectors.Connector{
		Type: "test",
		Connection: hcldec.ObjectSpec{
			"path":  &hcldec.AttrSpec{Name: "path", Type: cty.String, Required: true},
			"token": &hcldec.AttrSpec{Name: "token", Type: cty.String},
			"port":  &hcldec.AttrSpec{Name: "port", Type: cty.Number},
		},
		Source: hcldec.ObjectSpec{
			"format":   &hcldec.AttrSpec{Name: "format", Type: cty.String},
			"resource": &hcldec.AttrSpec{Name: "resource", Type: cty.String},
		},
		Target: hcldec.ObjectSpec{
			"format": &hcldec.AttrSpec{Name: "format", Type: cty.String},
		},
	})
	connectors.Register(&connectors.Connector{
		Type:       "sink",
		Connection: hcldec.ObjectSpec{},
		Target:     hcldec.ObjectSpec{},
	})
}

// writeDir writes files into a new temporary directory and returns it.
func writeDir(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, src := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func load(t *testing.T, files map[string]string, opts LoadOptions) (*Config, hcl.Diagnostics) {
	t.Helper()
	return Load(writeDir(t, files), opts)
}

// mustLoad loads and fails the test on any error diagnostic.
func mustLoad(t *testing.T, files map[string]string, opts LoadOptions) *Config {
	t.Helper()
	cfg, diags := load(t, files, opts)
	if diags.HasErrors() {
		t.Fatalf("unexpected diagnostics:\n%s", diagString(cfg, diags))
	}
	return cfg
}

func diagString(cfg *Config, diags hcl.Diagnostics) string {
	var sb strings.Builder
	var files map[string]*hcl.File
	if cfg != nil {
		files = cfg.Files
	}
	_ = WriteDiagnostics(&sb, files, diags, false)
	return sb.String()
}

// wantDiag fails unless a diagnostic with summary exists whose detail contains
// every fragment.
func wantDiag(t *testing.T, diags hcl.Diagnostics, summary string, fragments ...string) *hcl.Diagnostic {
	t.Helper()
	for _, d := range diags {
		if d.Summary != summary {
			continue
		}
		ok := true
		for _, f := range fragments {
			if !strings.Contains(d.Detail, f) {
				ok = false
			}
		}
		if ok {
			return d
		}
	}
	var sb strings.Builder
	for _, d := range diags {
		sb.WriteString("  " + d.Summary + ": " + d.Detail + "\n")
	}
	t.Fatalf("no diagnostic %q containing %q; got:\n%s", summary, fragments, sb.String())
	return nil
}
