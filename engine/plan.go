package engine

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/ferryhq/ferry/lang"
)

// PlanFormatVersion is the format_version of a plan's JSON form. It changes in
// its major part when a field is removed or changes meaning.
const PlanFormatVersion = "1.0"

// Plan actions, of resources and of attributes.
const (
	ActionCreate = "create"
	ActionUpdate = "update"
	ActionDelete = "delete"
)

// sensitiveText stands in for the value of a sensitive variable.
const sensitiveText = "(sensitive value)"

// Plan is the difference between an applied configuration (a revision) and a
// new one: what `ferry plan` shows and `POST /v1/config/plan` returns.
//
// Resources are compared by their attributes as written (lang.BlocksJSON):
// literal values, expr strings (surrounding whitespace ignored), references,
// secret("name") calls and other expressions by their canonical source. So
// formatting and comments are never changes, and no secret value can appear:
// the plan is computed from the files, never from resolved values.
type Plan struct {
	FormatVersion string `json:"format_version"`
	// PriorRevision is the revision the plan was computed against (0: none).
	// Diff leaves it 0; the caller sets it, and Hash with PlanHash.
	PriorRevision int              `json:"prior_revision"`
	Changes       []ResourceChange `json:"resource_changes"`
	Summary       PlanSummary      `json:"summary"`
	Hash          string           `json:"plan_hash"`
}

// PlanSummary counts resources by action.
type PlanSummary struct {
	Add     int `json:"add"`
	Change  int `json:"change"`
	Destroy int `json:"destroy"`
}

// ResourceChange is one resource added, changed or removed.
type ResourceChange struct {
	// Address is "connection.shop", "var.x", "local.y" or "ferry".
	Address string `json:"address"`
	// Kind is the block type: ferry, variable, local, table, connection,
	// mapping, integration, schedule or test.
	Kind string `json:"kind"`
	Name string `json:"name"`
	// Action is create, update or delete.
	Action string `json:"action"`
	// Attributes are the attribute-level changes, by path; for a created or
	// deleted resource every attribute it has.
	Attributes []AttributeChange `json:"attributes"`
}

// AttributeChange is the change of one attribute. Nested blocks and objects
// are flattened into paths like "source.connection", "retry.max_attempts",
// "fields.sku" (keys that are not identifiers as fields["a b"]).
//
// Before and After hold the values as written, in the representation of
// lang.BlockJSON (and the REST API): JSON values for literals, {"secret": "name"}
// for secret("name"), {"hcl": "var.x"} for other expressions. The text form
// shows them as secret("name") and var.x. They are absent for a sensitive
// variable's value.
type AttributeChange struct {
	Path   string `json:"path"`
	Action string `json:"action"`
	Before any    `json:"before,omitempty"`
	After  any    `json:"after,omitempty"`
	// Sensitive is set for secrets (whose names only are shown) and the values
	// of variables declared sensitive (not shown at all).
	Sensitive bool `json:"sensitive,omitempty"`
}

// HasChanges reports whether applying the plan would change anything.
func (p *Plan) HasChanges() bool { return p != nil && len(p.Changes) > 0 }

// PlanHash binds a plan to exactly the files it was computed from and the
// revision they were compared with: sha256 over the revision and every file
// (name and content, names sorted), hex-encoded. Apply compares it to refuse a
// plan that no longer describes what would happen.
func PlanHash(priorRevision int, files map[string][]byte) string {
	h := sha256.New()
	io.WriteString(h, "ferry plan v1\n")
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(int64(priorRevision)))
	h.Write(n[:])
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		for _, part := range [][]byte{[]byte(name), files[name]} {
			binary.BigEndian.PutUint64(n[:], uint64(len(part)))
			h.Write(n[:])
			h.Write(part)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// kindOrder orders resources in a plan: what others refer to first.
var kindOrder = []string{"ferry", "var", "local", "table", "connection", "mapping", "integration", "schedule", "test"}

// blockKind maps an address's kind to its block type.
var blockKind = map[string]string{"var": "variable"}

func splitAddress(addr string) (kind, name string) {
	kind, name, _ = strings.Cut(addr, ".")
	return kind, name
}

func addressLess(a, b string) int {
	ka, na := splitAddress(a)
	kb, nb := splitAddress(b)
	ia, ib := slices.Index(kindOrder, ka), slices.Index(kindOrder, kb)
	if ia != ib {
		return ia - ib
	}
	return strings.Compare(na, nb)
}

// Diff computes the plan that turns before into after. before (the applied
// revision) may be nil for an empty configuration; so may after. Changes are
// ordered by kind (ferry, var, local, table, connection, mapping, integration,
// schedule, test), then name; attributes by path.
func Diff(before, after *lang.Config) *Plan {
	bv, av := lang.BlocksJSON(before), lang.BlocksJSON(after)
	addrs := make([]string, 0, len(bv)+len(av))
	for a := range bv {
		addrs = append(addrs, a)
	}
	for a := range av {
		if _, dup := bv[a]; !dup {
			addrs = append(addrs, a)
		}
	}
	slices.SortFunc(addrs, addressLess)

	p := &Plan{FormatVersion: PlanFormatVersion, Changes: []ResourceChange{}}
	for _, addr := range addrs {
		kind, name := splitAddress(addr)
		sensitive := isSensitiveVar(before, kind, name) || isSensitiveVar(after, kind, name)
		b, inBefore := bv[addr]
		a, inAfter := av[addr]
		bf, af := flattenBlock(kind, b), flattenBlock(kind, a)
		rc := ResourceChange{Address: addr, Kind: kind, Name: name}
		if k, ok := blockKind[kind]; ok {
			rc.Kind = k
		}
		switch {
		case !inBefore:
			rc.Action = ActionCreate
			p.Summary.Add++
		case !inAfter:
			rc.Action = ActionDelete
			p.Summary.Destroy++
		default:
			rc.Action = ActionUpdate
		}
		paths := make([]string, 0, len(bf)+len(af))
		for k := range bf {
			paths = append(paths, k)
		}
		for k := range af {
			if _, dup := bf[k]; !dup {
				paths = append(paths, k)
			}
		}
		sort.Strings(paths)
		for _, path := range paths {
			bval, hadB := bf[path]
			aval, hasA := af[path]
			ac := AttributeChange{Path: path}
			switch {
			case !hadB:
				ac.Action = ActionCreate
			case !hasA:
				ac.Action = ActionDelete
			case reflect.DeepEqual(bval, aval):
				continue
			default:
				ac.Action = ActionUpdate
			}
			masked := sensitive && (path == "default" || strings.HasPrefix(path, "default.") || strings.HasPrefix(path, "default["))
			if masked {
				ac.Sensitive = true
			} else {
				if hadB {
					ac.Before = bval
				}
				if hasA {
					ac.After = aval
				}
				ac.Sensitive = mentionsSecret(bval) || mentionsSecret(aval)
			}
			rc.Attributes = append(rc.Attributes, ac)
		}
		if rc.Action == ActionUpdate {
			if len(rc.Attributes) == 0 {
				continue
			}
			p.Summary.Change++
		}
		if rc.Attributes == nil {
			rc.Attributes = []AttributeChange{}
		}
		p.Changes = append(p.Changes, rc)
	}
	return p
}

func isSensitiveVar(cfg *lang.Config, kind, name string) bool {
	if cfg == nil || kind != "var" {
		return false
	}
	v := cfg.Variables[name]
	return v != nil && v.Sensitive
}

// flattenBlock turns a block's JSON view into path → leaf value. Objects are
// flattened (markers and empty objects are leaves); lists are leaves. A
// mapping's expr strings are compared without surrounding whitespace, and its
// fields by their output path whether written nested or dotted.
func flattenBlock(kind string, view map[string]any) map[string]any {
	out := map[string]any{}
	if view == nil {
		return out
	}
	for k, v := range view {
		switch {
		case kind == "mapping" && (k == "key" || k == "filter"):
			out[k] = trimExpr(v)
		case kind == "mapping" && k == "fields":
			if m, ok := v.(map[string]any); ok && !isMarkerValue(m) && len(m) > 0 {
				flattenFields([]string{"fields"}, m, out)
				continue
			}
			out[k] = v
		case kind == "integration" && k == "target":
			// target.path is an expr string unless the connector owns it; either
			// way surrounding whitespace is not worth a change.
			if m, ok := v.(map[string]any); ok && !isMarkerValue(m) {
				m2 := make(map[string]any, len(m))
				for tk, tv := range m {
					m2[tk] = tv
				}
				if pv, has := m2["path"]; has {
					m2["path"] = trimExpr(pv)
				}
				flatten(k, m2, out)
				continue
			}
			flatten(k, v, out)
		default:
			flatten(pathKey("", k), v, out)
		}
	}
	return out
}

func trimExpr(v any) any {
	if s, ok := v.(string); ok {
		return strings.TrimSpace(s)
	}
	return v
}

func flattenFields(prefix []string, m map[string]any, out map[string]any) {
	for k, v := range m {
		path := append(slices.Clone(prefix), strings.Split(k, ".")...)
		if sub, ok := v.(map[string]any); ok && !isMarkerValue(sub) && len(sub) > 0 {
			flattenFields(path, sub, out)
			continue
		}
		key := ""
		for _, seg := range path {
			key = pathKey(key, seg)
		}
		out[key] = trimExpr(v)
	}
}

func flatten(prefix string, v any, out map[string]any) {
	m, ok := v.(map[string]any)
	if !ok || len(m) == 0 || isMarkerValue(m) {
		out[prefix] = v
		return
	}
	for k, sub := range m {
		flatten(pathKey(prefix, k), sub, out)
	}
}

// pathKey appends key to a path: .key for identifiers, ["key"] otherwise.
func pathKey(prefix, key string) string {
	if hclsyntax.ValidIdentifier(key) {
		if prefix == "" {
			return key
		}
		return prefix + "." + key
	}
	return prefix + "[" + strconv.Quote(key) + "]"
}

func isMarkerValue(m map[string]any) bool {
	_, _, ok := marker(m)
	return ok
}

func marker(v any) (key, val string, ok bool) {
	m, isMap := v.(map[string]any)
	if !isMap || len(m) != 1 {
		return "", "", false
	}
	for k, x := range m {
		s, isStr := x.(string)
		if isStr && (k == lang.SecretKey || k == lang.HCLKey) {
			return k, s, true
		}
	}
	return "", "", false
}

func secretCall(name string) string { return "secret(" + strconv.Quote(name) + ")" }

// mentionsSecret reports whether a value holds a secret reference.
func mentionsSecret(v any) bool {
	switch x := v.(type) {
	case map[string]any:
		if k, s, ok := marker(x); ok {
			return k == lang.SecretKey || strings.Contains(s, "secret(")
		}
		for _, e := range x {
			if mentionsSecret(e) {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if mentionsSecret(e) {
				return true
			}
		}
	}
	return false
}

// WriteText writes the plan the way `ferry plan` shows it: a line per resource
// ("  + connection.shop", "  ~ mapping.x", "  - integration.y"), under created
// and changed resources a line per attribute ("      + type: \"file\"",
// "      ~ fields.sku: \"a\" → \"b\"", "      - unset: [\"tmp\"]"), a blank line
// after each resource, then "Plan: X to add, Y to change, Z to destroy.". A plan
// without changes is "No changes. The configuration matches revision N.".
// Secrets show as secret("name"), other expressions as written (var.x), and
// values of sensitive variables as (sensitive value).
func (p *Plan) WriteText(w io.Writer) {
	var sb strings.Builder
	if !p.HasChanges() {
		sb.WriteString("No changes.")
		if p != nil && p.PriorRevision > 0 {
			fmt.Fprintf(&sb, " The configuration matches revision %d.", p.PriorRevision)
		}
		sb.WriteString("\n")
		io.WriteString(w, sb.String())
		return
	}
	for _, rc := range p.Changes {
		fmt.Fprintf(&sb, "  %s %s\n", symbol(rc.Action), rc.Address)
		if rc.Action != ActionDelete {
			for _, ac := range rc.Attributes {
				fmt.Fprintf(&sb, "      %s %s: ", symbol(ac.Action), ac.Path)
				switch ac.Action {
				case ActionCreate:
					sb.WriteString(textValue(ac.After, ac.Sensitive))
				case ActionDelete:
					sb.WriteString(textValue(ac.Before, ac.Sensitive))
				default:
					sb.WriteString(textValue(ac.Before, ac.Sensitive) + " → " + textValue(ac.After, ac.Sensitive))
				}
				sb.WriteString("\n")
			}
		}
		sb.WriteString("\n")
	}
	fmt.Fprintf(&sb, "Plan: %d to add, %d to change, %d to destroy.\n", p.Summary.Add, p.Summary.Change, p.Summary.Destroy)
	io.WriteString(w, sb.String())
}

func symbol(action string) string {
	switch action {
	case ActionCreate:
		return "+"
	case ActionDelete:
		return "-"
	}
	return "~"
}

// textValue renders a plan value in HCL-like notation on one line (multi-line
// expressions keep their lines, indented under the attribute).
func textValue(v any, sensitive bool) string {
	if v == nil && sensitive {
		return sensitiveText
	}
	s := renderValue(v)
	return strings.ReplaceAll(s, "\n", "\n        ")
}

func renderValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return strconv.Quote(x)
	case bool:
		return strconv.FormatBool(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case int:
		return strconv.Itoa(x)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = renderValue(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case map[string]any:
		if k, s, ok := marker(x); ok {
			if k == lang.SecretKey {
				return secretCall(s)
			}
			return s
		}
		if len(x) == 0 {
			return "{}"
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			name := k
			if !hclsyntax.ValidIdentifier(k) {
				name = strconv.Quote(k)
			}
			parts[i] = name + " = " + renderValue(x[k])
		}
		return "{ " + strings.Join(parts, ", ") + " }"
	}
	return fmt.Sprint(v)
}
