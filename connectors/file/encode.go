package file

import (
	"math"
	"slices"
	"strconv"
)

// appendJSON appends v as JSON exactly as encoding/json would (keys sorted, no
// HTML escaping), for the types a decoded record holds: nil, bool, string,
// float64, int, int64, map[string]any and []any. It reports false for anything
// else, or a value JSON cannot hold (NaN, ±Inf), so the caller can fall back to
// encoding/json, which also produces the error.
func appendJSON(dst []byte, v any, keys *[]string) ([]byte, bool) {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...), true
	case string:
		return appendJSONString(dst, x), true
	case bool:
		return strconv.AppendBool(dst, x), true
	case float64:
		return appendJSONFloat(dst, x)
	case int:
		return strconv.AppendInt(dst, int64(x), 10), true
	case int64:
		return strconv.AppendInt(dst, x, 10), true
	case []any:
		if x == nil {
			return append(dst, "null"...), true
		}
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			var ok bool
			if dst, ok = appendJSON(dst, e, keys); !ok {
				return dst, false
			}
		}
		return append(dst, ']'), true
	case map[string]any:
		if x == nil {
			return append(dst, "null"...), true
		}
		// Sort the keys in a buffer shared along the recursion, released on return.
		start := len(*keys)
		for k := range x {
			*keys = append(*keys, k)
		}
		own := (*keys)[start:]
		slices.Sort(own)
		defer func() { *keys = (*keys)[:start] }()
		dst = append(dst, '{')
		for i, k := range own {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, k)
			dst = append(dst, ':')
			var ok bool
			if dst, ok = appendJSON(dst, x[k], keys); !ok {
				return dst, false
			}
		}
		return append(dst, '}'), true
	}
	return dst, false
}

// appendJSONFloat formats f like encoding/json (ES6 number to string).
func appendJSONFloat(dst []byte, f float64) ([]byte, bool) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return dst, false
	}
	format := byte('f')
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		if n := len(dst); n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst, true
}
