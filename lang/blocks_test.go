package lang

import (
	"runtime"
	"strings"
	"testing"
)

const baseConns = `
connection "files" {
  type = "file"
  path = "data"
}
connection "api" {
  type = "test"
  path = "https://api"
}
connection "null" {
  type = "sink"
}
mapping "m" {
  key = "id"
}
`

// integ wraps blocks into an integration reading files and writing to api.
func integ(body string) string {
	return baseConns + "integration \"i\" {\n" + body + "\n}\n"
}

const okSource = "source {\n  connection = connection.files\n  path = \"*.json\"\n}\n"
const okTarget = "target {\n  connection = connection.api\n}\n"

func TestBlockErrors(t *testing.T) {
	cases := map[string]struct {
		src, summary string
		fragments    []string
	}{
		"invalid tenant":        {`ferry { tenant = "Acme Corp" }`, "Invalid tenant", nil},
		"bad version":           {`ferry { required_version = "latest" }`, "Invalid version constraint", nil},
		"table not object":      {`table "t" { values = ["a"] }`, "Incorrect attribute value type", nil},
		"table missing values":  {`table "t" { default = "x" }`, "Missing required argument", nil},
		"quoted reference":      {integ(`source { connection = "files" }` + "\n" + okTarget), "Invalid reference", []string{"connection.api"}},
		"reference with index":  {integ(`source { connection = connection.files.x }` + "\n" + okTarget), "Invalid reference", []string{"of the form"}},
		"ref in static attr":    {"connection \"c\" {\n type = \"test\"\n path = mapping.m\n}\n" + baseConns, "Invalid reference", []string{"mapping cannot be referenced here"}},
		"bare word":             {"connection \"c\" {\n type = \"test\"\n path = data\n}\n", "Invalid reference", []string{`nothing named "data"`}},
		"not a source":          {integ("source {\n connection = connection.null\n}\n" + okTarget), "Connection cannot be a source", []string{"sink connector"}},
		"connector attr in src": {integ("source {\n connection = connection.api\n pth = \"x\"\n}\n" + okTarget), "Unsupported argument", nil},
		"batch size":            {integ(okSource + "target {\n connection = connection.api\n batch_size = 0\n}"), "Invalid value", []string{"at least 1"}},
		"workers fraction":      {integ(okSource + okTarget + "workers = 1.5"), "Invalid value", []string{"whole number"}},
		"jitter":                {integ(okSource + okTarget + "retry {\n jitter = 2\n}"), "Invalid value", []string{"between 0 and 1"}},
		"max below initial":     {integ(okSource + okTarget + "retry {\n initial = \"1m\"\n max = \"1s\"\n}"), "Invalid retry delays", nil},
		"negative duration":     {integ(okSource + okTarget + "retry {\n max = \"-1s\"\n}"), "Invalid duration", []string{"positive"}},
		"webhook verify":        {integ(okSource + okTarget + "webhook {\n verify = \"shopfy\"\n}"), "Invalid webhook verification", []string{`Did you mean "shopify"?`}},
		"webhook nested block":  {integ(okSource + okTarget + "webhook {\n x {\n }\n}"), "Unexpected \"x\" block", nil},
		"normalize type":        {integ(okSource + okTarget + "normalize {\n types = { a = \"integer\" }\n}"), "Invalid type", nil},
		"transform no mapping":  {integ(okSource + okTarget + "transform {\n}"), "Missing required argument", nil},
		"duplicate source":      {integ(okSource + okSource + okTarget), "Duplicate source block", nil},
		"concurrency":           {integ(okSource+okTarget) + "schedule \"s\" {\n integration = integration.i\n cron = \"@daily\"\n concurrency = \"never\"\n}", "Invalid concurrency", nil},
		"local timezone":        {integ(okSource+okTarget) + "schedule \"s\" {\n integration = integration.i\n cron = \"@daily\"\n timezone = \"Local\"\n}", "Invalid time zone", nil},
		"test neither":          {"test \"t\" {\n input = {}\n}", "Missing required argument", []string{"either mapping"}},
		"test no input":         {baseConns + "test \"t\" {\n mapping = mapping.m\n expect = {}\n}", "Missing required argument", []string{`"input"`}},
		"test no expect":        {baseConns + "test \"t\" {\n mapping = mapping.m\n input = {}\n}", "Missing required argument", []string{`"expect"`}},
		"test expect and skip":  {baseConns + "test \"t\" {\n mapping = mapping.m\n input = {}\n expect = {}\n expect_skip = true\n}", "Conflicting arguments", nil},
		"test input not object": {baseConns + "test \"t\" {\n mapping = mapping.m\n input = [1]\n expect_skip = true\n}", "Incorrect attribute value type", nil},
		"test wrong kind arg":   {baseConns + "test \"t\" {\n mapping = mapping.m\n input = {}\n expect_skip = true\n records = []\n}", "Unsupported argument", []string{"integration tests"}},
		"test records":          {integ(okSource+okTarget) + "test \"t\" {\n integration = integration.i\n records = [1]\n}", "Incorrect attribute value type", nil},
		"test counts":           {integ(okSource+okTarget) + "test \"t\" {\n integration = integration.i\n records = []\n expect_counts = { succes = 1 }\n}", "Invalid count", []string{`Did you mean "success"?`}},
		"test counts fraction":  {integ(okSource+okTarget) + "test \"t\" {\n integration = integration.i\n records = []\n expect_counts = { success = 1.5 }\n}", "Invalid count", nil},
		"invalid name json":     {"", "Invalid connection name", nil},
		"unknown function":      {`locals { a = uper("x") }`, "Call to unknown function", []string{`Did you mean "upper"?`}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			files := map[string]string{"main.hcl": tc.src}
			if name == "invalid name json" {
				files = map[string]string{"main.hcl.json": `{"connection": {"bad name": {"type": "file"}}}`}
			}
			_, diags := load(t, files, LoadOptions{})
			d := wantDiag(t, diags, tc.summary, tc.fragments...)
			if d.Subject == nil {
				t.Errorf("no subject")
			}
		})
	}
}

func TestOneDiagnosticPerProblem(t *testing.T) {
	// An undeclared variable inside connector attributes is reported once (ours),
	// not again by HCL.
	_, diags := load(t, map[string]string{"main.hcl": "connection \"c\" {\n  type = \"test\"\n  path = var.nope\n}\n"}, LoadOptions{})
	if len(diags) != 1 || diags[0].Summary != "Reference to undeclared input variable" {
		t.Errorf("diags = %s", diagString(nil, diags))
	}
	// A missing required variable does not cascade into its users.
	_, diags = load(t, map[string]string{"main.hcl": "variable \"v\" {\n  type = string\n}\nlocals {\n  l = upper(var.v)\n}\nconnection \"c\" {\n  type = \"test\"\n  path = local.l\n}\n"}, LoadOptions{})
	if len(diags) != 1 || diags[0].Summary != "No value for required variable" {
		t.Errorf("diags = %s", diagString(nil, diags))
	}
}

func TestDefaultsAndOwnership(t *testing.T) {
	cfg := mustLoad(t, map[string]string{"main.hcl": integ(okSource+okTarget+"normalize {\n require = [\"id\"]\n}") + `
schedule "s" {
  integration = integration.i
  cron        = "30 */5 * * * *"
}
schedule "t" {
  integration = integration.i
  cron        = "@every 10m"
}
connection "files2" {
  type = "file"
}
mapping "files" {
  key = "id"
}
`}, LoadOptions{})
	in := cfg.Integrations["i"]
	if in.Workers != runtime.NumCPU() || in.AllowParallelRuns || in.Webhook != nil || in.Transform != nil {
		t.Errorf("integration defaults = %+v", in)
	}
	if !in.Normalize.Trim || len(in.Normalize.Types) != 0 {
		t.Errorf("normalize defaults = %+v", in.Normalize)
	}
	if in.Target.Path != nil || in.Target.Operation != "upsert" || in.Target.BatchSize != 100 {
		t.Errorf("target defaults = %+v", in.Target)
	}
	s := cfg.Schedules["s"]
	if s.Timezone != "UTC" || s.Location.String() != "UTC" || s.Concurrency != "forbid" || s.MissedFire != "skip" || !s.Enabled || s.Cron != "30 */5 * * * *" {
		t.Errorf("schedule defaults = %+v", s)
	}
	// Names are unique per kind only.
	if cfg.Connections["files"] == nil || cfg.Mappings["files"] == nil {
		t.Error("same name in two kinds should be allowed")
	}
	if cfg.Connections["files2"].Config.GetAttr("path").IsNull() != true {
		t.Error("optional connector attribute should be null")
	}
}

func TestTargetPathIsExprUnlessConnectorOwnsIt(t *testing.T) {
	cfg := mustLoad(t, map[string]string{"main.hcl": integ(okSource + "target {\n connection = connection.api\n path = \"'/x/' + id\"\n}")}, LoadOptions{})
	if p := cfg.Integrations["i"].Target.Path; p == nil || p.Source != "'/x/' + id" {
		t.Errorf("path = %#v", p)
	}
	// With the file connector, path is the connector's (required) attribute.
	_, diags := load(t, map[string]string{"main.hcl": integ(okSource + "target {\n connection = connection.files\n}")}, LoadOptions{})
	wantDiag(t, diags, "Missing required argument", `"path"`)
}

func TestLoadEdgeCases(t *testing.T) {
	_, diags := Load(t.TempDir(), LoadOptions{})
	wantDiag(t, diags, "No configuration files")
	cfg, diags := Load("/nonexistent/ferry", LoadOptions{})
	if cfg == nil || !diags.HasErrors() {
		t.Error("nonexistent dir")
	}
	// Hidden files, backups and other extensions are not loaded.
	cfg = mustLoad(t, map[string]string{
		"main.hcl":      `mapping "m" { key = "id" }`,
		".hidden.hcl":   "broken {",
		"main.hcl~":     "broken {",
		"notes.txt":     "broken {",
		"sub/other.hcl": "broken {",
	}, LoadOptions{})
	if len(cfg.Files) != 1 {
		t.Errorf("files = %d", len(cfg.Files))
	}
	for name, want := range map[string]bool{"a.hcl": true, "a.hcl.json": true, ".a.hcl": false, "#a.hcl#": false, "a.hcl~": false, "a.json": false, "a.tf": false} {
		if IsConfigFile(name) != want {
			t.Errorf("IsConfigFile(%q) = %v", name, !want)
		}
	}
	// LoadSources works without a disk.
	cfg, diags = LoadSources("", map[string][]byte{"x.hcl": []byte("ferry {\n  tenant = \"acme\"\n}\n")}, LoadOptions{})
	if diags.HasErrors() || cfg.Tenant() != "acme" {
		t.Errorf("LoadSources: %v %q", diags, cfg.Tenant())
	}
	var nilCfg *Config
	if nilCfg.Tenant() != "" || nilCfg.Addresses() != nil {
		t.Error("nil config")
	}
}

func TestVersionSatisfies(t *testing.T) {
	for _, tc := range []struct {
		v, c string
		ok   bool
	}{
		{"0.1.0", ">= 0.1", true},
		{"0.1.0", "> 0.1", false},
		{"0.2.3", ">= 0.1, < 1.0", true},
		{"1.0.0", ">= 0.1, < 1.0", false},
		{"0.1.5", "~> 0.1.2", true},
		{"0.2.0", "~> 0.1.2", false},
		{"0.9.0", "~> 0.1", true},
		{"1.0.0", "~> 0.1", false},
		{"v0.1.0-dev", "= 0.1.0", true},
		{"0.1.0", "!= 0.1.0", false},
		{"0.1.0", "<= 0.1", true},
	} {
		ok, err := VersionSatisfies(tc.v, tc.c)
		if err != nil || ok != tc.ok {
			t.Errorf("VersionSatisfies(%q, %q) = %v, %v", tc.v, tc.c, ok, err)
		}
	}
	for _, c := range []string{"", "latest", ">= 1.2.3.4", ">= 0.1,"} {
		if _, err := VersionSatisfies("0.1.0", c); err == nil {
			t.Errorf("%q: no error", c)
		}
	}
	if !strings.Contains(Version, ".") {
		t.Error("Version")
	}
}
