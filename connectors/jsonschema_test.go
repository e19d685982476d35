package connectors_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	"github.com/ferryhq/ferry/connectors"
	_ "github.com/ferryhq/ferry/connectors/file"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	hcljson "github.com/hashicorp/hcl/v2/json"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

// unknownSpec is a spec kind JSONSchema does not know (embedding the interface
// satisfies its unexported methods).
type unknownSpec struct{ hcldec.Spec }

// kitchenSink has one spec of every kind.
var kitchenSink = hcldec.ObjectSpec{
	// The map key differs from the attribute name: the name is what is written.
	"str_key": &hcldec.AttrSpec{Name: "str", Type: cty.String, Required: true},
	"num":     &hcldec.AttrSpec{Name: "num", Type: cty.Number},
	"flag":    &hcldec.AttrSpec{Name: "flag", Type: cty.Bool},
	"any":     &hcldec.AttrSpec{Name: "any", Type: cty.DynamicPseudoType},
	"list":    &hcldec.AttrSpec{Name: "list", Type: cty.List(cty.String)},
	"set":     &hcldec.AttrSpec{Name: "set", Type: cty.Set(cty.Number)},
	"map":     &hcldec.AttrSpec{Name: "map", Type: cty.Map(cty.Bool)},
	"obj": &hcldec.AttrSpec{Name: "obj", Type: cty.ObjectWithOptionalAttrs(map[string]cty.Type{
		"a": cty.String,
		"b": cty.List(cty.Number),
	}, []string{"b"})},
	"tup": &hcldec.AttrSpec{Name: "tup", Type: cty.Tuple([]cty.Type{cty.String, cty.Number})},
	"block": &hcldec.BlockSpec{TypeName: "auth", Required: true, Nested: hcldec.ObjectSpec{
		"user": &hcldec.AttrSpec{Name: "user", Type: cty.String, Required: true},
	}},
	"headers": &hcldec.BlockListSpec{TypeName: "header", MaxItems: 3, Nested: hcldec.ObjectSpec{
		"name": &hcldec.AttrSpec{Name: "name", Type: cty.String},
	}},
	"pair": &hcldec.BlockTupleSpec{TypeName: "pair", MinItems: 2, MaxItems: 2, Nested: hcldec.ObjectSpec{
		"v": &hcldec.AttrSpec{Name: "v", Type: cty.Number},
	}},
	"tags": &hcldec.BlockSetSpec{TypeName: "tag", MinItems: 1, Nested: hcldec.ObjectSpec{
		"k": &hcldec.AttrSpec{Name: "k", Type: cty.String},
	}},
	// A map label, then a label the body reads: two levels, region then name.
	"envs": &hcldec.BlockMapSpec{TypeName: "env", LabelNames: []string{"region"}, Nested: hcldec.ObjectSpec{
		"label": &hcldec.BlockLabelSpec{Index: 0, Name: "name"},
		"url":   &hcldec.AttrSpec{Name: "url", Type: cty.String},
	}},
	"listeners": &hcldec.BlockListSpec{TypeName: "listener", Nested: hcldec.ObjectSpec{
		"proto": &hcldec.BlockLabelSpec{Index: 0, Name: "protocol"},
		"port":  &hcldec.AttrSpec{Name: "port", Type: cty.Number, Required: true},
	}},
	"routes": &hcldec.BlockObjectSpec{TypeName: "route", LabelNames: []string{"method", "path"}, Nested: hcldec.ObjectSpec{
		"to": &hcldec.AttrSpec{Name: "to", Type: cty.String},
	}},
	"labels": &hcldec.BlockAttrsSpec{TypeName: "labels", ElementType: cty.String, Required: true},
	"timeout": &hcldec.DefaultSpec{
		Primary: &hcldec.AttrSpec{Name: "timeout", Type: cty.Number},
		Default: &hcldec.LiteralSpec{Value: cty.NumberIntVal(30)},
	},
	"mode": &hcldec.ValidateSpec{
		Wrapped: &hcldec.AttrSpec{Name: "mode", Type: cty.String},
		Func:    func(cty.Value) hcl.Diagnostics { return nil },
	},
	"upper": &hcldec.TransformFuncSpec{
		Wrapped: &hcldec.AttrSpec{Name: "upper", Type: cty.String},
		Func:    function.New(&function.Spec{}),
	},
	"refined": &hcldec.RefineValueSpec{
		Wrapped: &hcldec.AttrSpec{Name: "refined", Type: cty.String},
		Refine:  func(b *cty.RefinementBuilder) *cty.RefinementBuilder { return b },
	},
	// Same body: the nested object's and tuple's attributes are this body's.
	"inline": hcldec.ObjectSpec{
		"extra": &hcldec.AttrSpec{Name: "extra", Type: cty.String},
	},
	"both": hcldec.TupleSpec{
		&hcldec.AttrSpec{Name: "first", Type: cty.String},
		&hcldec.LiteralSpec{Value: cty.True},
	},
	// Read nothing of the body.
	"lit": &hcldec.LiteralSpec{Value: cty.StringVal("x")},
	// Unknown kind: named by its key.
	"mystery": unknownSpec{},
}

const kitchenSinkSchema = `{
  "type": "object",
  "additionalProperties": false,
  "required": ["auth", "labels", "pair", "str", "tag"],
  "properties": {
    "str":  {"type": "string"},
    "num":  {"type": "number"},
    "flag": {"type": "boolean"},
    "any":  {},
    "list": {"type": "array", "items": {"type": "string"}},
    "set":  {"type": "array", "items": {"type": "number"}, "uniqueItems": true},
    "map":  {"type": "object", "additionalProperties": {"type": "boolean"}},
    "obj":  {"type": "object", "required": ["a"], "properties": {
      "a": {"type": "string"},
      "b": {"type": "array", "items": {"type": "number"}}
    }},
    "tup":  {"type": "array", "prefixItems": [{"type": "string"}, {"type": "number"}], "items": false, "minItems": 2, "maxItems": 2},
    "auth": {"type": "object", "additionalProperties": false, "required": ["user"], "properties": {
      "user": {"type": "string"}
    }},
    "header": {"anyOf": [
      {"type": "object", "additionalProperties": false, "required": [], "properties": {"name": {"type": "string"}}},
      {"type": "array", "maxItems": 3, "items":
        {"type": "object", "additionalProperties": false, "required": [], "properties": {"name": {"type": "string"}}}}
    ]},
    "pair": {"type": "array", "minItems": 2, "maxItems": 2, "items":
      {"type": "object", "additionalProperties": false, "required": [], "properties": {"v": {"type": "number"}}}},
    "tag": {"anyOf": [
      {"type": "object", "additionalProperties": false, "required": [], "properties": {"k": {"type": "string"}}},
      {"type": "array", "minItems": 1, "uniqueItems": true, "items":
        {"type": "object", "additionalProperties": false, "required": [], "properties": {"k": {"type": "string"}}}}
    ]},
    "env": {"type": "object", "description": "keyed by the block's region label", "additionalProperties":
      {"type": "object", "description": "keyed by the block's name label", "additionalProperties":
        {"type": "object", "additionalProperties": false, "required": [], "properties": {"url": {"type": "string"}}}}},
    "listener": {"anyOf": [
      {"type": "object", "description": "keyed by the block's protocol label", "additionalProperties":
        {"type": "object", "additionalProperties": false, "required": ["port"], "properties": {"port": {"type": "number"}}}},
      {"type": "array", "items":
        {"type": "object", "description": "keyed by the block's protocol label", "additionalProperties":
          {"type": "object", "additionalProperties": false, "required": ["port"], "properties": {"port": {"type": "number"}}}}}
    ]},
    "route": {"type": "object", "description": "keyed by the block's method label", "additionalProperties":
      {"type": "object", "description": "keyed by the block's path label", "additionalProperties":
        {"type": "object", "additionalProperties": false, "required": [], "properties": {"to": {"type": "string"}}}}},
    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    "timeout": {"type": "number", "default": 30},
    "mode": {"type": "string"},
    "upper": {"type": "string"},
    "refined": {"type": "string"},
    "extra": {"type": "string"},
    "first": {"type": "string"},
    "mystery": {"description": "not described: unsupported hcldec spec kind connectors_test.unknownSpec"}
  }
}`

// jsonEqual compares got (a Go value) with want (JSON text) as JSON.
func jsonEqual(t *testing.T, got any, want string) {
	t.Helper()
	gb, err := json.Marshal(got)
	if err != nil {
		t.Fatalf("schema does not marshal: %v", err)
	}
	var g, w any
	if err := json.Unmarshal(gb, &g); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad expectation: %v", err)
	}
	if !reflect.DeepEqual(g, w) {
		var gi, wi bytes.Buffer
		json.Indent(&gi, gb, "", "  ")
		wb, _ := json.Marshal(w)
		json.Indent(&wi, wb, "", "  ")
		t.Errorf("schema mismatch at %s\n got: %s\nwant: %s", firstDiff("$", g, w), gi.String(), wi.String())
	}
}

// firstDiff names where two decoded JSON values first differ.
func firstDiff(path string, g, w any) string {
	gm, gok := g.(map[string]any)
	wm, wok := w.(map[string]any)
	if gok && wok {
		for k := range wm {
			if _, ok := gm[k]; !ok {
				return path + "." + k + " (missing)"
			}
		}
		for k := range gm {
			if _, ok := wm[k]; !ok {
				return path + "." + k + " (unexpected)"
			}
			if !reflect.DeepEqual(gm[k], wm[k]) {
				return firstDiff(path+"."+k, gm[k], wm[k])
			}
		}
	}
	ga, gok := g.([]any)
	wa, wok := w.([]any)
	if gok && wok && len(ga) == len(wa) {
		for i := range ga {
			if !reflect.DeepEqual(ga[i], wa[i]) {
				return firstDiff(fmt.Sprintf("%s[%d]", path, i), ga[i], wa[i])
			}
		}
	}
	return fmt.Sprintf("%s: got %v, want %v", path, g, w)
}

func TestJSONSchemaKinds(t *testing.T) {
	jsonEqual(t, connectors.JSONSchema(kitchenSink), kitchenSinkSchema)
}

func TestJSONSchemaEmpty(t *testing.T) {
	want := `{"type": "object", "properties": {}, "required": [], "additionalProperties": false}`
	jsonEqual(t, connectors.JSONSchema(nil), want)
	jsonEqual(t, connectors.JSONSchema(hcldec.ObjectSpec{}), want)
}

func TestJSONSchemaDefaultNotLiteral(t *testing.T) {
	// A default read from another attribute: both are properties, no "default".
	spec := hcldec.ObjectSpec{
		"name": &hcldec.DefaultSpec{
			Primary: &hcldec.AttrSpec{Name: "name", Type: cty.String},
			Default: &hcldec.AttrSpec{Name: "legacy_name", Type: cty.String},
		},
		"nulldefault": &hcldec.DefaultSpec{
			Primary: &hcldec.AttrSpec{Name: "n", Type: cty.List(cty.String), Required: true},
			Default: &hcldec.LiteralSpec{Value: cty.NullVal(cty.List(cty.String))},
		},
		"listdefault": &hcldec.DefaultSpec{
			Primary: &hcldec.AttrSpec{Name: "l", Type: cty.List(cty.String)},
			Default: &hcldec.LiteralSpec{Value: cty.ListVal([]cty.Value{cty.StringVal("a")})},
		},
		"unknowndefault": &hcldec.DefaultSpec{
			Primary: &hcldec.AttrSpec{Name: "u", Type: cty.String},
			Default: &hcldec.LiteralSpec{Value: cty.UnknownVal(cty.String)},
		},
	}
	jsonEqual(t, connectors.JSONSchema(spec), `{
	  "type": "object", "additionalProperties": false, "required": ["n"],
	  "properties": {
	    "name": {"type": "string"},
	    "legacy_name": {"type": "string"},
	    "n": {"type": "array", "items": {"type": "string"}},
	    "l": {"type": "array", "items": {"type": "string"}, "default": ["a"]},
	    "u": {"type": "string"}
	  }
	}`)
}

// TestJSONSchemaMatchesHCLJSON checks that a body shaped as the schema says
// decodes with the spec through HCL's JSON syntax, i.e. that property names
// and block shapes are the ones HCL reads.
func TestJSONSchemaMatchesHCLJSON(t *testing.T) {
	spec := hcldec.ObjectSpec{}
	for k, s := range kitchenSink {
		switch k {
		case "mystery", "upper": // not decodable / a no-op function
			continue
		}
		spec[k] = s
	}
	body := `{
	  "str": "s", "num": 1, "flag": true, "any": [1, "x"], "list": ["a"], "set": [1, 2],
	  "map": {"x": true}, "obj": {"a": "x"}, "tup": ["a", 1],
	  "auth": {"user": "u"},
	  "header": [{"name": "a"}, {"name": "b"}],
	  "pair": [{"v": 1}, {"v": 2}],
	  "tag": {"k": "one"},
	  "env": {"eu": {"prod": {"url": "https://x"}}},
	  "listener": [{"http": {"port": 80}}, {"https": {"port": 443}}],
	  "route": {"GET": {"/x": {"to": "y"}}},
	  "labels": {"team": "data"},
	  "mode": "m", "refined": "r", "extra": "e", "first": "f"
	}`
	f, diags := hcljson.Parse([]byte(body), "body.json")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	v, diags := hcldec.Decode(f.Body, spec, nil)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if got := v.GetAttr("timeout"); !got.RawEquals(cty.NumberIntVal(30)) {
		t.Errorf("timeout = %#v, want the default 30", got)
	}
	// Every property of the schema is something HCL accepts in the body.
	props := connectors.JSONSchema(spec)["properties"].(map[string]any)
	implied := hcldec.ImpliedSchema(spec)
	known := map[string]bool{}
	for _, a := range implied.Attributes {
		known[a.Name] = true
	}
	for _, b := range implied.Blocks {
		known[b.Type] = true
	}
	for p := range props {
		if !known[p] {
			t.Errorf("schema property %q is not in the spec's implied body schema", p)
		}
		delete(known, p)
	}
	for k := range known {
		t.Errorf("body item %q is missing from the schema", k)
	}
}

func TestFileConnectorSchemas(t *testing.T) {
	c, ok := connectors.Lookup("file")
	if !ok {
		t.Fatal("file connector not registered")
	}
	jsonEqual(t, c.Schemas(), `{
	  "connection": {"type": "object", "additionalProperties": false, "required": [], "properties": {
	    "path": {"type": "string"}, "format": {"type": "string"}
	  }},
	  "source": {"type": "object", "additionalProperties": false, "required": ["path"], "properties": {
	    "path": {"type": "string"}, "format": {"type": "string"}, "records": {"type": "string"}
	  }},
	  "target": {"type": "object", "additionalProperties": false, "required": ["path"], "properties": {
	    "path": {"type": "string"}, "format": {"type": "string"},
	    "columns": {"type": "array", "items": {"type": "string"}}, "append": {"type": "boolean"}
	  }}
	}`)
}

func TestSchemasOmitsMissingRoles(t *testing.T) {
	c := &connectors.Connector{Type: "sourceonly", Source: hcldec.ObjectSpec{
		"q": &hcldec.AttrSpec{Name: "q", Type: cty.String},
	}}
	got := c.Schemas()
	if _, ok := got["target"]; ok {
		t.Error("target present for a connector without a target schema")
	}
	if _, ok := got["source"]; !ok {
		t.Error("source missing")
	}
	if _, ok := got["connection"]; !ok {
		t.Error("connection missing (should be an empty object schema)")
	}
}

// Every registered connector's schemas marshal as JSON.
func TestAllRegisteredSchemasMarshal(t *testing.T) {
	for _, typ := range connectors.Types() {
		c, _ := connectors.Lookup(typ)
		if _, err := json.Marshal(c.Schemas()); err != nil {
			t.Errorf("%s: %v", typ, err)
		}
	}
}
