package patch

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
)

// deepCopy copies the JSON containers of v; leaves are immutable (or opaque).
func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = deepCopy(e)
		}
		return s
	}
	return v
}

// countNodes counts the values in v, containers included.
func countNodes(v any) int {
	n := 1
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			n += countNodes(e)
		}
	case []any:
		for _, e := range x {
			n += countNodes(e)
		}
	}
	return n
}

// equal is JSON equality (RFC 6902 section 4.6): objects with the same
// members, arrays with equal elements in order, numbers by value.
func equal(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, xe := range x {
			ye, ok := y[k]
			if !ok || !equal(xe, ye) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equal(x[i], y[i]) {
				return false
			}
		}
		return true
	case nil:
		return b == nil
	case string:
		y, ok := b.(string)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	}
	if sa, ok := numberString(a); ok {
		sb, ok := numberString(b)
		if !ok {
			return false
		}
		ca, okA := canonicalNumber(sa)
		cb, okB := canonicalNumber(sb)
		if okA && okB {
			return ca == cb
		}
		return sa == sb
	}
	return reflect.DeepEqual(a, b)
}

// numberString is the decimal text of a number of any Go numeric type.
func numberString(v any) (string, bool) {
	switch x := v.(type) {
	case json.Number:
		return string(x), true
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), true
	case float32:
		return strconv.FormatFloat(float64(x), 'g', -1, 32), true
	case int:
		return strconv.FormatInt(int64(x), 10), true
	case int8:
		return strconv.FormatInt(int64(x), 10), true
	case int16:
		return strconv.FormatInt(int64(x), 10), true
	case int32:
		return strconv.FormatInt(int64(x), 10), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case uint:
		return strconv.FormatUint(uint64(x), 10), true
	case uint8:
		return strconv.FormatUint(uint64(x), 10), true
	case uint16:
		return strconv.FormatUint(uint64(x), 10), true
	case uint32:
		return strconv.FormatUint(uint64(x), 10), true
	case uint64:
		return strconv.FormatUint(x, 10), true
	}
	return "", false
}

// canonicalNumber normalises a JSON number's text so that numbers equal in
// value have equal text ("1", "1.0", "10e-1", "0.1E1" → "0.1e1"), exactly, for
// any size. It reports false for text that is not a JSON number or whose
// exponent is absurdly large.
func canonicalNumber(s string) (string, bool) {
	neg := false
	if strings.HasPrefix(s, "-") {
		neg, s = true, s[1:]
	}
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	intPart := s[:i]
	if intPart == "" {
		return "", false
	}
	s = s[i:]
	var frac string
	if strings.HasPrefix(s, ".") {
		j := 1
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		frac = s[1:j]
		if frac == "" {
			return "", false
		}
		s = s[j:]
	}
	exp := 0
	if s != "" {
		if s[0] != 'e' && s[0] != 'E' {
			return "", false
		}
		ds := s[1:]
		eneg := false
		if ds != "" && (ds[0] == '+' || ds[0] == '-') {
			eneg, ds = ds[0] == '-', ds[1:]
		}
		ds = strings.TrimLeft(ds, "0")
		if len(ds) > 12 || strings.TrimLeft(s[1:], "+-0123456789") != "" || len(s) < 2 || !isDigit(s[len(s)-1]) {
			return "", false
		}
		e := 0
		for _, c := range []byte(ds) {
			if !isDigit(c) {
				return "", false
			}
			e = e*10 + int(c-'0')
		}
		if eneg {
			e = -e
		}
		exp = e
	}
	digits := intPart + frac
	point := len(intPart)
	k := 0
	for k < len(digits) && digits[k] == '0' {
		k++
	}
	digits, point = digits[k:], point-k
	digits = strings.TrimRight(digits, "0")
	if digits == "" {
		return "0", true
	}
	sign := ""
	if neg {
		sign = "-"
	}
	return sign + "0." + digits + "e" + strconv.Itoa(exp+point), true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
