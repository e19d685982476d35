package engine

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Helpers that convert the loosely typed values of records (decoded JSON:
// string, float64, bool, nil, []any, map[string]any, plus what expressions add:
// int, time.Time, time.Duration, []string) into what functions and casts need.

// stringify renders a scalar the way an integration engineer expects: integral
// floats without exponent or fraction ("7595448918", not "7.595448918e+09"),
// times as RFC 3339, lists and objects as compact JSON. ok is false for nil.
func stringify(v any) (s string, ok bool) {
	switch x := v.(type) {
	case nil:
		return "", false
	case string:
		return x, true
	case float64:
		return formatFloat(x), true
	case float32:
		return formatFloat(float64(x)), true
	case int:
		return strconv.Itoa(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case int32:
		return strconv.FormatInt(int64(x), 10), true
	case uint64:
		return strconv.FormatUint(x, 10), true
	case bool:
		return strconv.FormatBool(x), true
	case json.Number:
		return x.String(), true
	case time.Time:
		return x.Format(time.RFC3339Nano), true
	case time.Duration:
		return x.String(), true
	case []byte:
		return string(x), true
	case map[string]any, []any, []string:
		b, err := json.Marshal(x)
		if err != nil {
			return fmt.Sprint(x), true
		}
		return string(b), true
	}
	return fmt.Sprint(v), true
}

func formatFloat(x float64) string {
	if x == math.Trunc(x) && math.Abs(x) < 1e15 {
		return strconv.FormatInt(int64(x), 10)
	}
	return strconv.FormatFloat(x, 'f', -1, 64)
}

// toFloat converts numbers and numeric strings to float64.
func toFloat(v any) (float64, error) {
	switch x := v.(type) {
	case float64:
		return x, nil
	case int:
		return float64(x), nil
	case int64:
		return float64(x), nil
	case int32:
		return float64(x), nil
	case float32:
		return float64(x), nil
	case uint64:
		return float64(x), nil
	case json.Number:
		return x.Float64()
	case bool:
		if x {
			return 1, nil
		}
		return 0, nil
	case string:
		s := strings.TrimSpace(x)
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a number", x)
		}
		return f, nil
	case time.Duration:
		return x.Seconds(), nil
	}
	return 0, fmt.Errorf("%s is not a number", describe(v))
}

// toInt converts numbers and numeric strings to int, truncating fractions.
func toInt(v any) (int, error) {
	switch x := v.(type) {
	case int:
		return x, nil
	case int64:
		return int(x), nil
	case string:
		s := strings.TrimSpace(x)
		if i, err := strconv.Atoi(s); err == nil {
			return i, nil
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a number", x)
		}
		return floatToInt(f)
	}
	f, err := toFloat(v)
	if err != nil {
		return 0, err
	}
	return floatToInt(f)
}

func floatToInt(f float64) (int, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) || f > math.MaxInt64 || f < math.MinInt64 {
		return 0, fmt.Errorf("%v does not fit an integer", f)
	}
	// Snap values a float rounding error away from an integer (19.99*100 is
	// 1998.9999999999998) to it, so int(float(price) * 100) gives 1999.
	if r := math.Round(f); math.Abs(f-r) < 1e-9*math.Max(1, math.Abs(f)) {
		f = r
	}
	return int(f), nil
}

// toBool converts booleans, numbers and the usual spellings of yes/no.
func toBool(v any) (bool, error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case string:
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "true", "1", "yes", "y", "on", "t":
			return true, nil
		case "false", "0", "no", "n", "off", "f", "":
			return false, nil
		}
		return false, fmt.Errorf("%q is not a boolean (use true/false, yes/no, 1/0, on/off)", x)
	}
	f, err := toFloat(v)
	if err != nil {
		return false, fmt.Errorf("%s is not a boolean", describe(v))
	}
	return f != 0, nil
}

// toList accepts []any and other slices (via reflection).
func toList(v any) ([]any, bool) {
	switch x := v.(type) {
	case []any:
		return x, true
	case []string:
		out := make([]any, len(x))
		for i, s := range x {
			out[i] = s
		}
		return out, true
	case nil:
		return nil, false
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array {
		return nil, false
	}
	out := make([]any, rv.Len())
	for i := range out {
		out[i] = rv.Index(i).Interface()
	}
	return out, true
}

// describe names a value's type for error messages in JSON terms.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		if len(x) > 40 {
			x = x[:40] + "…"
		}
		return fmt.Sprintf("string %q", x)
	case float64, int, int64, float32, int32:
		return fmt.Sprintf("number %v", x)
	case bool:
		return fmt.Sprintf("bool %v", x)
	case map[string]any:
		return "object"
	case []any:
		return "list"
	case time.Time:
		return "time " + x.Format(time.RFC3339)
	}
	return fmt.Sprintf("%T", v)
}

// isEmpty reports nil, "" and empty lists/objects.
func isEmpty(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case []any:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	}
	return false
}

// getPath reads a dotted path from a nested map; ok is false when absent.
func getPath(m map[string]any, path []string) (any, bool) {
	var cur any = m
	for _, p := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		cur, ok = mm[p]
		if !ok {
			return nil, false
		}
	}
	return cur, true
}

// setPath writes v at path, creating (or replacing non-object) intermediate maps.
func setPath(m map[string]any, path []string, v any) {
	for _, p := range path[:len(path)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	m[path[len(path)-1]] = v
}

// deletePath removes path from m (no-op when absent).
func deletePath(m map[string]any, path []string) {
	for _, p := range path[:len(path)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			return
		}
		m = next
	}
	delete(m, path[len(path)-1])
}

func splitPath(p string) []string { return strings.Split(p, ".") }

// normalizeJSON converts any value to the shape encoding/json would decode it
// into (float64 numbers, []any, map[string]any, strings for times), so that
// values built by expressions compare equal to values written in config/JSON.
func normalizeJSON(v any) (any, error) {
	switch x := v.(type) {
	case nil, string, bool, float64:
		return x, nil
	case int:
		return float64(x), nil
	case int64:
		return float64(x), nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			n, err := normalizeJSON(e)
			if err != nil {
				return nil, err
			}
			out[k] = n
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			n, err := normalizeJSON(e)
			if err != nil {
				return nil, err
			}
			out[i] = n
		}
		return out, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return out, nil
}
