package lang

import (
	"fmt"
	"math/big"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/robfig/cron/v3"
	"github.com/zclconf/go-cty/cty"

	"github.com/ferryhq/ferry/connectors"
)

// ---- ferry ----

var ferrySchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "tenant"},
		{Name: "required_version"},
	},
}

func (l *loader) decodeFerryBlock(b *hcl.Block) (*Ferry, hcl.Diagnostics) {
	f := &Ferry{DeclRange: b.DefRange}
	content, diags := b.Body.Content(ferrySchema)
	if s, attr, ok := l.getString(content.Attributes, "tenant", &diags); ok {
		if !tenantRe.MatchString(s) {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Invalid tenant",
				Detail:   fmt.Sprintf("%q is not a valid tenant: use lowercase letters, digits, '-' and '_', starting with a letter or digit.", s),
				Subject:  attr.Expr.Range().Ptr(),
			})
		} else {
			f.Tenant = s
		}
	}
	if s, attr, ok := l.getString(content.Attributes, "required_version", &diags); ok {
		f.RequiredVersion = s
		ok, err := VersionSatisfies(Version, s)
		switch {
		case err != nil:
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Invalid version constraint",
				Detail:   err.Error() + `. Write constraints like ">= 0.1" or ">= 0.2, < 1.0".`,
				Subject:  attr.Expr.Range().Ptr(),
			})
		case !ok:
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Unsupported ferry version",
				Detail:   fmt.Sprintf("This configuration requires ferry %s, but this is ferry %s.", s, Version),
				Subject:  attr.Expr.Range().Ptr(),
			})
		}
	}
	return f, diags
}

// ---- table ----

var tableSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "values", Required: true},
		{Name: "default"},
	},
}

func (l *loader) decodeTableBlock(b *hcl.Block) (*Table, hcl.Diagnostics) {
	t := &Table{Name: b.Labels[0], Values: map[string]any{}, DeclRange: b.DefRange}
	content, diags := b.Body.Content(tableSchema)
	if g, attr, ok := l.getGo(content.Attributes, "values", &diags); ok {
		m, isMap := g.(map[string]any)
		if !isMap {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Incorrect attribute value type",
				Detail:   `Inappropriate value for attribute "values": an object of key = value pairs is required, like { NL = "Netherlands" }.`,
				Subject:  attr.Expr.Range().Ptr(),
			})
		} else {
			t.Values = m
		}
	}
	if g, _, ok := l.getGo(content.Attributes, "default", &diags); ok {
		t.Default = g
	}
	l.addVarDeps(kindTable+"."+t.Name, content.Attributes)
	return t, diags
}

// addVarDeps records the var.* and local.* references of attributes.
func (l *loader) addVarDeps(from string, attrs hcl.Attributes) {
	for _, a := range attrs {
		l.addTraversalDeps(from, a.Expr.Variables())
	}
}

func (l *loader) addTraversalDeps(from string, travs []hcl.Traversal) {
	for _, t := range travs {
		root := t.RootName()
		if root != kindVariable && root != kindLocal {
			continue
		}
		if n, _, ok := attrStep(t); ok && l.isDeclared(root, n) {
			l.addDep(from, root+"."+n)
		}
	}
}

// ---- connection ----

var connectionSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "type", Required: true}},
}

func (l *loader) decodeConnectionBlock(b *hcl.Block) (*Connection, hcl.Diagnostics) {
	c := &Connection{Name: b.Labels[0], Config: cty.EmptyObjectVal, DeclRange: b.DefRange}
	content, remain, diags := b.Body.PartialContent(connectionSchema)
	typ, attr, ok := l.getString(content.Attributes, "type", &diags)
	if !ok {
		return c, diags
	}
	c.TypeRange = attr.Expr.Range()
	conn, found := connectors.Lookup(typ)
	if !found {
		types := connectors.Types()
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Unknown connector type",
			Detail: fmt.Sprintf("There is no connector of type %q.%s The available connector types are: %s.",
				typ, didYouMean(typ, types), strings.Join(types, ", ")),
			Subject: attr.Expr.Range().Ptr(),
		})
		return c, diags
	}
	c.Type = typ
	cfgVal, d := l.decodeConnectorBody(kindConnection+"."+c.Name, remain, conn.Connection)
	diags = append(diags, d...)
	c.Config = cfgVal
	return c, diags
}

// decodeConnectorBody decodes connector-owned attributes with the connector's
// schema: unknown, missing and mistyped attributes are reported by hcldec at
// their position, with HCL's suggestions. Secrets are allowed.
func (l *loader) decodeConnectorBody(from string, body hcl.Body, spec hcldec.ObjectSpec) (cty.Value, hcl.Diagnostics) {
	if spec == nil {
		spec = hcldec.ObjectSpec{}
	}
	travs := hcldec.Variables(body, spec)
	bad, diags := l.checkRefs(travs)
	l.addTraversalDeps(from, travs)
	v, d := hcldec.Decode(body, spec, l.ctx)
	diags = append(diags, dropWithin(d, bad)...)
	if v == cty.NilVal || v.IsNull() {
		v = cty.EmptyObjectVal
	}
	return v, diags
}

// connectorOf returns the connector of a declared, already decoded connection.
func (l *loader) connectorOf(name string) *connectors.Connector {
	c := l.cfg.Connections[name]
	if c == nil || c.Type == "" {
		return nil
	}
	conn, _ := connectors.Lookup(c.Type)
	return conn
}

// ---- mapping ----

// Casts are the values allowed in a mapping's casts.
var Casts = []string{"string", "int", "float", "bool", "decimal", "time"}

// NormalizeTypes are the values allowed in a normalize block's types.
var NormalizeTypes = []string{"string", "int", "float", "bool", "time"}

var mappingSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "key"},
		{Name: "filter"},
		{Name: "fields"},
		{Name: "casts"},
		{Name: "defaults"},
		{Name: "unset"},
		{Name: "pass_through"},
	},
}

func (l *loader) decodeMappingBlock(b *hcl.Block) (*Mapping, hcl.Diagnostics) {
	m := &Mapping{Name: b.Labels[0], Defaults: map[string]any{}, DeclRange: b.DefRange}
	content, diags := b.Body.Content(mappingSchema)
	attrs := content.Attributes
	if a, ok := attrs["key"]; ok {
		e, d := l.decodeExpr(a.Expr, "mapping key")
		diags = append(diags, d...)
		m.Key = e
	}
	if a, ok := attrs["filter"]; ok {
		e, d := l.decodeExpr(a.Expr, "mapping filter")
		diags = append(diags, d...)
		m.Filter = e
	}
	if a, ok := attrs["fields"]; ok {
		fields, d := l.decodeFields(a.Expr, nil)
		diags = append(diags, d...)
		m.Fields = fields
		diags = append(diags, checkFieldPaths(fields)...)
	}
	if casts, a := l.getStringMap(attrs, "casts", &diags); casts != nil {
		keys := sortedKeys(casts)
		for _, k := range keys {
			cast := casts[k]
			if !slices.Contains(Casts, cast) {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Invalid cast",
					Detail:   fmt.Sprintf("%q is not a valid cast for %q; use one of %s.%s", cast, k, quotedList(Casts), didYouMean(cast, Casts)),
					Subject:  a.Expr.Range().Ptr(),
				})
				continue
			}
			found := false
			for _, f := range m.Fields {
				if strings.Join(f.Path, ".") == k {
					f.Cast, found = cast, true
				}
			}
			if !found && m.Fields != nil {
				paths := make([]string, len(m.Fields))
				for i, f := range m.Fields {
					paths[i] = strings.Join(f.Path, ".")
				}
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Cast of unknown field",
					Detail:   fmt.Sprintf("The cast for %q names no field of this mapping's fields.%s", k, didYouMean(k, paths)),
					Subject:  a.Expr.Range().Ptr(),
				})
			}
		}
	}
	if g, a, ok := l.getGo(attrs, "defaults", &diags); ok {
		if dm, isMap := g.(map[string]any); isMap {
			m.Defaults = dm
		} else {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Incorrect attribute value type",
				Detail:   `Inappropriate value for attribute "defaults": an object is required, like { currency = "EUR" }.`,
				Subject:  a.Expr.Range().Ptr(),
			})
		}
	}
	if unset, _ := l.getStringList(attrs, "unset", &diags); unset != nil {
		for _, u := range unset {
			m.Unset = append(m.Unset, strings.Split(u, "."))
		}
	}
	m.PassThrough = l.getBool(attrs, "pass_through", false, &diags)
	for _, name := range []string{"casts", "defaults", "unset", "pass_through"} {
		if a, ok := attrs[name]; ok {
			l.addTraversalDeps(kindMapping+"."+m.Name, a.Expr.Variables())
		}
	}
	return m, diags
}

// decodeFields walks the fields object: nested objects and dotted keys both make
// Field paths; every leaf must be an expr string.
func (l *loader) decodeFields(expr hcl.Expression, prefix []string) ([]*Field, hcl.Diagnostics) {
	pairs, diags := hcl.ExprMap(expr)
	if diags.HasErrors() {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Invalid fields",
			Detail:   `The fields of a mapping must be an object of output field = "expression" pairs, e.g. fields = { sku = "variants[0].sku" }; nested objects and dotted names ("address.city") make nested output fields.`,
			Subject:  expr.Range().Ptr(),
		}}
	}
	var out []*Field
	for _, p := range pairs {
		kv, kd := p.Key.Value(nil)
		if kd.HasErrors() || kv.IsNull() || !kv.IsKnown() || kv.Type() != cty.String {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Invalid field name",
				Detail:   `A field name must be a literal name or a quoted string, like sku or "address.city".`,
				Subject:  p.Key.Range().Ptr(),
			})
			continue
		}
		key := kv.AsString()
		segs := strings.Split(key, ".")
		if slices.Contains(segs, "") {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Invalid field name",
				Detail:   fmt.Sprintf("%q is not a valid field path: it has an empty segment.", key),
				Subject:  p.Key.Range().Ptr(),
			})
			continue
		}
		path := append(slices.Clone(prefix), segs...)
		if isObjectExpr(p.Value) {
			sub, d := l.decodeFields(p.Value, path)
			diags = append(diags, d...)
			out = append(out, sub...)
			continue
		}
		e, d := l.decodeExpr(p.Value, fmt.Sprintf("field %q", strings.Join(path, ".")))
		diags = append(diags, d...)
		if e != nil {
			out = append(out, &Field{Path: path, Expr: e})
		}
	}
	return out, diags
}

// isObjectExpr reports whether expr is an object constructor (native) or a JSON
// object.
func isObjectExpr(expr hcl.Expression) bool {
	if _, native := expr.(hclsyntax.Expression); native {
		_, isObj := expr.(*hclsyntax.ObjectConsExpr)
		return isObj
	}
	// JSON syntax: strings fail ExprMap, objects succeed.
	_, diags := hcl.ExprMap(expr)
	return !diags.HasErrors()
}

// checkFieldPaths reports duplicate paths and paths that are set both as a
// whole and below (e.g. address and address.city).
func checkFieldPaths(fields []*Field) hcl.Diagnostics {
	var diags hcl.Diagnostics
	seen := map[string]*Field{}
	for _, f := range fields {
		p := strings.Join(f.Path, ".")
		if prev, dup := seen[p]; dup {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Duplicate field",
				Detail:   fmt.Sprintf("The field %q is already mapped at %s.", p, prev.Expr.Range.String()),
				Subject:  f.Expr.Range.Ptr(),
			})
			continue
		}
		seen[p] = f
	}
	for _, f := range fields {
		for i := 1; i < len(f.Path); i++ {
			parent := strings.Join(f.Path[:i], ".")
			if prev, ok := seen[parent]; ok {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Conflicting fields",
					Detail:   fmt.Sprintf("The field %q is inside %q, which is mapped as a whole at %s.", strings.Join(f.Path, "."), parent, prev.Expr.Range.String()),
					Subject:  f.Expr.Range.Ptr(),
				})
				break
			}
		}
	}
	return diags
}

// ---- integration ----

var integrationSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "allow_parallel_runs"},
		{Name: "workers"},
	},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "source"},
		{Type: "normalize"},
		{Type: "transform"},
		{Type: "target"},
		{Type: "retry"},
		{Type: "webhook"},
	},
}

// DefaultRetry is the retry policy of an integration without a retry block.
func DefaultRetry() *Retry {
	return &Retry{MaxAttempts: 5, Initial: time.Second, Max: 5 * time.Minute, Multiplier: 2, Jitter: 0.2}
}

func (l *loader) decodeIntegrationBlock(b *hcl.Block) (*Integration, hcl.Diagnostics) {
	in := &Integration{Name: b.Labels[0], Retry: DefaultRetry(), DeclRange: b.DefRange}
	addr := kindIntegration + "." + in.Name
	content, diags := b.Body.Content(integrationSchema)
	in.AllowParallelRuns = l.getBool(content.Attributes, "allow_parallel_runs", false, &diags)
	in.Workers = l.getInt(content.Attributes, "workers", runtime.NumCPU(), 1, &diags)

	block := func(typ string) *hcl.Block {
		first, d := duplicateBlocks(content.Blocks, typ)
		diags = append(diags, d...)
		return first
	}
	if sb := block("source"); sb != nil {
		s, d := l.decodeSourceBlock(sb, addr)
		diags = append(diags, d...)
		in.Source = s
	} else {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Missing source block",
			Detail:   "An integration needs a source block saying where records come from: source { connection = connection.<name> ... }.",
			Subject:  b.DefRange.Ptr(),
		})
	}
	if nb := block("normalize"); nb != nil {
		n, d := l.decodeNormalizeBlock(nb)
		diags = append(diags, d...)
		in.Normalize = n
	}
	if tb := block("transform"); tb != nil {
		t, d := l.decodeTransformBlock(tb, addr)
		diags = append(diags, d...)
		in.Transform = t
	}
	if tb := block("target"); tb != nil {
		t, d := l.decodeTargetBlock(tb, addr)
		diags = append(diags, d...)
		in.Target = t
	} else {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Missing target block",
			Detail:   "An integration needs a target block saying where records go: target { connection = connection.<name> operation = \"upsert\" ... }.",
			Subject:  b.DefRange.Ptr(),
		})
	}
	if rb := block("retry"); rb != nil {
		r, d := l.decodeRetryBlock(rb)
		diags = append(diags, d...)
		in.Retry = r
	}
	if wb := block("webhook"); wb != nil {
		w, d := l.decodeWebhookBlock(wb, addr)
		diags = append(diags, d...)
		in.Webhook = w
	}
	l.addVarDeps(addr, content.Attributes)
	return in, diags
}

var sourceSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "connection", Required: true},
		{Name: "cursor"},
	},
}

func (l *loader) decodeSourceBlock(b *hcl.Block, from string) (*Source, hcl.Diagnostics) {
	s := &Source{Config: cty.EmptyObjectVal, DeclRange: b.DefRange}
	content, remain, diags := b.Body.PartialContent(sourceSchema)
	if a, ok := content.Attributes["connection"]; ok {
		name, d := l.decodeRef(a, kindConnection)
		diags = append(diags, d...)
		s.Connection, s.ConnectionRange = name, a.Expr.Range()
		if name != "" {
			l.addDep(from, kindConnection+"."+name)
		}
	}
	if c, _, ok := l.getString(content.Attributes, "cursor", &diags); ok {
		s.Cursor = c
	}
	l.addVarDeps(from, content.Attributes)
	if conn := l.connectorOf(s.Connection); conn != nil {
		if conn.Source == nil {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Connection cannot be a source",
				Detail:   fmt.Sprintf("connection.%s uses the %s connector, which cannot be used as a source.", s.Connection, conn.Type),
				Subject:  s.ConnectionRange.Ptr(),
			})
		} else {
			v, d := l.decodeConnectorBody(from, remain, conn.Source)
			diags = append(diags, d...)
			s.Config = v
		}
	}
	return s, diags
}

var normalizeSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "require"},
		{Name: "trim"},
		{Name: "types"},
	},
}

func (l *loader) decodeNormalizeBlock(b *hcl.Block) (*Normalize, hcl.Diagnostics) {
	n := &Normalize{Trim: true, Types: map[string]string{}, DeclRange: b.DefRange}
	content, diags := b.Body.Content(normalizeSchema)
	n.Require, _ = l.getStringList(content.Attributes, "require", &diags)
	n.Trim = l.getBool(content.Attributes, "trim", true, &diags)
	if types, a := l.getStringMap(content.Attributes, "types", &diags); types != nil {
		for _, k := range sortedKeys(types) {
			t := types[k]
			if !slices.Contains(NormalizeTypes, t) {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Invalid type",
					Detail:   fmt.Sprintf("%q is not a valid type for %q; use one of %s.%s", t, k, quotedList(NormalizeTypes), didYouMean(t, NormalizeTypes)),
					Subject:  a.Expr.Range().Ptr(),
				})
				continue
			}
			n.Types[k] = t
		}
	}
	return n, diags
}

var transformSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "mapping", Required: true},
		{Name: "skip_unchanged"},
	},
}

func (l *loader) decodeTransformBlock(b *hcl.Block, from string) (*Transform, hcl.Diagnostics) {
	t := &Transform{DeclRange: b.DefRange}
	content, diags := b.Body.Content(transformSchema)
	if a, ok := content.Attributes["mapping"]; ok {
		name, d := l.decodeRef(a, kindMapping)
		diags = append(diags, d...)
		t.Mapping, t.MappingRange = name, a.Expr.Range()
		if name != "" {
			l.addDep(from, kindMapping+"."+name)
		}
	}
	t.SkipUnchanged = l.getBool(content.Attributes, "skip_unchanged", false, &diags)
	return t, diags
}

// Operations as strings, for validation.
func operationNames() []string {
	out := make([]string, len(connectors.Operations))
	for i, o := range connectors.Operations {
		out[i] = string(o)
	}
	return out
}

func (l *loader) decodeTargetBlock(b *hcl.Block, from string) (*Target, hcl.Diagnostics) {
	t := &Target{Operation: string(connectors.OpUpsert), BatchSize: 100, Config: cty.EmptyObjectVal, DeclRange: b.DefRange}

	// The connector decides whether `path` is its own static attribute or the
	// per-record path expression: a connector whose target schema declares
	// `path` (like file) owns it.
	peek, _, _ := b.Body.PartialContent(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "connection"}}})
	conn := l.connectorOf(l.peekRef(peek.Attributes["connection"], kindConnection))
	pathIsExpr := true
	if conn != nil && conn.Target != nil {
		if _, owned := conn.Target["path"]; owned {
			pathIsExpr = false
		}
		for _, a := range hcldec.ImpliedSchema(conn.Target).Attributes {
			if a.Name == "path" {
				pathIsExpr = false
			}
		}
	}
	schema := &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "connection", Required: true},
		{Name: "operation"},
		{Name: "batch_size"},
		{Name: "timeout"},
	}}
	if pathIsExpr {
		schema.Attributes = append(schema.Attributes, hcl.AttributeSchema{Name: "path"})
	}
	content, remain, diags := b.Body.PartialContent(schema)
	if a, ok := content.Attributes["connection"]; ok {
		name, d := l.decodeRef(a, kindConnection)
		diags = append(diags, d...)
		t.Connection, t.ConnectionRange = name, a.Expr.Range()
		if name != "" {
			l.addDep(from, kindConnection+"."+name)
		}
	}
	l.addVarDeps(from, content.Attributes)
	t.Operation = l.oneOf(content.Attributes, "operation", t.Operation, operationNames(), "Invalid operation", &diags)
	t.BatchSize = l.getInt(content.Attributes, "batch_size", 100, 1, &diags)
	t.Timeout = l.getDuration(content.Attributes, "timeout", 0, &diags)
	if a, ok := content.Attributes["path"]; ok {
		e, d := l.decodeExpr(a.Expr, "target path")
		diags = append(diags, d...)
		t.Path = e
	}
	if conn != nil {
		if conn.Target == nil {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Connection cannot be a target",
				Detail:   fmt.Sprintf("connection.%s uses the %s connector, which cannot be used as a target.", t.Connection, conn.Type),
				Subject:  t.ConnectionRange.Ptr(),
			})
		} else {
			v, d := l.decodeConnectorBody(from, remain, conn.Target)
			diags = append(diags, d...)
			t.Config = v
		}
	}
	return t, diags
}

var retrySchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "max_attempts"},
		{Name: "initial"},
		{Name: "max"},
		{Name: "multiplier"},
		{Name: "jitter"},
	},
}

func (l *loader) decodeRetryBlock(b *hcl.Block) (*Retry, hcl.Diagnostics) {
	r := DefaultRetry()
	content, diags := b.Body.Content(retrySchema)
	a := content.Attributes
	r.MaxAttempts = l.getInt(a, "max_attempts", r.MaxAttempts, 1, &diags)
	r.Initial = l.getDuration(a, "initial", r.Initial, &diags)
	r.Max = l.getDuration(a, "max", r.Max, &diags)
	r.Multiplier = l.getFloat(a, "multiplier", r.Multiplier, 1, 100, &diags)
	r.Jitter = l.getFloat(a, "jitter", r.Jitter, 0, 1, &diags)
	if r.Max < r.Initial {
		subject := b.DefRange
		if m, ok := a["max"]; ok {
			subject = m.Expr.Range()
		}
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Invalid retry delays",
			Detail:   fmt.Sprintf("The maximum delay (%s) is shorter than the initial delay (%s).", r.Max, r.Initial),
			Subject:  subject.Ptr(),
		})
	}
	return r, diags
}

// WebhookVerifiers are the valid values of a webhook block's verify.
var WebhookVerifiers = []string{"shopify", "hmac", "token", "basic", "none"}

// verify is required: a webhook endpoint is public, so going without
// verification must be written down (verify = "none"), never a default.
var webhookSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "verify", Required: true}, {Name: "dedupe_window"}},
}

func (l *loader) decodeWebhookBlock(b *hcl.Block, from string) (*Webhook, hcl.Diagnostics) {
	w := &Webhook{Verify: "none", DedupeWindow: DefaultDedupeWindow, Config: map[string]cty.Value{}, DeclRange: b.DefRange}
	content, remain, diags := b.Body.PartialContent(webhookSchema)
	w.Verify = l.oneOf(content.Attributes, "verify", w.Verify, WebhookVerifiers, "Invalid webhook verification", &diags)
	w.DedupeWindow = l.getDuration(content.Attributes, "dedupe_window", w.DedupeWindow, &diags)
	if a, ok := content.Attributes["dedupe_window"]; ok && (w.DedupeWindow < MinDedupeWindow || w.DedupeWindow > MaxDedupeWindow) {
		why := fmt.Sprintf("shorter than %s: the server expires remembered ids to the second", shortDuration(MinDedupeWindow))
		if w.DedupeWindow > MaxDedupeWindow {
			why = fmt.Sprintf("longer than %s, the longest the server remembers a delivery id", shortDuration(MaxDedupeWindow))
		}
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Invalid dedupe window",
			Detail: fmt.Sprintf("The dedupe_window %s is %s. Write a duration from %q to %q that covers the sender's retries, like \"5h\" for Shopify's 4 hours; without the attribute it is %q.",
				shortDuration(w.DedupeWindow), why, shortDuration(MinDedupeWindow), shortDuration(MaxDedupeWindow), shortDuration(DefaultDedupeWindow)),
			Subject: a.Expr.Range().Ptr(),
		})
		w.DedupeWindow = DefaultDedupeWindow
	}
	attrs, d := remain.JustAttributes()
	diags = append(diags, d...)
	for name, a := range attrs {
		v, d := l.eval(a.Expr, cty.DynamicPseudoType, fmt.Sprintf("attribute %q", name), true)
		diags = append(diags, d...)
		l.addTraversalDeps(from, a.Expr.Variables())
		if !d.HasErrors() {
			w.Config[name] = v
		}
	}
	if a, ok := content.Attributes["dedupe_window"]; ok && w.Verify != "shopify" && attrs["id_header"] == nil {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagWarning,
			Summary:  "dedupe_window without a delivery id",
			Detail:   fmt.Sprintf("Deliveries of a %q webhook carry no id ferry knows, so none is remembered and dedupe_window does nothing. Set id_header to the header holding the sender's delivery id (like \"X-GitHub-Delivery\"), or remove dedupe_window.", w.Verify),
			Subject:  a.NameRange.Ptr(),
		})
	}
	return w, diags
}

// shortDuration writes d as it would be written in a file: "72h", not
// "72h0m0s".
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// ---- schedule ----

var scheduleSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "integration", Required: true},
		{Name: "cron", Required: true},
		{Name: "timezone"},
		{Name: "concurrency"},
		{Name: "missed"},
		{Name: "enabled"},
	},
}

// CronParser parses schedule cron expressions: five fields, an optional leading
// seconds field, or a descriptor like @hourly / @every 10m.
var CronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

func (l *loader) decodeScheduleBlock(b *hcl.Block) (*Schedule, hcl.Diagnostics) {
	s := &Schedule{Name: b.Labels[0], Timezone: "UTC", Location: time.UTC, Concurrency: "forbid", MissedFire: "skip", Enabled: true, DeclRange: b.DefRange}
	addr := kindSchedule + "." + s.Name
	content, diags := b.Body.Content(scheduleSchema)
	a := content.Attributes
	if ia, ok := a["integration"]; ok {
		name, d := l.decodeRef(ia, kindIntegration)
		diags = append(diags, d...)
		s.Integration = name
		if name != "" {
			l.addDep(addr, kindIntegration+"."+name)
		}
	}
	if c, ca, ok := l.getString(a, "cron", &diags); ok {
		if _, err := CronParser.Parse(c); err != nil {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Invalid cron expression",
				Detail:   fmt.Sprintf("%q is not a valid cron expression: %s. Write five fields (minute hour day-of-month month day-of-week), like \"*/15 * * * *\", or a descriptor like \"@hourly\"; set the time zone with the timezone attribute.", c, err),
				Subject:  ca.Expr.Range().Ptr(),
			})
		} else {
			s.Cron = c
		}
	}
	if tz, ta, ok := l.getString(a, "timezone", &diags); ok {
		loc, err := time.LoadLocation(tz)
		if err != nil || tz == "" || strings.EqualFold(tz, "local") {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Invalid time zone",
				Detail:   fmt.Sprintf("%q is not a time zone of the IANA database; use a name like \"UTC\" or \"Europe/Amsterdam\".", tz),
				Subject:  ta.Expr.Range().Ptr(),
			})
		} else {
			s.Timezone, s.Location = tz, loc
		}
	}
	s.Concurrency = l.oneOf(a, "concurrency", s.Concurrency, []string{"allow", "forbid", "replace"}, "Invalid concurrency", &diags)
	s.MissedFire = l.oneOf(a, "missed", s.MissedFire, []string{"skip", "run_once"}, "Invalid missed-fire policy", &diags)
	s.Enabled = l.getBool(a, "enabled", true, &diags)
	l.addVarDeps(addr, a)
	return s, diags
}

// ---- test ----

var testSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "mapping"},
		{Name: "input"},
		{Name: "expect"},
		{Name: "expect_skip"},
		{Name: "integration"},
		{Name: "records"},
		{Name: "expect_writes"},
		{Name: "expect_counts"},
	},
}

// CountNames are the keys allowed in a test's expect_counts.
var CountNames = []string{"total", "success", "failed", "skipped"}

func (l *loader) decodeTestBlock(b *hcl.Block) (*Test, hcl.Diagnostics) {
	t := &Test{Name: b.Labels[0], DeclRange: b.DefRange}
	addr := kindTest + "." + t.Name
	content, diags := b.Body.Content(testSchema)
	a := content.Attributes
	ma, hasMapping := a["mapping"]
	ia, hasIntegration := a["integration"]
	switch {
	case hasMapping && hasIntegration:
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Conflicting arguments",
			Detail:   "A test checks either a mapping (mapping, input, expect or expect_skip) or an integration (integration, records, expect_writes, expect_counts), not both.",
			Subject:  ia.NameRange.Ptr(),
		})
		return t, diags
	case !hasMapping && !hasIntegration:
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Missing required argument",
			Detail:   "A test needs either mapping = mapping.<name> (a mapping test) or integration = integration.<name> (an integration test).",
			Subject:  b.DefRange.Ptr(),
		})
		return t, diags
	}
	wrongKind := func(names []string, kind string) {
		for _, n := range names {
			if x, ok := a[n]; ok {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Unsupported argument",
					Detail:   fmt.Sprintf("The argument %q belongs to %s tests.", n, kind),
					Subject:  x.NameRange.Ptr(),
				})
			}
		}
	}
	if hasMapping {
		wrongKind([]string{"records", "expect_writes", "expect_counts"}, "integration")
		name, d := l.decodeRef(ma, kindMapping)
		diags = append(diags, d...)
		t.Mapping = name
		if name != "" {
			l.addDep(addr, kindMapping+"."+name)
		}
		if g, ga, ok := l.getGo(a, "input", &diags); ok {
			if _, isMap := g.(map[string]any); !isMap {
				diags = append(diags, objectRequired(ga, "input", "a record"))
			} else {
				t.Input = g
			}
		} else if ga == nil {
			diags = append(diags, missingArg(b, "input", "A mapping test needs an input record: input = { ... }."))
		}
		t.ExpectSkip = l.getBool(a, "expect_skip", false, &diags)
		ea, hasExpect := a["expect"]
		switch {
		case hasExpect && t.ExpectSkip:
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Conflicting arguments",
				Detail:   "A mapping test expects either a mapped record (expect) or a skipped record (expect_skip = true), not both.",
				Subject:  ea.NameRange.Ptr(),
			})
		case hasExpect:
			if g, ga, ok := l.getGo(a, "expect", &diags); ok {
				if m, isMap := g.(map[string]any); isMap {
					t.Expect = m
				} else {
					diags = append(diags, objectRequired(ga, "expect", "the expected record"))
				}
			}
		case !t.ExpectSkip:
			if _, given := a["expect_skip"]; !given {
				diags = append(diags, missingArg(b, "expect", "A mapping test needs expect = { ... } (the expected record) or expect_skip = true."))
			}
		}
	} else {
		wrongKind([]string{"input", "expect", "expect_skip"}, "mapping")
		name, d := l.decodeRef(ia, kindIntegration)
		diags = append(diags, d...)
		t.Integration = name
		if name != "" {
			l.addDep(addr, kindIntegration+"."+name)
		}
		if g, ga, ok := l.getGo(a, "records", &diags); ok {
			list, isList := g.([]any)
			if !isList {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Incorrect attribute value type",
					Detail:   `Inappropriate value for attribute "records": a list of records is required, like [{ id = 1 }, { id = 2 }].`,
					Subject:  ga.Expr.Range().Ptr(),
				})
			} else {
				for _, r := range list {
					if _, isMap := r.(map[string]any); !isMap {
						diags = append(diags, objectRequired(ga, "records", "a list of records (objects)"))
						list = nil
						break
					}
				}
				t.Records = list
			}
		} else if ga == nil {
			diags = append(diags, missingArg(b, "records", "An integration test needs the records its source would read: records = [{ ... }]."))
		}
		if g, ga, ok := l.getGo(a, "expect_writes", &diags); ok {
			if list, isList := g.([]any); isList {
				t.ExpectWrites = list
			} else {
				diags = append(diags, objectRequired(ga, "expect_writes", "a list of records"))
			}
		}
		if counts, ca, ok := l.attrVal(a, "expect_counts", cty.Map(cty.Number), &diags); ok {
			t.ExpectCounts = map[string]int{}
			for it := counts.ElementIterator(); it.Next(); {
				k, v := it.Element()
				key := k.AsString()
				if !slices.Contains(CountNames, key) {
					diags = append(diags, &hcl.Diagnostic{
						Severity: hcl.DiagError,
						Summary:  "Invalid count",
						Detail:   fmt.Sprintf("%q is not a count; use %s.%s", key, quotedList(CountNames), didYouMean(key, CountNames)),
						Subject:  ca.Expr.Range().Ptr(),
					})
					continue
				}
				if v.IsNull() {
					continue
				}
				n, acc := v.AsBigFloat().Int64()
				if !v.AsBigFloat().IsInt() || acc != big.Exact || n < 0 {
					diags = append(diags, &hcl.Diagnostic{
						Severity: hcl.DiagError,
						Summary:  "Invalid count",
						Detail:   fmt.Sprintf("The count %q must be a whole number of at least 0.", key),
						Subject:  ca.Expr.Range().Ptr(),
					})
					continue
				}
				t.ExpectCounts[key] = int(n)
			}
		}
	}
	for _, x := range a {
		l.addTraversalDeps(addr, x.Expr.Variables())
	}
	return t, diags
}

func objectRequired(a *hcl.Attribute, name, what string) *hcl.Diagnostic {
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "Incorrect attribute value type",
		Detail:   fmt.Sprintf("Inappropriate value for attribute %q: %s is required.", name, what),
		Subject:  a.Expr.Range().Ptr(),
	}
}

func missingArg(b *hcl.Block, name, detail string) *hcl.Diagnostic {
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "Missing required argument",
		Detail:   fmt.Sprintf("The argument %q is required, but was not set. %s", name, detail),
		Subject:  b.Body.MissingItemRange().Ptr(),
	}
}
