package engine

import (
	"encoding/json"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/lang"
)

func TestFunctions(t *testing.T) {
	rec := map[string]any{
		"title":    "  Blue Shirt ",
		"name":     "héllo wörld",
		"id":       7595448918.0,
		"price":    "19.99",
		"qty":      3.0,
		"tags":     "a, b, c",
		"list":     []any{"x", nil, 2.0},
		"empty":    "",
		"obj":      map[string]any{"k": "v"},
		"variants": []any{map[string]any{"sku": "S1", "n": 2.0}, map[string]any{"sku": "S2", "n": 5.0}},
		"ts":       "2024-03-10T12:30:00Z",
		"flag":     "yes",
	}
	tests := []struct {
		src     string
		want    any
		wantErr string
	}{
		// strings
		{src: `trim(title)`, want: "Blue Shirt"},
		{src: `trim("xxaxx", "x")`, want: "a"},
		{src: `trim(missing)`, want: nil},
		{src: `trimPrefix("SKU-1", "SKU-")`, want: "1"},
		{src: `trimSuffix("file.csv", ".csv")`, want: "file"},
		{src: `lower("ABC")`, want: "abc"},
		{src: `upper(name)`, want: "HÉLLO WÖRLD"},
		{src: `upper(missing)`, want: nil},
		{src: `titleCase(name)`, want: "Héllo Wörld"},
		{src: `titleCase("hELLO o'neil-smith")`, want: "Hello O'neil-Smith"},
		{src: `split(tags, ", ")`, want: []any{"a", "b", "c"}},
		{src: `split(tags, ", ", 2)`, want: []any{"a", "b, c"}},
		{src: `split(empty, ",")`, want: []any{}},
		{src: `split(missing, ",")`, want: nil},
		{src: `join(list, "-")`, want: "x-2"},
		{src: `join(split(tags, ", "))`, want: "abc"},
		{src: `join(title, ",")`, wantErr: "join: expected a list"},
		{src: `replace("a-b-c", "-", "+")`, want: "a+b+c"},
		{src: `regexMatch("SKU-123", "^SKU-[0-9]+$")`, want: true},
		{src: `regexMatch(missing, "x")`, want: false},
		{src: `regexReplace("a1b22", "[0-9]+", "#")`, want: "a#b#"},
		{src: `regexReplace("john smith", "(\\w+) (\\w+)", "$2, $1")`, want: "smith, john"},
		{src: `substring(name, 0, 5)`, want: "héllo"},
		{src: `substring(name, 6)`, want: "wörld"},
		{src: `substring(name, -5)`, want: "wörld"},
		{src: `substring("abc", 2, 99)`, want: "c"},
		{src: `substring("abc", 3, 1)`, want: ""},
		{src: `padLeft("42", 5, "0")`, want: "00042"},
		{src: `padRight("ab", 4)`, want: "ab  "},
		{src: `padLeft("abcdef", 3, "0")`, want: "abcdef"},
		{src: `padLeft("ö", 3, "é")`, want: "ééö"},
		// numbers
		{src: `int("42")`, want: 42},
		{src: `int("42.9")`, want: 42},
		{src: `int(qty)`, want: 3},
		{src: `int(missing)`, want: nil},
		{src: `int("abc")`, wantErr: `int: "abc" is not a number`},
		{src: `float(price)`, want: 19.99},
		{src: `float(" 2.5 ")`, want: 2.5},
		{src: `int(float(price) * 100)`, want: 1999},
		{src: `round(2.345, 2)`, want: 2.35},
		{src: `round(-2.5)`, want: -3.0},
		{src: `round(price, 1)`, want: 20.0},
		{src: `sum(map(variants, .n))`, want: 7.0},
		{src: `max(1, 5, 3)`, want: 5},
		{src: `min(map(variants, .n))`, want: 2.0},
		{src: `parseMoney("€1.234,56")`, want: 1234.56},
		{src: `parseMoney("$1,234.56")`, want: 1234.56},
		{src: `parseMoney("19.99")`, want: 19.99},
		{src: `parseMoney("19,99 EUR")`, want: 19.99},
		{src: `parseMoney("1.234")`, want: 1234.0},
		{src: `parseMoney("-5.00")`, want: -5.0},
		{src: `parseMoney("(12.50)")`, want: -12.5},
		{src: `parseMoney(12)`, want: 12.0},
		{src: `parseMoney("n/a")`, wantErr: "has no amount"},
		{src: `formatDecimal(19.9, 2)`, want: "19.90"},
		{src: `formatDecimal(2.345, 2)`, want: "2.35"},
		// types
		{src: `string(id)`, want: "7595448918"},
		{src: `string(1.5)`, want: "1.5"},
		{src: `string(true)`, want: "true"},
		{src: `string(missing)`, want: nil},
		{src: `string(obj)`, want: `{"k":"v"}`},
		{src: `bool(flag)`, want: true},
		{src: `bool("off")`, want: false},
		{src: `bool(0)`, want: false},
		{src: `bool("maybe")`, wantErr: "is not a boolean"},
		{src: `toJSON(obj)`, want: `{"k":"v"}`},
		{src: `fromJSON('{"a":[1,2]}').a[1]`, want: 2.0},
		{src: `fromJSON(missing)`, want: nil},
		{src: `fromJSON("{")`, wantErr: "fromJSON"},
		// dates
		{src: `formatTime(parseTime(ts), "2006-01-02")`, want: "2024-03-10"},
		{src: `formatTime(ts, "%d.%m.%Y %H:%M")`, want: "10.03.2024 12:30"},
		{src: `formatTime(ts, "15:04", "Europe/Amsterdam")`, want: "13:30"},
		{src: `formatTime(parseTime("10.03.2024", "%d.%m.%Y"), "RFC3339")`, want: "2024-03-10T00:00:00Z"},
		{src: `formatTime(parseTime("2024-03-10 08:00", "", "Europe/Amsterdam"), "RFC3339")`, want: "2024-03-10T08:00:00+01:00"},
		{src: `formatTime(parseTime(1710073800), "RFC3339")`, want: "2024-03-10T12:30:00Z"},
		{src: `formatTime(ts, "unix")`, want: 1710073800},
		{src: `formatTime(parseTime("1710073800000", "unixms"), "DateOnly")`, want: "2024-03-10"},
		{src: `parseTime("2024-03-10").Year()`, want: 2024},
		{src: `parseTime(missing)`, want: nil},
		{src: `parseTime(empty)`, want: nil},
		{src: `parseTime("yesterday")`, wantErr: "cannot parse time"},
		{src: `parseTime(ts, "", "Mars/Base")`, wantErr: "unknown time zone"},
		{src: `formatTime(addDuration(ts, "1h30m"), "15:04")`, want: "14:00"},
		{src: `formatTime(addDuration(ts, "2d"), "DateOnly")`, want: "2024-03-12"},
		{src: `formatTime(addDuration(ts, "-1d"), "DateOnly")`, want: "2024-03-09"},
		{src: `diff("2024-03-10T13:00:00Z", ts)`, want: 1800.0},
		{src: `diff(ts, missing)`, want: nil},
		{src: `now().Year() >= 2024`, want: true},
		{src: `duration("1h").Minutes()`, want: 60.0},
		// ids and hashes
		{src: `sha256("abc")`, want: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{src: `hmacSHA256("key", "The quick brown fox jumps over the lazy dog")`, want: "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"},
		{src: `base64Encode("hi there")`, want: "aGkgdGhlcmU="},
		{src: `base64Decode("aGkgdGhlcmU=")`, want: "hi there"},
		{src: `base64Decode("aGkgdGhlcmU")`, want: "hi there"},
		{src: `base64Decode("!!")`, wantErr: "not base64"},
		// null handling
		{src: `coalesce(missing, empty, title)`, want: "  Blue Shirt "},
		{src: `coalesce(missing, empty)`, want: nil},
		{src: `coalesce(missing, 0)`, want: 0},
		{src: `default(missing, "x")`, want: "x"},
		{src: `default(empty, "x")`, want: ""},
		{src: `default(qty, 1)`, want: 3.0},
		// tables
		{src: `lookup("colors", "r")`, want: "red"},
		{src: `lookup("colors", 1)`, want: "one"},
		{src: `lookup("colors", "zz")`, want: "unknown"},
		{src: `lookup("colors", "zz", "fallback")`, want: "fallback"},
		{src: `lookup("colors", missing)`, want: "unknown"},
		// missing fields are nil, never a crash
		{src: `missing`, want: nil},
		{src: `missing.a.b`, want: nil},
		{src: `obj.k.deeper`, want: nil},
		{src: `variants[9].sku`, want: nil},
		{src: `variants[-1].sku`, want: "S2"},
		{src: `variants[0]["sku"]`, want: "S1"},
		{src: `title[2]`, want: "B"},
		{src: `missing?.a ?? "d"`, want: "d"},
		{src: `$env["title"] == title`, want: true},
		{src: `missing == nil`, want: true},
		// null propagates through arithmetic; ordering with null is false
		{src: `missing * 100`, want: nil},
		{src: `"/items/" + missing`, want: nil},
		{src: `-missing`, want: nil},
		{src: `-qty`, want: -3.0},
		{src: `missing > 0`, want: false},
		{src: `qty > 2 && qty <= 3`, want: true},
		{src: `qty ** 2`, want: 9.0},
		{src: `7 % 4`, want: 3},
		{src: `10 / 4`, want: 2.5},
		{src: `"a" + "b"`, want: "ab"},
		{src: `sum([1, nil, 2.5])`, want: 3.5},
		{src: `sum(variants, .n)`, want: 7.0},
		{src: `title + 1`, wantErr: "invalid operation"},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			got, err := evalField(t, tt.src, rec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want containing %q (got %#v)", err, tt.wantErr, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %#v (%T), want %#v (%T)", got, got, tt.want, tt.want)
			}
		})
	}
}

func TestUUID(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	a, err := evalField(t, `uuid()`, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := evalField(t, `uuid()`, nil)
	if !re.MatchString(a.(string)) || a == b {
		t.Fatalf("uuid() = %v, %v", a, b)
	}
}

func TestCompileTimeFunctionChecks(t *testing.T) {
	for _, src := range []string{
		`regexMatch(title, 5)`, // pattern must be a string
		`trim()`,               // arity
		`sha256(a, b, c)`,
		`nosuchfunc(title)`,
	} {
		cfg := newConfig()
		cfg.Mappings["m"] = &lang.Mapping{Name: "m", Fields: []*lang.Field{field("v", src)}}
		if _, diags := Compile(cfg); !diags.HasErrors() {
			t.Errorf("%s: expected a compile error", src)
		}
	}
}

func TestStringify(t *testing.T) {
	tm := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tt := range []struct {
		in   any
		want string
	}{
		{1e15 + 1, "1000000000000001"}, {12.0, "12"}, {0.1, "0.1"}, {int64(9), "9"},
		{tm, "2024-01-02T03:04:05Z"}, {[]any{1.0, "a"}, `[1,"a"]`}, {json.Number("1.50"), "1.50"},
	} {
		if got, _ := stringify(tt.in); got != tt.want {
			t.Errorf("stringify(%#v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
