package lang

import (
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// sub returns the file text SubRange points at.
func sub(t *testing.T, cfg *Config, e *Expr, offset, length int) (string, hcl.Range) {
	t.Helper()
	r := e.SubRange(offset, length)
	src := cfg.Files[r.Filename].Bytes
	return string(src[r.Start.Byte:r.End.Byte]), r
}

func TestExprSubRange(t *testing.T) {
	const src = `mapping "m" {
  key    = "string(id)"
  filter = "status != 'archived' && price > 0"
  fields = {
    escaped = "say(\"hi\") + bad"
    dollar  = "x + $${y}"
    path    = <<EXPR
"/items/" + sku +
  "/" + string(bad_ident)
EXPR
    flush = <<-EXPR
      trim(bad)
    EXPR
    flush2 = <<-EXPR
      a +
        bad
    EXPR
    empty = ""
    "né" = "ünïcode + bad"
  }
}
`
	cfg := mustLoad(t, map[string]string{"main.hcl": src}, LoadOptions{})
	m := cfg.Mappings["m"]
	field := func(name string) *Expr {
		for _, f := range m.Fields {
			if strings.Join(f.Path, ".") == name {
				return f.Expr
			}
		}
		t.Fatalf("no field %s", name)
		return nil
	}

	// Quoted: exact.
	off := strings.Index(m.Filter.Source, "price")
	text, r := sub(t, cfg, m.Filter, off, len("price"))
	if text != "price" || r.Start.Line != 3 || r.Start.Column != 37 || r.End.Column != 42 {
		t.Errorf("filter sub = %q at %v", text, r)
	}
	if !m.Filter.Exact() {
		t.Error("filter should be exact")
	}
	if text, _ := sub(t, cfg, m.Key, 0, len(m.Key.Source)); text != "string(id)" {
		t.Errorf("key whole = %q", text)
	}

	// Heredoc across lines: exact.
	p := field("path")
	if p.Source != "\"/items/\" + sku +\n  \"/\" + string(bad_ident)\n" {
		t.Fatalf("heredoc source = %q", p.Source)
	}
	off = strings.Index(p.Source, "bad_ident")
	text, r = sub(t, cfg, p, off, len("bad_ident"))
	if text != "bad_ident" || r.Start.Line != 9 || r.Start.Column != 16 || r.End.Line != 9 {
		t.Errorf("heredoc sub = %q at %v", text, r)
	}
	// A range spanning the newline.
	off = strings.Index(p.Source, "+\n")
	if text, r = sub(t, cfg, p, off, 4); text != "+\n  " || r.Start.Line != 8 || r.End.Line != 9 || r.End.Column != 3 {
		t.Errorf("multi-line sub = %q at %v", text, r)
	}

	// Escapes: falls back to the whole expression.
	esc := field("escaped")
	if esc.Source != `say("hi") + bad` || esc.Exact() {
		t.Errorf("escaped = %q exact=%v", esc.Source, esc.Exact())
	}
	if r := esc.SubRange(strings.Index(esc.Source, "bad"), 3); r != esc.Range {
		t.Errorf("escaped sub = %v, want whole %v", r, esc.Range)
	}
	// $${ is the escape for a literal ${.
	if d := field("dollar"); d.Source != "x + ${y}" || d.Exact() {
		t.Errorf("dollar = %q exact=%v", d.Source, d.Exact())
	}
	// Flush heredocs: one line maps exactly; dedented lines fall back.
	f := field("flush")
	if text, r := sub(t, cfg, f, 0, 4); f.Source != "trim(bad)\n" || text != "trim" || r.Start.Line != 12 {
		t.Errorf("flush = %q %q %v", f.Source, text, r)
	}
	if f := field("flush2"); f.Source != "a +\n  bad\n" || f.SubRange(0, 1) != f.Range {
		t.Errorf("flush2 = %q %v", f.Source, f.SubRange(0, 1))
	}
	// Out of bounds: fall back.
	if r := m.Key.SubRange(5, 100); r != m.Key.Range {
		t.Errorf("out of bounds = %v", r)
	}
	if r := m.Key.SubRange(-1, 1); r != m.Key.Range {
		t.Errorf("negative = %v", r)
	}
	// Unicode: columns count characters, bytes stay bytes.
	u := field("né")
	off = strings.Index(u.Source, "bad")
	text, r = sub(t, cfg, u, off, 3)
	if text != "bad" || r.Start.Column != 23 {
		t.Errorf("unicode sub = %q at %v", text, r)
	}
	if e := field("empty"); e.Source != "" {
		t.Errorf("empty = %q", e.Source)
	}
	var nilExpr *Expr
	if nilExpr.SubRange(0, 1) != (hcl.Range{}) || nilExpr.String() != "" {
		t.Error("nil Expr")
	}
}

func TestExprSubRangeJSON(t *testing.T) {
	cfg := mustLoad(t, map[string]string{"main.hcl.json": `{
  "mapping": {
    "m": {
      "key": "string(id) + bad",
      "filter": "a == \"x\" && bad",
      "fields": {"sku": "x + $${y}", "nested": {"a": "b"}}
    }
  }
}`}, LoadOptions{})
	m := cfg.Mappings["m"]
	text, r := sub(t, cfg, m.Key, strings.Index(m.Key.Source, "bad"), 3)
	if text != "bad" || r.Start.Line != 4 || r.Start.Column != 28 {
		t.Errorf("json sub = %q at %v", text, r)
	}
	if m.Filter.Source != `a == "x" && bad` || m.Filter.Exact() {
		t.Errorf("json escaped filter = %q exact=%v", m.Filter.Source, m.Filter.Exact())
	}
	if m.Fields[0].Expr.Source != "x + ${y}" {
		t.Errorf("json $${ = %q", m.Fields[0].Expr.Source)
	}
	if strings.Join(m.Fields[1].Path, ".") != "nested.a" {
		t.Errorf("json nested = %v", m.Fields[1].Path)
	}
}

func TestExprRejectsHCL(t *testing.T) {
	for name, tc := range map[string]struct{ src, summary string }{
		"interpolation": {`key = "${id}"`, "Interpolation in per-record expression"},
		"partial":       {`key = "a-${id}"`, "Interpolation in per-record expression"},
		"directive":     {`key = "%{if true}x%{endif}"`, "Interpolation in per-record expression"},
		"heredoc":       {"key = <<E\n${id}\nE", "Interpolation in per-record expression"},
		"reference":     {`key = id`, "Expression must be a string"},
		"function":      {`key = upper("id")`, "Expression must be a string"},
		"number":        {`key = 1`, "Expression must be a string"},
		"field object":  {`fields = { a = { b = upper("x") } }`, "Expression must be a string"},
		"fields list":   {`fields = ["a"]`, "Invalid fields"},
		"field key":     {`fields = { (var.x) = "a" }`, "Invalid field name"},
		"empty seg":     {`fields = { "a..b" = "a" }`, "Invalid field name"},
		"dup field":     {`fields = { "a.b" = "x", a = { b = "y" } }`, "Duplicate field"},
		"conflict":      {`fields = { a = "x", "a.b" = "y" }`, "Conflicting fields"},
		"cast unknown":  {`fields = { a = "x" }` + "\n" + `casts = { b = "int" }`, "Cast of unknown field"},
	} {
		t.Run(name, func(t *testing.T) {
			_, diags := load(t, map[string]string{"main.hcl": "mapping \"m\" {\n" + tc.src + "\n}\n"}, LoadOptions{})
			d := wantDiag(t, diags, tc.summary)
			if d.Subject == nil || d.Subject.Start.Line < 2 {
				t.Errorf("subject = %v", d.Subject)
			}
		})
	}
}
