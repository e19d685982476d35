package patch

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// decodeModes decode a test document both ways the API may hold it.
var decodeModes = []struct {
	name      string
	useNumber bool
}{{"float64", false}, {"json.Number", true}}

func decode(t testing.TB, s string, useNumber bool) any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	if useNumber {
		dec.UseNumber()
	}
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("bad test JSON %s: %v", s, err)
	}
	return v
}

// sameJSON compares a result with expected JSON text by JSON value.
func sameJSON(t *testing.T, got any, want string) {
	t.Helper()
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatalf("result does not marshal: %v", err)
	}
	if !equal(decode(t, string(b), true), decode(t, want, true)) {
		t.Errorf("got  %s\nwant %s", b, want)
	}
}

// RFC 6902 Appendix A.
var rfc6902 = []struct {
	name, doc, patch, want string
	// err is a substring of the expected error; "" = success.
	err string
}{
	{"A.1 adding an object member",
		`{"foo": "bar"}`,
		`[{"op": "add", "path": "/baz", "value": "qux"}]`,
		`{"baz": "qux", "foo": "bar"}`, ""},
	{"A.2 adding an array element",
		`{"foo": ["bar", "baz"]}`,
		`[{"op": "add", "path": "/foo/1", "value": "qux"}]`,
		`{"foo": ["bar", "qux", "baz"]}`, ""},
	{"A.3 removing an object member",
		`{"baz": "qux", "foo": "bar"}`,
		`[{"op": "remove", "path": "/baz"}]`,
		`{"foo": "bar"}`, ""},
	{"A.4 removing an array element",
		`{"foo": ["bar", "qux", "baz"]}`,
		`[{"op": "remove", "path": "/foo/1"}]`,
		`{"foo": ["bar", "baz"]}`, ""},
	{"A.5 replacing a value",
		`{"baz": "qux", "foo": "bar"}`,
		`[{"op": "replace", "path": "/baz", "value": "boo"}]`,
		`{"baz": "boo", "foo": "bar"}`, ""},
	{"A.6 moving a value",
		`{"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}}`,
		`[{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}]`,
		`{"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}`, ""},
	{"A.7 moving an array element",
		`{"foo": ["all", "grass", "cows", "eat"]}`,
		`[{"op": "move", "from": "/foo/1", "path": "/foo/3"}]`,
		`{"foo": ["all", "cows", "eat", "grass"]}`, ""},
	{"A.8 testing a value: success",
		`{"baz": "qux", "foo": ["a", 2, "c"]}`,
		`[{"op": "test", "path": "/baz", "value": "qux"}, {"op": "test", "path": "/foo/1", "value": 2}]`,
		`{"baz": "qux", "foo": ["a", 2, "c"]}`, ""},
	{"A.9 testing a value: error",
		`{"baz": "qux"}`,
		`[{"op": "test", "path": "/baz", "value": "bar"}]`,
		"", `operation 0 (test /baz): test failed: the value is "qux", not "bar"`},
	{"A.10 adding a nested member object",
		`{"foo": "bar"}`,
		`[{"op": "add", "path": "/child", "value": {"grandchild": {}}}]`,
		`{"foo": "bar", "child": {"grandchild": {}}}`, ""},
	{"A.11 ignoring unrecognized elements",
		`{"foo": "bar"}`,
		`[{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}]`,
		`{"foo": "bar", "baz": "qux"}`, ""},
	{"A.12 adding to a nonexistent target",
		`{"foo": "bar"}`,
		`[{"op": "add", "path": "/baz/bat", "value": "qux"}]`,
		"", `operation 0 (add /baz/bat): /baz does not exist`},
	{"A.13 invalid JSON Patch document",
		`{"foo": "bar"}`,
		`[{"op": "add", "path": "/baz", "value": "qux", "op": "remove"}]`,
		"", `member "op" appears more than once`},
	{"A.14 ~ escape ordering",
		`{"/": 9, "~1": 10}`,
		`[{"op": "test", "path": "/~01", "value": 10}]`,
		`{"/": 9, "~1": 10}`, ""},
	{"A.15 comparing strings and numbers",
		`{"/": 9, "~1": 10}`,
		`[{"op": "test", "path": "/~01", "value": "10"}]`,
		"", `test failed: the value is 10, not "10"`},
	{"A.16 adding an array value",
		`{"foo": ["bar"]}`,
		`[{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}]`,
		`{"foo": ["bar", ["abc", "def"]]}`, ""},
}

func TestRFC6902AppendixA(t *testing.T) {
	for _, m := range decodeModes {
		for _, tt := range rfc6902 {
			t.Run(m.name+"/"+tt.name, func(t *testing.T) {
				runCase(t, decode(t, tt.doc, m.useNumber), tt.patch, tt.want, tt.err)
			})
		}
	}
}

func runCase(t *testing.T, doc any, patch, want, wantErr string) {
	t.Helper()
	before, _ := json.Marshal(doc)
	got, err := ApplyJSONPatch(doc, []byte(patch))
	after, _ := json.Marshal(doc)
	if !bytes.Equal(before, after) {
		t.Errorf("input document changed: %s -> %s", before, after)
	}
	if wantErr != "" {
		if err == nil {
			b, _ := json.Marshal(got)
			t.Fatalf("no error, result %s; want error containing %q", b, wantErr)
		}
		var pe *Error
		if !errors.As(err, &pe) {
			t.Fatalf("error %T is not *Error: %v", err, err)
		}
		if !strings.Contains(err.Error(), wantErr) {
			t.Errorf("error %q does not contain %q", err, wantErr)
		}
		if got != nil {
			t.Errorf("result %v on error, want nil", got)
		}
		return
	}
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	sameJSON(t, got, want)
}

// More cases, mostly from the json-patch test suite's spirit: edge cases of
// pointers, arrays and the whole document.
var moreCases = []struct {
	name, doc, patch, want, err string
}{
	{"empty patch", `{"a": 1}`, `[]`, `{"a": 1}`, ""},
	{"replace whole document", `{"a": 1}`, `[{"op": "replace", "path": "", "value": [1]}]`, `[1]`, ""},
	{"add whole document", `{"a": 1}`, `[{"op": "add", "path": "", "value": {"b": 2}}]`, `{"b": 2}`, ""},
	{"test whole document", `{"a": [1, {"b": null}]}`, `[{"op": "test", "path": "", "value": {"a": [1.0, {"b": null}]}}]`, `{"a": [1, {"b": null}]}`, ""},
	{"remove whole document", `{"a": 1}`, `[{"op": "remove", "path": ""}]`, "", `operation 0 (remove ""): cannot remove the whole document`},
	{"empty key", `{"": 1}`, `[{"op": "replace", "path": "/", "value": 2}]`, `{"": 2}`, ""},
	{"escapes", `{"a/b": {"m~n": 1}}`, `[{"op": "copy", "from": "/a~1b/m~0n", "path": "/x~0~1"}]`, `{"a/b": {"m~n": 1}, "x~/": 1}`, ""},
	{"add replaces member", `{"a": 1}`, `[{"op": "add", "path": "/a", "value": 2}]`, `{"a": 2}`, ""},
	{"add at array end by index", `[1, 2]`, `[{"op": "add", "path": "/2", "value": 3}]`, `[1, 2, 3]`, ""},
	{"add at array start", `[1, 2]`, `[{"op": "add", "path": "/0", "value": 0}]`, `[0, 1, 2]`, ""},
	{"add null value", `{}`, `[{"op": "add", "path": "/a", "value": null}]`, `{"a": null}`, ""},
	{"add nested array append", `{"a": [[1]]}`, `[{"op": "add", "path": "/a/0/-", "value": 2}]`, `{"a": [[1, 2]]}`, ""},
	{"array key in object is a string", `{"0": "x"}`, `[{"op": "replace", "path": "/0", "value": "y"}]`, `{"0": "y"}`, ""},
	{"dash key in object", `{}`, `[{"op": "add", "path": "/-", "value": 1}]`, `{"-": 1}`, ""},
	{"remove last array element", `[1, 2, 3]`, `[{"op": "remove", "path": "/2"}]`, `[1, 2]`, ""},
	{"move to array end", `{"a": [1, 2, 3]}`, `[{"op": "move", "from": "/a/0", "path": "/a/-"}]`, `{"a": [2, 3, 1]}`, ""},
	{"move onto itself", `{"a": {"b": 1}}`, `[{"op": "move", "from": "/a", "path": "/a"}]`, `{"a": {"b": 1}}`, ""},
	{"move between arrays", `{"a": [1], "b": []}`, `[{"op": "move", "from": "/a/0", "path": "/b/0"}]`, `{"a": [], "b": [1]}`, ""},
	{"copy is deep", `{"a": {"b": [1]}}`, `[{"op": "copy", "from": "/a", "path": "/c"}, {"op": "add", "path": "/c/b/-", "value": 2}]`, `{"a": {"b": [1]}, "c": {"b": [1, 2]}}`, ""},
	{"copy into own child", `{"a": {"b": 1}}`, `[{"op": "copy", "from": "/a", "path": "/a/c"}]`, `{"a": {"b": 1, "c": {"b": 1}}}`, ""},
	{"test numbers by value", `{"n": 100}`, `[{"op": "test", "path": "/n", "value": 1e2}, {"op": "test", "path": "/n", "value": 100.000}]`, `{"n": 100}`, ""},
	{"test object member order", `{"a": 1, "b": 2}`, `[{"op": "test", "path": "", "value": {"b": 2, "a": 1}}]`, `{"a": 1, "b": 2}`, ""},
	{"test array order matters", `[1, 2]`, `[{"op": "test", "path": "", "value": [2, 1]}]`, "", "test failed"},
	{"test null vs missing", `{"a": null}`, `[{"op": "test", "path": "/b", "value": null}]`, "", "operation 0 (test /b): path does not exist"},
	{"test null", `{"a": null}`, `[{"op": "test", "path": "/a", "value": null}]`, `{"a": null}`, ""},
	{"test extra member", `{"a": {"x": 1, "y": 2}}`, `[{"op": "test", "path": "/a", "value": {"x": 1}}]`, "", "test failed"},

	// Errors, each naming the operation.
	{"later op fails", `{"fields": {}}`, `[{"op": "add", "path": "/a", "value": 1}, {"op": "test", "path": "/a", "value": 1}, {"op": "replace", "path": "/fields/sku", "value": 1}]`,
		"", "operation 2 (replace /fields/sku): path does not exist"},
	{"unknown op", `{}`, `[{"op": "frobnicate", "path": "/a"}]`, "", `operation 0 (frobnicate /a): unknown op "frobnicate"`},
	{"missing op", `{}`, `[{"path": "/a"}]`, "", `operation 0: missing "op"`},
	{"op not a string", `{}`, `[{"op": 1, "path": "/a"}]`, "", `operation 0: "op" must be a string`},
	{"missing path", `{}`, `[{"op": "add", "value": 1}]`, "", `operation 0 (add ""): missing "path"`},
	{"path not a string", `{}`, `[{"op": "add", "path": 5, "value": 1}]`, "", `"path" must be a string`},
	{"path null", `{}`, `[{"op": "remove", "path": null}]`, "", `"path" must be a string`},
	{"missing value", `{}`, `[{"op": "add", "path": "/a"}]`, "", `operation 0 (add /a): missing "value"`},
	{"missing value replace", `{"a": 1}`, `[{"op": "replace", "path": "/a"}]`, "", `missing "value"`},
	{"missing value test", `{"a": 1}`, `[{"op": "test", "path": "/a"}]`, "", `missing "value"`},
	{"missing from", `{"a": 1}`, `[{"op": "move", "path": "/b"}]`, "", `operation 0 (move /b): missing "from"`},
	{"missing from copy", `{"a": 1}`, `[{"op": "copy", "path": "/b"}]`, "", `missing "from"`},
	{"from not a string", `{"a": 1}`, `[{"op": "copy", "from": ["a"], "path": "/b"}]`, "", `"from" must be a string`},
	{"pointer without slash", `{"a": 1}`, `[{"op": "remove", "path": "a"}]`, "", `operation 0 (remove a): invalid path: JSON pointer a must be empty or start with "/"`},
	{"bad escape", `{"a": 1}`, `[{"op": "remove", "path": "/a~2"}]`, "", `"~" must be followed by 0 or 1`},
	{"trailing tilde", `{"a": 1}`, `[{"op": "remove", "path": "/a~"}]`, "", `"~" must be followed by 0 or 1`},
	{"bad from pointer", `{"a": 1}`, `[{"op": "move", "from": "a", "path": "/b"}]`, "", `operation 0 (move from a to /b): invalid from`},
	{"leading zero", `{"a": [1, 2]}`, `[{"op": "remove", "path": "/a/01"}]`, "", `array index "01" has a leading zero`},
	{"leading zero add", `{"a": [1, 2]}`, `[{"op": "add", "path": "/a/00", "value": 1}]`, "", `leading zero`},
	{"negative index", `{"a": [1, 2]}`, `[{"op": "remove", "path": "/a/-1"}]`, "", `array index "-1" is not a number`},
	{"index not a number", `{"a": [1, 2]}`, `[{"op": "replace", "path": "/a/x", "value": 1}]`, "", `array index "x" is not a number`},
	{"empty index", `{"a": [1, 2]}`, `[{"op": "replace", "path": "/a/", "value": 1}]`, "", `array index "" is not a number`},
	{"index out of range", `{"a": [1, 2]}`, `[{"op": "replace", "path": "/a/2", "value": 1}]`, "", `array index 2 is out of range (the array has 2 elements)`},
	{"add index out of range", `{"a": [1, 2]}`, `[{"op": "add", "path": "/a/3", "value": 1}]`, "", `array index 3 is out of range`},
	{"huge index", `{"a": [1]}`, `[{"op": "remove", "path": "/a/99999999999999999999999"}]`, "", `out of range`},
	{"dash for remove", `{"a": [1]}`, `[{"op": "remove", "path": "/a/-"}]`, "", `"-" (the end of the array) can only be used by add`},
	{"dash for test", `{"a": [1]}`, `[{"op": "test", "path": "/a/-", "value": 1}]`, "", `can only be used by add`},
	{"dash in the middle", `{"a": [[1]]}`, `[{"op": "add", "path": "/a/-/0", "value": 1}]`, "", `/a/-: "-" (the end of the array) can only be used by add`},
	{"remove missing", `{"a": 1}`, `[{"op": "remove", "path": "/b"}]`, "", `operation 0 (remove /b): path does not exist`},
	{"replace missing", `{"a": 1}`, `[{"op": "replace", "path": "/b", "value": 1}]`, "", `path does not exist`},
	{"traverse a scalar", `{"a": "s"}`, `[{"op": "add", "path": "/a/b", "value": 1}]`, "", `/a is a string, not an object or array`},
	{"traverse a scalar deep", `{"a": 1}`, `[{"op": "add", "path": "/a/b/c", "value": 1}]`, "", `/a is a number, not an object or array`},
	{"traverse root scalar", `"s"`, `[{"op": "add", "path": "/a", "value": 1}]`, "", `the document is a string, not an object or array`},
	{"move into own child", `{"a": {"b": {}}}`, `[{"op": "move", "from": "/a", "path": "/a/b/c"}]`, "", `operation 0 (move from /a to /a/b/c): cannot move /a into its own child /a/b/c`},
	{"move root into child", `{"a": {}}`, `[{"op": "move", "from": "", "path": "/a"}]`, "", `operation 0 (move from "" to /a): cannot move "" into its own child /a`},
	{"move missing from", `{"a": 1}`, `[{"op": "move", "from": "/x", "path": "/b"}]`, "", `operation 0 (move from /x to /b): from: path does not exist`},
	{"copy missing from", `{"a": 1}`, `[{"op": "copy", "from": "/x/y", "path": "/b"}]`, "", `from does not exist: /x does not`},
	{"move onto itself missing", `{}`, `[{"op": "move", "from": "/x", "path": "/x"}]`, "", `from does not exist`},
	{"move to missing parent", `{"a": 1}`, `[{"op": "move", "from": "/a", "path": "/x/y"}]`, "", `/x does not exist`},
	{"test missing", `{}`, `[{"op": "test", "path": "/a/b", "value": 1}]`, "", `path does not exist: /a does not`},
	{"test array out of range", `[]`, `[{"op": "test", "path": "/0", "value": 1}]`, "", `array index 0 is out of range`},
	{"test type mismatch", `{"a": true}`, `[{"op": "test", "path": "/a", "value": "true"}]`, "", `test failed: the value is true, not "true"`},
	{"test long values are cut", `{"a": "` + strings.Repeat("x", 200) + `"}`, `[{"op": "test", "path": "/a", "value": 1}]`, "", `xxx…, not 1`},

	// Malformed patches: the whole patch is at fault.
	{"patch not JSON", `{}`, `[{"op": `, "", `the patch is not valid JSON`},
	{"patch object", `{}`, `{"op": "add", "path": "/a", "value": 1}`, "", `the patch must be a JSON array of operations`},
	{"patch empty", `{}`, ``, "", `the patch is empty`},
	{"patch null", `{}`, `null`, "", `must be a JSON array`},
	{"patch trailing data", `{}`, `[] []`, "", `not valid JSON`},
	{"operation not an object", `{}`, `[1]`, "", `operation 0: an operation must be a JSON object`},
	{"operation null", `{}`, `[null]`, "", `operation 0: an operation must be a JSON object`},
	{"duplicate path", `{}`, `[{"op": "add", "path": "/a", "path": "/b", "value": 1}]`, "", `member "path" appears more than once`},
	{"duplicate value", `{}`, `[{"op": "add", "path": "/a", "value": 1, "value": 2}]`, "", `member "value" appears more than once`},
}

func TestMoreCases(t *testing.T) {
	for _, m := range decodeModes {
		for _, tt := range moreCases {
			t.Run(m.name+"/"+tt.name, func(t *testing.T) {
				runCase(t, decode(t, tt.doc, m.useNumber), tt.patch, tt.want, tt.err)
			})
		}
	}
}

func TestErrorFields(t *testing.T) {
	_, err := ApplyJSONPatch(map[string]any{"fields": map[string]any{}}, []byte(
		`[{"op":"test","path":"/fields","value":{}},{"op":"add","path":"/x","value":1},{"op":"replace","path":"/fields/sku","value":"A"}]`))
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("got %v", err)
	}
	want := Error{Op: 2, Operation: "replace", Path: "/fields/sku", Msg: "path does not exist"}
	if *pe != want {
		t.Errorf("got %+v, want %+v", *pe, want)
	}
	if got := pe.Error(); got != "operation 2 (replace /fields/sku): path does not exist" {
		t.Errorf("Error() = %q", got)
	}

	_, err = ApplyJSONPatch(nil, []byte(`{}`))
	if !errors.As(err, &pe) || pe.Op != -1 {
		t.Errorf("malformed patch: got %#v, want Op -1", err)
	}
	_, err = ApplyMergePatch(nil, []byte(`{`))
	if !errors.As(err, &pe) || pe.Op != -1 || !strings.Contains(pe.Error(), "the merge patch is not valid JSON") {
		t.Errorf("malformed merge patch: got %#v", err)
	}
}

// A failing patch leaves the input untouched, however far it got: every kind
// of change is made before the failing operation.
func TestAtomic(t *testing.T) {
	const doc = `{"a": {"b": [1, 2, 3], "c": "x"}, "list": [{"id": 1}, {"id": 2}], "n": 12345678901234567890}`
	ops := []string{
		`{"op": "add", "path": "/a/b/1", "value": 99}`,
		`{"op": "add", "path": "/a/b/-", "value": 100}`,
		`{"op": "remove", "path": "/a/b/0"}`,
		`{"op": "replace", "path": "/a/c", "value": "y"}`,
		`{"op": "move", "from": "/list/0", "path": "/list/-"}`,
		`{"op": "copy", "from": "/a", "path": "/copy"}`,
		`{"op": "replace", "path": "/list/0/id", "value": 7}`,
		`{"op": "remove", "path": "/n"}`,
		`{"op": "add", "path": "", "value": {"whole": true}}`,
		`{"op": "replace", "path": "", "value": "gone"}`,
		`{"op": "test", "path": "", "value": "gone"}`,
	}
	const failing = `{"op": "test", "path": "/nope", "value": 1}`
	for _, m := range decodeModes {
		// Fail after every prefix of the operations.
		for k := range len(ops) + 1 {
			orig := decode(t, doc, m.useNumber)
			pristine := decode(t, doc, m.useNumber)
			patch := "[" + strings.Join(append(slices.Clone(ops[:k]), failing), ",") + "]"
			got, err := ApplyJSONPatch(orig, []byte(patch))
			var pe *Error
			if !errors.As(err, &pe) || pe.Op != k || got != nil {
				t.Errorf("%s, %d ops: got %v, %v; want an error at operation %d", m.name, k, got, err, k)
			}
			if !reflect.DeepEqual(orig, pristine) {
				t.Errorf("%s, %d ops: input changed:\n got %v\nwant %v", m.name, k, orig, pristine)
			}
			// Without the failing operation it applies, and still leaves the input alone.
			if _, err := ApplyJSONPatch(orig, []byte("["+strings.Join(ops[:k], ",")+"]")); err != nil {
				t.Fatalf("%s, %d ops: %v", m.name, k, err)
			}
			if !reflect.DeepEqual(orig, pristine) {
				t.Errorf("%s, %d ops: input changed by a successful patch", m.name, k)
			}
		}
	}
}

// A successful patch does not share containers with the input: changing the
// result must not change the input.
func TestResultIsIndependent(t *testing.T) {
	orig := decode(t, `{"a": {"b": [1]}, "c": [1, 2]}`, false)
	got, err := ApplyJSONPatch(orig, []byte(`[{"op": "test", "path": "/a/b/0", "value": 1}]`))
	if err != nil {
		t.Fatal(err)
	}
	got.(map[string]any)["a"].(map[string]any)["b"].([]any)[0] = "changed"
	got.(map[string]any)["c"].([]any)[1] = "changed"
	sameJSON(t, orig, `{"a": {"b": [1]}, "c": [1, 2]}`)

	got, err = ApplyMergePatch(orig, []byte(`{"x": 1}`))
	if err != nil {
		t.Fatal(err)
	}
	got.(map[string]any)["a"].(map[string]any)["b"].([]any)[0] = "changed"
	sameJSON(t, orig, `{"a": {"b": [1]}, "c": [1, 2]}`)
}

// Documents with int64 and other numeric leaves (connectors.DecodeJSON's
// int64 for integers) compare by value with patch numbers.
func TestNumberRepresentations(t *testing.T) {
	doc := map[string]any{
		"i64":  int64(9007199254740993), // 2^53+1: not a float64
		"i":    int(3),
		"u":    uint8(7),
		"f":    float64(0.5),
		"f32":  float32(0.25),
		"num":  json.Number("1.50"),
		"neg":  int64(-4),
		"zero": float64(0),
	}
	pass := `[
		{"op": "test", "path": "/i64", "value": 9007199254740993},
		{"op": "test", "path": "/i", "value": 3.0},
		{"op": "test", "path": "/u", "value": 7e0},
		{"op": "test", "path": "/f", "value": 5e-1},
		{"op": "test", "path": "/f32", "value": 0.25},
		{"op": "test", "path": "/num", "value": 1.5},
		{"op": "test", "path": "/neg", "value": -4},
		{"op": "test", "path": "/zero", "value": -0.0}
	]`
	if _, err := ApplyJSONPatch(doc, []byte(pass)); err != nil {
		t.Fatal(err)
	}
	for _, fail := range []string{
		`[{"op": "test", "path": "/i64", "value": 9007199254740992}]`,
		`[{"op": "test", "path": "/i", "value": "3"}]`,
		`[{"op": "test", "path": "/f", "value": 0.50000000000000001e1}]`,
		`[{"op": "test", "path": "/neg", "value": 4}]`,
	} {
		if _, err := ApplyJSONPatch(doc, []byte(fail)); err == nil {
			t.Errorf("%s passed", fail)
		}
	}
	// Values inserted by a patch are json.Number, exact.
	got, err := ApplyJSONPatch(doc, []byte(`[{"op": "add", "path": "/big", "value": 123456789012345678901234567890}]`))
	if err != nil {
		t.Fatal(err)
	}
	if v := got.(map[string]any)["big"]; v != json.Number("123456789012345678901234567890") {
		t.Errorf("big = %#v", v)
	}
}

func TestCanonicalNumber(t *testing.T) {
	same := [][]string{
		{"1", "1.0", "10e-1", "0.1E1", "0.1e+1", "1e0", "100e-2", "1E-0000"},
		{"0", "-0", "0.000", "0e10", "-0.0e-5"},
		{"-12.5", "-125e-1", "-0.0125e3"},
		{"123456789012345678901234567890", "1.2345678901234567890123456789e29"},
	}
	for _, group := range same {
		want, ok := canonicalNumber(group[0])
		if !ok {
			t.Fatalf("%s not a number", group[0])
		}
		for _, s := range group[1:] {
			if got, ok := canonicalNumber(s); !ok || got != want {
				t.Errorf("canonical(%s) = %s, %v; want %s (as %s)", s, got, ok, want, group[0])
			}
		}
	}
	for _, bad := range []string{"", "-", "1.", ".5", "1e", "1e+", "1e+-5", "++1", "1x", "0x10", "1e99999999999999999", "NaN", "+Inf"} {
		if got, ok := canonicalNumber(bad); ok {
			t.Errorf("canonical(%q) = %q, want not a number", bad, got)
		}
	}
	if a, _ := canonicalNumber("1"); a == func() string { b, _ := canonicalNumber("-1"); return b }() {
		t.Error("1 == -1")
	}
}

// Copying a value into itself over and over is stopped before the document
// grows without bound.
func TestCopyGrowthBounded(t *testing.T) {
	var ops []string
	for range 40 {
		ops = append(ops, `{"op": "copy", "from": "/a", "path": "/a/-"}`) // doubles /a
	}
	_, err := ApplyJSONPatch(map[string]any{"a": []any{1.0}}, []byte("["+strings.Join(ops, ",")+"]"))
	if err == nil || !strings.Contains(err.Error(), "copying would grow the document") {
		t.Fatalf("got %v", err)
	}
}

// RFC 7396 Appendix A.
var rfc7396 = []struct{ target, patch, want string }{
	{`{"a":"b"}`, `{"a":"c"}`, `{"a":"c"}`},
	{`{"a":"b"}`, `{"b":"c"}`, `{"a":"b","b":"c"}`},
	{`{"a":"b"}`, `{"a":null}`, `{}`},
	{`{"a":"b","b":"c"}`, `{"a":null}`, `{"b":"c"}`},
	{`{"a":["b"]}`, `{"a":"c"}`, `{"a":"c"}`},
	{`{"a":"c"}`, `{"a":["b"]}`, `{"a":["b"]}`},
	{`{"a":{"b":"c"}}`, `{"a":{"b":"d","c":null}}`, `{"a":{"b":"d"}}`},
	{`{"a":[{"b":"c"}]}`, `{"a":[1]}`, `{"a":[1]}`},
	{`["a","b"]`, `["c","d"]`, `["c","d"]`},
	{`{"a":"b"}`, `["c"]`, `["c"]`},
	{`{"a":"foo"}`, `null`, `null`},
	{`{"a":"foo"}`, `"bar"`, `"bar"`},
	{`{"e":null}`, `{"a":1}`, `{"e":null,"a":1}`},
	{`[1,2]`, `{"a":"b","c":null}`, `{"a":"b"}`},
	{`{}`, `{"a":{"bb":{"ccc":null}}}`, `{"a":{"bb":{}}}`},
}

func TestRFC7396AppendixA(t *testing.T) {
	for _, m := range decodeModes {
		for _, tt := range rfc7396 {
			t.Run(m.name+"/"+tt.target+"+"+tt.patch, func(t *testing.T) {
				doc := decode(t, tt.target, m.useNumber)
				before, _ := json.Marshal(doc)
				got, err := ApplyMergePatch(doc, []byte(tt.patch))
				if err != nil {
					t.Fatal(err)
				}
				sameJSON(t, got, tt.want)
				after, _ := json.Marshal(doc)
				if !bytes.Equal(before, after) {
					t.Errorf("input changed: %s -> %s", before, after)
				}
			})
		}
	}
}

func TestMergePatchMore(t *testing.T) {
	for _, tt := range []struct{ target, patch, want string }{
		{`null`, `{"a": {"b": null, "c": 1}}`, `{"a": {"c": 1}}`},
		{`{"a": 1}`, `{}`, `{"a": 1}`},
		{`{"a": {"b": 1}}`, `{"a": {"c": {"d": null}}}`, `{"a": {"b": 1, "c": {}}}`},
		{`{"n": 1}`, `{"n": 12345678901234567890}`, `{"n": 12345678901234567890}`},
		{`{"a": [1, 2]}`, `{"a": {"0": 3}}`, `{"a": {"0": 3}}`},
	} {
		got, err := ApplyMergePatch(decode(t, tt.target, false), []byte(tt.patch))
		if err != nil {
			t.Fatal(err)
		}
		sameJSON(t, got, tt.want)
	}
	for _, bad := range []string{``, ` `, `{`, `{} {}`, `nul`, `{"a": 1,}`} {
		if _, err := ApplyMergePatch(map[string]any{}, []byte(bad)); err == nil {
			t.Errorf("merge patch %q accepted", bad)
		}
	}
}

func TestPointerRoundTrip(t *testing.T) {
	for _, p := range []string{"", "/", "/a", "/a/b", "/~0", "/~1", "/~01", "/a~1b~0c/", "//", "/ü/\x00"} {
		toks, err := parsePointer(p)
		if err != nil {
			t.Fatalf("%q: %v", p, err)
		}
		if got := formatPointer(toks); got != p {
			t.Errorf("round trip %q -> %q -> %q", p, toks, got)
		}
	}
	toks, _ := parsePointer("/~01")
	if !reflect.DeepEqual(toks, []string{"~1"}) {
		t.Errorf("/~01 = %q, want [~1]", toks)
	}
}

// Deep documents and long pointers stay linear per operation.
func TestDeepDocument(t *testing.T) {
	const depth = 5000
	var doc any = []any{}
	for range depth {
		doc = []any{doc}
	}
	ptr := strings.Repeat("/0", depth)
	ops := []string{
		`{"op": "add", "path": "` + ptr + `/-", "value": 1}`,
		`{"op": "test", "path": "` + ptr + `/0", "value": 1}`,
		`{"op": "copy", "from": "` + ptr + `", "path": "` + ptr + `/-"}`,
		`{"op": "remove", "path": "` + ptr + `/0/0"}`,
	}
	if _, err := ApplyJSONPatch(doc, []byte("["+strings.Join(ops, ",")+"]")); err == nil || !strings.Contains(err.Error(), "operation 3 (remove") {
		t.Fatalf("got %.200v, want operation 3 to fail (element 0 is a number)", err)
	}
	if _, err := ApplyJSONPatch(doc, []byte("["+strings.Join(ops[:3], ",")+"]")); err != nil {
		t.Fatalf("%.200v", err)
	}
}

func TestMalformed(t *testing.T) {
	for _, tt := range []struct {
		patch     string
		malformed bool
	}{
		{`{}`, true},
		{`[{"op": "nope", "path": "/a"}]`, true},
		{`[{"op": "add", "path": "/a"}]`, true},
		{`[{"op": "remove", "path": "a"}]`, true},
		{`[{"op": "move", "from": "/a~", "path": "/b"}]`, true},
		{`[{"op": "remove", "path": "/x"}]`, false},
		{`[{"op": "remove", "path": "/a/01"}]`, false}, // index syntax depends on the document
		{`[{"op": "test", "path": "/a", "value": 2}]`, false},
		{`[{"op": "move", "from": "/a", "path": "/a/b"}]`, true},
	} {
		_, err := ApplyJSONPatch(map[string]any{"a": 1.0}, []byte(tt.patch))
		var pe *Error
		if !errors.As(err, &pe) {
			t.Fatalf("%s: got %v", tt.patch, err)
		}
		if pe.Malformed() != tt.malformed {
			t.Errorf("%s: Malformed() = %v (%v)", tt.patch, pe.Malformed(), err)
		}
	}
	if _, err := ApplyMergePatch(nil, []byte(`{`)); !err.(*Error).Malformed() {
		t.Error("invalid merge patch not malformed")
	}
}
