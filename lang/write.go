package lang

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	hcljson "github.com/hashicorp/hcl/v2/json"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"

	"github.com/ferryhq/ferry/connectors"
)

// A block as JSON (BlockJSON, and the REST API's bodies) holds each attribute
// as written in the file:
//
//   - literal values (strings, numbers, bools, null, lists, objects) as JSON
//     values; expr strings are plain strings;
//   - references in reference attributes (source.connection, transform.mapping,
//     schedule integration, test mapping/integration) as strings like
//     "connection.shop";
//   - secret("name") as {"secret": "name"};
//   - any other expression (var.x, local.y, function calls, templates) as
//     {"hcl": "<its source, canonically formatted>"}, so writing the JSON back
//     keeps the expression instead of freezing its current value;
//   - nested blocks (integration source, target, retry, ...) as objects.
//
// A literal object that would read as one of those markers ({"secret": "x"} or
// {"hcl": "x"} written as a plain object) is given as {"hcl": ...} too.
const (
	// SecretKey is the key of a secret reference object: {"secret": "name"}.
	SecretKey = "secret"
	// HCLKey is the key of an expression object: {"hcl": "var.x"}.
	HCLKey = "hcl"
)

// RESTFile is the file a new block written through the REST API is appended to.
const RESTFile = "rest.hcl"

var (
	// ErrBlockNotFound is returned when no file declares the block.
	ErrBlockNotFound = errors.New("block not found")
	// ErrJSONSyntax is returned for writes to a block declared in a .hcl.json file:
	// only native-syntax files are rewritten.
	ErrJSONSyntax = errors.New("block is declared in a JSON-syntax file")
	// ErrUnknownAttribute is wrapped by *UnknownAttributeError.
	ErrUnknownAttribute = errors.New("unknown attribute")
)

// UnknownAttributeError reports an attribute of a JSON body that the block does
// not have.
type UnknownAttributeError struct {
	Block string // e.g. `connection "shop"`
	Path  string // e.g. "retry.max_attempt"
	// Suggestion is the closest valid attribute name, or "".
	Suggestion string
}

func (e *UnknownAttributeError) Error() string {
	s := fmt.Sprintf("%s: unknown attribute %q", e.Block, e.Path)
	if e.Suggestion != "" {
		s += fmt.Sprintf(" (did you mean %q?)", e.Suggestion)
	}
	return s
}

func (e *UnknownAttributeError) Unwrap() error { return ErrUnknownAttribute }

// blockTypeOf maps a kind as used in addresses or REST paths to its block type.
func blockTypeOf(kind string) (string, bool) {
	switch kind {
	case kindVariable, "variable":
		return "variable", true
	case kindLocal, "locals":
		return "locals", true
	case "ferry", kindTable, kindConnection, kindMapping, kindIntegration, kindSchedule, kindTest:
		return kind, true
	}
	return "", false
}

// addressOf is the address of a block: "var.x", "connection.shop", "ferry".
func addressOf(typ, name string) string {
	switch typ {
	case "ferry":
		return "ferry"
	case "variable":
		return kindVariable + "." + name
	case "locals":
		return kindLocal + "." + name
	}
	return typ + "." + name
}

// ---- reading: blocks as JSON ----

// sourceBlock is where one resource is declared.
type sourceBlock struct {
	typ, name string
	file      *hcl.File
	body      hcl.Body       // the block's body (nil for a local)
	attr      *hcl.Attribute // a local's attribute
}

// indexBlocks finds every declared block of files, the first declaration of each
// address winning (files in name order, as the loader decodes them).
func indexBlocks(files map[string]*hcl.File) map[string]*sourceBlock {
	out := map[string]*sourceBlock{}
	for _, fn := range sortedKeys(files) {
		f := files[fn]
		if f == nil || f.Body == nil {
			continue
		}
		content, _, _ := f.Body.PartialContent(rootSchema)
		if content == nil {
			continue
		}
		for _, b := range content.Blocks {
			switch b.Type {
			case "locals":
				attrs, _ := b.Body.JustAttributes()
				for n, a := range attrs {
					addr := addressOf("locals", n)
					if _, dup := out[addr]; !dup {
						out[addr] = &sourceBlock{typ: "locals", name: n, file: f, attr: a}
					}
				}
			default:
				name := ""
				if len(b.Labels) > 0 {
					name = b.Labels[0]
				}
				addr := addressOf(b.Type, name)
				if _, dup := out[addr]; !dup {
					out[addr] = &sourceBlock{typ: b.Type, name: name, file: f, body: b.Body}
				}
			}
		}
	}
	return out
}

// BlockJSON returns the attributes of the block kind.name as written (see the
// package comment above for the representation): what the REST API returns for
// a resource. kind is a block type ("connection") or an address kind ("var");
// for a local value the result is {"value": ...}. The ferry block has name "".
func BlockJSON(cfg *Config, kind, name string) (map[string]any, error) {
	typ, ok := blockTypeOf(kind)
	if !ok {
		return nil, fmt.Errorf("unknown block kind %q", kind)
	}
	if cfg == nil {
		return nil, fmt.Errorf("%s %q: %w", typ, name, ErrBlockNotFound)
	}
	sb := indexBlocks(cfg.Files)[addressOf(typ, name)]
	if sb == nil {
		return nil, fmt.Errorf("%s %q: %w", typ, name, ErrBlockNotFound)
	}
	return sb.view(), nil
}

// BlocksJSON returns BlockJSON of every block of cfg, keyed by address
// ("ferry", "var.x", "local.y", "connection.shop", ...). plan diffs these.
func BlocksJSON(cfg *Config) map[string]map[string]any {
	out := map[string]map[string]any{}
	if cfg == nil {
		return out
	}
	for addr, sb := range indexBlocks(cfg.Files) {
		out[addr] = sb.view()
	}
	return out
}

func (sb *sourceBlock) view() map[string]any {
	if sb.attr != nil {
		return map[string]any{"value": exprView(sb.attr.Expr, sb.file.Bytes, "")}
	}
	return bodyView(sb.body, sb.file.Bytes, specFor(sb.typ, nil))
}

// bodyView is the JSON view of a body. Native bodies are walked as written;
// JSON bodies are split into attributes and blocks by spec.
func bodyView(body hcl.Body, src []byte, spec *bodySpec) map[string]any {
	out := map[string]any{}
	if sb, native := body.(*hclsyntax.Body); native {
		for n, a := range sb.Attributes {
			out[n] = exprView(a.Expr, src, spec.refKind(n))
		}
		counts := map[string]int{}
		for _, b := range sb.Blocks {
			counts[b.Type]++
		}
		for _, b := range sb.Blocks {
			v := bodyView(b.Body, src, spec.nestedSpec(b.Type))
			var key any = v
			for i := len(b.Labels) - 1; i >= 0; i-- {
				key = map[string]any{b.Labels[i]: key}
			}
			if counts[b.Type] > 1 {
				list, _ := out[b.Type].([]any)
				out[b.Type] = append(list, key)
			} else {
				out[b.Type] = key
			}
		}
		return out
	}
	schema := &hcl.BodySchema{}
	for _, bt := range spec.allBlocks() {
		schema.Blocks = append(schema.Blocks, hcl.BlockHeaderSchema{Type: bt})
	}
	content, remain, _ := body.PartialContent(schema)
	if content != nil {
		for _, b := range content.Blocks {
			v := bodyView(b.Body, src, spec.nestedSpec(b.Type))
			if prev, dup := out[b.Type]; dup {
				list, isList := prev.([]any)
				if !isList {
					list = []any{prev}
				}
				out[b.Type] = append(list, v)
			} else {
				out[b.Type] = v
			}
		}
	}
	if remain != nil {
		attrs, _ := remain.JustAttributes()
		for n, a := range attrs {
			out[n] = exprView(a.Expr, src, spec.refKind(n))
		}
	}
	return out
}

// literalCtx evaluates literal attributes: no variables, only secret().
var literalCtx = &hcl.EvalContext{Functions: map[string]function.Function{"secret": secretFunc}}

// exprView is the JSON view of one attribute expression. refKind is the kind a
// reference attribute refers to ("" for others).
func exprView(expr hcl.Expression, src []byte, refKind string) any {
	if refKind != "" {
		if trav, diags := hcl.AbsTraversalForExpr(expr); !diags.HasErrors() {
			if s := traversalString(trav); s != "" {
				return s
			}
		}
	}
	if len(expr.Variables()) == 0 {
		if v, diags := expr.Value(literalCtx); !diags.HasErrors() && v.IsWhollyKnown() {
			if g, ok := literalGo(v); ok {
				return g
			}
		}
	}
	return map[string]any{HCLKey: exprText(expr, src)}
}

// traversalString renders a plain traversal like connection.shop ("" when it
// has other steps).
func traversalString(t hcl.Traversal) string {
	var sb strings.Builder
	for _, step := range t {
		switch s := step.(type) {
		case hcl.TraverseRoot:
			sb.WriteString(s.Name)
		case hcl.TraverseAttr:
			sb.WriteString("." + s.Name)
		default:
			return ""
		}
	}
	return sb.String()
}

// literalGo converts a literal value to its JSON view; ok is false when the
// value cannot be told apart from the view's markers (it is then shown as an
// expression).
func literalGo(v cty.Value) (any, bool) {
	if v.IsMarked() {
		uv, marks := v.Unmark()
		if len(marks) != 1 || uv.IsNull() || uv.Type() != cty.String {
			return nil, false
		}
		for m := range marks {
			sm, isSecret := m.(SecretMark)
			if !isSecret || uv.AsString() != secretPlaceholder(sm.Name) {
				return nil, false
			}
			return map[string]any{SecretKey: sm.Name}, true
		}
	}
	if v.IsNull() {
		return nil, true
	}
	ty := v.Type()
	switch {
	case ty == cty.String:
		return v.AsString(), true
	case ty == cty.Bool:
		return v.True(), true
	case ty == cty.Number:
		return numberToGo(v.AsBigFloat()), true
	case ty.IsListType(), ty.IsSetType(), ty.IsTupleType():
		out := make([]any, 0, v.LengthInt())
		for it := v.ElementIterator(); it.Next(); {
			_, ev := it.Element()
			g, ok := literalGo(ev)
			if !ok {
				return nil, false
			}
			out = append(out, g)
		}
		return out, true
	case ty.IsMapType(), ty.IsObjectType():
		out := make(map[string]any, v.LengthInt())
		for it := v.ElementIterator(); it.Next(); {
			k, ev := it.Element()
			g, ok := literalGo(ev)
			if !ok {
				return nil, false
			}
			out[k.AsString()] = g
		}
		if isMarker(out) {
			return nil, false
		}
		return out, true
	}
	return nil, false
}

// isMarker reports whether m reads as {"secret": "x"} or {"hcl": "x"}.
func isMarker(m map[string]any) bool {
	_, _, ok := markerOf(m)
	return ok
}

func markerOf(m map[string]any) (key, val string, ok bool) {
	if len(m) != 1 {
		return "", "", false
	}
	for k, v := range m {
		s, isStr := v.(string)
		if isStr && (k == SecretKey || k == HCLKey) {
			return k, s, true
		}
	}
	return "", "", false
}

// exprText is the canonical source text of an expression: comments dropped,
// blank lines collapsed, spacing as `ferry fmt` writes it, so that formatting
// and comment changes do not change it.
func exprText(expr hcl.Expression, src []byte) string {
	r := expr.Range()
	if r.Start.Byte < 0 || r.End.Byte > len(src) || r.Start.Byte > r.End.Byte {
		return ""
	}
	return NormalizeExpression(string(src[r.Start.Byte:r.End.Byte]))
}

// NormalizeExpression returns HCL expression source in canonical form: comments
// removed, blank lines collapsed, formatted as `ferry fmt` does. Text that does
// not lex is returned trimmed.
func NormalizeExpression(text string) string {
	toks, diags := hclsyntax.LexExpression([]byte(text), "", hcl.InitialPos)
	if diags.HasErrors() {
		return strings.TrimSpace(text)
	}
	var sb strings.Builder
	prevEnd := 0
	lastNewline := true
	for _, t := range toks {
		if t.Type == hclsyntax.TokenEOF {
			break
		}
		if t.Range.Start.Byte > prevEnd && !lastNewline {
			sb.WriteByte(' ')
		}
		prevEnd = t.Range.End.Byte
		switch t.Type {
		case hclsyntax.TokenComment:
			if strings.HasSuffix(string(t.Bytes), "\n") && !lastNewline {
				sb.WriteByte('\n')
				lastNewline = true
			}
			continue
		case hclsyntax.TokenNewline:
			if !lastNewline {
				sb.WriteByte('\n')
				lastNewline = true
			}
			continue
		}
		sb.Write(t.Bytes)
		lastNewline = false
	}
	// Format as the value of an attribute, so multi-line constructs are
	// indented the way they are in a file.
	formatted := string(hclwrite.Format([]byte("x = " + strings.TrimSpace(sb.String()) + "\n")))
	return strings.TrimSpace(strings.TrimPrefix(formatted, "x = "))
}

// ---- the schemas of blocks, for writing ----

// bodySpec describes what a block body may contain, for rendering JSON back.
type bodySpec struct {
	attrs  []string          // attributes, in the order they are written
	refs   map[string]string // reference attributes -> the kind they refer to
	raw    map[string]bool   // attributes whose strings are HCL source (variable type)
	blocks []string          // nested blocks, in order
	nested map[string]*bodySpec
	// open bodies accept any attribute (connector bodies of unknown connectors,
	// webhook settings).
	open bool
}

func (s *bodySpec) refKind(attr string) string {
	if s == nil {
		return ""
	}
	return s.refs[attr]
}

func (s *bodySpec) nestedSpec(typ string) *bodySpec {
	if s == nil || s.nested == nil || s.nested[typ] == nil {
		return &bodySpec{open: true}
	}
	return s.nested[typ]
}

func (s *bodySpec) allBlocks() []string {
	if s == nil {
		return nil
	}
	return s.blocks
}

func (s *bodySpec) hasAttr(n string) bool { return s.open || slices.Contains(s.attrs, n) }

func (s *bodySpec) hasBlock(n string) bool { return slices.Contains(s.blocks, n) }

func schemaAttrs(schemas ...*hcl.BodySchema) []string {
	var out []string
	for _, s := range schemas {
		for _, a := range s.Attributes {
			if !slices.Contains(out, a.Name) {
				out = append(out, a.Name)
			}
		}
	}
	return out
}

// addConnectorSpec adds a connector schema's attributes and blocks to s.
func (s *bodySpec) addConnectorSpec(spec hcldec.ObjectSpec) {
	if spec == nil {
		return
	}
	implied := hcldec.ImpliedSchema(spec)
	var extra []string
	for _, a := range implied.Attributes {
		if !slices.Contains(s.attrs, a.Name) && !slices.Contains(extra, a.Name) {
			extra = append(extra, a.Name)
		}
	}
	slices.Sort(extra)
	s.attrs = append(s.attrs, extra...)
	for _, b := range implied.Blocks {
		if !slices.Contains(s.blocks, b.Type) {
			s.blocks = append(s.blocks, b.Type)
			if s.nested == nil {
				s.nested = map[string]*bodySpec{}
			}
			s.nested[b.Type] = &bodySpec{open: true}
		}
	}
}

// specFor returns the spec of a top-level block type. body (may be nil) picks
// the connector of a connection.
func specFor(typ string, body map[string]any) *bodySpec {
	switch typ {
	case "ferry":
		return &bodySpec{attrs: schemaAttrs(ferrySchema)}
	case "variable":
		return &bodySpec{attrs: []string{"description", "type", "default", "sensitive"}, raw: map[string]bool{"type": true}}
	case "table":
		return &bodySpec{attrs: schemaAttrs(tableSchema)}
	case "connection":
		s := &bodySpec{attrs: []string{"type"}}
		if t, ok := body["type"].(string); ok {
			if conn, found := connectors.Lookup(t); found {
				s.addConnectorSpec(conn.Connection)
				return s
			}
		}
		// Reading (no body: native bodies are walked as written), or an unknown
		// connector type, which loading reports.
		s.open = true
		return s
	case "mapping":
		return &bodySpec{attrs: schemaAttrs(mappingSchema)}
	case "integration":
		source := &bodySpec{attrs: schemaAttrs(sourceSchema), refs: map[string]string{"connection": kindConnection}}
		target := &bodySpec{attrs: []string{"connection", "operation", "batch_size", "timeout", "path"}, refs: map[string]string{"connection": kindConnection}}
		for _, t := range connectors.Types() {
			conn, _ := connectors.Lookup(t)
			source.addConnectorSpec(conn.Source)
			target.addConnectorSpec(conn.Target)
		}
		return &bodySpec{
			attrs:  schemaAttrs(integrationSchema),
			blocks: []string{"source", "normalize", "transform", "target", "retry", "webhook"},
			nested: map[string]*bodySpec{
				"source":    source,
				"normalize": {attrs: schemaAttrs(normalizeSchema)},
				"transform": {attrs: schemaAttrs(transformSchema), refs: map[string]string{"mapping": kindMapping}},
				"target":    target,
				"retry":     {attrs: schemaAttrs(retrySchema)},
				"webhook":   {attrs: schemaAttrs(webhookSchema), open: true},
			},
		}
	case "schedule":
		return &bodySpec{attrs: schemaAttrs(scheduleSchema), refs: map[string]string{"integration": kindIntegration}}
	case "test":
		return &bodySpec{attrs: schemaAttrs(testSchema), refs: map[string]string{"mapping": kindMapping, "integration": kindIntegration}}
	}
	return &bodySpec{open: true}
}

// ---- writing: JSON to HCL ----

// BlockHCL renders the block kind.name from its JSON view (as BlockJSON returns
// it, or as a REST client sends it) in canonical formatting. Reference
// attributes take "connection.shop" or just "shop"; {"secret": "x"} becomes
// secret("x") and {"hcl": "..."} the expression itself. Attributes the block
// cannot have are an *UnknownAttributeError; everything else is checked by
// loading the files the block is written into.
func BlockHCL(kind, name string, body map[string]any) ([]byte, error) {
	typ, ok := blockTypeOf(kind)
	if !ok {
		return nil, fmt.Errorf("unknown block kind %q", kind)
	}
	var labels []string
	what := typ
	switch typ {
	case "locals":
		return nil, errors.New("local values are not written as single blocks")
	case "ferry":
	default:
		if !hclsyntax.ValidIdentifier(name) {
			return nil, fmt.Errorf("%q is not a valid %s name: use letters, digits, underscores and dashes, starting with a letter or underscore", name, typ)
		}
		labels = []string{name}
		what = fmt.Sprintf("%s %q", typ, name)
	}
	f := hclwrite.NewEmptyFile()
	blk := f.Body().AppendNewBlock(typ, labels)
	w := &writer{block: what}
	if err := w.body(blk.Body(), specFor(typ, body), body, ""); err != nil {
		return nil, err
	}
	out := hclwrite.Format(f.Bytes())
	if _, diags := hclsyntax.ParseConfig(out, "block.hcl", hcl.InitialPos); diags.HasErrors() {
		return nil, fmt.Errorf("%s: the rendered block is not valid HCL: %s", what, diags.Error())
	}
	return out, nil
}

type writer struct {
	block string // for messages: connection "shop"
}

func (w *writer) unknown(spec *bodySpec, prefix, key string) error {
	var names []string
	names = append(names, spec.attrs...)
	names = append(names, spec.blocks...)
	return &UnknownAttributeError{Block: w.block, Path: prefix + key, Suggestion: suggest(key, names)}
}

func (w *writer) body(b *hclwrite.Body, spec *bodySpec, body map[string]any, prefix string) error {
	var attrs, blocks []string
	for k := range body {
		switch {
		case spec.hasBlock(k):
			blocks = append(blocks, k)
		case spec.hasAttr(k):
			attrs = append(attrs, k)
		default:
			return w.unknown(spec, prefix, k)
		}
	}
	order := func(list, canonical []string) {
		slices.SortFunc(list, func(a, b string) int {
			ia, ib := slices.Index(canonical, a), slices.Index(canonical, b)
			switch {
			case ia >= 0 && ib >= 0:
				return ia - ib
			case ia >= 0:
				return -1
			case ib >= 0:
				return 1
			}
			return strings.Compare(a, b)
		})
	}
	order(attrs, spec.attrs)
	order(blocks, spec.blocks)
	for _, k := range attrs {
		if !hclsyntax.ValidIdentifier(k) {
			return fmt.Errorf("%s: %q is not a valid attribute name", w.block, prefix+k)
		}
		v := body[k]
		var toks hclwrite.Tokens
		var err error
		switch {
		case spec.refs[k] != "":
			toks, err = w.refTokens(spec.refs[k], v, prefix+k)
		case spec.raw[k]:
			if s, isStr := v.(string); isStr {
				toks, err = w.rawTokens(s, prefix+k)
			} else {
				toks, err = w.tokens(v, prefix+k)
			}
		default:
			toks, err = w.tokens(v, prefix+k)
		}
		if err != nil {
			return err
		}
		b.SetAttributeRaw(k, toks)
	}
	for _, k := range blocks {
		var items []any
		switch v := body[k].(type) {
		case map[string]any:
			items = []any{v}
		case []any:
			items = v
		case nil:
			continue
		default:
			return fmt.Errorf("%s: %q is a block and needs an object, not %s", w.block, prefix+k, jsonKindOf(v))
		}
		for _, it := range items {
			m, isMap := it.(map[string]any)
			if !isMap {
				return fmt.Errorf("%s: %q is a block and needs an object, not %s", w.block, prefix+k, jsonKindOf(it))
			}
			if len(b.Attributes()) > 0 || len(b.Blocks()) > 0 {
				b.AppendNewline()
			}
			nb := b.AppendNewBlock(k, nil)
			if err := w.body(nb.Body(), spec.nestedSpec(k), m, prefix+k+"."); err != nil {
				return err
			}
		}
	}
	return nil
}

func jsonKindOf(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a bool"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return "a number"
}

// refTokens renders a reference attribute: "connection.shop", "shop", or an
// {"hcl": ...} object.
func (w *writer) refTokens(kind string, v any, path string) (hclwrite.Tokens, error) {
	if m, isMap := v.(map[string]any); isMap {
		if key, src, ok := markerOf(m); ok && key == HCLKey {
			return w.rawTokens(src, path)
		}
	}
	s, isStr := v.(string)
	if !isStr {
		return nil, fmt.Errorf("%s: %q must be a reference to %s, like \"%s.name\"", w.block, path, article(kindNoun[kind]), kind)
	}
	if !strings.Contains(s, ".") {
		s = kind + "." + s
	}
	trav, diags := hclsyntax.ParseTraversalAbs([]byte(s), "", hcl.InitialPos)
	if diags.HasErrors() || len(trav) != 2 || trav.RootName() != kind {
		return nil, fmt.Errorf("%s: %q must be a reference to %s, like \"%s.name\", not %q", w.block, path, article(kindNoun[kind]), kind, s)
	}
	return hclwrite.TokensForTraversal(trav), nil
}

// rawTokens turns HCL expression source into tokens.
func (w *writer) rawTokens(src, path string) (hclwrite.Tokens, error) {
	if _, diags := hclsyntax.ParseExpression([]byte(src), path, hcl.InitialPos); diags.HasErrors() {
		return nil, fmt.Errorf("%s: %q is not a valid HCL expression (%s)", w.block, path, diags.Errs()[0])
	}
	toks, _ := hclsyntax.LexExpression([]byte(src), path, hcl.InitialPos)
	var out hclwrite.Tokens
	prevEnd := 0
	for _, t := range toks {
		if t.Type == hclsyntax.TokenEOF {
			break
		}
		spaces := 0
		if t.Range.Start.Byte > prevEnd {
			spaces = 1
		}
		prevEnd = t.Range.End.Byte
		out = append(out, &hclwrite.Token{Type: t.Type, Bytes: t.Bytes, SpacesBefore: spaces})
	}
	return out, nil
}

func (w *writer) tokens(v any, path string) (hclwrite.Tokens, error) {
	switch x := v.(type) {
	case nil:
		return hclwrite.TokensForValue(cty.NullVal(cty.DynamicPseudoType)), nil
	case string:
		return hclwrite.TokensForValue(cty.StringVal(x)), nil
	case bool:
		return hclwrite.TokensForValue(cty.BoolVal(x)), nil
	case int:
		return hclwrite.TokensForValue(cty.NumberIntVal(int64(x))), nil
	case int64:
		return hclwrite.TokensForValue(cty.NumberIntVal(x)), nil
	case float64:
		return hclwrite.TokensForValue(cty.NumberFloatVal(x)), nil
	case interface{ String() string }: // json.Number
		n, err := cty.ParseNumberVal(x.String())
		if err != nil {
			return nil, fmt.Errorf("%s: %q: %q is not a number", w.block, path, x.String())
		}
		return hclwrite.TokensForValue(n), nil
	case []string:
		elems := make([]hclwrite.Tokens, len(x))
		for i, s := range x {
			elems[i] = hclwrite.TokensForValue(cty.StringVal(s))
		}
		return hclwrite.TokensForTuple(elems), nil
	case []any:
		elems := make([]hclwrite.Tokens, len(x))
		for i, e := range x {
			t, err := w.tokens(e, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			elems[i] = t
		}
		return hclwrite.TokensForTuple(elems), nil
	case map[string]any:
		if key, s, ok := markerOf(x); ok {
			if key == SecretKey {
				if !secretNameRe.MatchString(s) {
					return nil, fmt.Errorf("%s: %q: invalid secret name %q: use letters, digits, '_', '-', '.' and '/'", w.block, path, s)
				}
				return hclwrite.TokensForFunctionCall("secret", hclwrite.TokensForValue(cty.StringVal(s))), nil
			}
			return w.rawTokens(s, path)
		}
		keys := sortedKeys(x)
		attrs := make([]hclwrite.ObjectAttrTokens, 0, len(keys))
		for _, k := range keys {
			var name hclwrite.Tokens
			if hclsyntax.ValidIdentifier(k) {
				name = hclwrite.TokensForIdentifier(k)
			} else {
				name = hclwrite.TokensForValue(cty.StringVal(k))
			}
			val, err := w.tokens(x[k], path+"."+k)
			if err != nil {
				return nil, err
			}
			attrs = append(attrs, hclwrite.ObjectAttrTokens{Name: name, Value: val})
		}
		return hclwrite.TokensForObject(attrs), nil
	}
	return nil, fmt.Errorf("%s: %q: values of type %T cannot be written as HCL", w.block, path, v)
}

// ---- editing files ----

// blockLocation is where a block is declared in files.
type blockLocation struct {
	file       string
	start, end int // byte range of the block, type keyword to closing brace
}

// findBlock finds the first declaration (files in name order) of the block.
// A declaration in a JSON-syntax file is ErrJSONSyntax.
func findBlock(files map[string][]byte, typ, name string) (*blockLocation, error) {
	for _, fn := range sortedKeys(files) {
		src := files[fn]
		if strings.HasSuffix(fn, ".json") {
			f, diags := hcljson.Parse(src, fn)
			if diags.HasErrors() {
				return nil, fmt.Errorf("%s cannot be parsed: %s", fn, diags.Error())
			}
			if jsonDeclares(f, typ, name) {
				return nil, fmt.Errorf("%s is declared in %s, a JSON-syntax file; only native-syntax (.hcl) files are rewritten: change it in that file or move it to a .hcl file: %w", describeBlock(typ, name), fn, ErrJSONSyntax)
			}
			continue
		}
		f, diags := hclsyntax.ParseConfig(src, fn, hcl.InitialPos)
		if diags.HasErrors() {
			return nil, fmt.Errorf("%s cannot be parsed: %s", fn, diags.Error())
		}
		for _, b := range f.Body.(*hclsyntax.Body).Blocks {
			if b.Type != typ {
				continue
			}
			if typ == "ferry" || (len(b.Labels) > 0 && b.Labels[0] == name) {
				r := b.Range()
				return &blockLocation{file: fn, start: r.Start.Byte, end: r.End.Byte}, nil
			}
		}
	}
	return nil, nil
}

func describeBlock(typ, name string) string {
	if typ == "ferry" {
		return "the ferry block"
	}
	return fmt.Sprintf("%s %q", typ, name)
}

func jsonDeclares(f *hcl.File, typ, name string) bool {
	schema := &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: typ}}}
	if typ != "ferry" {
		schema.Blocks[0].LabelNames = []string{"name"}
	}
	content, _, _ := f.Body.PartialContent(schema)
	if content == nil {
		return false
	}
	for _, b := range content.Blocks {
		if typ == "ferry" || (len(b.Labels) > 0 && b.Labels[0] == name) {
			return true
		}
	}
	return false
}

// ReplaceBlock returns files with the block kind.name replaced by block (one
// block, as BlockHCL renders it) in the file that declares it; every other byte
// of that file, comments included, is kept. A new block is appended to
// RESTFile. files is not modified. Blocks declared in .hcl.json files are
// ErrJSONSyntax.
func ReplaceBlock(files map[string][]byte, kind, name string, block []byte) (map[string][]byte, error) {
	typ, ok := blockTypeOf(kind)
	if !ok || typ == "locals" {
		return nil, fmt.Errorf("blocks of kind %q cannot be written", kind)
	}
	if err := checkSingleBlock(block, typ, name); err != nil {
		return nil, err
	}
	loc, err := findBlock(files, typ, name)
	if err != nil {
		return nil, err
	}
	text := strings.TrimRight(string(block), "\n")
	out := make(map[string][]byte, len(files)+1)
	for k, v := range files {
		out[k] = v
	}
	if loc == nil {
		prev := string(files[RESTFile])
		switch {
		case strings.TrimSpace(prev) == "":
			prev = ""
		case strings.HasSuffix(prev, "\n\n"):
		case strings.HasSuffix(prev, "\n"):
			prev += "\n"
		default:
			prev += "\n\n"
		}
		out[RESTFile] = []byte(prev + text + "\n")
		return out, nil
	}
	src := files[loc.file]
	var sb strings.Builder
	sb.Grow(len(src) + len(text))
	sb.Write(src[:loc.start])
	sb.WriteString(text)
	sb.Write(src[loc.end:])
	out[loc.file] = []byte(sb.String())
	return out, nil
}

// checkSingleBlock checks that block is exactly one block typ "name".
func checkSingleBlock(block []byte, typ, name string) error {
	f, diags := hclsyntax.ParseConfig(block, "block.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		return fmt.Errorf("the new %s is not valid HCL: %s", describeBlock(typ, name), diags.Error())
	}
	body := f.Body.(*hclsyntax.Body)
	if len(body.Attributes) != 0 || len(body.Blocks) != 1 {
		return fmt.Errorf("the new %s must be exactly one block", describeBlock(typ, name))
	}
	b := body.Blocks[0]
	wantLabels := []string{name}
	if typ == "ferry" {
		wantLabels = nil
	}
	if b.Type != typ || !slices.Equal(b.Labels, wantLabels) {
		return fmt.Errorf("the new block is %s, not %s", describeBlock(b.Type, strings.Join(b.Labels, " ")), describeBlock(typ, name))
	}
	return nil
}

// RemoveBlock returns files without the block kind.name. The comment lines
// directly above it (its doc comment) go with it; a file left with nothing but
// whitespace is dropped. files is not modified. A block no file declares is
// ErrBlockNotFound.
func RemoveBlock(files map[string][]byte, kind, name string) (map[string][]byte, error) {
	typ, ok := blockTypeOf(kind)
	if !ok || typ == "locals" {
		return nil, fmt.Errorf("blocks of kind %q cannot be removed", kind)
	}
	loc, err := findBlock(files, typ, name)
	if err != nil {
		return nil, err
	}
	if loc == nil {
		return nil, fmt.Errorf("%s: %w", describeBlock(typ, name), ErrBlockNotFound)
	}
	src := string(files[loc.file])
	start, end := loc.start, loc.end
	// Whole lines: from the start of the block's line (when only indentation
	// precedes it) ...
	ls := strings.LastIndexByte(src[:start], '\n') + 1
	if strings.TrimSpace(src[ls:start]) == "" {
		start = ls
		// ... with the comment lines directly above it ...
		for start > 0 {
			ps := strings.LastIndexByte(src[:start-1], '\n') + 1
			line := strings.TrimSpace(src[ps : start-1])
			if !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "//") {
				break
			}
			start = ps
		}
	}
	// ... to the end of its last line, when nothing but a comment follows.
	rest := src[end:]
	if nl := strings.IndexByte(rest, '\n'); nl >= 0 {
		tail := strings.TrimSpace(rest[:nl])
		if tail == "" || strings.HasPrefix(tail, "#") || strings.HasPrefix(tail, "//") {
			end += nl + 1
		}
	} else if strings.TrimSpace(rest) == "" {
		end = len(src)
	}
	before, after := src[:start], src[end:]
	// Collapse the blank lines around the hole to one.
	if strings.HasSuffix(before, "\n\n") || before == "" {
		after = strings.TrimLeft(after, "\n")
	}
	if strings.TrimSpace(after) == "" {
		before = strings.TrimRight(before, "\n")
		if before != "" {
			before += "\n"
		}
		after = ""
	}
	out := make(map[string][]byte, len(files))
	for k, v := range files {
		out[k] = v
	}
	result := before + after
	if strings.TrimSpace(result) == "" {
		delete(out, loc.file)
	} else {
		out[loc.file] = []byte(result)
	}
	return out, nil
}
