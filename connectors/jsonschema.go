package connectors

import (
	"encoding/json"
	"fmt"
	"sort"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// JSONSchema describes the body that an hcldec object spec decodes as a JSON
// Schema (draft 2020-12, the dialect of OpenAPI 3.1), for editors and UIs:
//
//	{"type": "object", "properties": {...}, "required": [...], "additionalProperties": false}
//
// Properties are named as they are written in a block body: an attribute by its
// AttrSpec.Name, a nested block by its TypeName (falling back to the spec map's
// key only for spec kinds that carry no name). Specs that read the same body
// (nested ObjectSpec and TupleSpec, DefaultSpec, the transform, refine and
// validate wrappers) contribute their properties to the same object. Specs that
// read nothing from the body (LiteralSpec, ExprSpec, BlockLabelSpec) add no
// property. Any other spec kind becomes an unconstrained property with a
// description saying so.
//
// The schema describes literal values only: the expression forms the REST API
// also accepts for an attribute ({"secret": "name"}, {"hcl": "..."}) are not
// part of it.
func JSONSchema(spec hcldec.ObjectSpec) map[string]any {
	b := newSchemaBody()
	b.add("", spec)
	return b.schema()
}

// Schemas returns the JSON Schemas of the connector's attribute sets:
// {"connection": ..., "source": ..., "target": ...}, where source and target are
// omitted when the connector cannot be used in that role.
func (c *Connector) Schemas() map[string]any {
	out := map[string]any{"connection": JSONSchema(c.Connection)}
	if c.Source != nil {
		out["source"] = JSONSchema(c.Source)
	}
	if c.Target != nil {
		out["target"] = JSONSchema(c.Target)
	}
	return out
}

// schemaBody collects the properties of one HCL body.
type schemaBody struct {
	props    map[string]any
	required map[string]bool
}

func newSchemaBody() *schemaBody {
	return &schemaBody{props: map[string]any{}, required: map[string]bool{}}
}

func (b *schemaBody) schema() map[string]any {
	req := make([]string, 0, len(b.required))
	for n := range b.required {
		req = append(req, n)
	}
	sort.Strings(req)
	return map[string]any{
		"type":                 "object",
		"properties":           b.props,
		"required":             req,
		"additionalProperties": false,
	}
}

// set records a property; the first spec to name a property wins, so that two
// specs reading the same attribute (a DefaultSpec's primary and fallback, say)
// do not overwrite each other.
func (b *schemaBody) set(name string, schema map[string]any, required bool) {
	if _, dup := b.props[name]; !dup {
		b.props[name] = schema
	}
	if required {
		b.required[name] = true
	}
}

// add adds what spec reads from the body. key is the spec's key in its
// enclosing ObjectSpec ("" when none), used to name specs without a name.
func (b *schemaBody) add(key string, spec hcldec.Spec) {
	switch s := spec.(type) {
	case nil:
	case hcldec.ObjectSpec:
		keys := make([]string, 0, len(s))
		for k := range s {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			b.add(k, s[k])
		}
	case hcldec.TupleSpec:
		for _, c := range s {
			b.add(key, c)
		}
	case *hcldec.AttrSpec:
		if s == nil {
			return
		}
		b.set(s.Name, typeSchema(s.Type), s.Required)
	case *hcldec.BlockSpec:
		if s == nil {
			return
		}
		b.set(s.TypeName, blockSchema(nil, s.Nested), s.Required)
	case *hcldec.BlockListSpec:
		if s == nil {
			return
		}
		b.set(s.TypeName, blockSeqSchema(s.Nested, s.MinItems, s.MaxItems, false), s.MinItems > 0)
	case *hcldec.BlockTupleSpec:
		if s == nil {
			return
		}
		b.set(s.TypeName, blockSeqSchema(s.Nested, s.MinItems, s.MaxItems, false), s.MinItems > 0)
	case *hcldec.BlockSetSpec:
		if s == nil {
			return
		}
		b.set(s.TypeName, blockSeqSchema(s.Nested, s.MinItems, s.MaxItems, true), s.MinItems > 0)
	case *hcldec.BlockMapSpec:
		if s == nil {
			return
		}
		b.set(s.TypeName, blockSchema(s.LabelNames, s.Nested), false)
	case *hcldec.BlockObjectSpec:
		if s == nil {
			return
		}
		b.set(s.TypeName, blockSchema(s.LabelNames, s.Nested), false)
	case *hcldec.BlockAttrsSpec:
		if s == nil {
			return
		}
		b.set(s.TypeName, map[string]any{
			"type":                 "object",
			"additionalProperties": typeSchema(s.ElementType),
		}, s.Required)
	case *hcldec.BlockLabelSpec, *hcldec.LiteralSpec, *hcldec.ExprSpec:
		// Nothing of the body: labels are not properties, literals and
		// expressions are fixed by the spec.
	case *hcldec.DefaultSpec:
		if s == nil {
			return
		}
		primary := newSchemaBody()
		primary.add(key, s.Primary)
		if lit, ok := s.Default.(*hcldec.LiteralSpec); ok && lit != nil && len(primary.props) == 1 {
			if d, ok := ctyToJSON(lit.Value); ok {
				for _, p := range primary.props {
					if m, isMap := p.(map[string]any); isMap {
						m["default"] = d
					}
				}
			}
		}
		b.merge(primary)
		b.add(key, s.Default)
	case *hcldec.TransformExprSpec:
		if s != nil {
			b.add(key, s.Wrapped)
		}
	case *hcldec.TransformFuncSpec:
		if s != nil {
			b.add(key, s.Wrapped)
		}
	case *hcldec.RefineValueSpec:
		if s != nil {
			b.add(key, s.Wrapped)
		}
	case *hcldec.ValidateSpec:
		if s != nil {
			b.add(key, s.Wrapped)
		}
	default:
		if key == "" {
			return // nothing to name it by
		}
		b.set(key, map[string]any{
			"description": fmt.Sprintf("not described: unsupported hcldec spec kind %T", spec),
		}, false)
	}
}

func (b *schemaBody) merge(o *schemaBody) {
	names := make([]string, 0, len(o.props))
	for n := range o.props {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		b.set(n, o.props[n].(map[string]any), o.required[n])
	}
}

// bodySchema is the schema of a nested block's body.
func bodySchema(spec hcldec.Spec) map[string]any {
	b := newSchemaBody()
	b.add("", spec)
	return b.schema()
}

// blockSchema is the schema of one block: its body, inside one object level per
// label (in JSON a labelled block is written {"label1": {"label2": {body}}}).
// The labels are mapLabels (a BlockMapSpec's or BlockObjectSpec's) followed by
// those the nested spec reads with BlockLabelSpec.
func blockSchema(mapLabels []string, nested hcldec.Spec) map[string]any {
	labels := append(append([]string(nil), mapLabels...), labelSpecs(nested)...)
	s := bodySchema(nested)
	for i := len(labels) - 1; i >= 0; i-- {
		s = map[string]any{
			"type":                 "object",
			"description":          "keyed by the block's " + labels[i] + " label",
			"additionalProperties": s,
		}
	}
	return s
}

// blockSeqSchema is the schema of a repeatable block. In JSON a block that may
// repeat is written as an array of blocks, or as a single one (as the REST API
// renders a block that occurs once).
func blockSeqSchema(nested hcldec.Spec, minItems, maxItems int, unique bool) map[string]any {
	arr := map[string]any{"type": "array", "items": blockSchema(nil, nested)}
	if minItems > 0 {
		arr["minItems"] = minItems
	}
	if maxItems > 0 {
		arr["maxItems"] = maxItems
	}
	if unique {
		arr["uniqueItems"] = true
	}
	if minItems > 1 {
		return arr
	}
	return map[string]any{"anyOf": []any{blockSchema(nil, nested), arr}}
}

// labelSpecs returns the names of the labels a block's spec reads, by index,
// as hcldec does to build the block's header schema.
func labelSpecs(spec hcldec.Spec) []string {
	names := map[int]string{}
	maxIdx := -1
	var visit func(hcldec.Spec)
	visit = func(spec hcldec.Spec) {
		switch s := spec.(type) {
		case *hcldec.BlockLabelSpec:
			if s != nil && s.Index >= 0 && s.Index < 64 { // bounded against absurd specs
				names[s.Index] = s.Name
				maxIdx = max(maxIdx, s.Index)
			}
		case hcldec.ObjectSpec:
			for _, c := range s {
				visit(c)
			}
		case hcldec.TupleSpec:
			for _, c := range s {
				visit(c)
			}
		case *hcldec.DefaultSpec:
			if s != nil {
				visit(s.Primary)
				visit(s.Default)
			}
		case *hcldec.TransformExprSpec:
			if s != nil {
				visit(s.Wrapped)
			}
		case *hcldec.TransformFuncSpec:
			if s != nil {
				visit(s.Wrapped)
			}
		case *hcldec.RefineValueSpec:
			if s != nil {
				visit(s.Wrapped)
			}
		case *hcldec.ValidateSpec:
			if s != nil {
				visit(s.Wrapped)
			}
		}
	}
	visit(spec)
	out := make([]string, maxIdx+1)
	for i := range out {
		out[i] = names[i]
		if out[i] == "" {
			out[i] = fmt.Sprintf("#%d", i)
		}
	}
	return out
}

// typeSchema maps a cty type to a JSON Schema.
func typeSchema(t cty.Type) map[string]any {
	switch {
	case t == cty.NilType:
		return map[string]any{}
	case t == cty.DynamicPseudoType:
		return map[string]any{}
	case t == cty.String:
		return map[string]any{"type": "string"}
	case t == cty.Number:
		return map[string]any{"type": "number"}
	case t == cty.Bool:
		return map[string]any{"type": "boolean"}
	case t.IsListType():
		return map[string]any{"type": "array", "items": typeSchema(t.ElementType())}
	case t.IsSetType():
		return map[string]any{"type": "array", "items": typeSchema(t.ElementType()), "uniqueItems": true}
	case t.IsMapType():
		return map[string]any{"type": "object", "additionalProperties": typeSchema(t.ElementType())}
	case t.IsObjectType():
		atys := t.AttributeTypes()
		props := make(map[string]any, len(atys))
		req := []string{}
		for n, at := range atys {
			props[n] = typeSchema(at)
			if !t.AttributeOptional(n) {
				req = append(req, n)
			}
		}
		sort.Strings(req)
		// No additionalProperties: converting an object to an object type
		// discards attributes the type does not have.
		return map[string]any{"type": "object", "properties": props, "required": req}
	case t.IsTupleType():
		ets := t.TupleElementTypes()
		items := make([]any, len(ets))
		for i, et := range ets {
			items[i] = typeSchema(et)
		}
		return map[string]any{
			"type":        "array",
			"prefixItems": items,
			"items":       false,
			"minItems":    len(ets),
			"maxItems":    len(ets),
		}
	default:
		return map[string]any{"description": "not described: cty type " + t.FriendlyName()}
	}
}

// ctyToJSON converts a wholly known, non-null value to a JSON value.
func ctyToJSON(v cty.Value) (any, bool) {
	v, _ = v.UnmarkDeep()
	if v.IsNull() || !v.IsWhollyKnown() {
		return nil, false // no meaningful default
	}
	b, err := ctyjson.Marshal(v, v.Type())
	if err != nil {
		return nil, false
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, false
	}
	return out, true
}
