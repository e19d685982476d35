package lang

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// richConfig exercises every kind, nested blocks, secrets, references,
// heredocs, expressions and comments, over two files.
var richConfig = map[string]string{
	"main.hcl": `# Header comment of main.hcl: stays.
ferry {
  tenant = "acme"
}

variable "dir" {
  type    = list(string)
  default = ["data"]
}

locals {
  base = "${var.dir[0]}/in"
}

# The shop API.
connection "api" {
  type  = "test"
  path  = "https://api" # inline comment
  token = secret("api_token")
  port  = 8443
}

connection "files" {
  type = "file"
  path = local.base
}

table "countries" {
  values  = { NL = "Netherlands", "DE x" = "Germany" }
  default = null
}

mapping "m" {
  key    = "string(id)"
  filter = <<EXPR
status != 'archived'
EXPR
  fields = {
    sku            = "variants[0].sku"
    "address.city" = "city"
    address = {
      zip = "zip"
    }
  }
  casts        = { sku = "string" }
  defaults     = { currency = "EUR", secret = "not a secret, a literal key" }
  unset        = ["internal.id"]
  pass_through = true
}
`,
	"flows.hcl": `// Flows.
integration "sync" {
  allow_parallel_runs = true
  workers             = 2

  source {
    connection = connection.api
    resource   = "products"
    cursor     = "updated_at"
  }

  normalize {
    require = ["id"]
    trim    = false
    types   = { id = "int" }
  }

  transform {
    mapping        = mapping.m
    skip_unchanged = true
  }

  target {
    connection = connection.files
    path       = "out.ndjson"
    format     = upper("ndjson")
  }

  retry {
    max_attempts = 7
    initial      = "2s"
    max          = "1m"
    multiplier   = 1.5
    jitter       = 0.1
  }

  webhook {
    verify = "hmac"
    secret = secret("hook_secret")
    header = "X-Sig"
  }
}

schedule "nightly" {
  integration = integration.sync
  cron        = "0 3 * * *"
  timezone    = "Europe/Amsterdam"
  concurrency = "replace"
  missed      = "run_once"
  enabled     = false
}

test "m_maps" {
  mapping = mapping.m
  input   = { id = 1, variants = [{ sku = "a" }], city = "Utrecht", zip = "1234" }
  expect  = { sku = "a", address = { city = "Utrecht", zip = "1234" }, currency = "EUR", secret = "not a secret, a literal key" }
}

test "whole" {
  integration   = integration.sync
  records       = [{ id = 1, variants = [{ sku = "a" }] }]
  expect_counts = { total = 1 }
}
`,
}

func byteFiles(m map[string]string) map[string][]byte {
	out := map[string][]byte{}
	for k, v := range m {
		out[k] = []byte(v)
	}
	return out
}

func loadBytes(t *testing.T, dir string, files map[string][]byte) *Config {
	t.Helper()
	cfg, diags := LoadSources(dir, files, LoadOptions{})
	if diags.HasErrors() {
		var names []string
		for n := range files {
			names = append(names, n)
		}
		t.Fatalf("load %v: %s", names, diags.Error())
	}
	return cfg
}

func quickstartFiles(t *testing.T) (string, map[string][]byte) {
	t.Helper()
	dir := filepath.Join("..", "examples", "quickstart")
	files := map[string][]byte{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() && IsConfigFile(e.Name()) {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			files[e.Name()] = b
		}
	}
	return dir, files
}

// TestWriteRoundTrip: BlockJSON → BlockHCL → ReplaceBlock → LoadSources gives
// the same blocks as written, for every block of the quickstart and of a rich
// configuration (engine's plan test checks the same with Diff).
func TestWriteRoundTrip(t *testing.T) {
	qdir, qfiles := quickstartFiles(t)
	for name, c := range map[string]struct {
		dir   string
		files map[string][]byte
	}{
		"quickstart": {qdir, qfiles},
		"rich":       {t.TempDir(), byteFiles(richConfig)},
	} {
		t.Run(name, func(t *testing.T) {
			orig := loadBytes(t, c.dir, c.files)
			want := BlocksJSON(orig)
			n := 0
			for addr := range want {
				kind, label, _ := strings.Cut(addr, ".")
				if kind == kindLocal {
					continue
				}
				body, err := BlockJSON(orig, kind, label)
				if err != nil {
					t.Fatal(err)
				}
				// What a REST client gets and sends back is JSON.
				js, err := json.Marshal(body)
				if err != nil {
					t.Fatal(err)
				}
				var decoded map[string]any
				if err := json.Unmarshal(js, &decoded); err != nil {
					t.Fatal(err)
				}
				block, err := BlockHCL(kind, label, decoded)
				if err != nil {
					t.Fatalf("%s: BlockHCL: %v", addr, err)
				}
				files, err := ReplaceBlock(c.files, kind, label, block)
				if err != nil {
					t.Fatalf("%s: ReplaceBlock: %v", addr, err)
				}
				if _, added := files[RESTFile]; added && c.files[RESTFile] == nil {
					t.Fatalf("%s: replaced block was appended to %s", addr, RESTFile)
				}
				got := BlocksJSON(loadBytes(t, c.dir, files))
				if !reflect.DeepEqual(normalizeNumbers(got), normalizeNumbers(want)) {
					g, _ := json.MarshalIndent(got[addr], "", "  ")
					w, _ := json.MarshalIndent(want[addr], "", "  ")
					t.Errorf("%s: round trip changed the block:\n%s\nwant:\n%s\nHCL:\n%s", addr, g, w, block)
				}
				n++
			}
			if n < 6 {
				t.Fatalf("only %d blocks checked", n)
			}
		})
	}
}

// normalizeNumbers makes int64 and float64 of the same value compare equal.
func normalizeNumbers(v any) any {
	switch x := v.(type) {
	case int64:
		return float64(x)
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			out[k] = normalizeNumbers(e)
		}
		return out
	case map[string]map[string]any:
		out := map[string]any{}
		for k, e := range x {
			out[k] = normalizeNumbers(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalizeNumbers(e)
		}
		return out
	}
	return v
}

func TestBlockJSONRepresentation(t *testing.T) {
	cfg := loadBytes(t, t.TempDir(), byteFiles(richConfig))
	get := func(kind, name string) string {
		t.Helper()
		m, err := BlockJSON(cfg, kind, name)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	for _, c := range []struct{ kind, name, want string }{
		{"connection", "api", `{"path":"https://api","port":8443,"token":{"secret":"api_token"},"type":"test"}`},
		{"connection", "files", `{"path":{"hcl":"local.base"},"type":"file"}`},
		{"schedule", "nightly", `{"concurrency":"replace","cron":"0 3 * * *","enabled":false,"integration":"integration.sync","missed":"run_once","timezone":"Europe/Amsterdam"}`},
		{"table", "countries", `{"default":null,"values":{"DE x":"Germany","NL":"Netherlands"}}`},
		{"var", "dir", `{"default":["data"],"type":{"hcl":"list(string)"}}`},
		{"variable", "dir", `{"default":["data"],"type":{"hcl":"list(string)"}}`},
		{"local", "base", `{"value":{"hcl":"\"${var.dir[0]}/in\""}}`},
		{"ferry", "", `{"tenant":"acme"}`},
	} {
		if got := get(c.kind, c.name); got != c.want {
			t.Errorf("%s %s:\n got %s\nwant %s", c.kind, c.name, got, c.want)
		}
	}
	in := get("integration", "sync")
	for _, s := range []string{
		`"source":{"connection":"connection.api","cursor":"updated_at","resource":"products"}`,
		`"transform":{"mapping":"mapping.m","skip_unchanged":true}`,
		`"target":{"connection":"connection.files","format":{"hcl":"upper(\"ndjson\")"},"path":"out.ndjson"}`,
		`"webhook":{"header":"X-Sig","secret":{"secret":"hook_secret"},"verify":"hmac"}`,
		`"retry":{"initial":"2s","jitter":0.1,"max":"1m","max_attempts":7,"multiplier":1.5}`,
	} {
		if !strings.Contains(in, s) {
			t.Errorf("integration JSON lacks %s:\n%s", s, in)
		}
	}
	// A literal object that looks like a secret reference is kept as HCL.
	m := get("mapping", "m")
	if !strings.Contains(m, `"filter":"status != 'archived'\n"`) || !strings.Contains(m, `"defaults":{"currency":"EUR","secret":"not a secret, a literal key"}`) {
		t.Errorf("mapping JSON: %s", m)
	}
	if _, err := BlockJSON(cfg, "connection", "nope"); !errors.Is(err, ErrBlockNotFound) {
		t.Errorf("missing block: %v", err)
	}
}

func TestBlockJSONAmbiguousLiteral(t *testing.T) {
	cfg := loadBytes(t, t.TempDir(), byteFiles(map[string]string{"a.hcl": `
table "t" {
  values = { secret = "x" }
}
`}))
	m, err := BlockJSON(cfg, "table", "t")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"values": map[string]any{HCLKey: `{ secret = "x" }`}}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("got %#v", m)
	}
	block, err := BlockHCL("table", "t", m)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(block), `values = { secret = "x" }`) {
		t.Errorf("rendered:\n%s", block)
	}
}

func TestBlockHCLFromRESTBody(t *testing.T) {
	var body map[string]any
	if err := json.Unmarshal([]byte(`{
		"source": {"connection": "shop", "resource": "products"},
		"transform": {"mapping": "mapping.m"},
		"target": {"connection": "connection.files", "path": "out.ndjson"},
		"retry": {"max_attempts": 3, "multiplier": 1.5},
		"webhook": {"verify": "token", "token": {"secret": "hook"}},
		"workers": 4
	}`), &body); err != nil {
		t.Fatal(err)
	}
	got, err := BlockHCL("integration", "sync", body)
	if err != nil {
		t.Fatal(err)
	}
	want := `integration "sync" {
  workers = 4

  source {
    connection = connection.shop
    resource   = "products"
  }

  transform {
    mapping = mapping.m
  }

  target {
    connection = connection.files
    path       = "out.ndjson"
  }

  retry {
    max_attempts = 3
    multiplier   = 1.5
  }

  webhook {
    verify = "token"
    token  = secret("hook")
  }
}
`
	if string(got) != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}

	conn, err := BlockHCL("connection", "shop", map[string]any{
		"type": "test", "path": "x", "port": json.Number("8443"), "token": map[string]any{"secret": "t"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := "connection \"shop\" {\n  type  = \"test\"\n  path  = \"x\"\n  port  = 8443\n  token = secret(\"t\")\n}\n"; string(conn) != want {
		t.Errorf("connection:\n%s\nwant:\n%s", conn, want)
	}
	// Strings that look like interpolation stay literal.
	m, err := BlockHCL("mapping", "m", map[string]any{"fields": map[string]any{"a": "\"${x}\" + y"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(m), `a = "\"$${x}\" + y"`) {
		t.Errorf("mapping:\n%s", m)
	}
}

func TestBlockHCLErrors(t *testing.T) {
	for _, c := range []struct {
		kind, name string
		body       map[string]any
		path, hint string
	}{
		{"connection", "shop", map[string]any{"type": "test", "path": "x", "prot": 1}, "prot", "port"},
		{"integration", "i", map[string]any{"retry": map[string]any{"max_attempt": 3}}, "retry.max_attempt", "max_attempts"},
		{"schedule", "s", map[string]any{"integration": "i", "cron": "@hourly", "timezon": "UTC"}, "timezon", "timezone"},
		{"mapping", "m", map[string]any{"feilds": map[string]any{}}, "feilds", "fields"},
	} {
		_, err := BlockHCL(c.kind, c.name, c.body)
		var ua *UnknownAttributeError
		if !errors.As(err, &ua) || !errors.Is(err, ErrUnknownAttribute) {
			t.Errorf("%s %s: err = %v", c.kind, c.name, err)
			continue
		}
		if ua.Path != c.path || ua.Suggestion != c.hint || !strings.Contains(err.Error(), `"`+c.path+`"`) {
			t.Errorf("%s %s: %+v (%v)", c.kind, c.name, ua, err)
		}
	}
	for name, c := range map[string]struct {
		kind, name string
		body       map[string]any
		want       string
	}{
		"bad reference": {"schedule", "s", map[string]any{"integration": "mapping.m", "cron": "@hourly"}, "reference to an integration"},
		"bad hcl":       {"connection", "c", map[string]any{"type": "test", "path": map[string]any{"hcl": "var."}}, "not a valid HCL expression"},
		"bad name":      {"connection", "1x", map[string]any{"type": "test"}, "not a valid connection name"},
		"block scalar":  {"integration", "i", map[string]any{"retry": 3}, `"retry" is a block`},
		"bad secret":    {"connection", "c", map[string]any{"type": "test", "token": map[string]any{"secret": "a b"}}, "invalid secret name"},
	} {
		if _, err := BlockHCL(c.kind, c.name, c.body); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", name, err, c.want)
		}
	}
}

const commented = `# File header.

# The shop.
connection "shop" {
  type = "test" # inline
  path = "old"
}
# Between blocks, not attached.

/* A block comment. */
connection "other" {
  type = "test"
  path = "o"
} # trailing

# Tail comment.
`

func TestReplaceBlockKeepsTheRestOfTheFile(t *testing.T) {
	files := map[string][]byte{"a.hcl": []byte(commented), "b.hcl": []byte("# b\n")}
	block, err := BlockHCL("connection", "shop", map[string]any{"type": "test", "path": "new", "port": 1})
	if err != nil {
		t.Fatal(err)
	}
	out, err := ReplaceBlock(files, "connection", "shop", block)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(commented, "connection \"shop\" {\n  type = \"test\" # inline\n  path = \"old\"\n}", strings.TrimSuffix(string(block), "\n"), 1)
	if string(out["a.hcl"]) != want {
		t.Errorf("got:\n%s\nwant:\n%s", out["a.hcl"], want)
	}
	if string(out["b.hcl"]) != "# b\n" || string(files["a.hcl"]) != commented || len(out) != 2 {
		t.Errorf("other files changed or input modified: %v", out)
	}
	cfg := loadBytes(t, t.TempDir(), out)
	if got := cfg.Connections["shop"].Config.GetAttr("path").AsString(); got != "new" {
		t.Errorf("path = %q", got)
	}

	// Replacing the last block keeps its trailing comment.
	block, _ = BlockHCL("connection", "other", map[string]any{"type": "test", "path": "p"})
	out, err = ReplaceBlock(files, "connection", "other", block)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out["a.hcl"]), "  path = \"p\"\n} # trailing\n\n# Tail comment.\n") || !strings.HasPrefix(string(out["a.hcl"]), commented[:strings.Index(commented, "connection \"other\"")]) {
		t.Errorf("got:\n%s", out["a.hcl"])
	}

	// The block must be the one named.
	if _, err := ReplaceBlock(files, "connection", "shop", []byte("connection \"other\" {\n}\n")); err == nil {
		t.Error("replaced shop by other")
	}
	if _, err := ReplaceBlock(files, "connection", "shop", []byte("connection \"shop\" {\n}\nx = 1\n")); err == nil {
		t.Error("accepted extra content")
	}
}

func TestReplaceBlockAppendsNewBlock(t *testing.T) {
	files := map[string][]byte{"a.hcl": []byte(commented)}
	block, _ := BlockHCL("connection", "new", map[string]any{"type": "test", "path": "n"})
	out, err := ReplaceBlock(files, "connection", "new", block)
	if err != nil {
		t.Fatal(err)
	}
	if string(out["a.hcl"]) != commented || string(out[RESTFile]) != string(block) {
		t.Fatalf("got %q", out)
	}
	// A second new block goes after the first, a blank line between.
	block2, _ := BlockHCL("connection", "newer", map[string]any{"type": "test", "path": "m"})
	out2, err := ReplaceBlock(out, "connection", "newer", block2)
	if err != nil {
		t.Fatal(err)
	}
	if want := string(block) + "\n" + string(block2); string(out2[RESTFile]) != want {
		t.Errorf("got:\n%s\nwant:\n%s", out2[RESTFile], want)
	}
	cfg := loadBytes(t, t.TempDir(), out2)
	if len(cfg.Connections) != 4 {
		t.Errorf("connections: %v", cfg.ConnectionNames())
	}
	// ... and a block declared there is then replaced in place.
	block3, _ := BlockHCL("connection", "new", map[string]any{"type": "test", "path": "changed"})
	out3, err := ReplaceBlock(out2, "connection", "new", block3)
	if err != nil {
		t.Fatal(err)
	}
	if want := string(block3) + "\n" + string(block2); string(out3[RESTFile]) != want {
		t.Errorf("got:\n%s\nwant:\n%s", out3[RESTFile], want)
	}
}

func TestRemoveBlock(t *testing.T) {
	files := map[string][]byte{"a.hcl": []byte(commented)}
	out, err := RemoveBlock(files, "connection", "shop")
	if err != nil {
		t.Fatal(err)
	}
	want := "# File header.\n\n# Between blocks, not attached.\n\n/* A block comment. */\nconnection \"other\" {\n  type = \"test\"\n  path = \"o\"\n} # trailing\n\n# Tail comment.\n"
	if string(out["a.hcl"]) != want {
		t.Errorf("got:\n%s\nwant:\n%s", out["a.hcl"], want)
	}
	if string(files["a.hcl"]) != commented {
		t.Error("input modified")
	}
	cfg := loadBytes(t, t.TempDir(), out)
	if _, ok := cfg.Connections["shop"]; ok || cfg.Connections["other"] == nil {
		t.Errorf("connections: %v", cfg.ConnectionNames())
	}
	if _, err := RemoveBlock(out, "connection", "shop"); !errors.Is(err, ErrBlockNotFound) {
		t.Errorf("second remove: %v", err)
	}
	// A file left empty is dropped.
	only := map[string][]byte{"a.hcl": []byte("ferry {\n}\n"), RESTFile: []byte("connection \"x\" {\n  type = \"test\"\n  path = \"x\"\n}\n")}
	out, err = RemoveBlock(only, "connection", "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, kept := out[RESTFile]; kept || len(out) != 1 {
		t.Errorf("files: %q", out)
	}
	// The last block of a file: the blank line before it goes too.
	out, err = RemoveBlock(map[string][]byte{"a.hcl": []byte("ferry {\n}\n\nconnection \"x\" {\n  type = \"test\"\n}\n")}, "connection", "x")
	if err != nil || string(out["a.hcl"]) != "ferry {\n}\n" {
		t.Errorf("got %q, %v", out["a.hcl"], err)
	}
}

func TestWritesRefuseJSONSyntax(t *testing.T) {
	files := map[string][]byte{
		"a.hcl":      []byte("ferry {\n  tenant = \"acme\"\n}\n"),
		"c.hcl.json": []byte(`{"connection": {"shop": {"type": "test", "path": "x", "token": "${secret(\"t\")}"}}}`),
	}
	cfg := loadBytes(t, t.TempDir(), files)
	// Reading works ...
	m, err := BlockJSON(cfg, "connection", "shop")
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]any{"type": "test", "path": "x", "token": map[string]any{"secret": "t"}}; !reflect.DeepEqual(m, want) {
		t.Errorf("JSON block = %v", m)
	}
	// ... writing does not.
	block, _ := BlockHCL("connection", "shop", m)
	if _, err := ReplaceBlock(files, "connection", "shop", block); !errors.Is(err, ErrJSONSyntax) || !strings.Contains(err.Error(), "c.hcl.json") {
		t.Errorf("replace: %v", err)
	}
	if _, err := RemoveBlock(files, "connection", "shop"); !errors.Is(err, ErrJSONSyntax) {
		t.Errorf("remove: %v", err)
	}
	// Blocks of other names are still written.
	if _, err := ReplaceBlock(files, "connection", "other", []byte("connection \"other\" {\n  type = \"test\"\n  path = \"y\"\n}\n")); err != nil {
		t.Errorf("other: %v", err)
	}
}

func TestNormalizeExpression(t *testing.T) {
	for in, want := range map[string]string{
		"var.x":                            "var.x",
		"merge( a ,{x=1} ) # c":            "merge(a, { x = 1 })",
		"{\n  a = 1 # one\n\n\n  b = 2\n}": "{\n  a = 1\n  b = 2\n}",
		"[for x in y : x]":                 "[for x in y : x]",
	} {
		if got := NormalizeExpression(in); got != want {
			t.Errorf("NormalizeExpression(%q) = %q, want %q", in, got, want)
		}
	}
}
