package engine

import (
	"encoding/json"
	"testing"

	"github.com/ferryhq/ferry/connectors"
	"github.com/ferryhq/ferry/lang"
)

// FuzzCompileMapping: arbitrary expression text never panics Compile, and what
// compiles never panics when evaluated.
func FuzzCompileMapping(f *testing.F) {
	for _, s := range []string{`trim(title)`, `variants[0].sku`, `apply("m", x)`, `lookup("t", k, 1)`, `a?.b ?? c`,
		`map(xs, .a * 2)`, `regexMatch(s, "(")`, `let x = 1; x + y`, `{a: 1}.a`, `"\u00e9"[0]`, `-x ** 2`, `1..3`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		cfg := newConfig()
		cfg.Tables["t"] = &lang.Table{Name: "t", Values: map[string]any{"a": 1}}
		cfg.Mappings["m"] = &lang.Mapping{Name: "m", Key: ex(src), Filter: ex(src), Fields: []*lang.Field{field("x", src)}}
		p, diags := Compile(cfg)
		if p == nil {
			if !diags.HasErrors() {
				t.Fatal("nil program without errors")
			}
			return
		}
		ev := p.Mappings["m"].NewEvaluator()
		_, _ = ev.Apply(map[string]any{"title": " x ", "xs": []any{map[string]any{"a": 1.0}}, "s": "abc"})
		_, _ = ev.Apply(nil)
	})
}

// FuzzEvalMapping: arbitrary JSON input never panics Prepare.
func FuzzEvalMapping(f *testing.F) {
	f.Add([]byte(shopifyProduct))
	f.Add([]byte(`{"id": null, "variants": "x", "title": 5}`))
	f.Add([]byte(`{"variants": [null, 1, "a"], "tags": 3, "updated_at": "garbage"}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`not json`))
	cfg := productConfig()
	cfg.Integrations["products_to_erp"].Normalize.Types = map[string]string{"id": "int", "status": "string"}
	p := mustCompile(f, cfg)
	w := p.Pipelines["products_to_erp"].NewWorker()
	f.Fuzz(func(t *testing.T, raw []byte) {
		rec := connectors.Record{Raw: json.RawMessage(raw)}
		pr := w.Prepare(&rec)
		if pr.Outcome == Failed && pr.Err == nil {
			t.Fatal("failed without error")
		}
		if pr.Outcome == Ready && pr.Write.Path == "" {
			t.Fatal("ready without path")
		}
	})
}
