package engine

import (
	"strings"
	"testing"

	"github.com/expr-lang/expr"
	"github.com/hashicorp/hcl/v2"

	"github.com/ferryhq/ferry/lang"
)

func diagSummaries(diags hcl.Diagnostics) string {
	var b strings.Builder
	for _, d := range diags {
		b.WriteString(d.Summary + ": " + d.Detail + "\n")
	}
	return b.String()
}

func TestCompileDiagnostics(t *testing.T) {
	cfg := newConfig()
	cfg.Tables["colors"] = &lang.Table{Name: "colors"}
	cfg.Mappings["a"] = &lang.Mapping{Name: "a", Fields: []*lang.Field{
		field("x", `apply("b", items)`),
		field("y", `lookup("colour", c)`), // typo: unknown table
		field("z", `title +`),             // syntax error
		field("w", `regexMatch(title, "(")`),
		field("v", `apply(name, items)`), // non-literal mapping name
		field("u", `apply("nope", items)`),
		field("t", `trimm(title)`),
	}}
	cfg.Mappings["b"] = &lang.Mapping{Name: "b", Fields: []*lang.Field{field("x", `apply("c", items)`)}}
	cfg.Mappings["c"] = &lang.Mapping{Name: "c", Fields: []*lang.Field{field("x", `apply("a", items)`)}}
	cfg.Mappings["self"] = &lang.Mapping{Name: "self", Key: ex(`string(apply("self", x))`)}
	cfg.Mappings["ok"] = &lang.Mapping{Name: "ok", Fields: []*lang.Field{field("x", `lookup("colors", c)`), castField("y", `1`, "money")}}
	cfg.Integrations["i"] = &lang.Integration{
		Name:      "i",
		Transform: &lang.Transform{Mapping: "missing"},
		Target:    &lang.Target{Operation: "merge", Path: ex(`"/x/" +`)},
	}
	p, diags := Compile(cfg)
	if p != nil {
		t.Error("program returned despite errors")
	}
	got := diagSummaries(diags)
	for _, want := range []string{
		`Unknown table: lookup() in mapping "a" field "y" refers to table "colour", which is not declared. Did you mean "colors"?`,
		`Invalid expression: unexpected token EOF in mapping "a" field "z".`,
		`Invalid regular expression`,
		`apply() in mapping "a" field "v" must be a mapping name written as a string literal`,
		`Unknown mapping: apply() in mapping "a" field "u" refers to mapping "nope"`,
		`Unknown function trimm() in mapping "a" field "t". Did you mean "trim"?`,
		`Mapping cycle: Mappings apply each other in a cycle: a → b → c → a.`,
		`Mapping cycle: Mappings apply each other in a cycle: self → self.`,
		`Invalid cast: Field "y" of mapping "ok" has cast "money"`,
		`Unknown mapping: Integration "i" uses mapping "missing"`,
		`Invalid operation: Integration "i" has target operation "merge"`,
		`in integration "i" target path.`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing diagnostic %q in:\n%s", want, got)
		}
	}
	if n := strings.Count(got, "Mapping cycle"); n != 2 {
		t.Errorf("%d cycle diagnostics, want 2:\n%s", n, got)
	}
}

func TestCompileOK(t *testing.T) {
	cfg := newConfig()
	cfg.Mappings["m"] = &lang.Mapping{Name: "m", Key: ex(`string(id)`), Filter: ex(`status != 'archived'`),
		Fields: []*lang.Field{field("a", `x`)}}
	cfg.Integrations["i"] = &lang.Integration{Name: "i", Transform: &lang.Transform{Mapping: "m"},
		Target: &lang.Target{Operation: "create", Path: ex(`"/items/" + a`)}}
	p, diags := Compile(cfg)
	if diags.HasErrors() || p == nil {
		t.Fatal(diags)
	}
	pl := p.Pipelines["i"]
	if pl.Mapping != p.Mappings["m"] || pl.Operation != "create" || pl.BatchSize != DefaultBatchSize || pl.Retry.MaxAttempts != 5 {
		t.Fatalf("pipeline: %+v", pl)
	}
}

// TestErrorOffsets checks that expr's rune-based error locations become the
// right byte offsets in the expression source (what SubRange maps to the file).
func TestErrorOffsets(t *testing.T) {
	for _, tt := range []struct {
		src    string
		offset int
	}{
		{`title +`, 6},
		{`trim(title) ) x`, 12},
		{"ünïcode + (", 10 + 2}, // rune 10, two 2-byte runes before it
		{"a\n  + )", 6},
	} {
		_, err := expr.Compile(tt.src)
		d := exprDiagnostic(&lang.Expr{Source: tt.src}, "test", err)
		off, _ := errOffset(tt.src, err)
		if off != tt.offset {
			t.Errorf("%q: offset %d, want %d (%v)", tt.src, off, tt.offset, err)
		}
		if d.Summary != "Invalid expression" || !strings.HasSuffix(d.Detail, "in test.") {
			t.Errorf("%q: %+v", tt.src, d)
		}
	}
}

func TestCompileNeverPanics(t *testing.T) {
	for _, src := range []string{``, `   `, `(`, `a[`, `"\`, `let x = 1;`, `map(1, #)`, `{a: }`, "\x00", `1..`, `a?.`, `#`, `.x`} {
		cfg := newConfig()
		cfg.Mappings["m"] = &lang.Mapping{Name: "m", Fields: []*lang.Field{field("x", src)}}
		Compile(cfg) // must not panic
	}
}
