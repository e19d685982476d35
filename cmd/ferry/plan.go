package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/ferryhq/ferry/engine"
	"github.com/ferryhq/ferry/lang"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// planFileFormat is the format_version of a saved plan (ferry plan -out).
const planFileFormat = "1.0"

func init() {
	var cf configFlags
	var sf serverFlags
	var out string
	var detailed, jsonOut bool
	register(&command{
		name:  "plan",
		usage: "plan [DIR] [-out FILE] [-detailed-exitcode] [--json] [--server URL] [--api-key KEY]",
		summary: `Show what applying the configuration in DIR to the ferry server would change.

The local files are validated first; then the server compares them with the
tenant's current revision and lists each resource and attribute to add (+),
change (~) or destroy (-). Secret values never appear: secret("name") is shown
as written. The server and key come from FERRY_SERVER and FERRY_API_KEY (or
--server and --api-key).

-out FILE saves the plan with its files: ferry apply FILE applies exactly
them, and only if the server is still at the revision planned against.
-detailed-exitcode exits 0 without changes, 2 with changes, 1 on errors.
-var and -var-file only feed the local validation: the server evaluates the
files with the variables' defaults.`,
		examples: `  ferry plan                          # the configuration in the current directory
  ferry plan -out plan.json .         # then: ferry apply plan.json
  ferry plan -detailed-exitcode       # in CI: exit 2 when there are changes
  ferry plan --json | jq .summary`,
		flags: func(fs *flag.FlagSet) {
			cf.declare(fs)
			sf.declare(fs)
			fs.StringVar(&out, "out", "", "save the plan and its files to FILE, for ferry apply FILE")
			fs.BoolVar(&detailed, "detailed-exitcode", false, "exit 0 without changes, 2 with changes, 1 on errors")
			fs.BoolVar(&jsonOut, "json", false, "print the plan as JSON (with format_version)")
		},
		run: func(c *ctx, args []string) int {
			dir, err := dirArg(args)
			if err != nil {
				return c.errorf("%v", err)
			}
			lc := loadLocal(c, &cf, dir)
			if lc == nil {
				return 1
			}
			cl, err := sf.client()
			if err != nil {
				return c.errorf("%v", err)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			plan, err := cl.plan(ctx, lc.files)
			if err != nil {
				return writeAPIError(c, err, lc.paths, lc.parsed)
			}
			if out != "" {
				if err := savePlan(out, plan, lc.files); err != nil {
					return c.errorf("%v", err)
				}
			}
			if jsonOut {
				writeJSON(c.stdout, plan)
			} else {
				printPlan(c, plan)
				if out != "" {
					fmt.Fprintf(c.stdout, "\nSaved the plan to %s. To apply exactly these changes: ferry apply %s\n", out, out)
				}
			}
			if detailed && plan.HasChanges() {
				return 2
			}
			return 0
		},
	})

	var acf configFlags
	var asf serverFlags
	var autoApprove bool
	var message string
	register(&command{
		name:  "apply",
		usage: "apply [DIR|PLANFILE] [-auto-approve] [-message M] [--server URL] [--api-key KEY]",
		summary: `Apply the configuration in DIR, or a plan saved by ferry plan -out, to the ferry server.

With DIR, apply plans first, shows the plan and asks for confirmation ("yes")
unless -auto-approve; without a terminal to ask on, pass -auto-approve. The
files are stored as the tenant's next revision only if the server is still at
the revision planned against; otherwise the plan is stale and nothing is
applied. With PLANFILE, exactly the saved files are applied, without asking
(the plan was reviewed when it was saved), and only if the server is still at
the revision planned against.`,
		examples: `  ferry apply                                   # plan, confirm, apply the current directory
  ferry apply -auto-approve -message "$(git rev-parse HEAD)" .   # in CI
  ferry plan -out plan.json && ferry apply plan.json`,
		flags: func(fs *flag.FlagSet) {
			acf.declare(fs)
			asf.declare(fs)
			fs.BoolVar(&autoApprove, "auto-approve", false, "apply without asking for confirmation")
			fs.StringVar(&message, "message", "", "a note stored with the revision, e.g. the git commit")
		},
		run: func(c *ctx, args []string) int {
			target, err := dirArg(args)
			if err != nil {
				return c.errorf("%v", err)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			if fi, err := os.Stat(target); err == nil && fi.Mode().IsRegular() {
				return applyPlanFile(ctx, c, &asf, target, message)
			}
			lc := loadLocal(c, &acf, target)
			if lc == nil {
				return 1
			}
			cl, err := asf.client()
			if err != nil {
				return c.errorf("%v", err)
			}
			plan, err := cl.plan(ctx, lc.files)
			if err != nil {
				return writeAPIError(c, err, lc.paths, lc.parsed)
			}
			printPlan(c, plan)
			if plan.HasChanges() && !autoApprove {
				ok, err := confirm(c)
				if err != nil {
					return c.errorf("%v", err)
				}
				if !ok {
					fmt.Fprintln(c.stdout, "\nApply cancelled.")
					return 1
				}
			}
			return applyFiles(ctx, c, cl, plan, lc.files, message, lc.paths, lc.parsed)
		},
	})
}

// localConfig is a configuration directory as the CLI sends it to a server.
type localConfig struct {
	// files maps a name on the server ("main.hcl", "testdata/product.json")
	// to its content: every configuration file of the directory and every
	// data file that a file("...") call reads.
	files map[string]string
	// paths maps a name on the server to the local path, parsed holds the
	// parsed local files: both for diagnostics with snippets.
	paths  map[string]string
	parsed map[string]*hcl.File
	// tenant is the ferry block's tenant ("" when there is none).
	tenant string
}

// loadLocal validates the configuration in dir and collects its files. It
// prints diagnostics and returns nil when the configuration is invalid.
func loadLocal(c *ctx, cf *configFlags, dir string) *localConfig {
	prog, diags, parsed := loadProgram(c, cf, dir)
	if len(diags) > 0 {
		lang.WriteDiagnostics(c.stderr, parsed, diags, false)
	}
	if prog == nil {
		return nil
	}
	files, paths, err := collectFiles(dir)
	if err != nil {
		c.errorf("%v", err)
		return nil
	}
	return &localConfig{files: files, paths: paths, parsed: parsed, tenant: prog.Config.Tenant()}
}

// collectFiles reads the files of a configuration directory that make up a
// revision: the configuration files (*.hcl, *.hcl.json) and the data files
// their file("relative/path") calls read. Names use '/'.
func collectFiles(dir string) (files, paths map[string]string, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("read the configuration directory: %w", err)
	}
	files, paths = map[string]string{}, map[string]string{}
	for _, e := range entries {
		if e.IsDir() || !lang.IsConfigFile(e.Name()) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, nil, err
		}
		files[e.Name()], paths[e.Name()] = string(b), p
	}
	for _, name := range sortedKeys(files) {
		if strings.HasSuffix(name, ".json") {
			continue
		}
		for _, rel := range fileCalls(name, files[name]) {
			if _, done := files[rel]; done {
				continue
			}
			p := filepath.Join(dir, filepath.FromSlash(rel))
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, nil, fmt.Errorf("%s reads %s with file(): %w", paths[name], p, err)
			}
			files[rel], paths[rel] = string(b), p
		}
	}
	return files, paths, nil
}

// fileCalls lists the literal relative paths of the file() calls of a native
// HCL file. Other file() arguments are left to the server, which refuses them.
func fileCalls(name, src string) []string {
	if !strings.Contains(src, "file") {
		return nil
	}
	f, diags := hclsyntax.ParseConfig([]byte(src), name, hcl.InitialPos)
	if diags.HasErrors() {
		return nil
	}
	body, ok := f.Body.(*hclsyntax.Body)
	if !ok {
		return nil
	}
	var out []string
	hclsyntax.VisitAll(body, func(n hclsyntax.Node) hcl.Diagnostics {
		fc, ok := n.(*hclsyntax.FunctionCallExpr)
		if !ok || fc.Name != "file" || len(fc.Args) != 1 {
			return nil
		}
		v, d := fc.Args[0].Value(nil)
		if d.HasErrors() || !v.IsWhollyKnown() || v.IsNull() || v.Type() != cty.String {
			return nil
		}
		rel := filepath.ToSlash(v.AsString())
		if filepath.IsLocal(v.AsString()) && path.Clean(rel) == rel {
			out = append(out, rel)
		}
		return nil
	})
	sort.Strings(out)
	return out
}

// plan asks the server for the plan of files against the current revision.
func (cl *apiClient) plan(ctx context.Context, files map[string]string) (*engine.Plan, error) {
	var raw map[string]json.RawMessage
	h, err := cl.do(ctx, http.MethodPost, "/v1/config/plan", nil, map[string]any{"files": files}, &raw)
	if err != nil {
		return nil, err
	}
	return decodePlan(raw, etagRevision(h))
}

// decodePlan reads the answer of POST /v1/config/plan: the engine's plan,
// either at the top level or under "plan" next to priorRevision and planHash.
func decodePlan(raw map[string]json.RawMessage, etag int) (*engine.Plan, error) {
	body := raw
	if inner, ok := raw["plan"]; ok {
		if err := json.Unmarshal(inner, &body); err != nil {
			return nil, fmt.Errorf("the server's plan is not a JSON object: %v", err)
		}
	}
	b, _ := json.Marshal(body)
	var p engine.Plan
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("the server's plan cannot be read: %v", err)
	}
	if major, _, _ := strings.Cut(p.FormatVersion, "."); major != "1" {
		return nil, fmt.Errorf("the server's plan has format_version %q; this ferry reads 1.x: upgrade ferry to the server's version", p.FormatVersion)
	}
	// The wrapper's fields, when present, are authoritative.
	var n int
	if v, ok := raw["priorRevision"]; ok && json.Unmarshal(v, &n) == nil {
		p.PriorRevision = n
	} else if _, ok := body["prior_revision"]; !ok && etag >= 0 {
		p.PriorRevision = etag
	}
	var hash string
	if v, ok := raw["planHash"]; ok && json.Unmarshal(v, &hash) == nil && hash != "" {
		p.Hash = hash
	}
	if p.Hash == "" {
		return nil, errors.New("the server's plan has no plan_hash: is the server older than this ferry?")
	}
	if p.Changes == nil {
		p.Changes = []engine.ResourceChange{}
	}
	return &p, nil
}

// printPlan prints a plan as text.
func printPlan(c *ctx, p *engine.Plan) {
	if p.HasChanges() {
		if p.PriorRevision == 0 {
			fmt.Fprintf(c.stdout, "ferry will make these changes (the tenant has no configuration yet):\n\n")
		} else {
			fmt.Fprintf(c.stdout, "ferry will make these changes to revision %d:\n\n", p.PriorRevision)
		}
	}
	p.WriteText(c.stdout)
}

// planFile is a saved plan: what ferry plan -out writes and ferry apply FILE
// applies.
type planFile struct {
	FormatVersion string            `json:"format_version"`
	PriorRevision int               `json:"prior_revision"`
	PlanHash      string            `json:"plan_hash"`
	Files         map[string]string `json:"files"`
	Plan          *engine.Plan      `json:"plan"`
}

func savePlan(name string, p *engine.Plan, files map[string]string) error {
	b, err := json.MarshalIndent(planFile{FormatVersion: planFileFormat, PriorRevision: p.PriorRevision,
		PlanHash: p.Hash, Files: files, Plan: p}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(name, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save the plan: %w", err)
	}
	return nil
}

func readPlanFile(name string) (*planFile, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var pf planFile
	if err := json.Unmarshal(b, &pf); err != nil {
		return nil, fmt.Errorf("%s is not a plan saved by ferry plan -out (%v); to apply a directory, pass the directory", name, err)
	}
	if major, _, _ := strings.Cut(pf.FormatVersion, "."); major != "1" || pf.PlanHash == "" || len(pf.Files) == 0 || pf.Plan == nil {
		return nil, fmt.Errorf("%s is not a plan saved by ferry plan -out (format_version %q); run ferry plan -out %s again", name, pf.FormatVersion, name)
	}
	pf.Plan.PriorRevision, pf.Plan.Hash = pf.PriorRevision, pf.PlanHash
	return &pf, nil
}

func applyPlanFile(ctx context.Context, c *ctx, sf *serverFlags, name, message string) int {
	pf, err := readPlanFile(name)
	if err != nil {
		return c.errorf("%v", err)
	}
	cl, err := sf.client()
	if err != nil {
		return c.errorf("%v", err)
	}
	printPlan(c, pf.Plan)
	return applyFiles(ctx, c, cl, pf.Plan, pf.Files, message, nil, nil)
}

// applyResult is the answer of PUT /v1/config.
type applyResult struct {
	Revision int  `json:"revision"`
	Changed  bool `json:"changed"`
}

// applyFiles stores files as the revision after the one p was planned
// against, bound to the plan by its hash.
func applyFiles(ctx context.Context, c *ctx, cl *apiClient, p *engine.Plan, files map[string]string, message string, paths map[string]string, parsed map[string]*hcl.File) int {
	h := http.Header{}
	h.Set("If-Match", strconv.Quote(strconv.Itoa(p.PriorRevision)))
	h.Set("Ferry-Plan-Hash", p.Hash)
	body := map[string]any{"files": files, "planHash": p.Hash}
	if message != "" {
		body["message"] = message
	}
	var res applyResult
	_, err := cl.do(ctx, http.MethodPut, "/v1/config", h, body, &res)
	if statusOf(err) == http.StatusPreconditionFailed {
		cur, cerr := cl.config(ctx)
		switch {
		case cerr != nil:
			return c.errorf("the plan is stale: %v. Run ferry plan again.", err)
		case cur.Revision != p.PriorRevision:
			return c.errorf("the plan is stale: the server's configuration is now revision %d (planned against %d). Run ferry plan again.", cur.Revision, p.PriorRevision)
		default:
			return c.errorf("the plan does not match these files at revision %d (%v). Run ferry plan again.", cur.Revision, err)
		}
	}
	if err != nil {
		return writeAPIError(c, err, paths, parsed)
	}
	s := p.Summary
	switch {
	case res.Changed && p.HasChanges():
		fmt.Fprintf(c.stdout, "\nApply complete! Revision %d: %d added, %d changed, %d destroyed.\n", res.Revision, s.Add, s.Change, s.Destroy)
	case res.Changed:
		fmt.Fprintf(c.stdout, "\nApply complete! Revision %d: the files changed, no resource did.\n", res.Revision)
	default:
		fmt.Fprintf(c.stdout, "\nNothing to apply: revision %d has exactly these files.\n", res.Revision)
	}
	return 0
}

// confirm asks on the terminal whether to apply.
func confirm(c *ctx) (bool, error) {
	fi, err := os.Stdin.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return false, errors.New("stdin is not a terminal, so ferry cannot ask whether to apply: pass -auto-approve to apply without asking")
	}
	fmt.Fprint(c.stdout, "\nDo you want to apply? Only 'yes' will be accepted: ")
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil && line == "" {
		return false, nil
	}
	return strings.TrimSpace(line) == "yes", nil
}
