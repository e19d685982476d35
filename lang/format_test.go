package lang

import (
	"bytes"
	"testing"
)

func TestFormat(t *testing.T) {
	src := []byte("connection   \"shop\"{\ntype=\"file\"\n  path     = \"data\"\n}\nmapping \"m\" {\nfields = {\na = \"x\"\nlonger_name = \"y\"\n}\n}\n")
	want := "connection \"shop\" {\n  type = \"file\"\n  path = \"data\"\n}\nmapping \"m\" {\n  fields = {\n    a           = \"x\"\n    longer_name = \"y\"\n  }\n}\n"
	out, diags := Format(src, "main.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if string(out) != want {
		t.Errorf("Format =\n%s\nwant\n%s", out, want)
	}
	again, diags := Format(out, "main.hcl")
	if diags.HasErrors() || !bytes.Equal(again, out) {
		t.Errorf("not idempotent:\n%s", again)
	}
}

func TestFormatSyntaxErrorNotRewritten(t *testing.T) {
	out, diags := Format([]byte("connection \"x\" {\n  type = \n"), "bad.hcl")
	if !diags.HasErrors() {
		t.Fatal("no diagnostics for a syntax error")
	}
	if out != nil {
		t.Errorf("output for a file with syntax errors: %q", out)
	}
	if diags[0].Subject == nil || diags[0].Subject.Filename != "bad.hcl" {
		t.Errorf("subject = %v", diags[0].Subject)
	}
}

func TestFormatJSON(t *testing.T) {
	src := []byte(`{"connection": {"x": {"type":   "file"}}}`)
	out, diags := Format(src, "main.hcl.json")
	if diags.HasErrors() || !bytes.Equal(out, src) {
		t.Errorf("JSON changed: %q %v", out, diags)
	}
	out, diags = Format([]byte(`{"connection": `), "main.hcl.json")
	if !diags.HasErrors() || out != nil {
		t.Errorf("bad JSON: %q %v", out, diags)
	}
}
