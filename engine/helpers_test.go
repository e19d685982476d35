package engine

import (
	"encoding/json"
	"testing"

	"github.com/ferryhq/ferry/lang"
)

func ex(s string) *lang.Expr { return &lang.Expr{Source: s} }

func field(path, src string) *lang.Field {
	return &lang.Field{Path: splitPath(path), Expr: ex(src)}
}

func castField(path, src, cast string) *lang.Field {
	f := field(path, src)
	f.Cast = cast
	return f
}

func newConfig() *lang.Config {
	return &lang.Config{
		Tables:       map[string]*lang.Table{},
		Connections:  map[string]*lang.Connection{},
		Mappings:     map[string]*lang.Mapping{},
		Integrations: map[string]*lang.Integration{},
		Tests:        map[string]*lang.Test{},
	}
}

func mustCompile(t testing.TB, cfg *lang.Config) *Program {
	t.Helper()
	p, diags := Compile(cfg)
	if diags.HasErrors() {
		t.Fatalf("compile: %v", diags)
	}
	return p
}

// evalField compiles src as the only field of a mapping and applies it to rec.
func evalField(t testing.TB, src string, rec map[string]any) (any, error) {
	t.Helper()
	cfg := newConfig()
	cfg.Tables["colors"] = &lang.Table{Name: "colors", Values: map[string]any{"r": "red", "1": "one"}, Default: "unknown"}
	cfg.Mappings["m"] = &lang.Mapping{Name: "m", Fields: []*lang.Field{field("v", src)}}
	p := mustCompile(t, cfg)
	res, err := p.Mappings["m"].NewEvaluator().Apply(rec)
	if err != nil {
		return nil, err
	}
	return res.Record["v"], nil
}

func jsonMap(t testing.TB, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}
