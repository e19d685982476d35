package lang

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

var variableSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "type"},
		{Name: "default"},
		{Name: "description"},
		{Name: "sensitive"},
	},
}

func (l *loader) decodeVariableBlock(b *hcl.Block) (*Variable, hcl.Diagnostics) {
	v := &Variable{
		Name:      b.Labels[0],
		Type:      cty.DynamicPseudoType,
		Default:   cty.NullVal(cty.DynamicPseudoType),
		Value:     cty.NullVal(cty.DynamicPseudoType),
		DeclRange: b.DefRange,
	}
	content, diags := b.Body.Content(variableSchema)
	if attr, ok := content.Attributes["type"]; ok {
		ty, d := typeexpr.TypeConstraint(attr.Expr)
		diags = append(diags, d...)
		if !d.HasErrors() {
			v.Type = ty
		}
	}
	if attr, ok := content.Attributes["description"]; ok {
		val, d := attr.Expr.Value(nil)
		diags = append(diags, d...)
		if !d.HasErrors() {
			if s, err := convert.Convert(val, cty.String); err != nil || s.IsNull() || !s.IsKnown() {
				diags = append(diags, typeDiag(attr, "a string"))
			} else {
				v.Description = s.AsString()
			}
		}
	}
	if attr, ok := content.Attributes["sensitive"]; ok {
		val, d := attr.Expr.Value(nil)
		diags = append(diags, d...)
		if !d.HasErrors() {
			if bv, err := convert.Convert(val, cty.Bool); err != nil || bv.IsNull() || !bv.IsKnown() {
				diags = append(diags, typeDiag(attr, "a bool"))
			} else {
				v.Sensitive = bv.True()
			}
		}
	}
	v.Default = cty.NullVal(v.Type)
	v.Value = cty.NullVal(v.Type)
	if attr, ok := content.Attributes["default"]; ok {
		// Defaults are literal values: no references or functions (as in Terraform).
		val, d := attr.Expr.Value(nil)
		diags = append(diags, d...)
		if !d.HasErrors() {
			cv, err := convert.Convert(val, v.Type)
			if err != nil {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Invalid default value for variable",
					Detail:   fmt.Sprintf("This default value is not compatible with the variable's type constraint: %s.", convertErr(err)),
					Subject:  attr.Expr.Range().Ptr(),
				})
			} else {
				v.Default = cv
			}
		}
	}
	return v, diags
}

func typeDiag(attr *hcl.Attribute, want string) *hcl.Diagnostic {
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "Incorrect attribute value type",
		Detail:   fmt.Sprintf("Inappropriate value for attribute %q: %s is required.", attr.Name, want),
		Subject:  attr.Expr.Range().Ptr(),
	}
}

func convertErr(err error) string {
	if pe, ok := err.(cty.PathError); ok && len(pe.Path) > 0 {
		return fmt.Sprintf("%s%s", strings.TrimPrefix(pathString(pe.Path), " "), ": "+pe.Error())
	}
	return err.Error()
}

// assignVariableValues applies, lowest precedence first: default, -var-file,
// FERRY_VAR_<name>, -var.
func (l *loader) assignVariableValues() {
	vars := l.cfg.Variables
	set := map[string]bool{}
	failed := map[string]bool{}
	for name, v := range vars {
		if !v.Default.IsNull() {
			v.Value = v.Default
			set[name] = true
		}
	}

	for _, path := range l.opts.VarFiles {
		src, err := os.ReadFile(path)
		if err != nil {
			l.diags = append(l.diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Cannot read variables file",
				Detail:   fmt.Sprintf("The -var-file %s cannot be read: %s.", path, err),
			})
			continue
		}
		var f *hcl.File
		var diags hcl.Diagnostics
		if strings.HasSuffix(path, ".json") {
			f, diags = l.parser.ParseJSON(src, path)
		} else {
			f, diags = l.parser.ParseHCL(src, path)
		}
		l.diags = append(l.diags, diags...)
		if f == nil || f.Body == nil {
			continue
		}
		attrs, diags := f.Body.JustAttributes()
		l.diags = append(l.diags, diags...)
		list := make([]*hcl.Attribute, 0, len(attrs))
		for _, a := range attrs {
			list = append(list, a)
		}
		sort.Slice(list, func(i, j int) bool { return list[i].Range.Start.Byte < list[j].Range.Start.Byte })
		for _, attr := range list {
			v, ok := vars[attr.Name]
			if !ok {
				l.diags = append(l.diags, &hcl.Diagnostic{
					Severity: hcl.DiagWarning,
					Summary:  "Value for undeclared variable",
					Detail:   fmt.Sprintf("The variables file assigns %q, but no variable block declares it.%s", attr.Name, didYouMean(attr.Name, l.names[kindVariable])),
					Subject:  attr.NameRange.Ptr(),
				})
				continue
			}
			val, d := attr.Expr.Value(nil)
			l.diags = append(l.diags, d...)
			if d.HasErrors() {
				failed[attr.Name] = true
				continue
			}
			cv, err := convert.Convert(val, v.Type)
			if err != nil {
				l.diags = append(l.diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Invalid value for variable",
					Detail:   fmt.Sprintf("The value for var.%s is not compatible with its type constraint: %s.", attr.Name, convertErr(err)),
					Subject:  attr.Expr.Range().Ptr(),
				})
				failed[attr.Name] = true
				continue
			}
			v.Value, set[attr.Name] = cv, true
			delete(failed, attr.Name)
		}
	}

	for _, kv := range l.opts.Environ {
		k, raw, ok := strings.Cut(kv, "=")
		name, isVar := strings.CutPrefix(k, "FERRY_VAR_")
		if !ok || !isVar {
			continue
		}
		v, declared := vars[name]
		if !declared {
			continue // the environment may hold variables of other configurations
		}
		val, diags := parseRawVariable(raw, v.Type, k)
		if diags.HasErrors() {
			l.diags = append(l.diags, diags...)
			failed[name] = true
			continue
		}
		v.Value, set[name] = val, true
		delete(failed, name)
	}

	names := make([]string, 0, len(l.opts.Vars))
	for n := range l.opts.Vars {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		v, declared := vars[name]
		if !declared {
			l.diags = append(l.diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Value for undeclared variable",
				Detail:   fmt.Sprintf("A value for %q was given with -var, but no variable block declares it.%s", name, didYouMean(name, l.names[kindVariable])),
			})
			continue
		}
		val, diags := parseRawVariable(l.opts.Vars[name], v.Type, "-var "+name)
		if diags.HasErrors() {
			l.diags = append(l.diags, diags...)
			failed[name] = true
			continue
		}
		v.Value, set[name] = val, true
		delete(failed, name)
	}

	for _, name := range l.names[kindVariable] {
		v := vars[name]
		if v == nil {
			continue
		}
		if failed[name] {
			v.Value = cty.DynamicVal
			continue
		}
		if !set[name] {
			l.diags = append(l.diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "No value for required variable",
				Detail: fmt.Sprintf("The variable %q has no default and no value was given. Pass -var %s=..., put it in a -var-file, or set FERRY_VAR_%s.",
					name, name, name),
				Subject: v.DeclRange.Ptr(),
			})
			v.Value = cty.DynamicVal
		}
	}
}

// parseRawVariable turns a -var or FERRY_VAR_ string into a value of ty:
// primitive and untyped variables take the string literally, complex types parse
// it as an HCL expression.
func parseRawVariable(raw string, ty cty.Type, source string) (cty.Value, hcl.Diagnostics) {
	var val cty.Value
	if ty.IsPrimitiveType() || ty == cty.DynamicPseudoType {
		val = cty.StringVal(raw)
	} else {
		expr, diags := hclsyntax.ParseExpression([]byte(raw), source, hcl.InitialPos)
		if diags.HasErrors() {
			return cty.DynamicVal, diags
		}
		v, diags := expr.Value(nil)
		if diags.HasErrors() {
			return cty.DynamicVal, diags
		}
		val = v
	}
	cv, err := convert.Convert(val, ty)
	if err != nil {
		return cty.DynamicVal, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Invalid value for variable",
			Detail:   fmt.Sprintf("The value given by %s is not a valid %s: %s.", source, ty.FriendlyNameForConstraint(), convertErr(err)),
		}}
	}
	return cv, nil
}

func (l *loader) variablesObject() cty.Value {
	m := make(map[string]cty.Value, len(l.cfg.Variables))
	for name, v := range l.cfg.Variables {
		m[name] = v.Value
	}
	return cty.ObjectVal(m)
}

// decodeLocals evaluates every local value in dependency order; cycles are
// reported and their members left unknown.
func (l *loader) decodeLocals(blocks []*hcl.Block) {
	attrs := map[string]*hcl.Attribute{}
	var order []string
	for _, b := range blocks {
		as, diags := b.Body.JustAttributes()
		l.diags = append(l.diags, diags...)
		list := make([]*hcl.Attribute, 0, len(as))
		for _, a := range as {
			list = append(list, a)
		}
		sort.Slice(list, func(i, j int) bool { return list[i].Range.Start.Byte < list[j].Range.Start.Byte })
		for _, a := range list {
			if prev, dup := attrs[a.Name]; dup {
				l.diags = append(l.diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Duplicate local value",
					Detail:   fmt.Sprintf("A local value named %q was already defined at %s. Local value names must be unique.", a.Name, prev.Range.String()),
					Subject:  a.NameRange.Ptr(),
				})
				continue
			}
			attrs[a.Name] = a
			order = append(order, a.Name)
		}
	}
	l.names[kindLocal] = append([]string(nil), order...)
	sort.Strings(l.names[kindLocal])

	graph := map[string][]string{}
	for _, name := range order {
		addr := "local." + name
		graph[addr] = nil
		for _, t := range attrs[name].Expr.Variables() {
			if t.RootName() != kindLocal {
				if t.RootName() == kindVariable {
					if n, _, ok := attrStep(t); ok && l.isDeclared(kindVariable, n) {
						l.addDep(addr, "var."+n)
					}
				}
				continue
			}
			if n, _, ok := attrStep(t); ok && attrs[n] != nil {
				graph[addr] = append(graph[addr], "local."+n)
				l.addDep(addr, "local."+n)
			}
		}
	}
	cyclic := map[string]bool{}
	for _, cyc := range findCycles(graph) {
		for _, n := range cyc {
			cyclic[n] = true
		}
		a := attrs[strings.TrimPrefix(cyc[0], "local.")]
		l.diags = append(l.diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Cycle in local values",
			Detail:   "These local values refer to each other in a cycle: " + strings.Join(cyc, " → ") + ".",
			Subject:  a.NameRange.Ptr(),
		})
	}

	values := map[string]cty.Value{}
	done := map[string]bool{}
	var eval func(name string)
	eval = func(name string) {
		if done[name] {
			return
		}
		done[name] = true
		addr := "local." + name
		if cyclic[addr] {
			values[name] = cty.DynamicVal
			return
		}
		for _, dep := range graph[addr] {
			eval(strings.TrimPrefix(dep, "local."))
		}
		l.ctx.Variables["local"] = cty.ObjectVal(values)
		attr := attrs[name]
		v, diags := l.eval(attr.Expr, cty.DynamicPseudoType, fmt.Sprintf("local value %q", name), true)
		l.diags = append(l.diags, diags...)
		values[name] = v
	}
	for _, name := range order {
		eval(name)
		l.cfg.Locals[name] = &Local{Name: name, Value: values[name], DeclRange: attrs[name].Range}
	}
	// Locals that failed to evaluate are unknown, so that their users do not
	// report follow-on errors.
	for _, name := range order {
		if _, ok := values[name]; !ok {
			values[name] = cty.DynamicVal
		}
	}
	l.ctx.Variables["local"] = cty.ObjectVal(values)
}
