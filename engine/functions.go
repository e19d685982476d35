package engine

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm/runtime"
)

// The function library available in every per-record expression. See
// FUNCTIONS.md for the user documentation; keep the two in sync.
//
// Conventions: functions that take a value propagate null (a missing field) by
// returning null rather than failing, so `trim(title)` on a record without a
// title yields null and the mapping's defaults can apply. Wrong types and
// unparsable input are errors (the record fails with a message naming the field).

// fn is the shape expr-lang functions take.
type fn = func(args ...any) (any, error)

type function struct {
	name  string
	fn    fn
	types []any // signatures for compile-time arity/type checks
}

// sig values: signatures used only by expr's checker. Return types are `any`
// wherever null can come back, so expr never compiles a typed fast path that a
// null would break.
var (
	sigV_V     = new(func(any) any)
	sigVV_V    = new(func(any, any) any)
	sigVVV_V   = new(func(any, any, any) any)
	sigVS_V    = new(func(any, string) any)
	sigVSS_V   = new(func(any, string, string) any)
	sigVariadc = new(func(...any) any)
)

// regexCache caches compiled patterns. Literal patterns are compiled (and
// checked) by Compile; dynamic ones on first use, up to maxCachedRegexps.
type regexCache struct {
	m sync.Map
	n atomic.Int64
}

const maxCachedRegexps = 1024

func (c *regexCache) get(pattern string) (*regexp.Regexp, error) {
	if re, ok := c.m.Load(pattern); ok {
		return re.(*regexp.Regexp), nil
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("invalid regular expression %q: %w", pattern, err)
	}
	if c.n.Add(1) <= maxCachedRegexps {
		c.m.Store(pattern, re)
	}
	return re, nil
}

func arg(args []any, i int) any {
	if i < len(args) {
		return args[i]
	}
	return nil
}

func strArg(name string, v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case nil:
		return "", nil
	}
	s, _ := stringify(v)
	if _, isMap := v.(map[string]any); isMap {
		return "", fmt.Errorf("%s: expected a string, got an object", name)
	}
	if _, isList := v.([]any); isList {
		return "", fmt.Errorf("%s: expected a string, got a list", name)
	}
	return s, nil
}

// str1 builds a null-propagating string -> any function.
func str1(name string, f func(s string, args []any) (any, error)) fn {
	return func(args ...any) (any, error) {
		if args[0] == nil {
			return nil, nil
		}
		s, err := strArg(name, args[0])
		if err != nil {
			return nil, err
		}
		return f(s, args[1:])
	}
}

func intArg(name string, v any) (int, error) {
	i, err := toInt(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return i, nil
}

// library returns the functions bound to a program (lookup and apply need its
// tables and mappings).
func (p *Program) library() []function {
	lib := []function{
		// --- strings (null in, null out) ---
		{"trim", str1("trim", func(s string, a []any) (any, error) {
			if len(a) > 0 && a[0] != nil {
				cut, _ := stringify(a[0])
				return strings.Trim(s, cut), nil
			}
			return strings.TrimSpace(s), nil
		}), []any{sigV_V, sigVV_V}},
		{"trimPrefix", str1("trimPrefix", func(s string, a []any) (any, error) {
			p, _ := stringify(a[0])
			return strings.TrimPrefix(s, p), nil
		}), []any{sigVV_V}},
		{"trimSuffix", str1("trimSuffix", func(s string, a []any) (any, error) {
			p, _ := stringify(a[0])
			return strings.TrimSuffix(s, p), nil
		}), []any{sigVV_V}},
		{"lower", str1("lower", func(s string, _ []any) (any, error) { return strings.ToLower(s), nil }), []any{sigV_V}},
		{"upper", str1("upper", func(s string, _ []any) (any, error) { return strings.ToUpper(s), nil }), []any{sigV_V}},
		{"titleCase", str1("titleCase", func(s string, _ []any) (any, error) { return titleCase(s), nil }), []any{sigV_V}},
		{"split", str1("split", func(s string, a []any) (any, error) {
			sep, _ := stringify(a[0])
			if s == "" {
				return []any{}, nil
			}
			n := -1
			if len(a) > 1 && a[1] != nil {
				var err error
				if n, err = intArg("split", a[1]); err != nil {
					return nil, err
				}
			}
			parts := strings.SplitN(s, sep, n)
			out := make([]any, len(parts))
			for i, p := range parts {
				out[i] = p
			}
			return out, nil
		}), []any{sigVV_V, sigVVV_V}},
		{"join", func(args ...any) (any, error) {
			if args[0] == nil {
				return nil, nil
			}
			list, ok := toList(args[0])
			if !ok {
				return nil, fmt.Errorf("join: expected a list, got %s", describe(args[0]))
			}
			sep := ""
			if len(args) > 1 {
				sep, _ = stringify(args[1])
			}
			parts := make([]string, 0, len(list))
			for _, e := range list {
				if e == nil {
					continue
				}
				s, _ := stringify(e)
				parts = append(parts, s)
			}
			return strings.Join(parts, sep), nil
		}, []any{sigV_V, sigVV_V}},
		{"replace", str1("replace", func(s string, a []any) (any, error) {
			old, _ := stringify(a[0])
			repl, _ := stringify(a[1])
			return strings.ReplaceAll(s, old, repl), nil
		}), []any{sigVVV_V}},
		{"regexMatch", func(args ...any) (any, error) {
			if args[0] == nil {
				return false, nil
			}
			s, err := strArg("regexMatch", args[0])
			if err != nil {
				return nil, err
			}
			pat, _ := args[1].(string)
			re, err := p.regexps.get(pat)
			if err != nil {
				return nil, err
			}
			return re.MatchString(s), nil
		}, []any{new(func(any, string) bool)}},
		{"regexReplace", func(args ...any) (any, error) {
			if args[0] == nil {
				return nil, nil
			}
			s, err := strArg("regexReplace", args[0])
			if err != nil {
				return nil, err
			}
			pat, _ := args[1].(string)
			re, err := p.regexps.get(pat)
			if err != nil {
				return nil, err
			}
			repl, _ := args[2].(string)
			return re.ReplaceAllString(s, repl), nil
		}, []any{sigVSS_V}},
		{"substring", str1("substring", func(s string, a []any) (any, error) {
			return substring(s, a)
		}), []any{sigVV_V, sigVVV_V}},
		{"padLeft", str1("padLeft", func(s string, a []any) (any, error) { return pad(s, a, true) }), []any{sigVV_V, sigVVV_V}},
		{"padRight", str1("padRight", func(s string, a []any) (any, error) { return pad(s, a, false) }), []any{sigVV_V, sigVVV_V}},

		// --- numbers ---
		{"int", func(args ...any) (any, error) {
			if args[0] == nil {
				return nil, nil
			}
			i, err := toInt(args[0])
			if err != nil {
				return nil, fmt.Errorf("int: %w", err)
			}
			return i, nil
		}, []any{sigV_V}},
		{"float", func(args ...any) (any, error) {
			if args[0] == nil {
				return nil, nil
			}
			f, err := toFloat(args[0])
			if err != nil {
				return nil, fmt.Errorf("float: %w", err)
			}
			return f, nil
		}, []any{sigV_V}},
		{"round", func(args ...any) (any, error) {
			if args[0] == nil {
				return nil, nil
			}
			f, err := toFloat(args[0])
			if err != nil {
				return nil, fmt.Errorf("round: %w", err)
			}
			places := 0
			if len(args) > 1 {
				if places, err = intArg("round", args[1]); err != nil {
					return nil, err
				}
			}
			return roundTo(f, places), nil
		}, []any{sigV_V, sigVV_V}},
		{"parseMoney", func(args ...any) (any, error) {
			if args[0] == nil {
				return nil, nil
			}
			return parseMoney(args[0])
		}, []any{sigV_V}},
		{"formatDecimal", func(args ...any) (any, error) {
			if args[0] == nil {
				return nil, nil
			}
			f, err := toFloat(args[0])
			if err != nil {
				return nil, fmt.Errorf("formatDecimal: %w", err)
			}
			places, err := intArg("formatDecimal", args[1])
			if err != nil {
				return nil, err
			}
			if places < 0 || places > 20 {
				return nil, fmt.Errorf("formatDecimal: places must be 0..20, got %d", places)
			}
			return fmt.Sprintf("%.*f", places, roundTo(f, places)), nil
		}, []any{sigVV_V}},

		// --- types ---
		{"string", func(args ...any) (any, error) {
			s, ok := stringify(args[0])
			if !ok {
				return nil, nil
			}
			return s, nil
		}, []any{sigV_V}},
		{"bool", func(args ...any) (any, error) {
			if args[0] == nil {
				return nil, nil
			}
			b, err := toBool(args[0])
			if err != nil {
				return nil, fmt.Errorf("bool: %w", err)
			}
			return b, nil
		}, []any{sigV_V}},
		{"toJSON", func(args ...any) (any, error) {
			b, err := json.Marshal(args[0])
			if err != nil {
				return nil, fmt.Errorf("toJSON: %w", err)
			}
			return string(b), nil
		}, []any{new(func(any) string)}},
		{"fromJSON", str1("fromJSON", func(s string, _ []any) (any, error) {
			var v any
			if err := json.Unmarshal([]byte(s), &v); err != nil {
				return nil, fmt.Errorf("fromJSON: %w", err)
			}
			return v, nil
		}), []any{sigV_V}},

		// --- dates ---
		{"parseTime", func(args ...any) (any, error) {
			if isEmpty(args[0]) {
				return nil, nil
			}
			layout, loc, err := layoutAndZone("parseTime", args, 1)
			if err != nil {
				return nil, err
			}
			t, err := parseTimeValue(args[0], layout, loc)
			if err != nil {
				return nil, fmt.Errorf("parseTime: %w", err)
			}
			if arg(args, 2) != nil {
				t = t.In(loc)
			}
			return t, nil
		}, []any{sigV_V, sigVV_V, sigVVV_V}},
		{"formatTime", func(args ...any) (any, error) {
			if isEmpty(args[0]) {
				return nil, nil
			}
			layout, loc, err := layoutAndZone("formatTime", args, 1)
			if err != nil {
				return nil, err
			}
			t, err := parseTimeValue(args[0], "", time.UTC)
			if err != nil {
				return nil, fmt.Errorf("formatTime: %w", err)
			}
			if arg(args, 2) != nil {
				t = t.In(loc)
			}
			return formatTimeValue(t, layout)
		}, []any{sigVV_V, sigVVV_V}},
		{"addDuration", func(args ...any) (any, error) {
			if isEmpty(args[0]) {
				return nil, nil
			}
			t, err := parseTimeValue(args[0], "", time.UTC)
			if err != nil {
				return nil, fmt.Errorf("addDuration: %w", err)
			}
			d, err := parseDuration(args[1])
			if err != nil {
				return nil, fmt.Errorf("addDuration: %w", err)
			}
			return t.Add(d), nil
		}, []any{sigVV_V}},
		{"diff", func(args ...any) (any, error) {
			if isEmpty(args[0]) || isEmpty(args[1]) {
				return nil, nil
			}
			t1, err := parseTimeValue(args[0], "", time.UTC)
			if err != nil {
				return nil, fmt.Errorf("diff: %w", err)
			}
			t2, err := parseTimeValue(args[1], "", time.UTC)
			if err != nil {
				return nil, fmt.Errorf("diff: %w", err)
			}
			return t1.Sub(t2).Seconds(), nil
		}, []any{sigVV_V}},

		// --- ids and hashes ---
		{"uuid", func(args ...any) (any, error) { return newUUID(), nil }, []any{new(func() string)}},
		{"sha256", str1("sha256", func(s string, _ []any) (any, error) {
			sum := sha256.Sum256([]byte(s))
			return hex.EncodeToString(sum[:]), nil
		}), []any{sigV_V}},
		{"hmacSHA256", func(args ...any) (any, error) {
			if args[1] == nil {
				return nil, nil
			}
			key, err := strArg("hmacSHA256", args[0])
			if err != nil {
				return nil, err
			}
			msg, err := strArg("hmacSHA256", args[1])
			if err != nil {
				return nil, err
			}
			m := hmac.New(sha256.New, []byte(key))
			m.Write([]byte(msg))
			return hex.EncodeToString(m.Sum(nil)), nil
		}, []any{sigVV_V}},
		{"base64Encode", str1("base64Encode", func(s string, _ []any) (any, error) {
			return base64.StdEncoding.EncodeToString([]byte(s)), nil
		}), []any{sigV_V}},
		{"base64Decode", str1("base64Decode", func(s string, _ []any) (any, error) {
			for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
				if b, err := enc.DecodeString(s); err == nil {
					return string(b), nil
				}
			}
			return nil, fmt.Errorf("base64Decode: %q is not base64", s)
		}), []any{sigV_V}},

		// --- null handling ---
		{"coalesce", func(args ...any) (any, error) {
			for _, a := range args {
				if a == nil {
					continue
				}
				if s, ok := a.(string); ok && s == "" {
					continue
				}
				return a, nil
			}
			return nil, nil
		}, []any{sigVariadc}},
		{"default", func(args ...any) (any, error) {
			if args[0] == nil {
				return args[1], nil
			}
			return args[0], nil
		}, []any{sigVV_V}},

		// --- tables and sub-mappings ---
		{"lookup", p.lookup, []any{sigVV_V, sigVVV_V}},
		{"apply", p.apply, []any{sigVV_V}},

		// --- internal: nil-safe member access and operators, see patcher ---
		{getFunc, memberGet, []any{sigVV_V}},
		{sumFunc, func(a ...any) (any, error) {
			if a[0] == nil {
				return nil, nil
			}
			list, ok := toList(a[0])
			if !ok {
				return nil, fmt.Errorf("sum: expected a list, got %s", describe(a[0]))
			}
			var total any = 0
			for _, e := range list {
				if e != nil {
					total = runtime.Add(total, e)
				}
			}
			return total, nil
		}, []any{sigV_V}},
		{negFunc, func(a ...any) (any, error) {
			if a[0] == nil {
				return nil, nil
			}
			return runtime.Negate(a[0]), nil
		}, []any{sigV_V}},
	}
	for op, name := range nilSafeOps {
		lib = append(lib, function{name, opFuncs[op], []any{sigVV_V}})
	}
	return lib
	// Kept from expr-lang's builtins (not shadowed): len, keys, values, map,
	// filter, all, any, none, one, count, find, sum, min, max, mean, median, abs,
	// ceil, floor, first, last, sort, sortBy, groupBy, reduce, uniq, concat,
	// flatten, reverse, take, hasPrefix, hasSuffix, indexOf, repeat, now,
	// duration, date, timezone, type, toBase64, fromBase64.
}

func (p *Program) exprFunctions() []expr.Option {
	lib := p.library()
	opts := make([]expr.Option, 0, len(lib))
	for _, f := range lib {
		opts = append(opts, expr.Function(f.name, f.fn, f.types...))
	}
	return opts
}

func layoutAndZone(name string, args []any, i int) (string, *time.Location, error) {
	layout := ""
	if v := arg(args, i); v != nil {
		s, ok := v.(string)
		if !ok {
			return "", nil, fmt.Errorf("%s: layout must be a string, got %s", name, describe(v))
		}
		layout = s
	}
	tz := ""
	if v := arg(args, i+1); v != nil {
		s, ok := v.(string)
		if !ok {
			return "", nil, fmt.Errorf("%s: time zone must be a string, got %s", name, describe(v))
		}
		tz = s
	}
	loc, err := loadLocation(tz)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", name, err)
	}
	return layout, loc, nil
}

func titleCase(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	start := true
	for _, r := range s {
		if unicode.IsLetter(r) || unicode.IsDigit(r) || r == '\'' {
			if start {
				b.WriteRune(unicode.ToTitle(r))
			} else {
				b.WriteRune(unicode.ToLower(r))
			}
			start = false
			continue
		}
		start = true
		b.WriteRune(r)
	}
	return b.String()
}

// substring(s, start, end?) works on runes; negative indices count from the end;
// out-of-range indices are clamped.
func substring(s string, a []any) (any, error) {
	n := utf8.RuneCountInString(s)
	start, err := intArg("substring", a[0])
	if err != nil {
		return nil, err
	}
	end := n
	if len(a) > 1 && a[1] != nil {
		if end, err = intArg("substring", a[1]); err != nil {
			return nil, err
		}
	}
	clamp := func(i int) int {
		if i < 0 {
			i += n
		}
		return max(0, min(i, n))
	}
	start, end = clamp(start), clamp(end)
	if start >= end {
		return "", nil
	}
	i, bs, be := 0, len(s), len(s)
	for off := range s {
		if i == start {
			bs = off
		}
		if i == end {
			be = off
			break
		}
		i++
	}
	return s[bs:be], nil
}

func pad(s string, a []any, left bool) (any, error) {
	name := "padRight"
	if left {
		name = "padLeft"
	}
	width, err := intArg(name, a[0])
	if err != nil {
		return nil, err
	}
	fill := " "
	if len(a) > 1 && a[1] != nil {
		fill, _ = stringify(a[1])
		if fill == "" {
			return nil, fmt.Errorf("%s: pad character must not be empty", name)
		}
	}
	missing := width - utf8.RuneCountInString(s)
	if missing <= 0 {
		return s, nil
	}
	if missing > 1<<16 {
		return nil, fmt.Errorf("%s: width %d is too large", name, width)
	}
	fr := []rune(fill)
	padding := make([]rune, missing)
	for i := range padding {
		padding[i] = fr[i%len(fr)]
	}
	if left {
		return string(padding) + s, nil
	}
	return s + string(padding), nil
}

// roundTo rounds half away from zero to places decimals.
func roundTo(f float64, places int) float64 {
	if places > 15 || math.IsNaN(f) || math.IsInf(f, 0) {
		return f
	}
	p := math.Pow10(places)
	r := math.Round(f*p) / p
	if math.IsInf(r, 0) || math.IsNaN(r) {
		return f
	}
	return r
}

// parseMoney reads amounts like "€1.234,56", "$1,234.56", "19.99", "-5,00 EUR",
// "(12.00)". When both ',' and '.' occur, the later one is the decimal
// separator. When only one occurs once and exactly three digits follow it, it is
// a thousands separator ("1.234" = 1234, "1,234" = 1234); otherwise decimal.
func parseMoney(v any) (any, error) {
	switch v.(type) {
	case float64, int, int64, float32:
		f, _ := toFloat(v)
		return f, nil
	}
	s, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("parseMoney: expected a string, got %s", describe(v))
	}
	neg := strings.Contains(s, "-") || (strings.Contains(s, "(") && strings.Contains(s, ")"))
	var digits []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c >= '0' && c <= '9') || c == ',' || c == '.' {
			digits = append(digits, c)
		}
	}
	num := string(digits)
	if strings.Trim(num, ",.") == "" {
		if strings.TrimSpace(s) == "" {
			return nil, nil
		}
		return nil, fmt.Errorf("parseMoney: %q has no amount", s)
	}
	lastComma, lastDot := strings.LastIndexByte(num, ','), strings.LastIndexByte(num, '.')
	switch {
	case lastComma >= 0 && lastDot >= 0:
		dec, thou := ".", ","
		if lastComma > lastDot {
			dec, thou = ",", "."
		}
		num = strings.ReplaceAll(num, thou, "")
		num = strings.Replace(num, dec, ".", 1)
	case lastComma >= 0 || lastDot >= 0:
		sep := ","
		idx := lastComma
		if lastDot >= 0 {
			sep, idx = ".", lastDot
		}
		if strings.Count(num, sep) > 1 || len(num)-idx-1 == 3 {
			num = strings.ReplaceAll(num, sep, "")
		} else {
			num = strings.Replace(num, sep, ".", 1)
		}
	}
	f, err := toFloat(num)
	if err != nil {
		return nil, fmt.Errorf("parseMoney: cannot read %q", s)
	}
	if neg {
		f = -f
	}
	return f, nil
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}

// getFunc is the internal function every member access (a.b, a[0], a["k"]) is
// rewritten to, so that missing fields, null parents and out-of-range indices
// give null instead of a runtime error.
const getFunc = "__get"

func memberGet(args ...any) (any, error) {
	base, prop := args[0], args[1]
	switch b := base.(type) {
	case nil:
		return nil, nil
	case map[string]any:
		if k, ok := prop.(string); ok {
			return b[k], nil
		}
		k, _ := stringify(prop)
		return b[k], nil
	case []any:
		i, err := toInt(prop)
		if err != nil {
			return nil, nil
		}
		if i < 0 {
			i += len(b)
		}
		if i < 0 || i >= len(b) {
			return nil, nil
		}
		return b[i], nil
	case string:
		i, err := toInt(prop)
		if err != nil {
			return nil, nil
		}
		r := []rune(b)
		if i < 0 {
			i += len(r)
		}
		if i < 0 || i >= len(r) {
			return nil, nil
		}
		return string(r[i]), nil
	}
	return safeFetch(base, prop), nil
}

func safeFetch(base, prop any) (v any) {
	defer func() {
		if recover() != nil {
			v = nil
		}
	}()
	return runtime.Fetch(base, prop)
}

const (
	negFunc = "__neg"
	sumFunc = "__sum"
)

// nilSafeOps maps the operators the patcher rewrites to their functions.
var nilSafeOps = map[string]string{
	"+": "__add", "-": "__sub", "*": "__mul", "/": "__div", "%": "__mod", "**": "__pow", "^": "__pow",
	"<": "__lt", ">": "__gt", "<=": "__le", ">=": "__ge",
}

// opFuncs implement nilSafeOps with expr's own runtime (its panics become
// errors in vm.Run like those of the native operators).
var opFuncs = map[string]fn{
	"+":  arith(func(a, b any) any { return runtime.Add(a, b) }),
	"-":  arith(func(a, b any) any { return runtime.Subtract(a, b) }),
	"*":  arith(func(a, b any) any { return runtime.Multiply(a, b) }),
	"/":  arith(func(a, b any) any { return runtime.Divide(a, b) }),
	"%":  arith(func(a, b any) any { return runtime.Modulo(a, b) }),
	"**": arith(func(a, b any) any { return runtime.Exponent(a, b) }),
	"^":  arith(func(a, b any) any { return runtime.Exponent(a, b) }),
	"<":  compare(runtime.Less),
	">":  compare(runtime.More),
	"<=": compare(runtime.LessOrEqual),
	">=": compare(runtime.MoreOrEqual),
}

func arith(f func(a, b any) any) fn {
	return func(args ...any) (any, error) {
		if args[0] == nil || args[1] == nil {
			return nil, nil
		}
		return f(args[0], args[1]), nil
	}
}

func compare(f func(a, b any) bool) fn {
	return func(args ...any) (any, error) {
		if args[0] == nil || args[1] == nil {
			return false, nil
		}
		return f(args[0], args[1]), nil
	}
}
