// Package engine compiles a loaded configuration into per-integration stage
// pipelines and runs records through them: normalize and transform (pure
// compute, expr-lang programs compiled once), the local in-memory run used by
// `ferry run`, `test` blocks, and the stage graph.
package engine

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/builtin"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
	"github.com/hashicorp/hcl/v2"

	"github.com/ferryhq/ferry/connectors"
	"github.com/ferryhq/ferry/lang"
)

// Program is a compiled configuration. It is immutable after Compile and safe
// for concurrent use; per-goroutine state lives in Workers and Evaluators.
type Program struct {
	Config    *lang.Config
	Mappings  map[string]*Mapping
	Pipelines map[string]*Pipeline

	regexps   regexCache
	funcNames map[string]bool
	// vms serve nested apply() calls, which cannot reuse the caller's VM.
	vms  sync.Pool
	opts []expr.Option
}

// Mapping is a compiled mapping block.
type Mapping struct {
	Name   string
	Config *lang.Mapping

	key, filter *compiledExpr
	fields      []compiledField
	defaults    []pathValue
	unset       [][]string
	program     *Program
}

type compiledField struct {
	name string // dotted path, for messages
	path []string
	cast string
	expr *compiledExpr
}

type pathValue struct {
	path  []string
	value any
}

type compiledExpr struct {
	src  *lang.Expr
	prog *vm.Program
}

// Pipeline is one integration compiled: its stages ready to run records.
type Pipeline struct {
	Name        string
	Integration *lang.Integration
	// Mapping is nil when the integration has no transform (records pass unchanged).
	Mapping   *Mapping
	Normalize *lang.Normalize
	Operation connectors.Operation
	Retry     lang.Retry
	BatchSize int
	// SkipUnchanged makes Prepare compute Prepared.Hash.
	SkipUnchanged bool

	path    *compiledExpr
	require [][]string
	types   []pathType
	program *Program
}

type pathType struct {
	name string
	path []string
	typ  string
}

// Defaults filled in when the config leaves them zero.
const (
	DefaultBatchSize = 100
	maxApplyDepth    = 64
)

var validCasts = []string{"", "string", "int", "float", "bool", "decimal", "time"}

// Compile compiles every per-record expression of cfg once and checks what can
// be checked before a record is seen. It returns every problem at once; the
// Program is nil when there are errors.
func Compile(cfg *lang.Config) (prog *Program, diags hcl.Diagnostics) {
	defer func() {
		if r := recover(); r != nil {
			prog = nil
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Internal error while compiling",
				Detail:   fmt.Sprintf("The engine failed unexpectedly: %v. Please report this as a bug.", r),
			})
		}
	}()
	if cfg == nil {
		cfg = &lang.Config{}
	}
	p := &Program{
		Config:    cfg,
		Mappings:  map[string]*Mapping{},
		Pipelines: map[string]*Pipeline{},
	}
	p.opts = append([]expr.Option{
		expr.Env(map[string]any{}),
		expr.AllowUndefinedVariables(),
	}, p.exprFunctions()...)
	p.vms.New = func() any { return new(vm.VM) }
	p.funcNames = map[string]bool{}
	for _, f := range p.library() {
		p.funcNames[f.name] = true
	}

	// Sub-mapping references found in apply("name", ...) calls, for the cycle check.
	applies := map[string][]string{}

	for _, name := range sortedKeys(cfg.Mappings) {
		lm := cfg.Mappings[name]
		if lm == nil {
			continue
		}
		m, refs, ds := p.compileMapping(name, lm)
		diags = append(diags, ds...)
		p.Mappings[name] = m
		applies[name] = refs
	}
	diags = append(diags, mappingCycles(cfg, applies)...)

	for _, name := range sortedKeys(cfg.Integrations) {
		in := cfg.Integrations[name]
		if in == nil {
			continue
		}
		pl, ds := p.compilePipeline(name, in)
		diags = append(diags, ds...)
		p.Pipelines[name] = pl
	}
	if diags.HasErrors() {
		return nil, diags
	}
	return p, diags
}

func (p *Program) compileMapping(name string, lm *lang.Mapping) (*Mapping, []string, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	var refs []string
	m := &Mapping{Name: name, Config: lm, program: p}
	where := fmt.Sprintf("mapping %q", name)
	compile := func(e *lang.Expr, what string) *compiledExpr {
		ce, r, ds := p.compileExpr(e, where+" "+what)
		diags = append(diags, ds...)
		refs = append(refs, r...)
		return ce
	}
	m.key = compile(lm.Key, "key")
	m.filter = compile(lm.Filter, "filter")
	seen := map[string]bool{}
	for _, f := range lm.Fields {
		if f == nil || len(f.Path) == 0 {
			continue
		}
		fname := strings.Join(f.Path, ".")
		if seen[fname] {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Duplicate mapping field",
				Detail:   fmt.Sprintf("Field %q is set twice in mapping %q.", fname, name),
				Subject:  exprRange(f.Expr, lm.DeclRange),
			})
		}
		seen[fname] = true
		if !slices.Contains(validCasts, f.Cast) {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Invalid cast",
				Detail:   fmt.Sprintf("Field %q of mapping %q has cast %q; use one of string, int, float, bool, decimal, time.", fname, name, f.Cast),
				Subject:  exprRange(f.Expr, lm.DeclRange),
			})
		}
		m.fields = append(m.fields, compiledField{
			name: fname,
			path: f.Path,
			cast: f.Cast,
			expr: compile(f.Expr, fmt.Sprintf("field %q", fname)),
		})
	}
	for _, k := range sortedKeys(lm.Defaults) {
		m.defaults = append(m.defaults, pathValue{path: splitPath(k), value: lm.Defaults[k]})
	}
	for _, u := range lm.Unset {
		if len(u) > 0 {
			m.unset = append(m.unset, u)
		}
	}
	return m, refs, diags
}

func (p *Program) compilePipeline(name string, in *lang.Integration) (*Pipeline, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	pl := &Pipeline{
		Name:        name,
		Integration: in,
		Normalize:   in.Normalize,
		Operation:   connectors.OpUpsert,
		BatchSize:   DefaultBatchSize,
		program:     p,
	}
	if in.Retry != nil {
		pl.Retry = *in.Retry
	}
	fillRetryDefaults(&pl.Retry)
	if t := in.Transform; t != nil && t.Mapping != "" {
		m, ok := p.Mappings[t.Mapping]
		if !ok {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Unknown mapping",
				Detail:   fmt.Sprintf("Integration %q uses mapping %q, which is not declared.", name, t.Mapping),
				Subject:  rangePtr(t.MappingRange),
			})
		}
		pl.Mapping = m
		pl.SkipUnchanged = t.SkipUnchanged
	}
	if n := in.Normalize; n != nil {
		for _, r := range n.Require {
			pl.require = append(pl.require, splitPath(r))
		}
		for _, k := range sortedKeys(n.Types) {
			typ := n.Types[k]
			if !slices.Contains(validCasts, typ) || typ == "" {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Invalid normalize type",
					Detail:   fmt.Sprintf("Field %q of integration %q has type %q; use one of string, int, float, bool, decimal, time.", k, name, typ),
					Subject:  rangePtr(n.DeclRange),
				})
			}
			pl.types = append(pl.types, pathType{name: k, path: splitPath(k), typ: typ})
		}
	}
	if t := in.Target; t != nil {
		if t.Operation != "" {
			pl.Operation = connectors.Operation(t.Operation)
			if !slices.Contains(connectors.Operations, pl.Operation) {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Invalid operation",
					Detail:   fmt.Sprintf("Integration %q has target operation %q; use create, update, upsert or delete.", name, t.Operation),
					Subject:  rangePtr(t.DeclRange),
				})
			}
		}
		if t.BatchSize > 0 {
			pl.BatchSize = t.BatchSize
		}
		ce, _, ds := p.compileExpr(t.Path, fmt.Sprintf("integration %q target path", name))
		diags = append(diags, ds...)
		pl.path = ce
	}
	return pl, diags
}

func fillRetryDefaults(r *lang.Retry) {
	if r.MaxAttempts <= 0 {
		r.MaxAttempts = 5
	}
	if r.Initial <= 0 {
		r.Initial = time.Second
	}
	if r.Max <= 0 {
		r.Max = 5 * time.Minute
	}
	if r.Multiplier < 1 {
		r.Multiplier = 2
	}
	if r.Jitter < 0 || r.Jitter > 1 {
		r.Jitter = 0.2
	}
}

// compileExpr compiles one expression. It returns the literal sub-mapping names
// passed to apply() for the cycle check.
func (p *Program) compileExpr(e *lang.Expr, where string) (ce *compiledExpr, applies []string, diags hcl.Diagnostics) {
	if e == nil {
		return nil, nil, nil
	}
	if strings.TrimSpace(e.Source) == "" {
		return nil, nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Invalid expression",
			Detail:   fmt.Sprintf("The expression of %s is empty.", where),
			Subject:  rangePtr(e.Range),
		}}
	}
	pt := &patcher{known: p.funcNames}
	prog, err := safeCompile(e.Source, append(p.opts[:len(p.opts):len(p.opts)], expr.Patch(pt))...)
	if err != nil {
		return nil, nil, hcl.Diagnostics{exprDiagnostic(e, where, err)}
	}
	for _, id := range pt.unknown {
		diags = append(diags, nodeDiagnostic(e, id, "Invalid expression",
			fmt.Sprintf("Unknown function %s() in %s.%s See FUNCTIONS.md for the functions available.", id.Value, where, didYouMean(id.Value, p.allFuncNames()))))
	}
	// Calls whose first argument names a table, a mapping or a pattern.
	for _, c := range pt.calls {
		lit, isLit := c.args[0].(*ast.StringNode)
		switch c.name {
		case "lookup":
			if isLit {
				if _, ok := p.Config.Tables[lit.Value]; !ok {
					diags = append(diags, nodeDiagnostic(e, lit, "Unknown table",
						fmt.Sprintf("lookup() in %s refers to table %q, which is not declared.%s", where, lit.Value, didYouMean(lit.Value, sortedKeys(p.Config.Tables)))))
				}
			}
		case "apply":
			if !isLit {
				diags = append(diags, nodeDiagnostic(e, c.args[0], "Invalid expression",
					fmt.Sprintf("The first argument of apply() in %s must be a mapping name written as a string literal, like apply(\"line_item\", line_items).", where)))
				continue
			}
			if _, ok := p.Config.Mappings[lit.Value]; !ok {
				diags = append(diags, nodeDiagnostic(e, lit, "Unknown mapping",
					fmt.Sprintf("apply() in %s refers to mapping %q, which is not declared.%s", where, lit.Value, didYouMean(lit.Value, sortedKeys(p.Config.Mappings)))))
				continue
			}
			applies = append(applies, lit.Value)
		case "regexMatch", "regexReplace":
			if len(c.args) > 1 {
				if pat, ok := c.args[1].(*ast.StringNode); ok {
					if _, err := p.regexps.get(pat.Value); err != nil {
						diags = append(diags, nodeDiagnostic(e, pat, "Invalid regular expression",
							fmt.Sprintf("In %s: %v.", where, errors.Unwrap(err))))
					}
				}
			}
		}
	}
	if diags.HasErrors() {
		return nil, applies, diags
	}
	return &compiledExpr{src: e, prog: prog}, applies, diags
}

func safeCompile(src string, opts ...expr.Option) (prog *vm.Program, err error) {
	defer func() {
		if r := recover(); r != nil {
			prog, err = nil, fmt.Errorf("cannot compile expression: %v", r)
		}
	}()
	return expr.Compile(src, opts...)
}

// patcher rewrites every member access (a.b, a[i], a["k"]) to the nil-safe
// __get(a, prop) so that missing fields and out-of-range indices give nil,
// arithmetic and ordering operators to null-propagating functions (null + 1 is
// null, null > 1 is false), and records calls of interest for the checks in
// compileExpr.
type patcher struct {
	known   map[string]bool // the library's function names
	calls   []call
	unknown []*ast.IdentifierNode
}

type call struct {
	name string
	args []ast.Node
}

func (v *patcher) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.MemberNode:
		if n.Method {
			return
		}
		ast.Patch(node, &ast.CallNode{
			Callee:    &ast.IdentifierNode{Value: getFunc},
			Arguments: []ast.Node{n.Node, n.Property},
		})
	case *ast.BinaryNode:
		if fn, ok := nilSafeOps[n.Operator]; ok {
			ast.Patch(node, &ast.CallNode{
				Callee:    &ast.IdentifierNode{Value: fn},
				Arguments: []ast.Node{n.Left, n.Right},
			})
		}
	case *ast.BuiltinNode:
		// sum(list) skips nulls (a missing field in some elements).
		if n.Name == "sum" && len(n.Arguments) == 1 {
			ast.Patch(node, &ast.CallNode{
				Callee:    &ast.IdentifierNode{Value: sumFunc},
				Arguments: n.Arguments,
			})
		}
	case *ast.UnaryNode:
		if n.Operator == "-" {
			ast.Patch(node, &ast.CallNode{
				Callee:    &ast.IdentifierNode{Value: negFunc},
				Arguments: []ast.Node{n.Node},
			})
		}
	case *ast.CallNode:
		if id, ok := n.Callee.(*ast.IdentifierNode); ok {
			if _, builtin := builtin.Index[id.Value]; !builtin && !v.known[id.Value] {
				v.unknown = append(v.unknown, id)
			}
			if len(n.Arguments) == 0 {
				return
			}
			switch id.Value {
			case "lookup", "apply", "regexMatch", "regexReplace":
				v.calls = append(v.calls, call{name: id.Value, args: n.Arguments})
			}
		}
	}
}

func exprSubRange(e *lang.Expr, offset, length int) *hcl.Range {
	r := e.SubRange(offset, length)
	return &r
}

func exprRange(e *lang.Expr, fallback hcl.Range) *hcl.Range {
	if e == nil {
		return rangePtr(fallback)
	}
	return rangePtr(e.Range)
}

func rangePtr(r hcl.Range) *hcl.Range {
	if r.Filename == "" && r.Start.Line == 0 {
		return nil
	}
	return &r
}

// runeSpan converts expr's rune-based location to a byte offset and length in src.
func runeSpan(src string, from, to int) (offset, length int) {
	offset, end := len(src), len(src)
	i := 0
	for off := range src {
		if i == from {
			offset = off
		}
		if i == to {
			end = off
			break
		}
		i++
	}
	if from > i {
		offset = len(src)
	}
	if end < offset {
		end = offset
	}
	length = end - offset
	if length == 0 && offset < len(src) {
		_, size := utf8.DecodeRuneInString(src[offset:])
		length = size
	}
	return offset, length
}

// errOffset returns the byte offset and length in src of an expr compile
// error's location; -1 when err carries none.
func errOffset(src string, err error) (offset, length int) {
	var fe *file.Error
	if !errors.As(err, &fe) {
		return -1, 0
	}
	return runeSpan(src, fe.From, fe.To)
}

func exprDiagnostic(e *lang.Expr, where string, err error) *hcl.Diagnostic {
	d := &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "Invalid expression",
		Subject:  rangePtr(e.Range),
	}
	if off, n := errOffset(e.Source, err); off >= 0 {
		var fe *file.Error
		errors.As(err, &fe)
		d.Subject = exprSubRange(e, off, n)
		d.Detail = fmt.Sprintf("%s in %s.", fe.Message, where)
		return d
	}
	d.Detail = fmt.Sprintf("%v in %s.", err, where)
	return d
}

func nodeDiagnostic(e *lang.Expr, n ast.Node, summary, detail string) *hcl.Diagnostic {
	loc := n.Location()
	off, l := runeSpan(e.Source, loc.From, loc.To)
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   detail,
		Subject:  exprSubRange(e, off, l),
	}
}

// mappingCycles reports mappings that apply themselves, directly or not.
func mappingCycles(cfg *lang.Config, applies map[string][]string) hcl.Diagnostics {
	var diags hcl.Diagnostics
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	reported := map[string]bool{}
	var stack []string
	var visit func(n string)
	visit = func(n string) {
		color[n] = grey
		stack = append(stack, n)
		for _, m := range applies[n] {
			switch color[m] {
			case white:
				visit(m)
			case grey:
				i := slices.Index(stack, m)
				cycle := append(slices.Clone(stack[i:]), m)
				if !reported[m] {
					reported[m] = true
					var subj *hcl.Range
					if lm := cfg.Mappings[m]; lm != nil {
						subj = rangePtr(lm.DeclRange)
					}
					diags = append(diags, &hcl.Diagnostic{
						Severity: hcl.DiagError,
						Summary:  "Mapping cycle",
						Detail:   fmt.Sprintf("Mappings apply each other in a cycle: %s. A sub-mapping cannot apply a mapping that applies it.", strings.Join(cycle, " → ")),
						Subject:  subj,
					})
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[n] = black
	}
	for _, n := range sortedKeys(applies) {
		if color[n] == white {
			visit(n)
		}
	}
	return diags
}

func didYouMean(name string, options []string) string {
	best, bestD := "", 3
	for _, o := range options {
		if d := levenshtein(name, o); d < bestD {
			best, bestD = o, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" Did you mean %q?", best)
}

func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

func (p *Program) allFuncNames() []string {
	names := sortedKeys(p.funcNames)
	for n := range builtin.Index {
		names = append(names, n)
	}
	return names
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
