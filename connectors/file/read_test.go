package file

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/hcldec"

	"github.com/ferryhq/ferry/connectors"
)

func TestRegistered(t *testing.T) {
	c, ok := connectors.Lookup("file")
	if !ok {
		t.Fatal(`connector "file" is not registered`)
	}
	if c.Open == nil || c.Description == "" {
		t.Fatal("connector lacks Open or Description")
	}
	for _, tt := range []struct {
		role string
		spec hcldec.ObjectSpec
		want map[string]string
	}{
		{"connection", c.Connection, map[string]string{"path": "string", "format": "string"}},
		{"source", c.Source, map[string]string{"path": "string!", "format": "string", "records": "string"}},
		{"target", c.Target, map[string]string{"path": "string!", "format": "string", "columns": "list of string", "append": "bool"}},
	} {
		got := map[string]string{}
		for k, s := range tt.spec {
			a, ok := s.(*hcldec.AttrSpec)
			if !ok {
				t.Errorf("%s %q is a %T, want an attribute", tt.role, k, s)
				continue
			}
			if a.Name != k {
				t.Errorf("%s %q is named %q", tt.role, k, a.Name)
			}
			got[k] = a.Type.FriendlyName()
			if a.Required {
				got[k] += "!"
			}
		}
		if !maps.Equal(got, tt.want) {
			t.Errorf("%s schema = %v, want %v", tt.role, got, tt.want)
		}
	}
}

func TestReadFormats(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		content string
		format  string // "" = auto
		want    []string
		pos     []string
	}{
		{
			name: "json array", file: "p.json",
			content: "[\n  {\"id\": 1, \"tags\": [\"a\"]},\n  {\"id\": 2, \"v\": {\"x\": null}}\n]\n",
			want:    []string{`{"id":1,"tags":["a"]}`, `{"id":2,"v":{"x":null}}`},
			pos:     []string{"p.json:record 1", "p.json:record 2"},
		},
		{
			name: "json empty array", file: "p.json", content: " [ ] ",
		},
		{
			name: "json single pretty object", file: "p.json",
			content: "{\n  \"id\": 1,\n  \"title\": \"x\"\n}\n",
			want:    []string{`{"id":1,"title":"x"}`},
			pos:     []string{"p.json:record 1"},
		},
		{
			name: "json sniffed as ndjson", file: "p.json",
			content: "{\"id\":1}\n\n{\"id\":2}\n",
			want:    []string{`{"id":1}`, `{"id":2}`},
			pos:     []string{"p.json:line 1", "p.json:line 3"},
		},
		{
			name: "ndjson with blank lines and CRLF", file: "p.ndjson",
			content: "{\"id\":1}\r\n\r\n   \n{\"id\":2}",
			want:    []string{`{"id":1}`, `{"id":2}`},
			pos:     []string{"p.ndjson:line 1", "p.ndjson:line 4"},
		},
		{
			name: "jsonl extension", file: "p.jsonl",
			content: "{\"id\":1}\n",
			want:    []string{`{"id":1}`},
			pos:     []string{"p.jsonl:line 1"},
		},
		{
			name: "csv", file: "o.csv",
			content: "id,name,note\n1,Ann,\"said \"\"hi\"\"\"\n2,Bob,\n",
			want:    []string{`{"id":"1","name":"Ann","note":"said \"hi\""}`, `{"id":"2","name":"Bob","note":""}`},
			pos:     []string{"o.csv:line 2", "o.csv:line 3"},
		},
		{
			name: "csv with BOM", file: "o.csv",
			content: "\ufeffid,name\n1,Ann\n",
			want:    []string{`{"id":"1","name":"Ann"}`},
			pos:     []string{"o.csv:line 2"},
		},
		{
			name: "auto sniffs json without extension", file: "export.txt",
			content: "  [{\"id\":1}]",
			want:    []string{`{"id":1}`},
			pos:     []string{"export.txt:record 1"},
		},
		{
			name: "auto sniffs csv without extension", file: "export.txt",
			content: "id\n7\n",
			want:    []string{`{"id":"7"}`},
			pos:     []string{"export.txt:line 2"},
		},
		{
			name: "explicit ndjson format overrides extension", file: "p.json", format: "ndjson",
			content: "{\"id\":1}\n[1]\n",
			want:    []string{`{"id":1}`, `[1]`},
			pos:     []string{"p.json:line 1", "p.json:line 2"},
		},
		{
			name: "explicit csv format", file: "p.data", format: "csv",
			content: "a,b\nx,y\n",
			want:    []string{`{"a":"x","b":"y"}`},
			pos:     []string{"p.data:line 2"},
		},
		{
			name: "non-object array elements are still emitted", file: "p.json",
			content: `[1, "x", {"id": 3}]`,
			want:    []string{`1`, `"x"`, `{"id":3}`},
			pos:     []string{"p.json:record 1", "p.json:record 2", "p.json:record 3"},
		},
		{name: "empty json file", file: "p.json", content: ""},
		{name: "empty ndjson file", file: "p.ndjson", content: "\n\n"},
		{name: "empty csv file", file: "p.csv", content: ""},
		{name: "csv header only", file: "p.csv", content: "id,name\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, dir, tt.file, tt.content)
			src := `path = "` + tt.file + `"`
			if tt.format != "" {
				src += "\nformat = \"" + tt.format + `"`
			}
			recs, err := readAll(t, newSource(t, openConn(t, dir, ""), src))
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != len(tt.want) {
				t.Fatalf("got %d records, want %d: %v", len(recs), len(tt.want), recs)
			}
			for i, r := range recs {
				if got := compact(r.Raw); got != tt.want[i] {
					t.Errorf("record %d = %s, want %s", i, got, tt.want[i])
				}
				if r.Position != tt.pos[i] {
					t.Errorf("record %d position = %q, want %q", i, r.Position, tt.pos[i])
				}
				if r.Data != nil {
					t.Errorf("record %d: Data is set; sources must leave decoding to the engine", i)
				}
			}
		})
	}
}

func TestRawIsNotShared(t *testing.T) {
	// The engine decodes Raw in parallel after emit returns: every record must own its bytes.
	for _, name := range []string{"p.ndjson", "p.csv", "p.json"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			var b strings.Builder
			switch name {
			case "p.csv":
				b.WriteString("id\n")
				for i := 0; i < 100; i++ {
					b.WriteString("row\n")
				}
			case "p.ndjson":
				for i := 0; i < 100; i++ {
					b.WriteString(`{"id":"row"}` + "\n")
				}
			default:
				b.WriteString("[")
				for i := 0; i < 100; i++ {
					if i > 0 {
						b.WriteString(",")
					}
					b.WriteString(`{"id":"row"}`)
				}
				b.WriteString("]")
			}
			writeFile(t, dir, name, b.String())
			recs, err := readAll(t, newSource(t, openConn(t, dir, ""), `path = "`+name+`"`))
			if err != nil {
				t.Fatal(err)
			}
			first := string(recs[0].Raw)
			recs[0].Raw[0] = 'X' // would corrupt the others if they shared a buffer
			for i, r := range recs[1:] {
				if string(r.Raw) != first {
					t.Fatalf("record %d = %s, want %s", i+1, r.Raw, first)
				}
			}
		})
	}
}

func TestConnectionFormatIsDefault(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "data/x.txt", "{\"a\":1}\n{\"a\":2}\n")
	conn := openConn(t, dir, "path = \"data\"\nformat = \"ndjson\"")
	recs, err := readAll(t, newSource(t, conn, `path = "x.txt"`))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].Position != "x.txt:line 1" {
		t.Fatalf("records = %v", recs)
	}
}

func TestGlob(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "in/b.ndjson", "{\"f\":\"b1\"}\n{\"f\":\"b2\"}\n")
	writeFile(t, dir, "in/a.ndjson", "{\"f\":\"a1\"}\n")
	writeFile(t, dir, "in/c.csv", "f\nc1\n")
	writeFile(t, dir, "in/skip.txt", "not matched")
	if err := mkdir(dir, "in/dir.ndjson"); err != nil { // directories are not files
		t.Fatal(err)
	}
	conn := openConn(t, dir, `path = "in"`)

	recs, err := readAll(t, newSource(t, conn, `path = "*.*json"`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, compact(r.Raw)+" @ "+r.Position)
	}
	want := []string{`{"f":"a1"} @ a.ndjson:line 1`, `{"f":"b1"} @ b.ndjson:line 1`, `{"f":"b2"} @ b.ndjson:line 2`}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Mixed formats in one glob, each by its extension.
	recs, err = readAll(t, newSource(t, conn, `path = "[ac].*"`))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || compact(recs[1].Raw) != `{"f":"c1"}` || recs[1].Position != "c.csv:line 2" {
		t.Fatalf("mixed glob records = %v", recs)
	}

	for _, tt := range []struct{ path, want string }{
		{"*.parquet", `no files match "*.parquet" in directory ` + conn.(*Connection).Dir},
		{"missing.json", `file "missing.json" not found in directory ` + conn.(*Connection).Dir},
		{"[", `invalid path pattern "["`},
	} {
		_, err = readAll(t, newSource(t, conn, `path = "`+tt.path+`"`))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("path %q: error = %v, want it to contain %q", tt.path, err, tt.want)
		}
		if connectors.CategoryOf(err) != connectors.CategoryPermanent {
			t.Errorf("path %q: error is %s, want permanent", tt.path, connectors.CategoryOf(err))
		}
	}
}

func TestRecordsPath(t *testing.T) {
	doc := `{
  "meta": {"page": 1, "links": [{"rel": "next", "deep": [[{}], {"a": []}]}]},
  "data": {
    "count": 2,
    "products": [{"id": 1}, {"id": 2, "nested": {"products": [9]}}],
    "after": {"x": [1, 2]}
  },
  "trailer": "end"
}`
	dir := t.TempDir()
	writeFile(t, dir, "page.json", doc)
	writeFile(t, dir, "nullpage.json", `{"data": {"products": null}}`)
	writeFile(t, dir, "truncated.json", `{"data": {"products": [{"id": 1}], "more": {`)
	conn := openConn(t, dir, "")

	recs, err := readAll(t, newSource(t, conn, "path = \"page.json\"\nrecords = \"data.products\""))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || compact(recs[0].Raw) != `{"id":1}` || compact(recs[1].Raw) != `{"id":2,"nested":{"products":[9]}}` {
		t.Fatalf("records = %v", recs)
	}
	if recs[1].Position != "page.json:record 2" {
		t.Errorf("position = %q", recs[1].Position)
	}

	recs, err = readAll(t, newSource(t, conn, "path = \"nullpage.json\"\nrecords = \"data.products\""))
	if err != nil || len(recs) != 0 {
		t.Fatalf("null array: records = %v, err = %v", recs, err)
	}

	recs, err = readAll(t, newSource(t, conn, "path = \"truncated.json\"\nrecords = \"data.products\""))
	if len(recs) != 1 || err == nil || !strings.Contains(err.Error(), "unexpected end of file") {
		t.Fatalf("truncated document: records = %v, err = %v", recs, err)
	}

	writeFile(t, dir, "badsibling.json", "{\"meta\": {\"a\": 1,\n \"b\": tru}, \"data\": [{}]}")
	_, err = readAll(t, newSource(t, conn, "path = \"badsibling.json\"\nrecords = \"data\""))
	if err == nil || !strings.Contains(err.Error(), "badsibling.json: invalid JSON at line 2, column 10 (byte offset 27)") {
		t.Errorf("broken sibling: err = %v", err)
	}

	for _, tt := range []struct{ records, want string }{
		{"data.items", `"data" has no key "items"`},
		{"items", `the document has no key "items"`},
		{"data.count", `records = "data.count" is a number, not an array`},
		{"trailer.x", `"trailer" is a string, not an object`},
		{"data.after", `records = "data.after" is an object, not an array`},
	} {
		_, err := readAll(t, newSource(t, conn, "path = \"page.json\"\nrecords = \""+tt.records+`"`))
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "page.json") {
			t.Errorf("records %q: error = %v, want it to contain %q and the file name", tt.records, err, tt.want)
		}
	}

	if _, err := conn.Source(decodeHCL(t, SourceSpec, "path = \"x.csv\"\nformat = \"csv\"\nrecords = \"data\"")); err == nil {
		t.Error("records with format csv: want a configuration error")
	}
	writeFile(t, dir, "x.csv", "a\n1\n")
	if _, err := readAll(t, newSource(t, conn, "path = \"x.csv\"\nrecords = \"data\"")); err == nil || !strings.Contains(err.Error(), "records applies only to JSON") {
		t.Errorf("records on an auto-detected csv file: err = %v", err)
	}
}

func TestCSVHeader(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "ok.csv", "zeta,alpha,mid\n1,2,3\n4,5\n\"multi\nline\",x,y\n7,8,9,,\n")
	writeFile(t, dir, "extra.csv", "a,b\n1,2\n1,2,3\n")
	writeFile(t, dir, "dup.csv", "a,b,a\n1,2,3\n")
	writeFile(t, dir, "empty.csv", "a,,c\n1,2,3\n")
	writeFile(t, dir, "quote.csv", "a,b\n1,\"2\n")
	conn := openConn(t, dir, "")

	recs, err := readAll(t, newSource(t, conn, `path = "ok.csv"`))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`{"zeta":"1","alpha":"2","mid":"3"} @ ok.csv:line 2`, // header order is kept
		`{"zeta":"4","alpha":"5","mid":""} @ ok.csv:line 3`,  // missing cells are ""
		`{"zeta":"multi\nline","alpha":"x","mid":"y"} @ ok.csv:line 4`,
		`{"zeta":"7","alpha":"8","mid":"9"} @ ok.csv:line 6`, // empty extra cells are ignored
	}
	var got []string
	for _, r := range recs {
		got = append(got, string(r.Raw)+" @ "+r.Position)
		if err := r.Decode(); err != nil {
			t.Errorf("%s: %v", r.Position, err)
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	for file, msg := range map[string]string{
		"extra.csv": "extra.csv: line 3 has 3 fields but the header has 2 columns",
		"dup.csv":   `columns 1 and 3 of the header row are both named "a"`,
		"empty.csv": "column 2 of the header row is empty",
		"quote.csv": "quote.csv: invalid CSV",
	} {
		_, err := readAll(t, newSource(t, conn, `path = "`+file+`"`))
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: error = %v, want it to contain %q", file, err, msg)
		}
	}
}

func TestNDJSONBadLine(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "p.ndjson", "{\"id\":1}\n{\"id\":2,,}\n[1,2]\n{\"id\":4}\n")
	recs, err := readAll(t, newSource(t, openConn(t, dir, ""), `path = "p.ndjson"`))
	if err != nil {
		t.Fatalf("one bad line must not stop the file: %v", err)
	}
	if len(recs) != 4 {
		t.Fatalf("got %d records, want 4", len(recs))
	}
	var failed []string
	for _, r := range recs {
		if err := r.Decode(); err != nil {
			failed = append(failed, err.Error())
		}
	}
	if len(failed) != 2 || !strings.Contains(failed[0], "p.ndjson:line 2") || !strings.Contains(failed[1], "p.ndjson:line 3") {
		t.Fatalf("decode failures = %q, want lines 2 and 3", failed)
	}
}

func TestNDJSONLongLine(t *testing.T) {
	dir := t.TempDir()
	long := `{"blob":"` + strings.Repeat("x", 3*bufferSize) + `"}`
	writeFile(t, dir, "p.ndjson", "{\"id\":1}\n"+long+"\n{\"id\":3}")
	recs, err := readAll(t, newSource(t, openConn(t, dir, ""), `path = "p.ndjson"`))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 || string(recs[1].Raw) != long || recs[2].Position != "p.ndjson:line 3" || string(recs[2].Raw) != `{"id":3}` {
		t.Fatalf("records: %d, second has %d bytes (want %d)", len(recs), len(recs[1].Raw), len(long))
	}
}

// An element that is not valid JSON is emitted like any other: it fails on its
// own when the engine decodes it, and the rest of the file still arrives.
func TestInvalidArrayElementFailsAlone(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "p.json", "[\n{\"id\":1},\n{\"id\": 3,, },\n{\"id\": tru},\n{\"id\":4}\n]")
	recs, err := readAll(t, newSource(t, openConn(t, dir, ""), `path = "p.json"`))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 4 {
		t.Fatalf("emitted %d records, want 4", len(recs))
	}
	for i, want := range []bool{true, false, false, true} {
		err := recs[i].Decode()
		if (err == nil) != want {
			t.Errorf("record %d (%s): decode error %v", i+1, recs[i].Raw, err)
		}
		if err != nil && (connectors.CategoryOf(err) != connectors.CategoryPermanent || !strings.Contains(err.Error(), fmt.Sprintf("p.json:record %d", i+1))) {
			t.Errorf("record %d: error %v should be permanent and name p.json:record %d", i+1, err, i+1)
		}
	}
}

func TestBrokenJSONArray(t *testing.T) {
	tests := []struct {
		name, content string
		records       int
		want          []string
	}{
		{
			name:    "truncated",
			content: "[{\"id\":1},{\"id\":",
			records: 1,
			want:    []string{"p.json", "after record 1", "unexpected end of file"},
		},
		{
			name:    "missing closing bracket",
			content: "[{\"id\":1}",
			records: 1,
			want:    []string{"p.json", "unexpected end of file"},
		},
		{
			name:    "data after the array",
			content: "[{\"id\":1}] {\"id\":2}",
			records: 1,
			want:    []string{"p.json", "unexpected data after the JSON array", "byte offset"},
		},
		{
			name:    "garbage",
			content: "{\n\"id\": 1\n}\n  nope",
			records: 1,
			want:    []string{"p.json", "line 4, column 4 (byte offset 15)", "invalid character 'o' in literal null"},
		},
		{
			name:    "missing comma",
			content: "[{\"id\":1}\n {\"id\":2}]",
			records: 1,
			want:    []string{"p.json", "line 2, column 2 (byte offset 11)", "after record 1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, dir, "p.json", tt.content)
			recs, err := readAll(t, newSource(t, openConn(t, dir, ""), `path = "p.json"`))
			if err == nil {
				t.Fatal("want a read error")
			}
			if len(recs) != tt.records {
				t.Errorf("emitted %d records before the error, want %d", len(recs), tt.records)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if connectors.CategoryOf(err) != connectors.CategoryPermanent {
				t.Errorf("error is %s, want permanent", connectors.CategoryOf(err))
			}
		})
	}
}

func TestEmitErrorStopsRead(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "p.json", `[{"id":1},{"id":2},{"id":3}]`)
	stop := errors.New("stop")
	n := 0
	err := newSource(t, openConn(t, dir, ""), `path = "p.json"`).Read(context.Background(), connectors.ReadRequest{}, func(connectors.Record) error {
		n++
		if n == 2 {
			return stop
		}
		return nil
	})
	if err != stop || n != 2 {
		t.Fatalf("err = %v after %d records, want emit's error after 2", err, n)
	}
}

func TestContextCancel(t *testing.T) {
	dir := t.TempDir()
	for _, format := range []string{"json", "ndjson"} {
		t.Run(format, func(t *testing.T) {
			f := createFile(t, dir, "p."+format)
			if err := GenerateProducts(f, 2000, 1, format); err != nil {
				t.Fatal(err)
			}
			f.Close()
			writeFile(t, dir, "q."+format, "{\"id\":1}\n") // a second file must not be started
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			n := 0
			err := newSource(t, openConn(t, dir, ""), `path = "?.`+format+`"`).Read(ctx, connectors.ReadRequest{}, func(connectors.Record) error {
				n++
				if n == 10 {
					cancel()
				}
				return nil
			})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
			if n != 10 {
				t.Fatalf("emitted %d records, want reading to stop right after the cancel at 10", n)
			}
		})
	}
	t.Run("csv", func(t *testing.T) {
		writeFile(t, dir, "c.csv", "a\n1\n2\n3\n")
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		n := 0
		err := newSource(t, openConn(t, dir, ""), `path = "c.csv"`).Read(ctx, connectors.ReadRequest{}, func(connectors.Record) error { n++; return nil })
		if !errors.Is(err, context.Canceled) || n != 0 {
			t.Fatalf("err = %v, records = %d", err, n)
		}
	})
}

func TestIncrementalReadEmitsAll(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "p.ndjson", "{\"u\":\"2024-01-01\"}\n{\"u\":\"2024-03-01\"}\n")
	src := newSource(t, openConn(t, dir, ""), `path = "p.ndjson"`)
	n := 0
	err := src.Read(context.Background(), connectors.ReadRequest{CursorField: "u", Cursor: "2024-02-01"}, func(connectors.Record) error { n++; return nil })
	if err != nil || n != 2 {
		t.Fatalf("err = %v, records = %d; the file source leaves cursor filtering to the engine", err, n)
	}
}

func TestSourceConfigErrors(t *testing.T) {
	conn := openConn(t, t.TempDir(), "")
	for src, want := range map[string]string{
		"path = \"a\"\nformat = \"xml\"":   `unknown format "xml"`,
		"path = \"a\"\nrecords = \"a..b\"": "empty segment",
		`path = ""`:                        "path is required",
	} {
		if _, err := conn.Source(decodeHCL(t, SourceSpec, src)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", src, err, want)
		}
	}
	c, _ := connectors.Lookup("file")
	if _, err := c.Open(connectors.Env{Dir: "."}, decodeHCL(t, c.Connection, `format = "yaml"`)); err == nil {
		t.Error("connection with unknown format: want an error")
	}
}

func TestTester(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "afile", "x")
	tests := []struct{ path, want string }{
		{"", ""},
		{"missing", "does not exist"},
		{"afile", "is not a directory"},
	}
	for _, tt := range tests {
		conn := openConn(t, dir, `path = "`+tt.path+`"`)
		err := conn.(connectors.Tester).Test(context.Background())
		if tt.want == "" && err != nil {
			t.Errorf("path %q: %v", tt.path, err)
		}
		if tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("path %q: err = %v, want %q", tt.path, err, tt.want)
		}
	}
}

func mkdir(dir, name string) error { return os.MkdirAll(filepath.Join(dir, name), 0o755) }

func createFile(t testing.TB, dir, name string) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return f
}
