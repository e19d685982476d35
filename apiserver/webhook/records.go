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
func Extract(body []byte, path []string) ([]json.RawMessage, error) {
	if err := validJSON(body); err != nil {
		return nil, err
	}
	s := &scanner{b: body}
	s.ws()
	for i, seg := range path {
		where := "the body"
		if i > 0 {
			where = fmt.Sprintf("%q", strings.Join(path[:i], "."))
		}
		if s.peek() != '{' {
			return nil, fmt.Errorf("%w: %s is %s, not an object, so records = %q cannot be followed", ErrInvalidPayload, where, s.kind(), strings.Join(path, "."))
		}
		if !s.findKey(seg) {
			return nil, fmt.Errorf("%w: %s has no key %q, so records = %q finds nothing", ErrInvalidPayload, where, seg, strings.Join(path, "."))
		}
	}
	at := "the body"
	if len(path) > 0 {
		at = fmt.Sprintf("records = %q", strings.Join(path, "."))
	}
	switch s.peek() {
	case '{':
		start, end := s.value()
		return []json.RawMessage{json.RawMessage(body[start:end])}, nil
	case 'n':
		return []json.RawMessage{}, nil
	case '[':
		out := []json.RawMessage{}
		s.i++
		s.ws()
		if s.peek() == ']' {
			return out, nil
		}
		for n := 1; ; n++ {
			s.ws()
			if s.peek() != '{' {
				return nil, fmt.Errorf("%w: record %d of %s is %s, not an object", ErrInvalidPayload, n, at, s.kind())
			}
			start, end := s.value()
			out = append(out, json.RawMessage(body[start:end]))
			s.ws()
			if s.peek() != ',' {
				return out, nil
			}
			s.i++
		}
	default:
		return nil, fmt.Errorf("%w: %s is %s; it must be an object (one record) or an array of objects", ErrInvalidPayload, at, s.kind())
	}
}

func validJSON(body []byte) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return fmt.Errorf("%w: the body is empty; send a JSON object or an array of objects", ErrInvalidPayload)
	}
	if json.Valid(body) {
		return nil
	}
	var raw json.RawMessage
	err := json.Unmarshal(body, &raw)
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("%w: malformed JSON at byte %d: %s", ErrInvalidPayload, se.Offset, se.Error())
	}
	return fmt.Errorf("%w: malformed JSON: %s", ErrInvalidPayload, err.Error())
}

// scanner walks JSON that validJSON accepted; it still checks bounds, so
// that a mistake here can never panic.
type scanner struct {
	b []byte
	i int
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

// str skips a string starting at s.i ('"') and returns its span with quotes.
func (s *scanner) str() (int, int) {
	start := s.i
	s.i++
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case '\\':
			s.i += 2
			continue
		case '"':
			s.i++
			return start, s.i
		}
		s.i++
	}
	s.i = len(s.b)
	return start, s.i
}

// value skips one value starting at s.i and returns its span.
func (s *scanner) value() (int, int) {
	start := s.i
	switch s.peek() {
	case '"':
		return s.str()
	case '{', '[':
		depth := 0
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case '"':
				s.str()
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					s.i++
					return start, s.i
				}
			}
			s.i++
		}
		return start, s.i
	}
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ',', ']', '}', ' ', '\t', '\r', '\n':
			return start, s.i
		}
		s.i++
	}
	return start, s.i
}

// findKey, at an object's '{', moves to the value of its first key named
// key; false when there is none.
func (s *scanner) findKey(key string) bool {
	s.i++ // '{'
	for {
		s.ws()
		if s.peek() != '"' {
			return false // '}' or the end
		}
		ks, ke := s.str()
		s.ws()
		if s.peek() != ':' {
			return false
		}
		s.i++
		s.ws()
		if keyEquals(s.b[ks:ke], key) {
			return true
		}
		s.value()
		s.ws()
		if s.peek() != ',' {
			return false
		}
		s.i++
	}
}

// keyEquals compares a quoted JSON key with key, unescaping when needed.
func keyEquals(quoted []byte, key string) bool {
	if len(quoted) < 2 {
		return false
	}
	inner := quoted[1 : len(quoted)-1]
	if !strings.ContainsRune(string(inner), '\\') {
		return string(inner) == key
	}
	var k string
	if json.Unmarshal(quoted, &k) != nil {
		return false
	}
	return k == key
}
