package connectors

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
)

// normalizeStd converts encoding/json's output (UseNumber) to DecodeJSON's types.
func normalizeStd(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = normalizeStd(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = normalizeStd(e)
		}
		return x
	case json.Number:
		if n, err := x.Int64(); err == nil && !strings.ContainsAny(string(x), ".eE") {
			return n
		}
		f, err := x.Float64()
		if err != nil {
			panic(errOutOfRange) // encoding/json without UseNumber rejects it too
		}
		return f
	}
	return v
}

func stdDecode(b []byte) (any, error) {
	if !json.Valid(b) {
		return nil, &JSONSyntaxError{Msg: "invalid"}
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return normalizeChecked(v)
}

var errOutOfRange = &JSONSyntaxError{Msg: "number out of range"}

func normalizeChecked(v any) (out any, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, errOutOfRange
		}
	}()
	return normalizeStd(v), nil
}

func TestDecodeJSON(t *testing.T) {
	cases := []struct {
		in   string
		want any
	}{
		{`{"id": 788032119674292922}`, map[string]any{"id": int64(788032119674292922)}},
		{`{"id": -9223372036854775808}`, map[string]any{"id": int64(math.MinInt64)}},
		{`{"big": 92233720368547758070}`, map[string]any{"big": 9.223372036854776e19}},
		{`{"p": 19.99, "e": 1e3, "z": 0, "n": -0.5}`, map[string]any{"p": 19.99, "e": 1000.0, "z": int64(0), "n": -0.5}},
		{`{"s": "a\"b\\c\/d\n\u00e9\ud83d\ude00"}`, map[string]any{"s": "a\"b\\c/d\né😀"}},
		{`{"a": [1, "x", true, false, null, {"b": []}]}`, map[string]any{"a": []any{int64(1), "x", true, false, nil, map[string]any{"b": []any{}}}}},
		{` [ ] `, []any{}},
		{`"x"`, "x"},
		{`null`, nil},
	}
	for _, c := range cases {
		got, err := DecodeJSON([]byte(c.in))
		if err != nil {
			t.Errorf("DecodeJSON(%s): %v", c.in, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("DecodeJSON(%s) = %#v, want %#v", c.in, got, c.want)
		}
	}
}

func TestDecodeJSONErrors(t *testing.T) {
	for _, in := range []string{``, `{`, `{"a"}`, `{"a":1,}`, `[1,]`, `01`, `1.`, `1e`, `-`, `tru`, `"abc`, "\"a\x01\"", `{"a":1} x`, `1e999`, `"\x"`, `"\u12"`, strings.Repeat("[", 2000)} {
		if _, err := DecodeJSON([]byte(in)); err == nil {
			t.Errorf("DecodeJSON(%q): no error", in)
		}
	}
}

func TestRecordDecodeKeepsLargeIDs(t *testing.T) {
	r := Record{Raw: []byte(`{"id": 788032119674292922}`), Position: "x.json:record 1"}
	if err := r.Decode(); err != nil {
		t.Fatal(err)
	}
	if r.Data["id"] != int64(788032119674292922) {
		t.Fatalf("id = %#v", r.Data["id"])
	}
	bad := Record{Raw: []byte(`[1]`), Position: "x.json:record 2"}
	err := bad.Decode()
	if err == nil || !strings.Contains(err.Error(), "x.json:record 2 is a JSON array, not an object") || CategoryOf(err) != CategoryPermanent {
		t.Fatalf("err = %v", err)
	}
}

// FuzzDecodeJSON checks DecodeJSON against encoding/json: same acceptance, same values.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `[1.5,"x",null]`, `"\u00e9"`, `{"id":788032119674292922}`, `1e5`, `{"a":{"b":[true,false]}}`, `"\ud800"`, "\"\xff\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := DecodeJSON(b)
		want, stdErr := stdDecode(b)
		if (err == nil) != (stdErr == nil) {
			// encoding/json accepts numbers that overflow float64? No: both reject.
			t.Fatalf("acceptance differs on %q: ours %v, encoding/json %v", b, err, stdErr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("value differs on %q: ours %#v, encoding/json %#v", b, got, want)
		}
	})
}

func BenchmarkDecodeJSON(b *testing.B) {
	rec := []byte(`{"id":8123456789012,"title":" Organic Cotton Tee ","body_html":"<p>Soft, midweight tee made from 100% organic cotton.</p>","vendor":"Acme Apparel","product_type":"Shirts","handle":"organic-cotton-tee","status":"active","tags":"cotton, organic, tee","created_at":"2024-11-04T09:12:33-05:00","updated_at":"2025-03-18T14:27:05-04:00","variants":[{"id":44012345678901,"sku":"TEE-ORG-S","price":"19.99","compare_at_price":"24.99","inventory_quantity":42,"option1":"Small","barcode":"0860001234501"},{"id":44012345678902,"sku":"TEE-ORG-M","price":"19.99","compare_at_price":null,"inventory_quantity":57,"option1":"Medium","barcode":"0860001234502"}]}`)
	b.Run("ferry", func(b *testing.B) {
		b.SetBytes(int64(len(rec)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := DecodeJSON(rec); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.SetBytes(int64(len(rec)))
		b.ReportAllocs()
		for b.Loop() {
			var v any
			if err := json.Unmarshal(rec, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
}
