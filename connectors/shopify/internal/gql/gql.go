// Package gql parses the GraphQL operations ferry's shopify connector sends and
// computes their cost the way Shopify's GraphQL Admin API does before it runs a
// query (https://shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits):
//
//   - a scalar or enum field costs 0;
//   - an object field costs 1 plus its selection;
//   - an interface field with inline fragments costs 1 plus the most
//     expensive of its fragments;
//   - a connection (a field taking first or last) costs 2 plus, for each node it
//     may return, 1 plus the node's selection: 2 + first × (1 + node). Its
//     pageInfo and cursors are included in the 2;
//   - a mutation's root field costs 10.
//
// The requested cost multiplies by first/last (the most a query may return);
// the actual cost counts what a response holds. Shopify refuses a query whose
// requested cost exceeds MaxCost.
//
// It is shared by the connector, which sizes its pages with it, and by the fake
// shops of its tests, which refuse what Shopify would refuse. The parser covers
// the subset of GraphQL those use: one operation with variables, fields,
// aliases, arguments and inline fragments; no named fragments or directives.
package gql

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// MaxCost is the largest requested cost Shopify runs in one query.
const MaxCost = 1000

// MaxPage is the largest first or last a connection takes.
const MaxPage = 250

// MutationCost is what one mutation root field costs.
const MutationCost = 10

// Operation is a parsed GraphQL operation.
type Operation struct {
	// Type is "query" or "mutation".
	Type string
	Name string
	// Fields are the root fields.
	Fields []*Field
}

// Field is a field, or an inline fragment when Name is "".
type Field struct {
	Alias, Name string
	// On is the type condition of an inline fragment.
	On string
	// Args are the arguments: int64, float64, string, bool, nil, Enum, Var,
	// []any or map[string]any.
	Args map[string]any
	// Selection is nil for a leaf.
	Selection []*Field
}

// Var is a variable reference in an argument.
type Var string

// Enum is an enum value in an argument.
type Enum string

// Key is the field's key in a response: its alias or name.
func (f *Field) Key() string {
	if f.Alias != "" {
		return f.Alias
	}
	return f.Name
}

// Arg returns an argument with variables resolved from vars; ok is false when
// the argument is absent or its variable is not given.
func (f *Field) Arg(name string, vars map[string]any) (v any, ok bool) {
	v, ok = f.Args[name]
	if !ok {
		return nil, false
	}
	if ref, isVar := v.(Var); isVar {
		v, ok = vars[string(ref)]
	}
	return v, ok
}

// Child returns the first field named name in f's selection (nil if none).
func (f *Field) Child(name string) *Field {
	for _, c := range f.Selection {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// IsConnection says whether f is a connection: it takes first or last, or
// selects nodes, edges or pageInfo.
func (f *Field) IsConnection() bool {
	if _, ok := f.Args["first"]; ok {
		return true
	}
	if _, ok := f.Args["last"]; ok {
		return true
	}
	return f.Child("nodes") != nil || f.Child("edges") != nil || f.Child("pageInfo") != nil
}

// Size is the number of nodes a connection asks for: its first or last.
func (f *Field) Size(vars map[string]any) (int, error) {
	for _, arg := range []string{"first", "last"} {
		if _, present := f.Args[arg]; !present {
			continue
		}
		v, ok := f.Arg(arg, vars)
		if !ok {
			return 0, fmt.Errorf("%s(%s: $%s): the variable is not given", f.Name, arg, f.Args[arg])
		}
		if v == nil {
			continue
		}
		n, ok := Int(v)
		if !ok || n < 0 || n > MaxPage {
			return 0, fmt.Errorf("%s(%s: %v): %s must be an integer between 0 and %d", f.Name, arg, v, arg, MaxPage)
		}
		return n, nil
	}
	return 0, fmt.Errorf("connection %s needs a first or last argument", f.Name)
}

// NodeSelections are the selections of one node of a connection: of its
// nodes field and of its edges' node field.
func (f *Field) NodeSelections() [][]*Field {
	var out [][]*Field
	if n := f.Child("nodes"); n != nil {
		out = append(out, n.Selection)
	}
	if e := f.Child("edges"); e != nil {
		if n := e.Child("node"); n != nil {
			out = append(out, n.Selection)
		}
	}
	return out
}

// Int reads an integral JSON-ish number (int, int64, float64, json.Number).
func Int(v any) (int, bool) {
	switch x := v.(type) {
	case int:
		return x, true
	case int64:
		return int(x), true
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<31 {
			return int(x), true
		}
	case json.Number:
		n, err := strconv.Atoi(string(x))
		return n, err == nil
	}
	return 0, false
}

// RequestedCost is the cost Shopify computes for query before running it.
func RequestedCost(query string, vars map[string]any) (int, error) {
	op, err := Parse(query)
	if err != nil {
		return 0, err
	}
	return op.Cost(vars, nil)
}

// Cost is the operation's requested cost when data is nil, else its actual
// cost: what the response data (the value of "data") holds.
func (op *Operation) Cost(vars map[string]any, data any) (int, error) {
	if op.Type == "mutation" {
		return MutationCost * len(op.Fields), nil
	}
	return selectionCost(op.Fields, vars, data, data != nil)
}

// selectionCost adds up the fields of a selection; inline fragments are
// alternatives (one type matches), so the dearest of them counts.
func selectionCost(sel []*Field, vars map[string]any, data any, actual bool) (int, error) {
	total, fragments := 0, 0
	obj, _ := data.(map[string]any)
	for _, f := range sel {
		if f.Name == "" {
			c, err := selectionCost(f.Selection, vars, data, actual)
			if err != nil {
				return 0, err
			}
			fragments = max(fragments, c)
			continue
		}
		if f.Selection == nil {
			continue
		}
		c, err := fieldCost(f, vars, obj[f.Key()], actual)
		if err != nil {
			return 0, err
		}
		total += c
	}
	return total + fragments, nil
}

func fieldCost(f *Field, vars map[string]any, data any, actual bool) (int, error) {
	if actual && data == nil {
		return 0, nil
	}
	if !f.IsConnection() {
		c, err := selectionCost(f.Selection, vars, data, actual)
		return 1 + c, err
	}
	n, err := f.Size(vars)
	if err != nil {
		return 0, err
	}
	if !actual {
		node := 0
		for _, sel := range f.NodeSelections() {
			c, err := selectionCost(sel, vars, nil, false)
			if err != nil {
				return 0, err
			}
			node = max(node, c)
		}
		return 2 + n*(1+node), nil
	}
	// Actual: each returned node counts with its own contents.
	conn, _ := data.(map[string]any)
	total := 2
	if nodes, ok := conn["nodes"].([]any); ok {
		if sel := f.Child("nodes"); sel != nil {
			for _, nd := range nodes {
				c, err := selectionCost(sel.Selection, vars, nd, true)
				if err != nil {
					return 0, err
				}
				total += 1 + c
			}
			return total, nil
		}
	}
	if edges, ok := conn["edges"].([]any); ok && f.Child("edges") != nil {
		if sel := f.Child("edges").Child("node"); sel != nil {
			for _, e := range edges {
				em, _ := e.(map[string]any)
				c, err := selectionCost(sel.Selection, vars, em["node"], true)
				if err != nil {
					return 0, err
				}
				total += 1 + c
			}
		}
	}
	return total, nil
}

// ---- parser ----

// Parse parses a document holding one operation.
func Parse(query string) (*Operation, error) {
	p := &parser{src: query}
	p.next()
	op := &Operation{Type: "query"}
	if p.tok == tokName && (p.val == "query" || p.val == "mutation") {
		op.Type = p.val
		p.next()
		if p.tok == tokName {
			op.Name = p.val
			p.next()
		}
		if p.is("(") {
			if err := p.skipVariableDefinitions(); err != nil {
				return nil, err
			}
		}
	}
	if p.is("@") {
		return nil, p.errorf("directives are not supported")
	}
	sel, err := p.selectionSet(0)
	if err != nil {
		return nil, err
	}
	op.Fields = sel
	if p.tok != tokEOF {
		if p.tok == tokName && p.val == "fragment" {
			return nil, p.errorf("named fragments are not supported")
		}
		return nil, p.errorf("expected the end of the document, found %s", p.describe())
	}
	return op, nil
}

// maxDepth bounds nesting so that hostile input cannot exhaust the stack.
const maxDepth = 64

type tokKind int

const (
	tokEOF tokKind = iota
	tokName
	tokPunct
	tokInt
	tokFloat
	tokString
	tokError
)

type parser struct {
	src string
	pos int
	// the current token
	tok   tokKind
	val   string
	start int
	err   string
}

func (p *parser) is(punct string) bool { return p.tok == tokPunct && p.val == punct }

func (p *parser) describe() string {
	switch p.tok {
	case tokEOF:
		return "the end of the document"
	case tokString:
		return "a string"
	case tokError:
		return p.err
	}
	return strconv.Quote(p.val)
}

// errorf names where in the document the problem is, as line:column.
func (p *parser) errorf(format string, args ...any) error {
	line, col := 1, 1
	for _, r := range p.src[:min(p.start, len(p.src))] {
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return fmt.Errorf("graphql %d:%d: %s", line, col, fmt.Sprintf(format, args...))
}

func (p *parser) expect(punct string) error {
	if !p.is(punct) {
		return p.errorf("expected %q, found %s", punct, p.describe())
	}
	p.next()
	return nil
}

// next reads the next token; commas are white space in GraphQL.
func (p *parser) next() {
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		if c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',' {
			p.pos++
			continue
		}
		if strings.HasPrefix(p.src[p.pos:], "\ufeff") { // byte order mark
			p.pos += len("\ufeff")
			continue
		}
		if c == '#' {
			for p.pos < len(p.src) && p.src[p.pos] != '\n' {
				p.pos++
			}
			continue
		}
		break
	}
	p.start = p.pos
	if p.pos >= len(p.src) {
		p.tok, p.val = tokEOF, ""
		return
	}
	c := p.src[p.pos]
	switch {
	case c == '_' || isLetter(c):
		end := p.pos + 1
		for end < len(p.src) && (p.src[end] == '_' || isLetter(p.src[end]) || isDigit(p.src[end])) {
			end++
		}
		p.tok, p.val, p.pos = tokName, p.src[p.pos:end], end
	case c == '-' || isDigit(c):
		end := p.pos + 1
		float := false
		for end < len(p.src) && (isDigit(p.src[end]) || p.src[end] == '.' || p.src[end] == 'e' || p.src[end] == 'E' || p.src[end] == '+' || (p.src[end] == '-' && (p.src[end-1] == 'e' || p.src[end-1] == 'E'))) {
			if !isDigit(p.src[end]) {
				float = true
			}
			end++
		}
		p.tok, p.val, p.pos = tokInt, p.src[p.pos:end], end
		if float {
			p.tok = tokFloat
		}
	case c == '"':
		p.readString()
	case strings.HasPrefix(p.src[p.pos:], "..."):
		p.tok, p.val, p.pos = tokPunct, "...", p.pos+3
	case strings.IndexByte("!$():=@[]{}|&", c) >= 0:
		p.tok, p.val, p.pos = tokPunct, string(c), p.pos+1
	default:
		p.tok, p.err, p.val = tokError, fmt.Sprintf("unexpected character %q", c), ""
		p.pos = len(p.src)
	}
}

func (p *parser) readString() {
	if strings.HasPrefix(p.src[p.pos:], `"""`) {
		end := strings.Index(p.src[p.pos+3:], `"""`)
		if end < 0 {
			p.tok, p.err = tokError, "unterminated block string"
			p.pos = len(p.src)
			return
		}
		p.tok, p.val = tokString, p.src[p.pos+3:p.pos+3+end]
		p.pos += 3 + end + 3
		return
	}
	for end := p.pos + 1; end < len(p.src); end++ {
		switch p.src[end] {
		case '\\':
			end++
		case '\n':
			p.tok, p.err = tokError, "unterminated string"
			p.pos = len(p.src)
			return
		case '"':
			s, err := strconv.Unquote(p.src[p.pos : end+1])
			if err != nil {
				// GraphQL escapes are JSON's, which strconv mostly shares;
				// keep the raw text rather than fail on an exotic one.
				s = p.src[p.pos+1 : end]
			}
			p.tok, p.val, p.pos = tokString, s, end+1
			return
		}
	}
	p.tok, p.err = tokError, "unterminated string"
	p.pos = len(p.src)
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }

// skipVariableDefinitions passes over ($a: Int!, $b: [String] = ["x"]): the
// variables' values come from the request, so only their names matter, and
// those are checked where they are used.
func (p *parser) skipVariableDefinitions() error {
	depth := 0
	for {
		switch {
		case p.tok == tokEOF || p.tok == tokError:
			return p.errorf("unterminated variable definitions: found %s", p.describe())
		case p.is("(") || p.is("[") || p.is("{"):
			depth++
		case p.is(")") || p.is("]") || p.is("}"):
			depth--
		}
		p.next()
		if depth == 0 {
			return nil
		}
	}
}

func (p *parser) selectionSet(depth int) ([]*Field, error) {
	if depth > maxDepth {
		return nil, p.errorf("selections are nested more than %d deep", maxDepth)
	}
	if err := p.expect("{"); err != nil {
		return nil, err
	}
	var out []*Field
	for !p.is("}") {
		f, err := p.selection(depth)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	if len(out) == 0 {
		return nil, p.errorf("empty selection set")
	}
	p.next()
	return out, nil
}

func (p *parser) selection(depth int) (*Field, error) {
	if p.is("...") {
		p.next()
		if p.tok != tokName || p.val != "on" {
			if p.tok == tokName {
				return nil, p.errorf("fragment spread ...%s: named fragments are not supported", p.val)
			}
			return nil, p.errorf("expected \"on\" after \"...\", found %s", p.describe())
		}
		p.next()
		if p.tok != tokName {
			return nil, p.errorf("expected a type name after \"... on\", found %s", p.describe())
		}
		f := &Field{On: p.val}
		p.next()
		sel, err := p.selectionSet(depth + 1)
		if err != nil {
			return nil, err
		}
		f.Selection = sel
		return f, nil
	}
	if p.tok != tokName {
		return nil, p.errorf("expected a field, found %s", p.describe())
	}
	f := &Field{Name: p.val}
	p.next()
	if p.is(":") {
		p.next()
		if p.tok != tokName {
			return nil, p.errorf("expected a field name after alias %s:, found %s", f.Name, p.describe())
		}
		f.Alias, f.Name = f.Name, p.val
		p.next()
	}
	if p.is("(") {
		p.next()
		f.Args = map[string]any{}
		for !p.is(")") {
			if p.tok != tokName {
				return nil, p.errorf("expected an argument name in %s(…), found %s", f.Name, p.describe())
			}
			name := p.val
			p.next()
			if err := p.expect(":"); err != nil {
				return nil, err
			}
			v, err := p.value(depth)
			if err != nil {
				return nil, err
			}
			f.Args[name] = v
		}
		p.next()
	}
	if p.is("@") {
		return nil, p.errorf("directives are not supported")
	}
	if p.is("{") {
		sel, err := p.selectionSet(depth + 1)
		if err != nil {
			return nil, err
		}
		f.Selection = sel
	}
	return f, nil
}

func (p *parser) value(depth int) (any, error) {
	if depth > maxDepth {
		return nil, p.errorf("values are nested more than %d deep", maxDepth)
	}
	switch p.tok {
	case tokInt:
		n, err := strconv.ParseInt(p.val, 10, 64)
		if err != nil {
			return nil, p.errorf("invalid integer %s", p.val)
		}
		p.next()
		return n, nil
	case tokFloat:
		f, err := strconv.ParseFloat(p.val, 64)
		if err != nil {
			return nil, p.errorf("invalid number %s", p.val)
		}
		p.next()
		return f, nil
	case tokString:
		s := p.val
		p.next()
		return s, nil
	case tokName:
		v := p.val
		p.next()
		switch v {
		case "true":
			return true, nil
		case "false":
			return false, nil
		case "null":
			return nil, nil
		}
		return Enum(v), nil
	}
	switch {
	case p.is("$"):
		p.next()
		if p.tok != tokName {
			return nil, p.errorf("expected a variable name after $, found %s", p.describe())
		}
		v := Var(p.val)
		p.next()
		return v, nil
	case p.is("["):
		p.next()
		list := []any{}
		for !p.is("]") {
			v, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			list = append(list, v)
		}
		p.next()
		return list, nil
	case p.is("{"):
		p.next()
		obj := map[string]any{}
		for !p.is("}") {
			if p.tok != tokName {
				return nil, p.errorf("expected a field name in an input object, found %s", p.describe())
			}
			k := p.val
			p.next()
			if err := p.expect(":"); err != nil {
				return nil, err
			}
			v, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			obj[k] = v
		}
		p.next()
		return obj, nil
	}
	return nil, p.errorf("expected a value, found %s", p.describe())
}
