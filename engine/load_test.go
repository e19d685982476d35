package engine

import (
	"context"
	"testing"

	"github.com/ferryhq/ferry/lang"
)

// Diagnostics of expressions point at the line and column inside the HCL string
// or heredoc (through lang.Expr.SubRange).
func TestCompileDiagnosticPositions(t *testing.T) {
	src := `mapping "m" {
  key    = "string(id)"
  filter = "status !=! 'x'"
  fields = {
    name  = "trim(titel) +"
    price = <<EXPR
float(price)
  * lookup("rates", cur)
EXPR
  }
}
`
	cfg, diags := lang.LoadSources(t.TempDir(), map[string][]byte{"main.hcl": []byte(src)}, lang.LoadOptions{})
	if diags.HasErrors() {
		t.Fatalf("load: %v", diags)
	}
	_, diags = Compile(cfg)
	type pos struct {
		summary   string
		line, col int
	}
	var got []pos
	for _, d := range diags {
		if d.Subject == nil {
			t.Fatalf("no subject: %v", d)
		}
		got = append(got, pos{d.Summary, d.Subject.Start.Line, d.Subject.Start.Column})
		if d.Subject.Filename != "main.hcl" {
			t.Errorf("file %q", d.Subject.Filename)
		}
	}
	// filter: `status !=! 'x'` – expr reports the second '!' (column 13 of the
	// line: `  filter = "` is 12 characters, the string starts at 13).
	// name: `trim(titel) +` – unexpected EOF at the '+'.
	// price: the unknown table "rates" on the heredoc's second line.
	want := []pos{
		{"Invalid expression", 3, 13 + 9},
		{"Invalid expression", 5, 14 + 12},
		{"Unknown table", 8, 12},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v\n%v", got, want, diags)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("diag %d: got %v, want %v (%s)", i, got[i], want[i], diags[i].Detail)
		}
	}
}

func TestLoadedConfigRunsTests(t *testing.T) {
	src := `mapping "item" {
  key    = "string(id)"
  filter = "status != 'archived'"
  fields = {
    sku   = "variants[0].sku"
    cents = "int(float(variants[0].price) * 100)"
  }
}
test "maps" {
  mapping = mapping.item
  input   = { id = 1, status = "active", variants = [{ sku = "A", price = "19.99" }] }
  expect  = { sku = "A", cents = 1999 }
}
`
	cfg, diags := lang.LoadSources(t.TempDir(), map[string][]byte{"main.hcl": []byte(src)}, lang.LoadOptions{})
	if diags.HasErrors() {
		t.Fatalf("load: %v", diags)
	}
	p, diags := Compile(cfg)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	res := p.RunTests(context.Background(), nil)
	if len(res) != 1 || !res[0].Passed {
		t.Fatalf("%+v", res)
	}
}
