package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/zclconf/go-cty/cty"
)

// readRecords reads records: a path, or a map from topic to path ("*": the
// default).
func (e *Endpoint) readRecords(a *attrReader) error {
	v, ok := a.attrs["records"]
	if !ok || v.IsNull() {
		return nil
	}
	v, _ = v.UnmarkDeep()
	if !v.IsWhollyKnown() {
		return fmt.Errorf("%w: records is not known", ErrConfig)
	}
	t := v.Type()
	switch {
	case t == cty.String:
		p, err := ParsePath(v.AsString())
		if err != nil {
			return err
		}
		e.records = p
		return nil
	case t.IsObjectType() || t.IsMapType():
		e.topicRecords = map[string][]string{}
		for it := v.ElementIterator(); it.Next(); {
			k, pv := it.Element()
			if pv.IsNull() || pv.Type() != cty.String {
				return fmt.Errorf("%w: records[%q] must be a string, a dotted path such as \"data.items\"", ErrConfig, k.AsString())
			}
			p, err := ParsePath(pv.AsString())
			if err != nil {
				return err
			}
			if k.AsString() == "*" {
				e.records = p
			} else {
				e.topicRecords[k.AsString()] = p
			}
		}
		return nil
	}
	return fmt.Errorf("%w: records must be a dotted path such as \"data.items\", or a map from topic to path", ErrConfig)
}

// ParsePath splits a dotted records path; "" is the body itself (nil).
func ParsePath(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	segs := strings.Split(s, ".")
	for _, seg := range segs {
		if seg == "" {
			return nil, fmt.Errorf("%w: records = %q has an empty segment; write a dotted path such as \"data.items\"", ErrConfig, s)
		}
	}
	return segs, nil
}

// RecordsPath is the records path used for topic (nil: the body).
func (e *Endpoint) RecordsPath(topic string) []string {
	if p, ok := e.topicRecords[topic]; ok {
		return p
	}
	return e.records
}

// RecordTopics lists the topics with their own records path, sorted.
func (e *Endpoint) RecordTopics() []string {
	out := make([]string, 0, len(e.topicRecords))
	for t := range e.topicRecords {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Records splits a delivery's body into records with the records path of
// topic (see Extract).
func (e *Endpoint) Records(topic string, body []byte) ([]json.RawMessage, error) {
	return Extract(body, e.RecordsPath(topic))
}

// Extract returns the records of a JSON body: at path (object keys, the
// first of duplicate keys wins), an array of objects is the records, an
// object is one record and null is none. Numbers are never decoded, so
// 64-bit ids stay exact: each record is its bytes in body, unchanged (the
// slices share body's memory). Errors wrap ErrInvalidPayload.
//
// The body is validated (exactly as json.Valid would) in the same pass that
// finds the records: validating it first, then walking it again, was a
// tenth of a webhook's cost.
func Extract(body []byte, path []string) ([]json.RawMessage, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, fmt.Errorf("%w: the body is empty; send a JSON object or an array of objects", ErrInvalidPayload)
	}
	s := &scanner{b: body}
	recs, err, ok := s.extract(path)
	if !ok {
		return nil, malformed(body)
	}
	if err != nil {
		// The walk stopped where the path failed; malformed JSON after
		// that point is the error to report, as it would have been first.
		if !Valid(body) {
			return nil, malformed(body)
		}
		return nil, err
	}
	return recs, nil
}

// extract walks the body to path and returns its records; ok is false when
// the body is not valid JSON (err is then nil), err a path that does not
// fit the body (the rest of the body is then not read).
func (s *scanner) extract(path []string) (recs []json.RawMessage, err error, ok bool) {
	s.ws()
	for i, seg := range path {
		where := "the body"
		if i > 0 {
			where = fmt.Sprintf("%q", strings.Join(path[:i], "."))
		}
		if s.peek() != '{' {
			return nil, fmt.Errorf("%w: %s is %s, not an object, so records = %q cannot be followed", ErrInvalidPayload, where, s.kind(), strings.Join(path, ".")), true
		}
		found, ok := s.findKey(seg)
		if !ok {
			return nil, nil, false
		}
		if !found {
			return nil, fmt.Errorf("%w: %s has no key %q, so records = %q finds nothing", ErrInvalidPayload, where, seg, strings.Join(path, ".")), true
		}
	}
	at := "the body"
	if len(path) > 0 {
		at = fmt.Sprintf("records = %q", strings.Join(path, "."))
	}
	switch s.peek() {
	case '{':
		start := s.i
		if !s.object() {
			return nil, nil, false
		}
		recs = []json.RawMessage{json.RawMessage(s.b[start:s.i])}
	case 'n':
		if !s.lit("null") {
			return nil, nil, false
		}
		recs = []json.RawMessage{}
	case '[':
		if !s.enter() {
			return nil, nil, false
		}
		recs = []json.RawMessage{}
		s.ws()
		if s.peek() == ']' {
			s.leave()
			break
		}
		for n := 1; ; n++ {
			if s.peek() != '{' {
				return nil, fmt.Errorf("%w: record %d of %s is %s, not an object", ErrInvalidPayload, n, at, s.kind()), true
			}
			start := s.i
			if !s.object() {
				return nil, nil, false
			}
			recs = append(recs, json.RawMessage(s.b[start:s.i]))
			s.ws()
			if s.peek() == ']' {
				s.leave()
				break
			}
			if s.peek() != ',' {
				return nil, nil, false
			}
			s.i++
			s.ws()
		}
	default:
		return nil, fmt.Errorf("%w: %s is %s; it must be an object (one record) or an array of objects", ErrInvalidPayload, at, s.kind()), true
	}
	// The rest of the objects the path entered, innermost first, and
	// nothing but white space after the body.
	for range path {
		if !s.members() {
			return nil, nil, false
		}
	}
	s.ws()
	return recs, nil, s.i == len(s.b)
}

// Valid reports whether body is one JSON value, as json.Valid does (same
// grammar, same nesting limit), faster.
func Valid(body []byte) bool {
	s := &scanner{b: body}
	s.ws()
	if !s.value() {
		return false
	}
	s.ws()
	return s.i == len(body)
}

// malformed is the error of a body that is not valid JSON, with where
// encoding/json finds the problem.
func malformed(body []byte) error {
	var raw json.RawMessage
	err := json.Unmarshal(body, &raw)
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("%w: malformed JSON at byte %d: %s", ErrInvalidPayload, se.Offset, se.Error())
	}
	if err != nil {
		return fmt.Errorf("%w: malformed JSON: %s", ErrInvalidPayload, err.Error())
	}
	return fmt.Errorf("%w: malformed JSON", ErrInvalidPayload)
}

// maxDepth is encoding/json's nesting limit: a body json.Valid refuses is
// refused here too, and the recursion stays bounded.
const maxDepth = 10000

// scanner validates JSON while it walks it. Each method reads one element
// at s.i and returns false on a syntax error; it never reads beyond s.b.
type scanner struct {
	b     []byte
	i     int
	depth int
}

func (s *scanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) kind() string {
	switch s.peek() {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	case 0:
		return "missing"
	}
	return "a number"
}

// enter steps into an object or array at s.i.
func (s *scanner) enter() bool {
	s.depth++
	s.i++
	return s.depth <= maxDepth
}

// leave steps out of one, at its closing bracket.
func (s *scanner) leave() {
	s.depth--
	s.i++
}

// value reads any value.
func (s *scanner) value() bool {
	switch c := s.peek(); c {
	case '"':
		return s.str()
	case '{':
		return s.object()
	case '[':
		return s.array()
	case 't':
		return s.lit("true")
	case 'f':
		return s.lit("false")
	case 'n':
		return s.lit("null")
	default:
		if c == '-' || c >= '0' && c <= '9' {
			return s.num()
		}
		return false
	}
}

func (s *scanner) object() bool {
	if !s.enter() {
		return false
	}
	s.ws()
	if s.peek() == '}' {
		s.leave()
		return true
	}
	return s.pairs()
}

// pairs reads an object's members from its first key to its '}'.
func (s *scanner) pairs() bool {
	for {
		if s.peek() != '"' || !s.str() {
			return false
		}
		s.ws()
		if s.peek() != ':' {
			return false
		}
		s.i++
		s.ws()
		if !s.value() {
			return false
		}
		if closed, ok := s.next('}'); closed || !ok {
			return ok
		}
	}
}

// next reads what follows an element: ',' (then s.i is at the next
// element) or closing, which it steps over (closed).
func (s *scanner) next(closing byte) (closed, ok bool) {
	s.ws()
	switch s.peek() {
	case ',':
		s.i++
		s.ws()
		return false, true
	case closing:
		s.leave()
		return true, true
	}
	return false, false
}

// members reads the rest of an object whose member's value was just read:
// its further members and its '}'.
func (s *scanner) members() bool {
	if closed, ok := s.next('}'); closed || !ok {
		return ok
	}
	return s.pairs()
}

func (s *scanner) array() bool {
	if !s.enter() {
		return false
	}
	s.ws()
	if s.peek() == ']' {
		s.leave()
		return true
	}
	for {
		if !s.value() {
			return false
		}
		if closed, ok := s.next(']'); closed || !ok {
			return ok
		}
	}
}

// str reads a string: escapes as JSON defines them, no control characters
// (bytes are not checked for UTF-8, as encoding/json does not).
func (s *scanner) str() bool {
	b, i := s.b, s.i+1
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			s.i = i + 1
			return true
		case c == '\\':
			if i+1 >= len(b) {
				return false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+5 >= len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return false
				}
				i += 6
			default:
				return false
			}
		case c < 0x20:
			return false
		default:
			i++
		}
	}
	return false
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// num reads a number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) num() bool {
	b, i := s.b, s.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			return false
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return false
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	s.i = i
	return true
}

func (s *scanner) lit(w string) bool {
	if !bytes.HasPrefix(s.b[s.i:], []byte(w)) {
		return false
	}
	s.i += len(w)
	return true
}

// findKey, at an object's '{', moves to the value of its first key named
// key (found); without one, it reads the whole object. ok is false on a
// syntax error.
func (s *scanner) findKey(key string) (found, ok bool) {
	if !s.enter() {
		return false, false
	}
	s.ws()
	if s.peek() == '}' {
		s.leave()
		return false, true
	}
	for {
		ks := s.i
		if s.peek() != '"' || !s.str() {
			return false, false
		}
		ke := s.i
		s.ws()
		if s.peek() != ':' {
			return false, false
		}
		s.i++
		s.ws()
		if keyEquals(s.b[ks:ke], key) {
			return true, true
		}
		if !s.value() {
			return false, false
		}
		if closed, ok := s.next('}'); closed || !ok {
			return false, ok
		}
	}
}

// keyEquals compares a quoted JSON key with key, unescaping when needed.
func keyEquals(quoted []byte, key string) bool {
	if len(quoted) < 2 {
		return false
	}
	inner := quoted[1 : len(quoted)-1]
	if !bytes.ContainsRune(inner, '\\') {
		return string(inner) == key
	}
	var k string
	if json.Unmarshal(quoted, &k) != nil {
		return false
	}
	return k == key
}
