package lang

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

func FuzzLoad(f *testing.F) {
	f.Add([]byte(fullConfig), false)
	f.Add([]byte(nativeEquivalent), false)
	f.Add([]byte(jsonEquivalent), true)
	f.Add([]byte("locals {\n  a = local.b\n  b = local.a\n}\n"), false)
	f.Add([]byte("mapping \"m\" {\n  fields = { a = { b = \"${x}\" } }\n}\n"), false)
	f.Add([]byte(`{"connection": {"x": {"type": "file", "path": ["a"]}}}`), true)
	f.Add([]byte("connection \"c\" {\n  type = \"file\"\n  path = secret(\"x\")\n}\n"), false)
	f.Add([]byte("ferry {\n  required_version = \"~> 0.1\"\n}\n"), false)
	f.Fuzz(func(t *testing.T, src []byte, asJSON bool) {
		dir := t.TempDir()
		name := "main.hcl"
		if asJSON {
			name = "main.hcl.json"
		}
		if err := os.WriteFile(filepath.Join(dir, name), src, 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, diags := Load(dir, LoadOptions{Environ: []string{"A=b"}, Vars: map[string]string{}})
		if cfg == nil {
			t.Fatal("nil config")
		}
		_ = WriteDiagnostics(io.Discard, cfg.Files, diags, false)
		if _, err := DiagnosticsJSON(diags); err != nil {
			t.Fatal(err)
		}
		for _, c := range cfg.Connections {
			SecretNames(c.Config)
			_, _ = ResolveSecrets(c.Config, func(string) (string, error) { return "s", nil })
		}
		for _, m := range cfg.Mappings {
			for _, fl := range m.Fields {
				for i := 0; i <= len(fl.Expr.Source); i++ {
					fl.Expr.SubRange(i, len(fl.Expr.Source)-i)
				}
			}
		}
		for _, d := range diags {
			if d.Summary == "" || (d.Severity != hcl.DiagError && d.Severity != hcl.DiagWarning) {
				t.Fatalf("diagnostic without summary or severity: %#v", d)
			}
		}
		// Loading is deterministic: ferry validate says the same thing twice.
		path := filepath.Join(dir, name)
		again, diags2 := LoadSources(dir, map[string][]byte{path: src}, LoadOptions{Environ: []string{"A=b"}, Vars: map[string]string{}})
		if diags.Error() != diags2.Error() || !slices.Equal(cfg.Addresses(), again.Addresses()) {
			t.Fatalf("two loads differ:\n%v\n%v", diags, diags2)
		}
		// Formatting is idempotent and keeps the meaning: ferry fmt never
		// breaks a configuration or changes what it declares.
		out, fdiags := Format(src, name)
		if fdiags.HasErrors() || asJSON {
			return
		}
		if twice, _ := Format(out, name); !bytes.Equal(out, twice) {
			t.Fatalf("formatting twice differs:\n%s\n---\n%s", out, twice)
		}
		formatted, diags3 := LoadSources(dir, map[string][]byte{path: out}, LoadOptions{Environ: []string{"A=b"}, Vars: map[string]string{}})
		if diags.HasErrors() != diags3.HasErrors() || !slices.Equal(cfg.Addresses(), formatted.Addresses()) {
			t.Fatalf("formatting changed the configuration:\n%s\n---\n%s\n%v\n%v", src, out, diags, diags3)
		}
	})
}
