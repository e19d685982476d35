package lang

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	_ "time/tzdata" // schedules' time zones work on hosts without a zoneinfo database
)

// LoadOptions are the inputs of a load besides the files.
//
// An input variable's value comes from, lowest precedence first: its default,
// the -var-files (in order; later files win), the environment variable
// FERRY_VAR_<name>, and -var flags.
type LoadOptions struct {
	// Vars are -var name=value flags. Values of string, number and bool (and
	// untyped) variables are taken literally; other types are parsed as HCL
	// expressions, e.g. -var 'regions=["eu","us"]'.
	Vars map[string]string
	// VarFiles are -var-file paths (*.hcl or *.hcl.json with top-level attributes).
	VarFiles []string
	// Environ is the environment in os.Environ() form. env() reads it and
	// FERRY_VAR_<name> entries set variables. Nil means an empty environment.
	Environ []string
}

// IsConfigFile reports whether a file name is a configuration file ferry loads
// from a directory: *.hcl or *.hcl.json, not hidden, not an editor backup.
func IsConfigFile(name string) bool {
	base := filepath.Base(name)
	if strings.HasPrefix(base, ".") || strings.HasPrefix(base, "#") || strings.HasSuffix(base, "~") {
		return false
	}
	return strings.HasSuffix(base, ".hcl") || strings.HasSuffix(base, ".hcl.json")
}

// Load loads every configuration file of dir (not recursively, in name order).
// It always returns a non-nil Config whose Files hold every parsed file, so that
// diagnostics can be rendered with source snippets even when loading failed.
func Load(dir string, opts LoadOptions) (*Config, hcl.Diagnostics) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return emptyConfig(dir), hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Cannot read configuration directory",
			Detail:   err.Error(),
		}}
	}
	var paths []string
	for _, e := range entries {
		if !e.IsDir() && IsConfigFile(e.Name()) {
			paths = append(paths, filepath.Join(dir, e.Name()))
		}
	}
	if len(paths) == 0 {
		return emptyConfig(dir), hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "No configuration files",
			Detail:   fmt.Sprintf("The directory %s contains no *.hcl or *.hcl.json files.", dir),
		}}
	}
	return LoadFiles(dir, paths, opts)
}

// LoadFiles loads the given files as one configuration. dir is the directory
// relative paths (file()) resolve against.
func LoadFiles(dir string, paths []string, opts LoadOptions) (*Config, hcl.Diagnostics) {
	sources := make(map[string][]byte, len(paths))
	var diags hcl.Diagnostics
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Cannot read configuration file",
				Detail:   err.Error(),
			})
			continue
		}
		sources[p] = b
	}
	cfg, more := LoadSources(dir, sources, opts)
	return cfg, append(diags, more...)
}

// LoadSources loads a configuration from file contents keyed by file name (the
// name is used in diagnostics; a name ending in .json is parsed as JSON syntax).
// The server uses it for a revision's files, which do not live on disk.
func LoadSources(dir string, sources map[string][]byte, opts LoadOptions) (*Config, hcl.Diagnostics) {
	l := &loader{
		dir:    dir,
		opts:   opts,
		parser: hclparse.NewParser(),
		cfg:    emptyConfig(dir),
		names:  map[string][]string{},
	}
	l.load(sources)
	l.cfg.Files = l.parser.Files()
	sortDiagnostics(l.diags)
	return l.cfg, l.diags
}

// sortDiagnostics puts diagnostics in source order. hcl reports some of them
// (unsupported arguments, for one) by walking a map, so without this the same
// configuration could list its errors in a different order on every load.
// Diagnostics without a position come first, in the order they were made.
func sortDiagnostics(diags hcl.Diagnostics) {
	slices.SortStableFunc(diags, func(a, b *hcl.Diagnostic) int {
		switch {
		case a.Subject == nil || b.Subject == nil:
			return cmp.Compare(boolInt(a.Subject != nil), boolInt(b.Subject != nil))
		case a.Subject.Filename != b.Subject.Filename:
			return strings.Compare(a.Subject.Filename, b.Subject.Filename)
		}
		return cmp.Or(
			cmp.Compare(a.Subject.Start.Byte, b.Subject.Start.Byte),
			cmp.Compare(a.Subject.End.Byte, b.Subject.End.Byte),
			strings.Compare(a.Summary, b.Summary),
			strings.Compare(a.Detail, b.Detail),
		)
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func emptyConfig(dir string) *Config {
	return &Config{
		Dir:          dir,
		Files:        map[string]*hcl.File{},
		Variables:    map[string]*Variable{},
		Locals:       map[string]*Local{},
		Tables:       map[string]*Table{},
		Connections:  map[string]*Connection{},
		Mappings:     map[string]*Mapping{},
		Integrations: map[string]*Integration{},
		Schedules:    map[string]*Schedule{},
		Tests:        map[string]*Test{},
		Dependencies: map[string][]string{},
	}
}

type loader struct {
	dir    string
	opts   LoadOptions
	parser *hclparse.Parser
	cfg    *Config
	diags  hcl.Diagnostics
	ctx    *hcl.EvalContext
	// names are the declared names per kind, known before any block is decoded
	// so that references resolve regardless of declaration order.
	names map[string][]string
}

var rootSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "ferry"},
		{Type: "variable", LabelNames: []string{"name"}},
		{Type: "locals"},
		{Type: "table", LabelNames: []string{"name"}},
		{Type: "connection", LabelNames: []string{"name"}},
		{Type: "mapping", LabelNames: []string{"name"}},
		{Type: "integration", LabelNames: []string{"name"}},
		{Type: "schedule", LabelNames: []string{"name"}},
		{Type: "test", LabelNames: []string{"name"}},
	},
}

var blockKind = map[string]string{
	"variable":    kindVariable,
	"table":       kindTable,
	"connection":  kindConnection,
	"mapping":     kindMapping,
	"integration": kindIntegration,
	"schedule":    kindSchedule,
	"test":        kindTest,
}

func (l *loader) load(sources map[string][]byte) {
	names := make([]string, 0, len(sources))
	for n := range sources {
		names = append(names, n)
	}
	sort.Strings(names)

	blocks := map[string][]*hcl.Block{}
	for _, name := range names {
		var f *hcl.File
		var diags hcl.Diagnostics
		if strings.HasSuffix(name, ".json") {
			f, diags = l.parser.ParseJSON(sources[name], name)
		} else {
			f, diags = l.parser.ParseHCL(sources[name], name)
		}
		l.diags = append(l.diags, diags...)
		if f == nil || f.Body == nil {
			continue
		}
		content, cdiags := f.Body.Content(rootSchema)
		l.diags = append(l.diags, cdiags...)
		for _, b := range content.Blocks {
			blocks[b.Type] = append(blocks[b.Type], b)
		}
	}

	// Declare every name first: duplicates and invalid names are reported once,
	// here, and only the first declaration is decoded.
	first := map[string]map[string]*hcl.Block{}
	for _, typ := range []string{"variable", "table", "connection", "mapping", "integration", "schedule", "test"} {
		kind := blockKind[typ]
		first[kind] = map[string]*hcl.Block{}
		var kept []*hcl.Block
		for _, b := range blocks[typ] {
			name := b.Labels[0]
			if !hclsyntax.ValidIdentifier(name) {
				l.diags = append(l.diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Invalid " + typ + " name",
					Detail:   fmt.Sprintf("%q is not a valid name: a name must start with a letter or underscore and may contain only letters, digits, underscores and dashes.", name),
					Subject:  b.LabelRanges[0].Ptr(),
				})
				continue
			}
			if prev, dup := first[kind][name]; dup {
				l.diags = append(l.diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Duplicate " + typ,
					Detail:   fmt.Sprintf("A %s named %q was already declared at %s. Names of %ss must be unique.", typ, name, prev.DefRange.String(), typ),
					Subject:  b.DefRange.Ptr(),
					Context:  hcl.RangeBetween(b.DefRange, b.Body.MissingItemRange()).Ptr(),
				})
				continue
			}
			first[kind][name] = b
			kept = append(kept, b)
			l.names[kind] = append(l.names[kind], name)
		}
		blocks[typ] = kept
	}
	for _, ns := range l.names {
		slices.Sort(ns)
	}

	// ferry
	for i, b := range blocks["ferry"] {
		if i > 0 {
			l.diags = append(l.diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Duplicate ferry block",
				Detail:   fmt.Sprintf("A configuration has at most one ferry block; the first is at %s.", blocks["ferry"][0].DefRange.String()),
				Subject:  b.DefRange.Ptr(),
			})
			continue
		}
		f, diags := l.decodeFerryBlock(b)
		l.diags = append(l.diags, diags...)
		l.cfg.Ferry = f
	}

	// Variables, then locals: they make up the evaluation context of everything else.
	for _, b := range blocks["variable"] {
		v, diags := l.decodeVariableBlock(b)
		l.diags = append(l.diags, diags...)
		l.cfg.Variables[v.Name] = v
	}
	l.assignVariableValues()
	l.ctx = &hcl.EvalContext{
		Variables: map[string]cty.Value{
			"var":   l.variablesObject(),
			"local": cty.EmptyObjectVal,
		},
		Functions: Functions(l.dir, l.opts.Environ),
	}
	l.decodeLocals(blocks["locals"])

	for _, b := range blocks["table"] {
		t, diags := l.decodeTableBlock(b)
		l.diags = append(l.diags, diags...)
		l.cfg.Tables[t.Name] = t
	}
	for _, b := range blocks["connection"] {
		c, diags := l.decodeConnectionBlock(b)
		l.diags = append(l.diags, diags...)
		l.cfg.Connections[c.Name] = c
	}
	for _, b := range blocks["mapping"] {
		m, diags := l.decodeMappingBlock(b)
		l.diags = append(l.diags, diags...)
		l.cfg.Mappings[m.Name] = m
	}
	for _, b := range blocks["integration"] {
		in, diags := l.decodeIntegrationBlock(b)
		l.diags = append(l.diags, diags...)
		l.cfg.Integrations[in.Name] = in
	}
	for _, b := range blocks["schedule"] {
		s, diags := l.decodeScheduleBlock(b)
		l.diags = append(l.diags, diags...)
		l.cfg.Schedules[s.Name] = s
	}
	for _, b := range blocks["test"] {
		t, diags := l.decodeTestBlock(b)
		l.diags = append(l.diags, diags...)
		l.cfg.Tests[t.Name] = t
	}

	// Cycles among locals were reported when ordering them; this is the safety
	// net for the rest of the graph (resource kinds refer strictly "downwards",
	// so it finds nothing in a valid model).
	graph := map[string][]string{}
	for from, tos := range l.cfg.Dependencies {
		if strings.HasPrefix(from, "local.") {
			continue
		}
		graph[from] = tos
	}
	for _, cyc := range findCycles(graph) {
		l.diags = append(l.diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Cycle in references",
			Detail:   "These references form a cycle: " + strings.Join(cyc, " → ") + ".",
		})
	}
}

// Tenant is the tenant named in the ferry block ("" when there is none).
func (c *Config) Tenant() string {
	if c == nil || c.Ferry == nil {
		return ""
	}
	return c.Ferry.Tenant
}

// Addresses lists every declared resource as "kind.name" (var, local, table,
// connection, mapping, integration, schedule, test), by kind then name.
func (c *Config) Addresses() []string {
	if c == nil {
		return nil
	}
	var out []string
	add := func(kind string, names []string) {
		slices.Sort(names)
		for _, n := range names {
			out = append(out, kind+"."+n)
		}
	}
	add(kindVariable, mapKeys(c.Variables))
	add(kindLocal, mapKeys(c.Locals))
	add(kindTable, mapKeys(c.Tables))
	add(kindConnection, mapKeys(c.Connections))
	add(kindMapping, mapKeys(c.Mappings))
	add(kindIntegration, mapKeys(c.Integrations))
	add(kindSchedule, mapKeys(c.Schedules))
	add(kindTest, mapKeys(c.Tests))
	return out
}

// IntegrationNames, ScheduleNames, TestNames etc. list names in sorted order.
func (c *Config) IntegrationNames() []string { return sortedKeys(c.Integrations) }
func (c *Config) ConnectionNames() []string  { return sortedKeys(c.Connections) }
func (c *Config) MappingNames() []string     { return sortedKeys(c.Mappings) }
func (c *Config) ScheduleNames() []string    { return sortedKeys(c.Schedules) }
func (c *Config) TestNames() []string        { return sortedKeys(c.Tests) }

// Dependents returns the addresses that refer, directly or indirectly, to addr
// (e.g. the integrations and schedules affected by a change of mapping.x), sorted.
func (c *Config) Dependents(addr string) []string {
	rev := map[string][]string{}
	for from, tos := range c.Dependencies {
		for _, to := range tos {
			rev[to] = append(rev[to], from)
		}
	}
	seen := map[string]bool{}
	var walk func(string)
	walk = func(a string) {
		for _, f := range rev[a] {
			if !seen[f] {
				seen[f] = true
				walk(f)
			}
		}
	}
	walk(addr)
	delete(seen, addr)
	return sortedKeys(seen)
}

func mapKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := mapKeys(m)
	slices.Sort(out)
	return out
}
