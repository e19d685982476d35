package lang

import (
	"io"
	"os"
	"path/filepath"
	"testing"
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
		_, _ = Format(src, name)
		_ = cfg.Addresses()
	})
}
