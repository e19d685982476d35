package engine_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ferryhq/ferry/engine"
	"github.com/ferryhq/ferry/lang"
)

// TestLanguageDocExamples keeps lang/LANGUAGE.md honest: its hcl examples,
// read together as one configuration, validate and their tests pass.
func TestLanguageDocExamples(t *testing.T) {
	doc, err := os.ReadFile("../lang/LANGUAGE.md")
	if err != nil {
		t.Fatal(err)
	}
	var src strings.Builder
	for _, m := range regexp.MustCompile("(?s)```hcl\n(.*?)```").FindAllSubmatch(doc, -1) {
		src.Write(m[1])
		src.WriteString("\n")
	}
	dir := t.TempDir()
	// The doc's integration writes to a second connection; one is enough here.
	config := strings.ReplaceAll(src.String(), "connection.warehouse", "connection.shop")
	product, err := os.ReadFile("../examples/quickstart/testdata/product.json")
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"main.hcl": []byte(config), "testdata/product.json": product} {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg, diags := lang.Load(dir, lang.LoadOptions{})
	if diags.HasErrors() {
		t.Fatalf("LANGUAGE.md examples do not load: %s", diagString(cfg, diags))
	}
	prog, diags := engine.Compile(cfg)
	if diags.HasErrors() {
		t.Fatalf("LANGUAGE.md examples do not compile: %s", diagString(cfg, diags))
	}
	results := prog.RunTests(context.Background(), nil)
	if len(results) < 3 {
		t.Fatalf("LANGUAGE.md has %d test blocks, want at least 3", len(results))
	}
	for _, r := range results {
		if !r.Passed {
			t.Errorf("LANGUAGE.md test %q fails: %s%s", r.Name, r.Err, r.Diff)
		}
	}
}
