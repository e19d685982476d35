package webhook

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

// validCases exercise every rule of the JSON grammar, valid and not.
var validCases = []string{
	`{}`, `[]`, `""`, `0`, `-0`, `1.5e+3`, `-12.0E-1`, `true`, `false`, `null`, " \t\r\n{} \n",
	`{"a":[1,{"b":null}],"c":"\u00e9\n\"\\\/\b\f\r\t"}`, "\"\xff\xfe\"", `[1,]`, `[,1]`, `{"a":1,}`, `{,}`,
	`{"a" 1}`, `{"a":}`, `{1:2}`, `[01]`, `[1.]`, `[.5]`, `[1e]`, `[1e+]`, `[-]`, `[+1]`, `[0x1]`, `[1 2]`,
	`"\u00g0"`, `"\u00e"`, `"\x"`, "\"a\tb\"", "\"a\x00\"", `"abc`, `[tru]`, `[nul]`, `[True]`, `{"a":1}}`,
	`{"a":1} x`, `[[]`, `[]]`, `{`, `[`, `"`, ``, ` `, `{"a":1 "b":2}`, `[1,,2]`, "\xef\xbb\xbf{}", `{"a":{"b":[{"c":[]}]}}`,
}

// Valid agrees with json.Valid, on the cases and at the nesting limit.
func TestValidAgreesWithEncodingJSON(t *testing.T) {
	cases := append([]string(nil), validCases...)
	for _, n := range []int{maxDepth, maxDepth + 1} {
		cases = append(cases, strings.Repeat("[", n)+strings.Repeat("]", n),
			`{"a":`+strings.Repeat(`{"a":`, n-1)+"1"+strings.Repeat("}", n))
	}
	for _, c := range cases {
		if got, want := Valid([]byte(c)), json.Valid([]byte(c)); got != want {
			t.Errorf("Valid(%.40q) = %t, json.Valid: %t", c, got, want)
		}
	}
}

// Extract finds records in exactly the bodies json.Valid accepts, and a
// syntax error anywhere in the body, even after where a records path
// fails, is reported as malformed JSON.
func TestExtractRefusesWhatJSONRefuses(t *testing.T) {
	for _, c := range validCases {
		for _, path := range [][]string{nil, {"a"}, {"a", "b"}} {
			_, err := Extract([]byte(c), path)
			if err != nil && !errors.Is(err, ErrInvalidPayload) {
				t.Fatalf("%q %v: %v", c, path, err)
			}
			malformed := err != nil && strings.Contains(err.Error(), "malformed JSON")
			if strings.TrimSpace(c) != "" && malformed == json.Valid([]byte(c)) {
				t.Errorf("Extract(%q, %v): %v; json.Valid: %t", c, path, err, json.Valid([]byte(c)))
			}
		}
	}
	for _, c := range []struct{ body, path string }{
		{`{"x":1,"y":[}`, "a"},                // no key a, then a syntax error
		{`{"a":{"c":1},"y":tru}`, "a.b"},      // no key b inside a
		{`{"a":"s","b":[1,]}`, "a"},           // a is a string
		{`[{"id":1},2,{"id":}]`, ""},          // record 2 is a number
		{`{"a":[{"id":1}],"b":01}`, "a"},      // after the records
		{`{"a":{"b":[{}]},"c":[1 2]}`, "a.b"}, // in an enclosing object
		{`{"a":[{}]} {}`, "a"},                // after the body
		{`{"a":[{}]`, "a"},                    // unclosed
	} {
		p, _ := ParsePath(c.path)
		if _, err := Extract([]byte(c.body), p); err == nil || !strings.Contains(err.Error(), "malformed JSON at byte") {
			t.Errorf("Extract(%s, %q): %v, want malformed JSON", c.body, c.path, err)
		}
	}
}

// FuzzExtract: Valid is json.Valid, Extract succeeds only on valid JSON,
// and its records are objects in the body, never a panic.
func FuzzExtract(f *testing.F) {
	for _, c := range validCases {
		f.Add([]byte(c), "")
	}
	products, _ := os.ReadFile("testdata/webhook-products-update.json")
	f.Add(products, "product.variants")
	f.Add([]byte(`{"a":{"b":[{"x":"}]\"{"}],"c":[1,{"d":[]}]},"e":-1.5e3}`), "a.b")
	f.Fuzz(func(t *testing.T, body []byte, path string) {
		if Valid(body) != json.Valid(body) {
			t.Fatalf("Valid(%q) = %t, json.Valid disagrees", body, Valid(body))
		}
		p, err := ParsePath(path)
		if err != nil {
			return
		}
		recs, err := Extract(body, p)
		if err != nil {
			if !errors.Is(err, ErrInvalidPayload) {
				t.Fatal(err)
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("records from invalid JSON %q", body)
		}
		for _, r := range recs {
			var m map[string]json.RawMessage
			if err := json.Unmarshal(r, &m); err != nil {
				t.Fatalf("record %q of %q: %v", r, body, err)
			}
		}
	})
}

// BenchmarkExtract: the products/update fixture as one record. json.Valid
// alone is what validating cost before the walk, in its own pass.
func BenchmarkExtract(b *testing.B) {
	body, err := os.ReadFile("testdata/webhook-products-update.json")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Extract", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, err := Extract(body, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json.Valid", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if !json.Valid(body) {
				b.Fatal("invalid")
			}
		}
	})
}
