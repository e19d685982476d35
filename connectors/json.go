package connectors

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// DecodeJSON parses a JSON document into Go values: map[string]any, []any,
// string, bool, nil, int64 for integers that fit, and float64 for other numbers.
//
// encoding/json turns every number into float64, which silently corrupts 64-bit
// ids above 2^53 (Shopify's, for one). This parser keeps them exact, and, being
// written for exactly these target types, is several times faster than
// encoding/json's interface{} decoding on the records ferry moves.
func DecodeJSON(b []byte) (any, error) {
	p := parsers.Get().(*jsonParser)
	defer func() { p.b = nil; parsers.Put(p) }()
	p.b, p.i = b, 0
	p.skipSpace()
	v, err := p.value(0)
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.i != len(p.b) {
		return nil, p.errorf("unexpected %q after the JSON value", p.b[p.i])
	}
	return v, nil
}

// maxJSONDepth bounds nesting so hostile input cannot exhaust the stack.
const maxJSONDepth = 1000

type jsonParser struct {
	b []byte
	i int
	// keys interns object keys: records of one source repeat the same keys, and
	// looking a []byte up in a map[string]string does not allocate.
	keys map[string]string
	// sizes remembers the size of the last object seen at each nesting depth:
	// records of one source share a shape, and a map sized right up front
	// avoids growing it key by key (which dominated decoding before).
	sizes [16]int
}

// maxInternedKeys bounds the key cache against inputs with ever-new keys.
const maxInternedKeys = 4096

var parsers = sync.Pool{New: func() any { return &jsonParser{keys: make(map[string]string, 256)} }}

func (p *jsonParser) key() (string, error) {
	// Fast path: a key without escapes is interned straight from the input.
	start := p.i + 1
	for j := start; j < len(p.b); j++ {
		c := p.b[j]
		if c == '"' {
			if k, ok := p.keys[string(p.b[start:j])]; ok {
				p.i = j + 1
				return k, nil
			}
			break
		}
		if c == '\\' || c < 0x20 || c >= 0x80 {
			break
		}
	}
	k, err := p.str()
	if err == nil && len(p.keys) < maxInternedKeys {
		p.keys[k] = k
	}
	return k, err
}

// JSONSyntaxError reports invalid JSON with its byte offset.
type JSONSyntaxError struct {
	Offset int
	Msg    string
}

func (e *JSONSyntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at byte %d: %s", e.Offset, e.Msg)
}

func (p *jsonParser) errorf(format string, args ...any) error {
	return &JSONSyntaxError{Offset: p.i, Msg: fmt.Sprintf(format, args...)}
}

var errJSONEnd = errors.New("unexpected end of JSON input")

func (p *jsonParser) skipSpace() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *jsonParser) value(depth int) (any, error) {
	if p.i >= len(p.b) {
		return nil, &JSONSyntaxError{Offset: p.i, Msg: errJSONEnd.Error()}
	}
	switch c := p.b[p.i]; {
	case c == '{':
		if depth >= maxJSONDepth {
			return nil, p.errorf("nested too deeply (more than %d levels)", maxJSONDepth)
		}
		return p.object(depth + 1)
	case c == '[':
		if depth >= maxJSONDepth {
			return nil, p.errorf("nested too deeply (more than %d levels)", maxJSONDepth)
		}
		return p.array(depth + 1)
	case c == '"':
		return p.str()
	case c == 't':
		return p.literal("true", true)
	case c == 'f':
		return p.literal("false", false)
	case c == 'n':
		return p.literal("null", nil)
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	default:
		return nil, p.errorf("unexpected %q looking for a value", c)
	}
}

func (p *jsonParser) literal(word string, v any) (any, error) {
	if len(p.b)-p.i < len(word) || string(p.b[p.i:p.i+len(word)]) != word {
		return nil, p.errorf("invalid literal, expected %s", word)
	}
	p.i += len(word)
	return v, nil
}

func (p *jsonParser) object(depth int) (any, error) {
	p.i++ // {
	hint := 8
	if depth < len(p.sizes) && p.sizes[depth] > 0 {
		hint = p.sizes[depth]
	}
	m := make(map[string]any, hint)
	p.skipSpace()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		return m, nil
	}
	for {
		p.skipSpace()
		if p.i >= len(p.b) || p.b[p.i] != '"' {
			if p.i >= len(p.b) {
				return nil, &JSONSyntaxError{Offset: p.i, Msg: errJSONEnd.Error()}
			}
			return nil, p.errorf("expected a string key, found %q", p.b[p.i])
		}
		k, err := p.key()
		if err != nil {
			return nil, err
		}
		p.skipSpace()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return nil, p.errorf("expected ':' after object key %q", k)
		}
		p.i++
		p.skipSpace()
		v, err := p.value(depth)
		if err != nil {
			return nil, err
		}
		m[k] = v
		p.skipSpace()
		if p.i >= len(p.b) {
			return nil, &JSONSyntaxError{Offset: p.i, Msg: errJSONEnd.Error()}
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			if depth < len(p.sizes) {
				p.sizes[depth] = len(m)
			}
			return m, nil
		default:
			return nil, p.errorf("expected ',' or '}' in object, found %q", p.b[p.i])
		}
	}
}

func (p *jsonParser) array(depth int) (any, error) {
	p.i++ // [
	a := make([]any, 0, 4)
	p.skipSpace()
	if p.i < len(p.b) && p.b[p.i] == ']' {
		p.i++
		return a, nil
	}
	for {
		p.skipSpace()
		v, err := p.value(depth)
		if err != nil {
			return nil, err
		}
		a = append(a, v)
		p.skipSpace()
		if p.i >= len(p.b) {
			return nil, &JSONSyntaxError{Offset: p.i, Msg: errJSONEnd.Error()}
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case ']':
			p.i++
			return a, nil
		default:
			return nil, p.errorf("expected ',' or ']' in array, found %q", p.b[p.i])
		}
	}
}

func (p *jsonParser) str() (string, error) {
	p.i++ // opening quote
	start := p.i
	// Fast path: no escapes, valid ASCII/UTF-8.
	for p.i < len(p.b) {
		c := p.b[p.i]
		if c == '"' {
			s := p.b[start:p.i]
			p.i++
			if !utf8.Valid(s) {
				return string([]rune(string(s))), nil // replaces invalid bytes like encoding/json
			}
			return string(s), nil
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			return "", p.errorf("control character %q in string", c)
		}
		p.i++
	}
	buf := make([]byte, 0, p.i-start+16)
	buf = append(buf, p.b[start:p.i]...)
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			if !utf8.Valid(buf) {
				return string([]rune(string(buf))), nil
			}
			return string(buf), nil
		case c < 0x20:
			return "", p.errorf("control character %q in string", c)
		case c != '\\':
			buf = append(buf, c)
			p.i++
			continue
		}
		p.i++ // backslash
		if p.i >= len(p.b) {
			break
		}
		e := p.b[p.i]
		p.i++
		switch e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return "", p.errorf("invalid \\u escape")
			}
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if p.i+1 < len(p.b) && p.b[p.i] == '\\' && p.b[p.i+1] == 'u' {
					save := p.i
					p.i += 2
					var ok2 bool
					if r2, ok2 = p.hex4(); !ok2 {
						return "", p.errorf("invalid \\u escape")
					}
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						buf = utf8.AppendRune(buf, dec)
						continue
					}
					p.i = save
				}
				r = utf8.RuneError
			}
			buf = utf8.AppendRune(buf, r)
		default:
			return "", p.errorf("invalid escape \\%c in string", e)
		}
	}
	return "", &JSONSyntaxError{Offset: p.i, Msg: "unterminated string"}
}

func (p *jsonParser) hex4() (rune, bool) {
	if len(p.b)-p.i < 4 {
		return 0, false
	}
	var r rune
	for _, c := range p.b[p.i : p.i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	p.i += 4
	return r, true
}

func (p *jsonParser) number() (any, error) {
	start := p.i
	if p.b[p.i] == '-' {
		p.i++
	}
	digits := p.i
	if p.i < len(p.b) && p.b[p.i] == '0' {
		p.i++
	} else {
		for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
			p.i++
		}
	}
	if p.i == digits {
		return nil, p.errorf("invalid number")
	}
	integral := true
	if p.i < len(p.b) && p.b[p.i] == '.' {
		integral = false
		p.i++
		fd := p.i
		for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
			p.i++
		}
		if p.i == fd {
			return nil, p.errorf("invalid number: no digits after '.'")
		}
	}
	if p.i < len(p.b) && (p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		integral = false
		p.i++
		if p.i < len(p.b) && (p.b[p.i] == '+' || p.b[p.i] == '-') {
			p.i++
		}
		ed := p.i
		for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
			p.i++
		}
		if p.i == ed {
			return nil, p.errorf("invalid number: no digits in exponent")
		}
	}
	text := p.b[start:p.i]
	if integral && len(text) <= 18 { // fits int64 without overflow checks
		var n int64
		neg := text[0] == '-'
		for _, c := range text[digits-start:] {
			n = n*10 + int64(c-'0')
		}
		if neg {
			n = -n
		}
		return n, nil
	}
	if integral {
		if n, err := strconv.ParseInt(string(text), 10, 64); err == nil {
			return n, nil
		}
	}
	f, err := strconv.ParseFloat(string(text), 64)
	if err != nil {
		return nil, p.errorf("number %s is out of range", text)
	}
	return f, nil
}
