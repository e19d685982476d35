package lang

import (
	"fmt"
	"slices"
	"strings"

	"github.com/agext/levenshtein"
	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// Resource kinds, as used in references and addresses ("connection.shop").
const (
	kindVariable    = "var"
	kindLocal       = "local"
	kindTable       = "table"
	kindConnection  = "connection"
	kindMapping     = "mapping"
	kindIntegration = "integration"
	kindSchedule    = "schedule"
	kindTest        = "test"
)

// kindOrder is the order of kinds in listings.
var kindOrder = []string{kindVariable, kindLocal, kindTable, kindConnection, kindMapping, kindIntegration, kindSchedule, kindTest}

var kindNoun = map[string]string{
	kindVariable:    "input variable",
	kindLocal:       "local value",
	kindTable:       "table",
	kindConnection:  "connection",
	kindMapping:     "mapping",
	kindIntegration: "integration",
	kindSchedule:    "schedule",
	kindTest:        "test",
}

// suggest returns the name in names closest to given, or "" when none is close.
func suggest(given string, names []string) string {
	best, bestDist := "", 3
	for _, n := range names {
		if d := levenshtein.Distance(given, n, nil); d < bestDist {
			best, bestDist = n, d
		}
	}
	return best
}

// didYouMean returns ` Did you mean "x"?` or "".
func didYouMean(given string, names []string) string {
	if s := suggest(given, names); s != "" {
		return fmt.Sprintf(" Did you mean %q?", s)
	}
	return ""
}

// attrStep returns the name after the root of a traversal like var.x.
func attrStep(t hcl.Traversal) (string, hcl.Range, bool) {
	if len(t) < 2 {
		return "", hcl.Range{}, false
	}
	switch s := t[1].(type) {
	case hcl.TraverseAttr:
		return s.Name, s.SrcRange, true
	case hcl.TraverseIndex:
		if v := s.Key; !v.IsNull() && v.IsKnown() && v.Type() == cty.String {
			return v.AsString(), s.SrcRange, true
		}
	}
	return "", hcl.Range{}, false
}

func (l *loader) declaredNames(kind string) []string {
	return l.names[kind]
}

func (l *loader) isDeclared(kind, name string) bool {
	return slices.Contains(l.names[kind], name)
}

// checkRefs validates the references of a static attribute: only var.<name> and
// local.<name> are available there. It returns the ranges of bad references (so
// that HCL's own, less helpful, diagnostics about them can be dropped).
func (l *loader) checkRefs(travs []hcl.Traversal) ([]hcl.Range, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	var bad []hcl.Range
	for _, t := range travs {
		root := t.RootName()
		rng := t.SourceRange()
		switch root {
		case kindVariable, kindLocal:
			name, _, ok := attrStep(t)
			if !ok {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Invalid reference",
					Detail:   fmt.Sprintf("A reference to %s must be followed by a name, like %s.name.", root, root),
					Subject:  rng.Ptr(),
				})
				bad = append(bad, rng)
				continue
			}
			if !l.isDeclared(root, name) {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Reference to undeclared " + kindNoun[root],
					Detail: fmt.Sprintf("%s named %q has not been declared.%s", capitalArticle(kindNoun[root]), name,
						didYouMean(name, l.declaredNames(root))),
					Subject: rng.Ptr(),
				})
				bad = append(bad, rng)
			}
		case kindTable, kindConnection, kindMapping, kindIntegration, kindSchedule, kindTest:
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Invalid reference",
				Detail: fmt.Sprintf("%s cannot be referenced here. Static attributes can use input variables (var.<name>), local values (local.<name>) and functions.",
					article(kindNoun[root])),
				Subject: rng.Ptr(),
			})
			bad = append(bad, rng)
		default:
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Invalid reference",
				Detail: fmt.Sprintf("There is nothing named %q. Static attributes can use input variables (var.<name>), local values (local.<name>) and functions; to write a string, quote it.",
					root),
				Subject: rng.Ptr(),
			})
			bad = append(bad, rng)
		}
	}
	return bad, diags
}

// dropWithin removes diagnostics whose subject lies inside one of the ranges.
func dropWithin(diags hcl.Diagnostics, ranges []hcl.Range) hcl.Diagnostics {
	if len(ranges) == 0 {
		return diags
	}
	out := diags[:0:0]
	for _, d := range diags {
		drop := false
		if d.Subject != nil {
			for _, r := range ranges {
				if d.Subject.Filename == r.Filename && d.Subject.Start.Byte >= r.Start.Byte && d.Subject.End.Byte <= r.End.Byte {
					drop = true
					break
				}
			}
		}
		if !drop {
			out = append(out, d)
		}
	}
	return out
}

// decodeRef decodes a reference-only attribute (`connection = connection.shop`,
// or "connection.shop" in JSON syntax) to the referenced name.
func (l *loader) decodeRef(attr *hcl.Attribute, kind string) (string, hcl.Diagnostics) {
	rng := attr.Expr.Range()
	example := kind + "." + firstOr(l.declaredNames(kind), "name")
	trav, tdiags := hcl.AbsTraversalForExpr(attr.Expr)
	if tdiags.HasErrors() {
		return "", hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Invalid reference",
			Detail:   fmt.Sprintf("The %q argument must be a reference to %s, like %s.", attr.Name, article(kindNoun[kind]), example),
			Subject:  rng.Ptr(),
		}}
	}
	root := trav.RootName()
	name, _, ok := attrStep(trav)
	if root != kind {
		what := fmt.Sprintf("%q", root)
		if noun, known := kindNoun[root]; known {
			what = article(noun)
		}
		return "", hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Invalid reference",
			Detail:   fmt.Sprintf("The %q argument must refer to %s, like %s, but this refers to %s.", attr.Name, article(kindNoun[kind]), example, what),
			Subject:  trav.SourceRange().Ptr(),
		}}
	}
	if !ok || len(trav) != 2 {
		return "", hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Invalid reference",
			Detail:   fmt.Sprintf("The %q argument must be a reference of the form %s.", attr.Name, example),
			Subject:  trav.SourceRange().Ptr(),
		}}
	}
	if !l.isDeclared(kind, name) {
		return "", hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Reference to undeclared " + kindNoun[kind],
			Detail:   fmt.Sprintf("%s named %q has not been declared.%s", capitalArticle(kindNoun[kind]), name, didYouMean(name, l.declaredNames(kind))),
			Subject:  trav.SourceRange().Ptr(),
		}}
	}
	return name, nil
}

// peekRef is decodeRef without diagnostics (used to pick a connector's schema
// before the block is decoded for real).
func (l *loader) peekRef(attr *hcl.Attribute, kind string) string {
	if attr == nil {
		return ""
	}
	trav, diags := hcl.AbsTraversalForExpr(attr.Expr)
	if diags.HasErrors() || trav.RootName() != kind || len(trav) != 2 {
		return ""
	}
	name, _, _ := attrStep(trav)
	if !l.isDeclared(kind, name) {
		return ""
	}
	return name
}

func firstOr(names []string, def string) string {
	if len(names) > 0 {
		return names[0]
	}
	return def
}

// addDep records that address from refers to address to.
func (l *loader) addDep(from, to string) {
	deps := l.cfg.Dependencies[from]
	if !slices.Contains(deps, to) {
		deps = append(deps, to)
		slices.Sort(deps)
		l.cfg.Dependencies[from] = deps
	}
}

// findCycles returns the strongly connected components of graph that form
// cycles (more than one node, or a node referring to itself), each as the
// cycle path starting and ending with the same node. Deterministic.
func findCycles(graph map[string][]string) [][]string {
	nodes := make([]string, 0, len(graph))
	for n := range graph {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	index, low := map[string]int{}, map[string]int{}
	onStack := map[string]bool{}
	var stack []string
	var sccs [][]string
	next := 0
	var strong func(v string)
	strong = func(v string) {
		index[v], low[v] = next, next
		next++
		stack = append(stack, v)
		onStack[v] = true
		for _, w := range graph[v] {
			if _, seen := index[w]; !seen {
				strong(w)
				low[v] = min(low[v], low[w])
			} else if onStack[w] {
				low[v] = min(low[v], index[w])
			}
		}
		if low[v] == index[v] {
			var scc []string
			for {
				w := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				onStack[w] = false
				scc = append(scc, w)
				if w == v {
					break
				}
			}
			sccs = append(sccs, scc)
		}
	}
	for _, n := range nodes {
		if _, seen := index[n]; !seen {
			strong(n)
		}
	}
	var out [][]string
	for _, scc := range sccs {
		if len(scc) == 1 && !slices.Contains(graph[scc[0]], scc[0]) {
			continue
		}
		slices.Sort(scc)
		in := map[string]bool{}
		for _, n := range scc {
			in[n] = true
		}
		out = append(out, cyclePath(graph, scc[0], in))
	}
	slices.SortFunc(out, func(a, b []string) int { return strings.Compare(a[0], b[0]) })
	return out
}

// cyclePath finds the shortest path from start back to start using only nodes
// in the component (breadth-first).
func cyclePath(graph map[string][]string, start string, in map[string]bool) []string {
	prev := map[string]string{}
	queue := []string{start}
	seen := map[string]bool{}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, w := range graph[cur] {
			if !in[w] {
				continue
			}
			if w == start {
				path := []string{start}
				for n := cur; n != start; n = prev[n] {
					path = append(path, n)
				}
				path = append(path, start)
				// path is start, ..., reversed; fix the middle order.
				slices.Reverse(path[1 : len(path)-1])
				return path
			}
			if !seen[w] {
				seen[w] = true
				prev[w] = cur
				queue = append(queue, w)
			}
		}
	}
	return []string{start, start}
}

// article prefixes a noun with "a" or "an".
func article(noun string) string {
	if noun != "" && strings.ContainsRune("aeiou", rune(noun[0])) {
		return "an " + noun
	}
	return "a " + noun
}

// capitalArticle is article for the start of a sentence.
func capitalArticle(noun string) string {
	a := article(noun)
	return strings.ToUpper(a[:1]) + a[1:]
}
