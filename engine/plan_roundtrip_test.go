package engine_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferryhq/ferry/engine"
	"github.com/ferryhq/ferry/lang"
)

func readConfigDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, e := range entries {
		if !e.IsDir() && lang.IsConfigFile(e.Name()) {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			files[e.Name()] = b
		}
	}
	return files
}

func mustLoad(t *testing.T, dir string, files map[string][]byte) *lang.Config {
	t.Helper()
	cfg, diags := lang.LoadSources(dir, files, lang.LoadOptions{})
	if diags.HasErrors() {
		t.Fatalf("load: %s", diags.Error())
	}
	return cfg
}

// restWrite does what a REST PUT of a resource does with lang's write API:
// the resource's JSON (through encoding/json, as on the wire) rendered as HCL
// and written into the files.
func restWrite(t *testing.T, files map[string][]byte, kind, name string, body map[string]any) map[string][]byte {
	t.Helper()
	js, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	var wire map[string]any
	if err := json.Unmarshal(js, &wire); err != nil {
		t.Fatal(err)
	}
	block, err := lang.BlockHCL(kind, name, wire)
	if err != nil {
		t.Fatalf("%s.%s: %v", kind, name, err)
	}
	out, err := lang.ReplaceBlock(files, kind, name, block)
	if err != nil {
		t.Fatalf("%s.%s: %v", kind, name, err)
	}
	return out
}

// TestRoundTripPlansNoChanges: for every block, BlockJSON → BlockHCL →
// ReplaceBlock → LoadSources gives a configuration Diff finds equal.
func TestRoundTripPlansNoChanges(t *testing.T) {
	quickstart := filepath.Join("..", "examples", "quickstart")
	for name, c := range map[string]struct {
		dir   string
		files map[string][]byte
	}{
		"quickstart": {quickstart, readConfigDir(t, quickstart)},
		"rich":       {t.TempDir(), map[string][]byte{"main.hcl": []byte(planBase)}},
	} {
		t.Run(name, func(t *testing.T) {
			orig := mustLoad(t, c.dir, c.files)
			checked := 0
			for _, addr := range orig.Addresses() {
				kind, label, _ := strings.Cut(addr, ".")
				if kind == "local" {
					continue
				}
				body, err := lang.BlockJSON(orig, kind, label)
				if err != nil {
					t.Fatal(err)
				}
				files := restWrite(t, c.files, kind, label, body)
				if p := engine.Diff(orig, mustLoad(t, c.dir, files)); p.HasChanges() {
					var b strings.Builder
					p.WriteText(&b)
					t.Errorf("%s: round trip planned changes:\n%s", addr, b.String())
				}
				checked++
			}
			if checked < 6 {
				t.Fatalf("only %d blocks checked", checked)
			}
		})
	}
}

// TestRESTWriteIsDrift: a REST change to one attribute shows in the plan as
// exactly that change.
func TestRESTWriteIsDrift(t *testing.T) {
	quickstart := filepath.Join("..", "examples", "quickstart")
	files := readConfigDir(t, quickstart)
	orig := mustLoad(t, quickstart, files)
	body, err := lang.BlockJSON(orig, "integration", "products_to_items")
	if err != nil {
		t.Fatal(err)
	}
	body["retry"] = map[string]any{"max_attempts": 9}
	body["source"].(map[string]any)["path"] = "products-v2.json"
	written := restWrite(t, files, "integration", "products_to_items", body)
	p := engine.Diff(orig, mustLoad(t, quickstart, written))
	var b strings.Builder
	p.WriteText(&b)
	want := `  ~ integration.products_to_items
      + retry.max_attempts: 9
      ~ source.path: "products.json" → "products-v2.json"

Plan: 0 to add, 1 to change, 0 to destroy.
`
	if b.String() != want {
		t.Errorf("plan:\n%s\nwant:\n%s", b.String(), want)
	}
	// The rest of main.hcl is untouched, comments included.
	if !strings.HasPrefix(string(written["main.hcl"]), "# Quickstart: Shopify-like products") {
		t.Error("header comment lost")
	}
	if string(written["tests.hcl"]) != string(files["tests.hcl"]) {
		t.Error("tests.hcl changed")
	}
}
