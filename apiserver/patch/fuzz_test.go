package patch

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

// fuzzDoc decodes a fuzzed document, with json.Number or float64 numbers.
func fuzzDoc(b []byte, useNumber bool) (any, bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if useNumber {
		dec.UseNumber()
	}
	var v any
	if dec.Decode(&v) != nil {
		return nil, false
	}
	return v, true
}

func FuzzApplyJSONPatch(f *testing.F) {
	for _, tt := range rfc6902 {
		f.Add([]byte(tt.doc), []byte(tt.patch), false)
	}
	for i, tt := range moreCases {
		f.Add([]byte(tt.doc), []byte(tt.patch), i%2 == 0)
	}
	f.Add([]byte(`{"a":[1,{"b":[2,3]}],"c":{"d":"e"}}`), []byte(`[{"op":"move","from":"/a/1/b","path":"/c/f"},{"op":"copy","from":"/c","path":"/a/0"},{"op":"remove","path":"/a/1"}]`), true)
	f.Add([]byte(`[[[]]]`), []byte(`[{"op":"add","path":"/0/0/-","value":[[]]},{"op":"move","from":"/0","path":"/-"}]`), false)
	f.Add([]byte(`null`), []byte(`[{"op":"add","path":"","value":{"~":{"/":1}}},{"op":"test","path":"/~0/~1","value":1.0}]`), true)

	f.Fuzz(func(t *testing.T, docJSON, patch []byte, useNumber bool) {
		doc, ok := fuzzDoc(docJSON, useNumber)
		if !ok {
			return
		}
		pristine, _ := fuzzDoc(docJSON, useNumber)
		got, err := ApplyJSONPatch(doc, patch)
		if !reflect.DeepEqual(doc, pristine) {
			t.Fatalf("input changed: %v -> %v", pristine, doc)
		}
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %T is not *Error: %v", err, err)
			}
			if got != nil {
				t.Fatalf("result %v with error %v", got, err)
			}
			if pe.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		b, err := json.Marshal(got)
		if err != nil {
			t.Fatalf("result does not marshal: %v", err)
		}
		// The result equals itself re-decoded: it is plain JSON.
		back, ok := fuzzDoc(b, true)
		if !ok || !equal(got, back) {
			t.Fatalf("result %s does not round-trip", b)
		}
		// A patch that applied applies again to a copy of the same input with
		// the same result (it is deterministic).
		again, err := ApplyJSONPatch(pristine, patch)
		if err != nil || !equal(got, again) {
			t.Fatalf("second application differs: %v", err)
		}
	})
}

func FuzzApplyMergePatch(f *testing.F) {
	for _, tt := range rfc7396 {
		f.Add([]byte(tt.target), []byte(tt.patch), false)
	}
	f.Add([]byte(`{"a":{"b":[1,2]},"c":1e400}`), []byte(`{"a":{"b":null,"d":{"e":null}},"c":null}`), true)
	f.Add([]byte(`1`), []byte(`{"":{"":null}}`), true)
	f.Add([]byte(`{}`), []byte(`{`), false)

	f.Fuzz(func(t *testing.T, docJSON, patch []byte, useNumber bool) {
		doc, ok := fuzzDoc(docJSON, useNumber)
		if !ok {
			return
		}
		pristine, _ := fuzzDoc(docJSON, useNumber)
		got, err := ApplyMergePatch(doc, patch)
		if !reflect.DeepEqual(doc, pristine) {
			t.Fatalf("input changed: %v -> %v", pristine, doc)
		}
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || pe.Op != -1 {
				t.Fatalf("error %T %v, want *Error with Op -1", err, err)
			}
			if json.Valid(patch) {
				t.Fatalf("valid patch %q rejected: %v", patch, err)
			}
			return
		}
		if !json.Valid(patch) {
			t.Fatalf("invalid patch %q accepted", patch)
		}
		if _, err := json.Marshal(got); err != nil {
			t.Fatalf("result does not marshal: %v", err)
		}
		// Merge patches are idempotent.
		twice, err := ApplyMergePatch(got, patch)
		if err != nil || !equal(got, twice) {
			t.Fatalf("applying the patch twice differs from once: %v", err)
		}
		// A patch without nulls is contained in the result: applying the
		// result as a patch to the result changes nothing.
		b, _ := json.Marshal(got)
		if again, err := ApplyMergePatch(got, b); err != nil || (!hasNull(got) && !equal(again, got)) {
			t.Fatalf("result as its own patch changes it: %v", err)
		}
	})
}

func hasNull(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case map[string]any:
		for _, e := range x {
			if hasNull(e) {
				return true
			}
		}
	case []any:
		return false // arrays replace wholesale; nulls inside are kept
	}
	return false
}
