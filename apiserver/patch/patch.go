// Package patch applies JSON Patch (RFC 6902) and JSON Merge Patch (RFC 7396)
// documents to JSON values held as Go values: map[string]any, []any, string,
// bool, nil and numbers, as encoding/json produces them with or without
// UseNumber (json.Number or float64), or with int64 for integers.
//
// Both functions work on a deep copy: the document passed in is never
// modified, and a JSON Patch either applies completely or not at all.
//
// Values taken from a patch are decoded with UseNumber, so numbers inserted by
// a patch are json.Number (exact for any size). Numbers compare by value in
// the test operation whatever their Go representation: json.Number("1.0"),
// float64(1) and int64(1) are equal.
//
// Go values other than the ones listed above (a map[string]string, a struct)
// are treated as opaque leaves: they are copied by reference, cannot be
// traversed by a pointer, and equal only themselves (reflect.DeepEqual).
package patch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Error is a patch that cannot be applied, suitable as the detail of a 422
// response. Its message names the operation and its path:
//
//	operation 2 (replace /fields/sku): path does not exist
type Error struct {
	// Op is the 0-based index of the failing operation in the patch array (the
	// JSON Pointer "/2" to it in the patch document), or -1 when the patch as
	// a whole is at fault (not JSON, not an array, an invalid merge patch).
	Op int
	// Operation is the op member of the failing operation ("replace"), as
	// given; "" when it is missing or not a string.
	Operation string
	// Path is the operation's path member, From its from member (move and
	// copy), both as given in the patch.
	Path string
	From string
	// Msg says what is wrong.
	Msg string

	hasFrom   bool // the operation had a from member (From may be "", the root)
	malformed bool
}

// Malformed says whether the patch document itself is invalid (not JSON, not
// an array of operation objects, an unknown op, a missing or mistyped member,
// a pointer of bad syntax, a move into its own child): RFC 5789's 400 Bad Request. Other errors are a
// valid patch that does not apply to this document (a missing path, an index
// out of range, a failed test): 422 Unprocessable Content.
func (e *Error) Malformed() bool { return e.Op < 0 || e.malformed }

func (e *Error) Error() string {
	if e.Op < 0 {
		return e.Msg
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "operation %d", e.Op)
	if e.Operation != "" {
		sb.WriteString(" (")
		sb.WriteString(e.Operation)
		switch {
		case e.hasFrom && (e.Operation == "move" || e.Operation == "copy"):
			sb.WriteString(" from ")
			sb.WriteString(showPointer(e.From))
			sb.WriteString(" to ")
			sb.WriteString(showPointer(e.Path))
		default:
			sb.WriteString(" ")
			sb.WriteString(showPointer(e.Path))
		}
		sb.WriteString(")")
	}
	sb.WriteString(": ")
	sb.WriteString(e.Msg)
	return sb.String()
}

// showPointer prints a pointer bare when that is unambiguous, else quoted.
func showPointer(p string) string {
	if p == "" || strings.ContainsFunc(p, func(r rune) bool { return r <= ' ' || r == '"' || r == 0x7f }) {
		return fmt.Sprintf("%q", p)
	}
	return p
}

// maxCopyNodes bounds the values that copy operations may add beyond the size
// of the original document, so that a short patch copying a value into itself
// over and over cannot grow a document exponentially.
const maxCopyNodes = 1 << 20

// ApplyJSONPatch applies an RFC 6902 JSON Patch to doc and returns the result.
// doc is not modified. On error (an *Error) nothing is applied.
func ApplyJSONPatch(doc any, patch []byte) (any, error) {
	ops, err := parsePatch(patch)
	if err != nil {
		return nil, err
	}
	st := &state{doc: deepCopy(doc)}
	st.copyBudget = maxCopyNodes + countNodes(st.doc)
	for i := range ops {
		if err := st.apply(&ops[i]); err != nil {
			err.Op = i
			err.Operation = ops[i].op
			err.Path = ops[i].path
			err.From, err.hasFrom = ops[i].from, ops[i].hasFrom
			return nil, err
		}
	}
	return st.doc, nil
}

// ApplyMergePatch applies an RFC 7396 JSON Merge Patch to doc and returns the
// result: members of a patch object replace those of the document, recursively
// for objects; null members remove; a patch that is not an object replaces the
// whole document. doc is not modified. The only error is a patch that is not
// one JSON value (an *Error with Op -1).
func ApplyMergePatch(doc any, patch []byte) (any, error) {
	p, err := decodeValue(patch)
	if err != nil {
		return nil, &Error{Op: -1, Msg: "the merge patch is not valid JSON: " + err.Error()}
	}
	return mergePatch(deepCopy(doc), p), nil
}

// mergePatch is RFC 7396's MergePatch(Target, Patch). target is owned (a copy)
// and may be modified; patch values are fresh from decoding and may be used.
func mergePatch(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = make(map[string]any, len(p))
	}
	for k, v := range p {
		if v == nil {
			delete(t, k)
			continue
		}
		cur, exists := t[k]
		if !exists {
			cur = nil
		}
		t[k] = mergePatch(cur, v)
	}
	return t
}

// decodeValue decodes exactly one JSON value with UseNumber.
func decodeValue(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty")
		}
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("data after the JSON value")
	}
	return v, nil
}

// ---- parsing the patch ----

type operation struct {
	op, path, from string
	hasFrom        bool
	value          any
}

func parsePatch(patch []byte) ([]operation, *Error) {
	var raws []json.RawMessage
	trimmed := bytes.TrimSpace(patch)
	if len(trimmed) == 0 {
		return nil, &Error{Op: -1, Msg: "the patch is empty; send a JSON array of operations"}
	}
	if trimmed[0] != '[' {
		if !json.Valid(trimmed) {
			return nil, &Error{Op: -1, Msg: "the patch is not valid JSON"}
		}
		return nil, &Error{Op: -1, Msg: "the patch must be a JSON array of operations"}
	}
	if err := json.Unmarshal(trimmed, &raws); err != nil {
		return nil, &Error{Op: -1, Msg: "the patch is not valid JSON: " + err.Error()}
	}
	ops := make([]operation, len(raws))
	for i, raw := range raws {
		if err := parseOperation(raw, &ops[i]); err != nil {
			err.malformed = true
			err.Op = i
			err.Operation = ops[i].op
			err.Path = ops[i].path
			err.From, err.hasFrom = ops[i].from, ops[i].hasFrom
			return nil, err
		}
	}
	return ops, nil
}

// parseOperation reads one operation object, strictly: members appear once,
// op, path and from are strings, the members the op needs are present. Other
// members are ignored (RFC 6902 section 4).
func parseOperation(raw json.RawMessage, o *operation) *Error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return &Error{Msg: "an operation must be a JSON object"}
	}
	members := map[string]json.RawMessage{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return &Error{Msg: "malformed operation: " + err.Error()}
		}
		name, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return &Error{Msg: "malformed operation: " + err.Error()}
		}
		if _, dup := members[name]; dup {
			return &Error{Msg: fmt.Sprintf("member %q appears more than once", name)}
		}
		members[name] = v
	}
	str := func(name string) (string, bool, *Error) {
		v, ok := members[name]
		if !ok {
			return "", false, nil
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil || (len(v) > 0 && v[0] != '"') {
			return "", true, &Error{Msg: fmt.Sprintf("%q must be a string", name)}
		}
		return s, true, nil
	}
	op, hasOp, err := str("op")
	if err != nil {
		return err
	}
	o.op = op
	path, hasPath, err := str("path")
	o.path = path
	if !hasOp {
		return &Error{Msg: `missing "op"`}
	}
	switch op {
	case "add", "remove", "replace", "move", "copy", "test":
	default:
		return &Error{Msg: fmt.Sprintf("unknown op %q (want add, remove, replace, move, copy or test)", op)}
	}
	if err != nil {
		return err
	}
	if !hasPath {
		return &Error{Msg: `missing "path"`}
	}
	switch op {
	case "move", "copy":
		from, hasFrom, err := str("from")
		o.from, o.hasFrom = from, hasFrom
		if err != nil {
			return err
		}
		if !hasFrom {
			return &Error{Msg: `missing "from"`}
		}
	case "add", "replace", "test":
		v, ok := members["value"]
		if !ok {
			return &Error{Msg: `missing "value"`}
		}
		val, derr := decodeValue(v)
		if derr != nil {
			return &Error{Msg: `malformed "value": ` + derr.Error()}
		}
		o.value = val
	}
	return nil
}

// ---- applying ----

type state struct {
	doc        any
	copyBudget int
}

func (st *state) apply(o *operation) *Error {
	path, err := parsePointer(o.path)
	if err != nil {
		return &Error{Msg: "invalid path: " + err.Error(), malformed: true}
	}
	var from []string
	if o.op == "move" || o.op == "copy" {
		if from, err = parsePointer(o.from); err != nil {
			return &Error{Msg: "invalid from: " + err.Error(), malformed: true}
		}
	}
	switch o.op {
	case "add":
		return st.add(path, o.value)
	case "remove":
		_, e := st.remove(path)
		return e
	case "replace":
		if len(path) == 0 {
			st.doc = o.value
			return nil
		}
		return st.modify(path, func(parent any, tok string, at []string) (any, *Error) {
			switch p := parent.(type) {
			case map[string]any:
				if _, ok := p[tok]; !ok {
					return nil, &Error{Msg: "path does not exist"}
				}
				p[tok] = o.value
				return p, nil
			case []any:
				i, e := index(tok, len(p), false)
				if e != nil {
					return nil, e
				}
				p[i] = o.value
				return p, nil
			}
			return nil, notContainer(at, parent)
		})
	case "move":
		if isPrefix(from, path) {
			if len(from) == len(path) {
				// Moving a value onto itself changes nothing, but the value must exist.
				if _, e := get(st.doc, from, "from"); e != nil {
					return e
				}
				return nil
			}
			return &Error{Msg: fmt.Sprintf("cannot move %s into its own child %s", showPointer(o.from), showPointer(o.path)), malformed: true}
		}
		// Remove, then add: if the add fails the whole patch fails, and the
		// document (a copy) is dropped.
		v, e := st.remove(from)
		if e != nil {
			e.Msg = "from: " + e.Msg
			return e
		}
		return st.add(path, v)
	case "copy":
		v, e := get(st.doc, from, "from")
		if e != nil {
			return e
		}
		n := countNodes(v)
		if n > st.copyBudget {
			return &Error{Msg: fmt.Sprintf("copying would grow the document by more than %d values", maxCopyNodes)}
		}
		st.copyBudget -= n
		return st.add(path, deepCopy(v))
	case "test":
		v, e := get(st.doc, path, "path")
		if e != nil {
			return e
		}
		if !equal(v, o.value) {
			return &Error{Msg: fmt.Sprintf("test failed: the value is %s, not %s", brief(v), brief(o.value))}
		}
		return nil
	}
	return &Error{Msg: fmt.Sprintf("unknown op %q", o.op)}
}

func (st *state) add(path []string, value any) *Error {
	if len(path) == 0 {
		st.doc = value
		return nil
	}
	return st.modify(path, func(parent any, tok string, at []string) (any, *Error) {
		switch p := parent.(type) {
		case map[string]any:
			p[tok] = value
			return p, nil
		case []any:
			i, e := index(tok, len(p), true)
			if e != nil {
				return nil, e
			}
			p = append(p, nil)
			copy(p[i+1:], p[i:])
			p[i] = value
			return p, nil
		}
		return nil, notContainer(at, parent)
	})
}

// remove removes the value at path and returns it.
func (st *state) remove(path []string) (any, *Error) {
	if len(path) == 0 {
		return nil, &Error{Msg: "cannot remove the whole document"}
	}
	var removed any
	e := st.modify(path, func(parent any, tok string, at []string) (any, *Error) {
		switch p := parent.(type) {
		case map[string]any:
			v, ok := p[tok]
			if !ok {
				return nil, &Error{Msg: "path does not exist"}
			}
			removed = v
			delete(p, tok)
			return p, nil
		case []any:
			i, e := index(tok, len(p), false)
			if e != nil {
				return nil, e
			}
			removed = p[i]
			// A new slice: the old backing array may be shared with nothing
			// else (the document is our copy), but keep it simple and safe.
			out := make([]any, 0, len(p)-1)
			out = append(out, p[:i]...)
			out = append(out, p[i+1:]...)
			return out, nil
		}
		return nil, notContainer(at, parent)
	})
	return removed, e
}

// modify walks to the parent of path's last token and replaces the parent by
// what fn returns (arrays change length, so every level is written back).
// Changes happen only in fn, after the walk succeeded; fn's own errors leave
// the document as it was.
func (st *state) modify(path []string, fn func(parent any, tok string, at []string) (any, *Error)) *Error {
	var walk func(node any, i int) (any, *Error)
	walk = func(node any, i int) (any, *Error) {
		if i == len(path)-1 {
			return fn(node, path[i], path[:i])
		}
		tok := path[i]
		switch n := node.(type) {
		case map[string]any:
			child, ok := n[tok]
			if !ok {
				return nil, &Error{Msg: fmt.Sprintf("%s does not exist", showPointer(formatPointer(path[:i+1])))}
			}
			nc, e := walk(child, i+1)
			if e != nil {
				return nil, e
			}
			n[tok] = nc
			return n, nil
		case []any:
			j, e := index(tok, len(n), false)
			if e != nil {
				e.Msg = fmt.Sprintf("%s: %s", showPointer(formatPointer(path[:i+1])), e.Msg)
				return nil, e
			}
			nc, e := walk(n[j], i+1)
			if e != nil {
				return nil, e
			}
			n[j] = nc
			return n, nil
		}
		return nil, notContainer(path[:i], node)
	}
	nd, e := walk(st.doc, 0)
	if e != nil {
		return e
	}
	st.doc = nd
	return nil
}

// get returns the value at path; which ("path" or "from") names it in errors.
func get(doc any, path []string, which string) (any, *Error) {
	node := doc
	for i, tok := range path {
		switch n := node.(type) {
		case map[string]any:
			v, ok := n[tok]
			if !ok {
				return nil, &Error{Msg: missing(which, path, i)}
			}
			node = v
		case []any:
			j, e := index(tok, len(n), false)
			if e != nil {
				if i < len(path)-1 {
					e.Msg = fmt.Sprintf("%s: %s", showPointer(formatPointer(path[:i+1])), e.Msg)
				}
				if which == "from" {
					e.Msg = "from: " + e.Msg
				}
				return nil, e
			}
			node = n[j]
		default:
			e := notContainer(path[:i], node)
			if which == "from" {
				e.Msg = "from: " + e.Msg
			}
			return nil, e
		}
	}
	return node, nil
}

func missing(which string, path []string, i int) string {
	if i == len(path)-1 {
		return which + " does not exist"
	}
	return fmt.Sprintf("%s does not exist: %s does not", which, showPointer(formatPointer(path[:i+1])))
}

// notContainer reports v, at the pointer with tokens at, as not traversable.
func notContainer(at []string, v any) *Error {
	where := "the document"
	if len(at) > 0 {
		where = showPointer(formatPointer(at))
	}
	return &Error{Msg: fmt.Sprintf("%s is %s, not an object or array", where, kind(v))}
}

func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	}
	if _, ok := numberString(v); ok {
		return "a number"
	}
	return fmt.Sprintf("a %T", v)
}

// brief renders a value for an error message, shortened.
func brief(v any) string {
	b, err := json.Marshal(v)
	s := string(b)
	if err != nil {
		s = fmt.Sprintf("%v", v)
	}
	const limit = 80
	if len(s) > limit {
		cut := limit
		for cut > 0 && s[cut]&0xC0 == 0x80 { // do not split a UTF-8 sequence
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}
