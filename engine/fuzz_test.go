package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
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

// nondeterministic matches expressions whose result may differ between two
// evaluations of the same record (clocks, random ids).
var nondeterministic = regexp.MustCompile(`now|uuid|rand|date`)

// FuzzMappingOnJSON: an arbitrary expression applied to an arbitrary JSON
// record, decoded as connectors decode records. What compiles, runs: no
// panic; errors are *MappingError naming the failing part; the input record
// is never changed; evaluation is deterministic (same record, same result);
// pass_through keeps every input field the mapping does not set.
func FuzzMappingOnJSON(f *testing.F) {
	for _, s := range []struct{ expr, rec string }{
		{`trim(title)`, `{"title":" Tee "}`},
		{`variants[0].sku`, `{"variants":[{"sku":"A"}]}`},
		{`sum(map(variants, .inventory_quantity))`, `{"variants":[{"inventory_quantity":1},{"inventory_quantity":"2"}]}`},
		{`int(float(variants[0].price) * 100)`, `{"variants":[{"price":"19.99"}]}`},
		{`split(tags, ", ")`, `{"tags":null}`},
		{`string(id)`, `{"id":788032119674292922}`},
		{`a.b.c ?? "d"`, `{"a":{"b":[]}}`},
		{`lookup("t", k, 0)`, `{"k":{"x":1}}`},
		{`apply("m", x)`, `{"x":{"x":{}}}`},
		{`value * 2`, `[1,2]`},
		{`len(value)`, `"\ud800"`},
		{`toJSON(.)`, `{"a":1e308,"b":-0}`},
	} {
		f.Add(s.expr, []byte(s.rec))
	}
	f.Fuzz(func(t *testing.T, src string, raw []byte) {
		v, err := connectors.DecodeJSON(raw)
		if err != nil {
			return
		}
		in, ok := v.(map[string]any)
		if !ok {
			in = map[string]any{"value": v}
		}
		cfg := newConfig()
		cfg.Tables["t"] = &lang.Table{Name: "t", Values: map[string]any{"a": 1}}
		cfg.Mappings["m"] = &lang.Mapping{Name: "m", Fields: []*lang.Field{field("x", src)}}
		cfg.Mappings["p"] = &lang.Mapping{Name: "p", Key: ex(src), Filter: ex(src), PassThrough: true, Fields: []*lang.Field{field("out.y", src)}}
		p, diags := Compile(cfg)
		if p == nil || diags.HasErrors() {
			return
		}
		pristine, _ := connectors.DecodeJSON(raw)
		if _, ok := pristine.(map[string]any); !ok {
			pristine = map[string]any{"value": pristine}
		}
		for _, name := range []string{"m", "p"} {
			ev := p.Mappings[name].NewEvaluator()
			res, err := ev.Apply(in)
			if !reflect.DeepEqual(in, pristine) {
				t.Fatalf("mapping %s changed its input: %v -> %v", name, pristine, in)
			}
			if err != nil {
				var me *MappingError
				if !errors.As(err, &me) || me.Mapping != name || me.Field == "" || me.Err == nil {
					t.Fatalf("mapping %s: error %T %v is not a *MappingError naming the part", name, err, err)
				}
			} else if !res.Skipped && res.Record == nil {
				t.Fatalf("mapping %s: no record and not skipped", name)
			}
			if err == nil && name == "p" && !res.Skipped {
				for k, want := range in {
					if k == "out" {
						continue
					}
					if got, ok := res.Record[k]; !ok || !reflect.DeepEqual(got, want) {
						t.Fatalf("pass_through lost input field %q: %v -> %v", k, want, got)
					}
				}
			}
			if nondeterministic.MatchString(src) {
				continue
			}
			again, err2 := p.Mappings[name].NewEvaluator().Apply(in)
			if (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) {
				t.Fatalf("mapping %s: errors differ between two runs: %v / %v", name, err, err2)
			}
			if err == nil && !sameValue(res, again) {
				t.Fatalf("mapping %s: results differ between two runs: %#v / %#v", name, res, again)
			}
		}
	})
}

// sameValue is reflect.DeepEqual, except that NaN (0/0 gives one) equals NaN.
func sameValue(a, b any) bool {
	return reflect.DeepEqual(a, b) || fmt.Sprintf("%#v", a) == fmt.Sprintf("%#v", b)
}
