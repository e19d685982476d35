package apiserver

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ferryhq/ferry/engine"
	"github.com/ferryhq/ferry/lang"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

const maxFiles = 1000

// checkFiles validates the names of submitted files.
func checkFiles(files map[string]string) *Problem {
	if len(files) == 0 {
		return newProblem(http.StatusUnprocessableEntity, probInvalidConfig, "files is empty: send the configuration's *.hcl files as {\"files\": {\"main.hcl\": \"...\"}}")
	}
	if len(files) > maxFiles {
		return newProblem(http.StatusUnprocessableEntity, probInvalidConfig, "%d files are more than the limit of %d", len(files), maxFiles)
	}
	configs := 0
	for name := range files {
		if name == "" || len(name) > 255 || strings.Contains(name, `\`) || !filepath.IsLocal(name) || path.Clean(name) != name {
			return newProblem(http.StatusUnprocessableEntity, probInvalidConfig, "file name %q: use a relative, clean path with '/' separators, e.g. \"main.hcl\" or \"testdata/product.json\"", name)
		}
		if lang.IsConfigFile(path.Base(name)) {
			configs++
		}
	}
	if configs == 0 {
		return newProblem(http.StatusUnprocessableEntity, probInvalidConfig, "no configuration file (*.hcl or *.hcl.json) among the files")
	}
	return nil
}

// fileCallDiags refuses file() calls that could read the server's own files:
// on the server file() takes a literal relative path, read from the files of
// the same request (e.g. a test's testdata/product.json).
func fileCallDiags(files map[string]string) hcl.Diagnostics {
	var diags hcl.Diagnostics
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		src := files[name]
		if !lang.IsConfigFile(path.Base(name)) || !strings.Contains(src, "file") {
			continue
		}
		if strings.HasSuffix(name, ".json") {
			if strings.Contains(src, "file(") {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "file() is not available in JSON-syntax files on the server",
					Detail:  "Write the file() call in a native *.hcl file, with a literal relative path, and send that file along.",
					Subject: &hcl.Range{Filename: name, Start: hcl.InitialPos, End: hcl.InitialPos}})
			}
			continue
		}
		f, pd := hclsyntax.ParseConfig([]byte(src), name, hcl.InitialPos)
		if pd.HasErrors() {
			continue // the loader reports syntax errors
		}
		body, ok := f.Body.(*hclsyntax.Body)
		if !ok {
			continue
		}
		_ = hclsyntax.VisitAll(body, func(n hclsyntax.Node) hcl.Diagnostics {
			fc, ok := n.(*hclsyntax.FunctionCallExpr)
			if !ok || fc.Name != "file" || len(fc.Args) != 1 {
				return nil
			}
			v, vd := fc.Args[0].Value(nil)
			if vd.HasErrors() || !v.IsKnown() || v.IsNull() || v.Type() != cty.String || !filepath.IsLocal(v.AsString()) || strings.Contains(v.AsString(), `\`) {
				r := fc.Range()
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "file() needs a literal relative path on the server",
					Detail:  "On the server, file() reads only files sent with the configuration, named by a literal relative path such as file(\"testdata/product.json\").",
					Subject: &r})
			}
			return nil
		})
	}
	return diags
}

// compiled is a loaded and compiled configuration.
type compiled struct {
	cfg   *lang.Config
	prog  *engine.Program
	diags hcl.Diagnostics // warnings
}

// compileFiles validates files as tenant's configuration: names, file()
// calls, loading, the ferry block's tenant and compilation. A *Problem (422
// with diagnostics) means the configuration is invalid.
func compileFiles(tenant string, files map[string]string) (*compiled, error) {
	if prob := checkFiles(files); prob != nil {
		return nil, prob
	}
	if diags := fileCallDiags(files); diags.HasErrors() {
		return nil, configProblem("the configuration is invalid", diags)
	}
	// Data files (anything that is not configuration) are written to a private
	// directory that file() reads from; nothing else of the server is visible.
	dir, err := os.MkdirTemp("", "ferry-config-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	sources := map[string][]byte{}
	for name, src := range files {
		if lang.IsConfigFile(path.Base(name)) {
			sources[name] = []byte(src)
			continue
		}
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
			return nil, err
		}
	}
	cfg, diags := lang.LoadSources(dir, sources, lang.LoadOptions{})
	if diags.HasErrors() {
		return nil, configProblem("the configuration is invalid", diags)
	}
	if got := cfg.Tenant(); got != tenant {
		d := &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Wrong tenant",
			Detail: fmt.Sprintf("These files are for tenant %q, but the API key belongs to tenant %q. Set tenant = %q in the ferry block, or use a key of tenant %q.", got, tenant, tenant, got)}
		if cfg.Ferry != nil {
			r := cfg.Ferry.DeclRange
			d.Subject = &r
		} else {
			d.Summary = "Missing ferry block"
			d.Detail = fmt.Sprintf("The server only accepts a configuration that names its tenant: add ferry { tenant = %q } to one of the files.", tenant)
		}
		return nil, configProblem(fmt.Sprintf("the configuration is not for tenant %q", tenant), append(diags, d))
	}
	prog, cdiags := engine.Compile(cfg)
	diags = append(diags, cdiags...)
	if cdiags.HasErrors() {
		return nil, configProblem("the configuration is invalid", diags)
	}
	return &compiled{cfg: cfg, prog: prog, diags: diags}, nil
}

func filesBytes(files map[string]string) map[string][]byte {
	out := make(map[string][]byte, len(files))
	for k, v := range files {
		out[k] = []byte(v)
	}
	return out
}

func sameFiles(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !bytes.Equal([]byte(v), []byte(w)) {
			return false
		}
	}
	return true
}
