package lang

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

const varsConfig = `
variable "a" {
  type    = string
  default = "default"
}
variable "b" {
  type    = string
  default = "default"
}
variable "c" {
  type    = string
  default = "default"
}
variable "d" {
  type    = string
  default = "default"
}
variable "n" {
  type    = number
  default = 1
}
variable "regions" {
  type    = list(string)
  default = []
}
variable "obj" {
  type    = object({ host = string, port = number })
  default = { host = "localhost", port = 80 }
}
variable "flag" {
  type        = bool
  default     = false
  description = "a flag"
  sensitive   = true
}
`

func TestVariablePrecedence(t *testing.T) {
	// Var files live outside the configuration directory.
	dir := writeDir(t, map[string]string{
		"one.vars.hcl": "a = \"file1\"\nb = \"file1\"\nc = \"file1\"\nn = 2\n",
		"two.json":     `{"b": "file2", "c": "file2", "regions": ["eu", "us"]}`,
	})
	varFile, two := filepath.Join(dir, "one.vars.hcl"), filepath.Join(dir, "two.json")
	cfgDir := writeDir(t, map[string]string{"main.hcl": varsConfig})
	cfg, diags := Load(cfgDir, LoadOptions{
		VarFiles: []string{varFile, two},
		Environ:  []string{"FERRY_VAR_c=env", "FERRY_VAR_d=env", "FERRY_VAR_unknown=ignored", "HOME=/root"},
		Vars:     map[string]string{"d": "flag", "obj": `{ host = "db", port = 5432 }`, "flag": "true"},
	})
	if diags.HasErrors() {
		t.Fatal(diagString(cfg, diags))
	}
	want := map[string]cty.Value{
		"a":       cty.StringVal("file1"),
		"b":       cty.StringVal("file2"),
		"c":       cty.StringVal("env"),
		"d":       cty.StringVal("flag"),
		"n":       cty.NumberIntVal(2),
		"regions": cty.ListVal([]cty.Value{cty.StringVal("eu"), cty.StringVal("us")}),
		"obj":     cty.ObjectVal(map[string]cty.Value{"host": cty.StringVal("db"), "port": cty.NumberIntVal(5432)}),
		"flag":    cty.True,
	}
	for name, w := range want {
		if got := cfg.Variables[name].Value; !got.RawEquals(w) {
			t.Errorf("var.%s = %#v, want %#v", name, got, w)
		}
	}
	f := cfg.Variables["flag"]
	if f.Description != "a flag" || !f.Sensitive || !f.Default.RawEquals(cty.False) || f.Type != cty.Bool {
		t.Errorf("flag = %+v", f)
	}
	// Var files are part of Files, for snippets.
	if cfg.Files[varFile] == nil {
		t.Errorf("var file not in Files")
	}
}

func TestVariableDefaultsOnly(t *testing.T) {
	cfg := mustLoad(t, map[string]string{"main.hcl": varsConfig}, LoadOptions{})
	if got := cfg.Variables["a"].Value.AsString(); got != "default" {
		t.Errorf("a = %q", got)
	}
	if got := cfg.Variables["regions"].Value; !got.RawEquals(cty.ListValEmpty(cty.String)) {
		t.Errorf("regions = %#v", got)
	}
}

func TestVariableErrors(t *testing.T) {
	const cfgSrc = `
variable "req" {
  type = number
}
variable "list" {
  type    = list(number)
  default = []
}
`
	t.Run("required", func(t *testing.T) {
		_, diags := load(t, map[string]string{"main.hcl": cfgSrc}, LoadOptions{})
		d := wantDiag(t, diags, "No value for required variable", `"req"`, "FERRY_VAR_req")
		if d.Subject == nil || d.Subject.Start.Line != 2 {
			t.Errorf("subject = %v", d.Subject)
		}
	})
	t.Run("undeclared -var", func(t *testing.T) {
		_, diags := load(t, map[string]string{"main.hcl": cfgSrc}, LoadOptions{Vars: map[string]string{"req": "1", "lst": "[1]"}})
		wantDiag(t, diags, "Value for undeclared variable", `"lst"`, `Did you mean "list"?`)
	})
	t.Run("bad -var number", func(t *testing.T) {
		_, diags := load(t, map[string]string{"main.hcl": cfgSrc}, LoadOptions{Vars: map[string]string{"req": "abc"}})
		wantDiag(t, diags, "Invalid value for variable", "-var req", "number")
	})
	t.Run("bad -var expression", func(t *testing.T) {
		_, diags := load(t, map[string]string{"main.hcl": cfgSrc}, LoadOptions{Vars: map[string]string{"req": "1", "list": `["a"]`}})
		wantDiag(t, diags, "Invalid value for variable", "-var list")
	})
	t.Run("bad env", func(t *testing.T) {
		_, diags := load(t, map[string]string{"main.hcl": cfgSrc}, LoadOptions{Environ: []string{"FERRY_VAR_req=x"}})
		wantDiag(t, diags, "Invalid value for variable", "FERRY_VAR_req")
	})
	t.Run("env sets value", func(t *testing.T) {
		cfg := mustLoad(t, map[string]string{"main.hcl": cfgSrc}, LoadOptions{Environ: []string{"FERRY_VAR_req=42"}})
		if n, _ := cfg.Variables["req"].Value.AsBigFloat().Int64(); n != 42 {
			t.Errorf("req = %d", n)
		}
	})
	t.Run("var file undeclared is a warning", func(t *testing.T) {
		vf := filepath.Join(t.TempDir(), "x.hcl")
		os.WriteFile(vf, []byte("req = 1\nreq2 = 2\n"), 0o644)
		cfg, diags := load(t, map[string]string{"main.hcl": cfgSrc}, LoadOptions{VarFiles: []string{vf}})
		if diags.HasErrors() {
			t.Fatal(diagString(cfg, diags))
		}
		d := wantDiag(t, diags, "Value for undeclared variable", `"req2"`)
		if d.Severity != hcl.DiagWarning || d.Subject.Start.Line != 2 {
			t.Errorf("diag = %+v", d)
		}
	})
	t.Run("missing var file", func(t *testing.T) {
		_, diags := load(t, map[string]string{"main.hcl": cfgSrc}, LoadOptions{VarFiles: []string{"/nonexistent/x.hcl"}, Vars: map[string]string{"req": "1"}})
		wantDiag(t, diags, "Cannot read variables file", "/nonexistent/x.hcl")
	})
	t.Run("bad default", func(t *testing.T) {
		_, diags := load(t, map[string]string{"main.hcl": `variable "x" {
  type    = number
  default = "abc"
}`}, LoadOptions{})
		wantDiag(t, diags, "Invalid default value for variable")
	})
	t.Run("default cannot reference", func(t *testing.T) {
		_, diags := load(t, map[string]string{"main.hcl": `variable "x" {
  default = var.y
}`}, LoadOptions{})
		wantDiag(t, diags, "Variables not allowed")
	})
}

func TestLocals(t *testing.T) {
	t.Run("dependency order across blocks", func(t *testing.T) {
		cfg := mustLoad(t, map[string]string{
			"a.hcl": `locals {
  c = "${local.b}-c"
}`,
			"b.hcl": `
variable "v" {
  default = "v"
}
locals {
  b = "${local.a}-b"
  a = upper(var.v)
  l = [for x in ["p", "q"] : "${x}${local.a}"]
}`,
		}, LoadOptions{})
		if got := cfg.Locals["c"].Value.AsString(); got != "V-b-c" {
			t.Errorf("local.c = %q", got)
		}
		if got := cfg.Locals["l"].Value; !got.RawEquals(cty.TupleVal([]cty.Value{cty.StringVal("pV"), cty.StringVal("qV")})) {
			t.Errorf("local.l = %#v", got)
		}
		if deps := cfg.Dependencies["local.c"]; !reflect.DeepEqual(deps, []string{"local.b"}) {
			t.Errorf("deps = %v", deps)
		}
	})
	t.Run("self cycle", func(t *testing.T) {
		_, diags := load(t, map[string]string{"main.hcl": "locals {\n  a = local.a\n}\n"}, LoadOptions{})
		wantDiag(t, diags, "Cycle in local values", "local.a → local.a")
		if len(diags) != 1 {
			t.Errorf("want exactly the cycle diagnostic, got %d:\n%s", len(diags), diagString(nil, diags))
		}
	})
	t.Run("cycle users get no follow-on errors", func(t *testing.T) {
		_, diags := load(t, map[string]string{"main.hcl": "locals {\n  a = local.b\n  b = local.a\n  c = upper(local.a)\n}\n"}, LoadOptions{})
		wantDiag(t, diags, "Cycle in local values", "local.a → local.b → local.a")
		if len(diags) != 1 {
			t.Errorf("got %d diagnostics:\n%s", len(diags), diagString(nil, diags))
		}
	})
	t.Run("duplicate", func(t *testing.T) {
		_, diags := load(t, map[string]string{"main.hcl": "locals {\n  a = 1\n}\nlocals {\n  a = 2\n}\n"}, LoadOptions{})
		d := wantDiag(t, diags, "Duplicate local value", "main.hcl:2")
		if d.Subject.Start.Line != 5 {
			t.Errorf("subject line %d", d.Subject.Start.Line)
		}
	})
}
