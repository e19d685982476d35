package lang

import (
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// eval evaluates a static attribute expression in the load context (var.*,
// local.*, functions) and converts it to ty. Unknown results (follow-ons of
// errors reported elsewhere) are returned without diagnostics.
func (l *loader) eval(expr hcl.Expression, ty cty.Type, what string, allowSecret bool) (cty.Value, hcl.Diagnostics) {
	if _, diags := l.checkRefs(expr.Variables()); diags.HasErrors() {
		return cty.UnknownVal(ty), diags
	}
	v, diags := expr.Value(l.ctx)
	if diags.HasErrors() {
		return cty.UnknownVal(ty), diags
	}
	if !allowSecret && containsSecret(v) {
		return cty.UnknownVal(ty), append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Secret not allowed here",
			Detail:   fmt.Sprintf("The %s cannot use secret(): secrets are only resolved, at run time, in connection attributes, the connector attributes of source and target blocks, and webhook attributes.", what),
			Subject:  expr.Range().Ptr(),
		})
	}
	if ty == cty.DynamicPseudoType {
		return v, diags
	}
	cv, err := convert.Convert(v, ty)
	if err != nil {
		return cty.UnknownVal(ty), append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Incorrect attribute value type",
			Detail:   fmt.Sprintf("Inappropriate value for %s: %s.", what, convertErr(err)),
			Subject:  expr.Range().Ptr(),
		})
	}
	return cv, diags
}

// attrVal evaluates attribute name of attrs. ok is false when the attribute is
// absent, null, unknown or invalid (diagnostics appended).
func (l *loader) attrVal(attrs hcl.Attributes, name string, ty cty.Type, diags *hcl.Diagnostics) (cty.Value, *hcl.Attribute, bool) {
	attr, ok := attrs[name]
	if !ok {
		return cty.NilVal, nil, false
	}
	v, d := l.eval(attr.Expr, ty, fmt.Sprintf("attribute %q", name), false)
	*diags = append(*diags, d...)
	if d.HasErrors() || v.IsNull() || !v.IsWhollyKnown() {
		return cty.NilVal, attr, false
	}
	v, _ = v.UnmarkDeep()
	return v, attr, true
}

func (l *loader) getString(attrs hcl.Attributes, name string, diags *hcl.Diagnostics) (string, *hcl.Attribute, bool) {
	v, attr, ok := l.attrVal(attrs, name, cty.String, diags)
	if !ok {
		return "", attr, false
	}
	return v.AsString(), attr, true
}

func (l *loader) getBool(attrs hcl.Attributes, name string, def bool, diags *hcl.Diagnostics) bool {
	v, _, ok := l.attrVal(attrs, name, cty.Bool, diags)
	if !ok {
		return def
	}
	return v.True()
}

// getInt reads a whole number >= minimum.
func (l *loader) getInt(attrs hcl.Attributes, name string, def, minimum int, diags *hcl.Diagnostics) int {
	v, attr, ok := l.attrVal(attrs, name, cty.Number, diags)
	if !ok {
		return def
	}
	bf := v.AsBigFloat()
	i, acc := bf.Int64()
	if !bf.IsInt() || acc != big.Exact || i < int64(minimum) || i > 1<<31 {
		*diags = append(*diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Invalid value",
			Detail:   fmt.Sprintf("The attribute %q must be a whole number of at least %d.", name, minimum),
			Subject:  attr.Expr.Range().Ptr(),
		})
		return def
	}
	return int(i)
}

// getFloat reads a number in [lo, hi].
func (l *loader) getFloat(attrs hcl.Attributes, name string, def, lo, hi float64, diags *hcl.Diagnostics) float64 {
	v, attr, ok := l.attrVal(attrs, name, cty.Number, diags)
	if !ok {
		return def
	}
	f, _ := v.AsBigFloat().Float64()
	if f < lo || f > hi {
		*diags = append(*diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Invalid value",
			Detail:   fmt.Sprintf("The attribute %q must be between %g and %g.", name, lo, hi),
			Subject:  attr.Expr.Range().Ptr(),
		})
		return def
	}
	return f
}

func (l *loader) getStringList(attrs hcl.Attributes, name string, diags *hcl.Diagnostics) ([]string, *hcl.Attribute) {
	v, attr, ok := l.attrVal(attrs, name, cty.List(cty.String), diags)
	if !ok {
		return nil, attr
	}
	out := make([]string, 0, v.LengthInt())
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		if e.IsNull() {
			*diags = append(*diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Invalid value",
				Detail:   fmt.Sprintf("The attribute %q must not contain null.", name),
				Subject:  attr.Expr.Range().Ptr(),
			})
			return nil, attr
		}
		out = append(out, e.AsString())
	}
	return out, attr
}

func (l *loader) getStringMap(attrs hcl.Attributes, name string, diags *hcl.Diagnostics) (map[string]string, *hcl.Attribute) {
	v, attr, ok := l.attrVal(attrs, name, cty.Map(cty.String), diags)
	if !ok {
		return nil, attr
	}
	out := make(map[string]string, v.LengthInt())
	for it := v.ElementIterator(); it.Next(); {
		k, e := it.Element()
		if e.IsNull() {
			continue
		}
		out[k.AsString()] = e.AsString()
	}
	return out, attr
}

// getGo reads any value as plain Go values.
func (l *loader) getGo(attrs hcl.Attributes, name string, diags *hcl.Diagnostics) (any, *hcl.Attribute, bool) {
	v, attr, ok := l.attrVal(attrs, name, cty.DynamicPseudoType, diags)
	if !ok {
		return nil, attr, false
	}
	g, err := ToGo(v)
	if err != nil {
		*diags = append(*diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Invalid value",
			Detail:   fmt.Sprintf("The attribute %q: %s.", name, err),
			Subject:  attr.Expr.Range().Ptr(),
		})
		return nil, attr, false
	}
	return g, attr, true
}

func (l *loader) getDuration(attrs hcl.Attributes, name string, def time.Duration, diags *hcl.Diagnostics) time.Duration {
	s, attr, ok := l.getString(attrs, name, diags)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		why := "it must be positive"
		if err != nil {
			why = strings.TrimPrefix(err.Error(), "time: ")
		}
		*diags = append(*diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Invalid duration",
			Detail:   fmt.Sprintf("%q is not a valid duration for %q (%s). Write a number with a unit, like \"500ms\", \"30s\", \"5m\" or \"1h\".", s, name, why),
			Subject:  attr.Expr.Range().Ptr(),
		})
		return def
	}
	return d
}

// oneOf checks that the string attribute name is one of options; summary is
// e.g. "Invalid operation".
func (l *loader) oneOf(attrs hcl.Attributes, name, def string, options []string, summary string, diags *hcl.Diagnostics) string {
	s, attr, ok := l.getString(attrs, name, diags)
	if !ok {
		return def
	}
	if !slices.Contains(options, s) {
		*diags = append(*diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  summary,
			Detail: fmt.Sprintf("%q is not a valid value for %q; use one of %s.%s", s, name,
				quotedList(options), didYouMean(s, options)),
			Subject: attr.Expr.Range().Ptr(),
		})
		return def
	}
	return s
}

func quotedList(options []string) string {
	q := make([]string, len(options))
	for i, o := range options {
		q[i] = fmt.Sprintf("%q", o)
	}
	if len(q) <= 1 {
		return strings.Join(q, "")
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

// duplicateBlocks reports every block of typ after the first.
func duplicateBlocks(blocks []*hcl.Block, typ string) (*hcl.Block, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	var first *hcl.Block
	for _, b := range blocks {
		if b.Type != typ {
			continue
		}
		if first != nil {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Duplicate " + typ + " block",
				Detail:   fmt.Sprintf("Only one %s block is allowed here; the first is at %s.", typ, first.DefRange.String()),
				Subject:  b.DefRange.Ptr(),
			})
			continue
		}
		first = b
	}
	return first, diags
}
