package file

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/ferryhq/ferry/connectors"
)

var roundTripRecords = []map[string]any{
	{"id": int64(1), "title": "Café <b>& \"quotes\"</b>", "tags": []any{"a", "b"}, "price": "19.90", "variant": map[string]any{"sku": "SKU-1-0", "qty": int64(3)}},
	{"id": int64(2), "title": "line\nbreak, comma", "tags": []any{}, "price": nil, "variant": map[string]any{}},
	{"id": int64(3), "title": "", "tags": nil, "price": "0", "variant": nil},
}

func TestRoundTrip(t *testing.T) {
	// CSV holds strings: values come back as their text, nested values as JSON.
	csvWant := []map[string]any{
		{"id": "1", "title": "Café <b>& \"quotes\"</b>", "tags": `["a","b"]`, "price": "19.90", "variant": `{"qty":3,"sku":"SKU-1-0"}`},
		{"id": "2", "title": "line\nbreak, comma", "tags": `[]`, "price": "", "variant": `{}`},
		{"id": "3", "title": "", "tags": "", "price": "0", "variant": ""},
	}
	tests := []struct {
		file, format string
		want         []map[string]any
	}{
		{"out.ndjson", "ndjson", roundTripRecords},
		{"out.json", "json", roundTripRecords},
		{"out.csv", "csv", csvWant},
		{"out.data", "", roundTripRecords}, // default: ndjson
		{"sub/dir/out.json", "", roundTripRecords},
	}
	for _, tt := range tests {
		t.Run(tt.file+"/"+tt.format, func(t *testing.T) {
			dir := t.TempDir()
			conn := openConn(t, dir, "")
			target := `path = "` + tt.file + `"`
			if tt.format != "" {
				target += "\nformat = \"" + tt.format + `"`
			}
			sink := newSink(t, conn, target)
			writeAll(t, sink, roundTripRecords[:1]...)
			writeAll(t, sink, roundTripRecords[1:]...)
			if err := sink.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := sink.Close(context.Background()); err != nil {
				t.Fatalf("second close: %v", err)
			}
			content := readFileString(t, filepath.Join(dir, tt.file))
			if strings.Contains(content, `\u003c`) || strings.Contains(content, `\u0026`) {
				t.Errorf("HTML characters are escaped:\n%s", content)
			}
			if (tt.format == "json" || strings.HasSuffix(tt.file, ".json")) && !json.Valid([]byte(content)) {
				t.Fatalf("output is not valid JSON:\n%s", content)
			}
			src := `path = "` + tt.file + `"`
			if tt.format != "" {
				src += "\nformat = \"" + tt.format + `"`
			} else if tt.file == "out.data" {
				src += "\nformat = \"ndjson\""
			}
			recs, err := readAll(t, newSource(t, conn, src))
			if err != nil {
				t.Fatal(err)
			}
			var got []map[string]any
			for _, r := range recs {
				if err := r.Decode(); err != nil {
					t.Fatal(err)
				}
				got = append(got, r.Data)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("round trip:\n got %v\nwant %v\nfile:\n%s", got, tt.want, content)
			}
		})
	}
}

func TestWriteJSONArrayLayout(t *testing.T) {
	dir := t.TempDir()
	conn := openConn(t, dir, "")
	sink := newSink(t, conn, `path = "a.json"`)
	writeAll(t, sink, map[string]any{"b": 1, "a": "x"}, nil)
	if err := sink.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := readFileString(t, filepath.Join(dir, "a.json")), "[\n{\"a\":\"x\",\"b\":1},\n{}\n]\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	sink = newSink(t, conn, `path = "empty.json"`)
	if err := sink.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := readFileString(t, filepath.Join(dir, "empty.json")); !json.Valid([]byte(got)) || strings.TrimSpace(strings.ReplaceAll(got, "\n", "")) != "[]" {
		t.Errorf("empty run wrote %q, want an empty array", got)
	}
}

func TestCSVOutput(t *testing.T) {
	dir := t.TempDir()
	conn := openConn(t, dir, "")

	// Header from the first record's keys, sorted; nested values as JSON.
	sink := newSink(t, conn, `path = "inferred.csv"`)
	writeAll(t, sink,
		map[string]any{"sku": "A-1", "price": 19.9, "qty": 3, "big": 1e21, "active": true,
			"variants": []any{map[string]any{"size": "M", "html": "<b>"}}, "meta": map[string]any{"a": nil}, "none": nil},
		map[string]any{"sku": "B, \"2\"", "price": float64(100), "qty": int64(-1), "big": 0.5, "active": false},
	)
	errs := sink.Write(context.Background(), []connectors.Write{
		{Operation: connectors.OpCreate, Record: map[string]any{"sku": "C", "surprise": "x"}},
		{Operation: connectors.OpCreate, Record: map[string]any{"sku": "D", "price": math.Inf(1)}},
		{Operation: connectors.OpCreate, Record: map[string]any{"sku": "E", "meta": map[string]any{"bad": math.NaN()}}},
	})
	if len(errs) != 3 || errs[0] == nil || errs[1] != nil || errs[2] == nil {
		t.Fatalf("errs = %v, want an error for the unknown field and the unencodable value", errs)
	}
	if !strings.Contains(errs[0].Error(), `fields ["surprise"] that are not columns`) || connectors.CategoryOf(errs[0]) != connectors.CategoryPermanent {
		t.Errorf("unknown field error = %v", errs[0])
	}
	if !strings.Contains(errs[2].Error(), `field "meta"`) || connectors.CategoryOf(errs[2]) != connectors.CategoryPermanent {
		t.Errorf("encoding error = %v", errs[2])
	}
	if err := sink.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := "active,big,meta,none,price,qty,sku,variants\n" +
		"true,1e+21,\"{\"\"a\"\":null}\",,19.9,3,A-1,\"[{\"\"html\"\":\"\"<b>\"\",\"\"size\"\":\"\"M\"\"}]\"\n" +
		"false,0.5,,,100,-1,\"B, \"\"2\"\"\",\n" +
		",,,,+Inf,,D,\n"
	if got := readFileString(t, filepath.Join(dir, "inferred.csv")); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}

	// Configured columns: that order, extra fields ignored, header even without records.
	sink = newSink(t, conn, "path = \"cols.csv\"\ncolumns = [\"sku\", \"variants\", \"missing\"]")
	writeAll(t, sink, map[string]any{"sku": "A", "extra": 1, "variants": []any{1.5, "x"}})
	if err := sink.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := readFileString(t, filepath.Join(dir, "cols.csv")), "sku,variants,missing\nA,\"[1.5,\"\"x\"\"]\",\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	sink = newSink(t, conn, "path = \"none.csv\"\ncolumns = [\"a\", \"b\"]")
	sink.Close(context.Background())
	if got := readFileString(t, filepath.Join(dir, "none.csv")); got != "a,b\n" {
		t.Errorf("no records with columns: got %q", got)
	}
}

func TestAppendAndTruncate(t *testing.T) {
	write := func(t *testing.T, conn connectors.Connection, target string, recs ...map[string]any) {
		t.Helper()
		sink := newSink(t, conn, target)
		writeAll(t, sink, recs...)
		if err := sink.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	r1 := map[string]any{"n": 1, "s": "a"}
	r2 := map[string]any{"n": 2, "s": "b"}
	tests := []struct {
		name, file, existing, target string
		want                         string
	}{
		{"ndjson truncates by default", "o.ndjson", "{\"old\":true}\n", ``, "{\"n\":1,\"s\":\"a\"}\n{\"n\":2,\"s\":\"b\"}\n"},
		{"ndjson append", "o.ndjson", "{\"old\":true}\n", `append = true`, "{\"old\":true}\n{\"n\":1,\"s\":\"a\"}\n{\"n\":2,\"s\":\"b\"}\n"},
		{"ndjson append after a partial line", "o.ndjson", "{\"old\":true}", `append = true`, "{\"old\":true}\n{\"n\":1,\"s\":\"a\"}\n{\"n\":2,\"s\":\"b\"}\n"},
		{"ndjson append to a new file", "o.ndjson", "", `append = true`, "{\"n\":1,\"s\":\"a\"}\n{\"n\":2,\"s\":\"b\"}\n"},
		{"json truncates", "o.json", "[{\"old\":true}]", `append = false`, "[\n{\"n\":1,\"s\":\"a\"},\n{\"n\":2,\"s\":\"b\"}\n]\n"},
		{"json append continues the array", "o.json", "[\n{\"old\":true}\n]\n\n", `append = true`, "[\n{\"old\":true},\n{\"n\":1,\"s\":\"a\"},\n{\"n\":2,\"s\":\"b\"}\n]\n"},
		{"json append to an empty array", "o.json", " [ ] ", `append = true`, " [\n{\"n\":1,\"s\":\"a\"},\n{\"n\":2,\"s\":\"b\"}\n]\n"},
		{"csv truncates", "o.csv", "x\n1\n", ``, "n,s\n1,a\n2,b\n"},
		{"csv append keeps the file's header", "o.csv", "s,n\nz,0\n", `append = true`, "s,n\nz,0\na,1\nb,2\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.existing != "" {
				writeFile(t, dir, tt.file, tt.existing)
			}
			conn := openConn(t, dir, "")
			write(t, conn, "path = \""+tt.file+"\"\n"+tt.target, r1)
			// A second sink: each sink of an append target continues the file.
			sink := newSink(t, conn, "path = \""+tt.file+"\"\nappend = true")
			writeAll(t, sink, r2)
			if err := sink.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := readFileString(t, filepath.Join(dir, tt.file)); got != tt.want {
				t.Errorf("got\n%q\nwant\n%q", got, tt.want)
			}
		})
	}

	t.Run("refuses what it cannot continue", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, dir, "bad.json", `{"not": "an array"}`)
		writeFile(t, dir, "h.csv", "a,b\n1,2\n")
		conn := openConn(t, dir, "")
		for target, want := range map[string]string{
			"path = \"bad.json\"\nappend = true":                        "does not end with a JSON array",
			"path = \"h.csv\"\nappend = true\ncolumns = [\"b\", \"a\"]": `header row is ["a" "b"] but columns = ["b" "a"]`,
		} {
			_, err := conn.Sink(decodeHCL(t, TargetSpec, target))
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%q: err = %v, want %q", target, err, want)
			}
		}
		if got := readFileString(t, filepath.Join(dir, "bad.json")); got != `{"not": "an array"}` {
			t.Errorf("a refused append changed the file: %q", got)
		}
	})
}

func TestDeleteRefused(t *testing.T) {
	dir := t.TempDir()
	sink := newSink(t, openConn(t, dir, ""), `path = "o.ndjson"`)
	errs := sink.Write(context.Background(), []connectors.Write{
		{Key: "1", Operation: connectors.OpUpsert, Record: map[string]any{"id": 1}},
		{Key: "2", Operation: connectors.OpDelete, Record: map[string]any{"id": 2}},
		{Key: "3", Operation: connectors.OpCreate, Record: map[string]any{"id": 3}},
	})
	if len(errs) != 3 || errs[0] != nil || errs[2] != nil {
		t.Fatalf("errs = %v, want only the delete to fail", errs)
	}
	if !strings.Contains(errs[1].Error(), "file target does not support delete") || connectors.CategoryOf(errs[1]) != connectors.CategoryPermanent {
		t.Errorf("delete error = %v (%s)", errs[1], connectors.CategoryOf(errs[1]))
	}
	if err := sink.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := readFileString(t, filepath.Join(dir, "o.ndjson")); got != "{\"id\":1}\n{\"id\":3}\n" {
		t.Errorf("file = %q", got)
	}
}

func TestSinkEncodingErrorFailsOneRecord(t *testing.T) {
	dir := t.TempDir()
	sink := newSink(t, openConn(t, dir, ""), `path = "o.json"`)
	errs := sink.Write(context.Background(), []connectors.Write{
		{Operation: connectors.OpCreate, Record: map[string]any{"id": 1}},
		{Operation: connectors.OpCreate, Record: map[string]any{"id": math.NaN()}},
		{Operation: connectors.OpCreate, Record: map[string]any{"id": 3}},
	})
	if len(errs) != 3 || errs[0] != nil || errs[1] == nil || errs[2] != nil {
		t.Fatalf("errs = %v", errs)
	}
	if connectors.CategoryOf(errs[1]) != connectors.CategoryPermanent {
		t.Errorf("encoding error is %s, want permanent", connectors.CategoryOf(errs[1]))
	}
	sink.Close(context.Background())
	if got := readFileString(t, filepath.Join(dir, "o.json")); got != "[\n{\"id\":1},\n{\"id\":3}\n]\n" {
		t.Errorf("file = %q", got)
	}
}

func TestSinkContextAndClose(t *testing.T) {
	dir := t.TempDir()
	sink := newSink(t, openConn(t, dir, ""), `path = "o.ndjson"`)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	errs := sink.Write(ctx, []connectors.Write{{Operation: connectors.OpCreate, Record: map[string]any{"id": 1}}})
	if len(errs) != 1 || !errors.Is(errs[0], context.Canceled) || connectors.CategoryOf(errs[0]) != connectors.CategoryTransient {
		t.Fatalf("errs = %v, want a transient context error", errs)
	}
	sink.Close(context.Background())
	errs = sink.Write(context.Background(), []connectors.Write{{Operation: connectors.OpCreate, Record: map[string]any{"id": 1}}})
	if len(errs) != 1 || errs[0] == nil {
		t.Fatalf("write after close: errs = %v", errs)
	}
}

func TestSinkConcurrentWrites(t *testing.T) {
	dir := t.TempDir()
	sink := newSink(t, openConn(t, dir, ""), `path = "o.ndjson"`)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				if errs := sink.Write(context.Background(), []connectors.Write{{Operation: connectors.OpCreate, Record: map[string]any{"g": g, "i": i}}}); errs != nil {
					t.Error(errs)
				}
			}
		}()
	}
	wg.Wait()
	sink.Close(context.Background())
	lines := strings.Split(strings.TrimSpace(readFileString(t, filepath.Join(dir, "o.ndjson"))), "\n")
	if len(lines) != 800 {
		t.Fatalf("%d lines, want 800", len(lines))
	}
	for _, l := range lines {
		if !json.Valid([]byte(l)) {
			t.Fatalf("interleaved line %q", l)
		}
	}
}

func TestSinkConfig(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "adir/x", "")
	for _, tt := range []struct{ conn, target, want string }{
		{"", "path = \"o.json\"\nformat = \"xml\"", `unknown format "xml"`},
		{"", "path = \"o.ndjson\"\ncolumns = [\"a\"]", `columns applies only to format "csv"`},
		{"", "path = \"o.csv\"\ncolumns = [\"a\", \"a\"]", `column "a" is listed twice`},
		{"", `path = "adir"`, "cannot open for writing"},
		{"", `path = ""`, "path is required"},
		{`format = "csv"`, `path = "o.json"`, ""}, // the connection's format wins over the extension
		{`format = "auto"`, `path = "o.csv"`, ""},
	} {
		conn := openConn(t, dir, tt.conn)
		s, err := conn.Sink(decodeHCL(t, TargetSpec, tt.target))
		if tt.want == "" {
			if err != nil {
				t.Errorf("%q: %v", tt.target, err)
				continue
			}
			if got := s.(*sink).format; got != FormatCSV {
				t.Errorf("%s / %q: format %q, want csv", tt.conn, tt.target, got)
			}
			s.Close(context.Background())
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: err = %v, want %q", tt.target, err, tt.want)
		}
		if err != nil && connectors.CategoryOf(err) != connectors.CategoryPermanent {
			t.Errorf("%q: error is %s, want permanent", tt.target, connectors.CategoryOf(err))
		}
	}
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	values := []any{
		nil, true, false, "", "plain", "<b>&amp;</b>", "quote\" back\\slash \n\r\t\b\f \x00\x1f", "\u2028\u2029 é 😀",
		"bad utf8 \xff\xfe end", 0.0, -0.0, 1.0, -1.5, 1e20, 1e21, 123456789012345678.0, 1e-6, 1e-7, 5e-324, math.MaxFloat64,
		0, -7, int64(math.MaxInt64), []any{}, []any(nil), map[string]any{}, map[string]any(nil),
		map[string]any{"b": []any{1.0, map[string]any{"z": nil, "a": "x"}}, "a": map[string]any{"y": []any{}, "c": map[string]any{"k": 1}}, "": 0},
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	var keys []string
	for _, v := range values {
		b.Reset()
		if err := enc.Encode(v); err != nil {
			t.Fatal(err)
		}
		got, ok := appendJSON(nil, v, &keys)
		if want := strings.TrimSuffix(b.String(), "\n"); !ok || string(got) != want {
			t.Errorf("%#v: got %s (ok=%v), want %s", v, got, ok, want)
		}
		if len(keys) != 0 {
			t.Errorf("%#v: key buffer not released: %q", v, keys)
		}
	}
	// The dataset, decoded as the engine would.
	var data bytes.Buffer
	if err := GenerateProducts(&data, 200, 3, "ndjson"); err != nil {
		t.Fatal(err)
	}
	for _, line := range bytes.Split(bytes.TrimSpace(data.Bytes()), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatal(err)
		}
		b.Reset()
		enc.Encode(m)
		if got, ok := appendJSON(nil, m, &keys); !ok || string(got)+"\n" != b.String() {
			t.Fatalf("got %s\nwant %s", got, b.String())
		}
	}
	for _, v := range []any{math.NaN(), math.Inf(-1), map[string]any{"a": []any{math.Inf(1)}}, struct{}{}, []string{"x"}} {
		if _, ok := appendJSON(nil, v, &keys); ok {
			t.Errorf("%#v: want a fallback to encoding/json", v)
		}
	}
}

// A resumed run or a DLQ replay continues a file target: earlier records stay,
// whatever append says; Flush makes written records visible before Close.
func TestSinkContinueAndFlush(t *testing.T) {
	dir := t.TempDir()
	conn := openConn(t, dir, "")
	first := newSink(t, conn, `path = "out.ndjson"`)
	writeAll(t, first, map[string]any{"id": 1})
	if err := first.(connectors.Flusher).Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := readFileString(t, filepath.Join(dir, "out.ndjson")); got != "{\"id\":1}\n" {
		t.Fatalf("after Flush the file holds %q", got)
	}
	// No Close: the process "dies" here. The resumed run continues the file.
	cfg := decodeHCL(t, TargetSpec, `path = "out.ndjson"`)
	again, err := conn.(connectors.SinkOpener).SinkWith(cfg, connectors.SinkOptions{Continue: true})
	if err != nil {
		t.Fatal(err)
	}
	writeAll(t, again, map[string]any{"id": 2})
	if err := again.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := readFileString(t, filepath.Join(dir, "out.ndjson")); got != "{\"id\":1}\n{\"id\":2}\n" {
		t.Fatalf("continued file holds %q", got)
	}
	// A new run (not continuing) starts the file afresh.
	fresh := newSink(t, conn, `path = "out.ndjson"`)
	writeAll(t, fresh, map[string]any{"id": 3})
	fresh.Close(context.Background())
	if got := readFileString(t, filepath.Join(dir, "out.ndjson")); got != "{\"id\":3}\n" {
		t.Fatalf("new run's file holds %q", got)
	}
}
