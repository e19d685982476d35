package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/ferryhq/ferry/engine"
	"github.com/ferryhq/ferry/lang"
	"github.com/hashicorp/hcl/v2"
)

// configFlags are the flags of every command that loads a configuration.
type configFlags struct {
	vars     stringList
	varFiles stringList
}

func (f *configFlags) declare(fs *flag.FlagSet) {
	fs.Var(&f.vars, "var", "set a variable: -var name=value (repeatable)")
	fs.Var(&f.varFiles, "var-file", "load variable values from an .hcl file (repeatable)")
}

func (f *configFlags) options() (lang.LoadOptions, error) {
	opts := lang.LoadOptions{Vars: map[string]string{}, VarFiles: f.varFiles, Environ: os.Environ()}
	for _, kv := range f.vars {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return opts, fmt.Errorf("invalid -var %q: write -var name=value", kv)
		}
		opts.Vars[k] = v
	}
	return opts, nil
}

// dirArg returns the single optional directory argument (default ".").
func dirArg(args []string) (string, error) {
	switch len(args) {
	case 0:
		return ".", nil
	case 1:
		return args[0], nil
	}
	return "", fmt.Errorf("expected at most one directory, got %d arguments: %s", len(args), strings.Join(args, " "))
}

// loadProgram loads and compiles the configuration in dir. On problems it
// prints the diagnostics (text) and returns nil.
func loadProgram(c *ctx, f *configFlags, dir string) (*engine.Program, hcl.Diagnostics, map[string]*hcl.File) {
	opts, err := f.options()
	if err != nil {
		diags := hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid -var flag", Detail: err.Error()}}
		return nil, diags, nil
	}
	cfg, diags := lang.Load(dir, opts)
	var files map[string]*hcl.File
	if cfg != nil {
		files = cfg.Files
	}
	if diags.HasErrors() {
		// Still compile what did load, so expression errors are reported in
		// the same pass as the structural ones.
		_, cdiags := engine.Compile(cfg)
		return nil, append(diags, cdiags...), files
	}
	prog, cdiags := engine.Compile(cfg)
	diags = append(diags, cdiags...)
	if diags.HasErrors() {
		return nil, diags, files
	}
	return prog, diags, files
}

// mustLoad is loadProgram for commands that only print diagnostics as text.
func mustLoad(c *ctx, f *configFlags, dir string) *engine.Program {
	prog, diags, files := loadProgram(c, f, dir)
	if len(diags) > 0 {
		lang.WriteDiagnostics(c.stderr, files, diags, false)
	}
	return prog
}
