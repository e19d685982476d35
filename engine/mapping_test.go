package engine

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/ferryhq/ferry/lang"
)

func applyMapping(t *testing.T, cfg *lang.Config, name string, in map[string]any) (MappingResult, error) {
	t.Helper()
	p := mustCompile(t, cfg)
	return p.Mappings[name].NewEvaluator().Apply(in)
}

func TestMappingSemantics(t *testing.T) {
	in := jsonMap(t, `{"id": 12, "title": " Shirt ", "status": "active", "price": "19.90",
		"meta": {"a": 1, "b": 2}, "secret": "x", "variants": [{"sku": "S1"}]}`)

	t.Run("nested paths, casts, defaults, unset", func(t *testing.T) {
		cfg := newConfig()
		cfg.Mappings["m"] = &lang.Mapping{
			Name: "m",
			Key:  ex(`"P-" + string(id)`),
			Fields: []*lang.Field{
				field("name", `trim(title)`),
				field("pricing.amount", `float(price)`),
				field("pricing.currency", `"EUR"`),
				castField("pricing.cents", `float(price) * 100`, "int"),
				castField("code", `id`, "string"),
				castField("on", `status == "active"`, "string"),
				castField("active", `"yes"`, "bool"),
				castField("price_exact", `price`, "decimal"),
				castField("when", `"2024-01-02 03:04:05"`, "time"),
				field("missing_field", `variants[3].sku`),
				field("sku", `variants[0].sku`),
				field("tmp", `1`),
			},
			Defaults: map[string]any{"missing_field": "none", "pricing.tax": 0.21, "name": "never"},
			Unset:    [][]string{{"tmp"}, {"pricing", "currency"}},
		}
		res, err := applyMapping(t, cfg, "m", in)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]any{
			"name":          "Shirt",
			"pricing":       map[string]any{"amount": 19.9, "cents": 1990, "tax": 0.21},
			"code":          "12",
			"on":            "true",
			"active":        true,
			"price_exact":   json.Number("19.90"),
			"when":          "2024-01-02T03:04:05Z",
			"missing_field": "none",
			"sku":           "S1",
		}
		if res.Key != "P-12" || res.Skipped || !reflect.DeepEqual(res.Record, want) {
			t.Fatalf("got key %q skipped %v\n%#v\nwant\n%#v", res.Key, res.Skipped, res.Record, want)
		}
	})

	t.Run("key defaults to id, pass_through copies input without changing it", func(t *testing.T) {
		cfg := newConfig()
		cfg.Mappings["m"] = &lang.Mapping{
			Name:        "m",
			PassThrough: true,
			Fields:      []*lang.Field{field("meta.c", `3`), field("title", `trim(title)`)},
			Unset:       [][]string{{"secret"}, {"meta", "a"}},
		}
		res, err := applyMapping(t, cfg, "m", in)
		if err != nil {
			t.Fatal(err)
		}
		if res.Key != "12" {
			t.Errorf("key = %q", res.Key)
		}
		if _, ok := res.Record["secret"]; ok {
			t.Error("unset secret still present")
		}
		if res.Record["status"] != "active" || res.Record["title"] != "Shirt" {
			t.Errorf("pass-through: %v", res.Record)
		}
		if !reflect.DeepEqual(res.Record["meta"], map[string]any{"b": 2.0, "c": 3}) {
			t.Errorf("meta = %v", res.Record["meta"])
		}
		if !reflect.DeepEqual(in["meta"], map[string]any{"a": 1.0, "b": 2.0}) || in["title"] != " Shirt " {
			t.Errorf("input was modified: %v", in)
		}
	})

	t.Run("filter", func(t *testing.T) {
		cfg := newConfig()
		cfg.Mappings["m"] = &lang.Mapping{Name: "m", Filter: ex(`status != "active"`), Fields: []*lang.Field{field("x", `1`)}}
		res, err := applyMapping(t, cfg, "m", in)
		if err != nil || !res.Skipped || res.Record != nil || res.Key != "12" {
			t.Fatalf("got %+v, %v", res, err)
		}
		cfg.Mappings["m"].Filter = ex(`missing_flag`) // nil → skipped
		if res, _ := applyMapping(t, cfg, "m", in); !res.Skipped {
			t.Fatal("nil filter result should skip")
		}
		cfg.Mappings["m"].Filter = ex(`"yes"`)
		if _, err := applyMapping(t, cfg, "m", in); err == nil || !strings.Contains(err.Error(), "true or false") {
			t.Fatalf("non-bool filter: %v", err)
		}
	})

	t.Run("missing fields are nil", func(t *testing.T) {
		cfg := newConfig()
		cfg.Mappings["m"] = &lang.Mapping{Name: "m", Fields: []*lang.Field{
			field("a", `nope.deeper.still`), field("b", `variants[10].sku`), castField("c", `nope`, "int"),
			field("d", `upper(nope)`),
		}}
		res, err := applyMapping(t, cfg, "m", map[string]any{})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(res.Record, map[string]any{"a": nil, "b": nil, "c": nil, "d": nil}) {
			t.Fatalf("got %#v", res.Record)
		}
	})

	t.Run("runtime and cast errors name mapping, field and key", func(t *testing.T) {
		cfg := newConfig()
		cfg.Mappings["m"] = &lang.Mapping{Name: "m", Fields: []*lang.Field{castField("n", `title`, "int")}}
		_, err := applyMapping(t, cfg, "m", in)
		var me *MappingError
		if !errors.As(err, &me) || me.Field != `field "n"` || me.Key != "12" {
			t.Fatalf("err = %#v", err)
		}
		for _, s := range []string{`mapping "m"`, `field "n"`, `record "12"`, `cannot cast to int`} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%q lacks %q", err, s)
			}
		}
		cfg.Mappings["m"].Fields = []*lang.Field{field("n", `title + 1`)}
		if _, err := applyMapping(t, cfg, "m", in); err == nil || !strings.Contains(err.Error(), `field "n"`) {
			t.Fatalf("runtime error: %v", err)
		}
	})
}

func TestApplySubMapping(t *testing.T) {
	cfg := newConfig()
	cfg.Mappings["line"] = &lang.Mapping{
		Name:   "line",
		Filter: ex(`qty > 0`),
		Fields: []*lang.Field{field("sku", `upper(sku)`), castField("qty", `qty`, "int")},
	}
	cfg.Mappings["order"] = &lang.Mapping{
		Name: "order",
		Fields: []*lang.Field{
			field("lines", `apply("line", items)`),
			field("first", `apply("line", items[0])`),
			field("none", `apply("line", missing)`),
		},
	}
	in := jsonMap(t, `{"items": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 0}, {"sku": "c", "qty": 1}]}`)
	res, err := applyMapping(t, cfg, "order", in)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"lines": []any{map[string]any{"sku": "A", "qty": 2}, map[string]any{"sku": "C", "qty": 1}},
		"first": map[string]any{"sku": "A", "qty": 2},
		"none":  nil,
	}
	if !reflect.DeepEqual(res.Record, want) {
		t.Fatalf("got %#v", res.Record)
	}
	if _, err := applyMapping(t, cfg, "order", map[string]any{"items": "x"}); err == nil || !strings.Contains(err.Error(), "object or a list") {
		t.Fatalf("apply on string: %v", err)
	}
}

func TestNormalize(t *testing.T) {
	pl := &Pipeline{Name: "i", Normalize: &lang.Normalize{
		Require: []string{"id", "title", "body.text"},
		Trim:    true,
		Types:   map[string]string{"qty": "int", "price": "float", "live": "bool"},
	}}
	for _, r := range pl.Normalize.Require {
		pl.require = append(pl.require, splitPath(r))
	}
	for _, k := range sortedKeys(pl.Normalize.Types) {
		pl.types = append(pl.types, pathType{name: k, path: splitPath(k), typ: pl.Normalize.Types[k]})
	}

	ok := jsonMap(t, `{"id": 1, "title": "  T ", "body": {"text": " x ", "list": [" a "]}, "qty": "3", "price": "1.5", "live": "yes"}`)
	if err := pl.normalize(ok); err != nil {
		t.Fatal(err)
	}
	want := jsonMap(t, `{"id": 1, "title": "T", "body": {"text": "x", "list": ["a"]}, "price": 1.5, "live": true}`)
	want["qty"] = 3
	if !reflect.DeepEqual(ok, want) {
		t.Fatalf("got %#v", ok)
	}

	bad := jsonMap(t, `{"id": null, "title": "   ", "body": {}}`)
	err := pl.normalize(bad)
	if err == nil || !strings.Contains(err.Error(), "missing required fields: id, title, body.text") {
		t.Fatalf("err = %v", err)
	}
	typ := jsonMap(t, `{"id": 1, "title": "t", "body": {"text": "x"}, "qty": "many"}`)
	if err := pl.normalize(typ); err == nil || !strings.Contains(err.Error(), `field "qty"`) {
		t.Fatalf("err = %v", err)
	}
}

// A field that computes NaN or an infinity fails on that field, with a hint,
// instead of later when the record is hashed or written.
func TestMappingRejectsNaNAndInfinity(t *testing.T) {
	for _, expr := range []string{`n / d`, `-n / d`, `d / d`} {
		cfg := newConfig()
		cfg.Mappings["m"] = &lang.Mapping{Name: "m", Key: ex(`string(id)`), Fields: []*lang.Field{field("ratio", expr)}}
		_, err := applyMapping(t, cfg, "m", map[string]any{"id": 1, "n": 1.0, "d": 0.0})
		var me *MappingError
		if !errors.As(err, &me) || me.Field != `field "ratio"` || !strings.Contains(err.Error(), "JSON cannot carry") {
			t.Errorf("%s: %v", expr, err)
		}
	}
}
