package engine_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"

	"github.com/ferryhq/ferry/connectors"
	"github.com/ferryhq/ferry/engine"
	"github.com/ferryhq/ferry/lang"
)

func init() {
	connectors.Register(&connectors.Connector{
		Type: "plantest",
		Connection: hcldec.ObjectSpec{
			"store": &hcldec.AttrSpec{Name: "store", Type: cty.String},
			"token": &hcldec.AttrSpec{Name: "token", Type: cty.String},
		},
		Source: hcldec.ObjectSpec{"resource": &hcldec.AttrSpec{Name: "resource", Type: cty.String}},
		Target: hcldec.ObjectSpec{"resource": &hcldec.AttrSpec{Name: "resource", Type: cty.String}},
	})
}

const planBase = `# The base configuration of the plan tests.
ferry {
  tenant = "acme"
}

variable "region" {
  type    = string
  default = "eu"
}

variable "api_key" {
  type      = string
  default   = "plain-sensitive-default"
  sensitive = true
}

locals {
  prefix = "acme-${var.region}"
}

table "families" {
  values  = { Shirts = "apparel" }
  default = "other"
}

connection "shop" {
  type  = "plantest"
  store = "acme.example.com"
  token = secret("shop_token")
}

connection "erp" {
  type  = "plantest"
  store = var.region
}

mapping "item" {
  key = "string(id)"
  fields = {
    sku  = "variants[0].sku"
    name = "trim(title)"
  }
}

integration "sync" {
  source {
    connection = connection.shop
    resource   = "products"
  }
  transform {
    mapping = mapping.item
  }
  target {
    connection = connection.erp
    resource   = "items"
  }
  retry {
    max_attempts = 3
  }
}

schedule "hourly" {
  integration = integration.sync
  cron        = "@hourly"
}

test "maps" {
  mapping = mapping.item
  input   = { id = 1, title = " x ", variants = [{ sku = "a" }] }
  expect  = { sku = "a", name = "x" }
}
`

func loadPlanConfig(t *testing.T, files map[string]string) *lang.Config {
	t.Helper()
	src := map[string][]byte{}
	for n, s := range files {
		src[n] = []byte(s)
	}
	cfg, diags := lang.LoadSources(t.TempDir(), src, lang.LoadOptions{})
	if diags.HasErrors() {
		t.Fatalf("load: %s", diags.Error())
	}
	return cfg
}

func edit(t *testing.T, src string, pairs ...string) string {
	t.Helper()
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(src, pairs[i]) {
			t.Fatalf("edit: %q not found", pairs[i])
		}
		src = strings.Replace(src, pairs[i], pairs[i+1], 1)
	}
	return src
}

func planText(p *engine.Plan) string {
	var b bytes.Buffer
	p.WriteText(&b)
	return b.String()
}

func findChange(p *engine.Plan, addr string) *engine.ResourceChange {
	for i := range p.Changes {
		if p.Changes[i].Address == addr {
			return &p.Changes[i]
		}
	}
	return nil
}

func TestDiffNoChanges(t *testing.T) {
	base := loadPlanConfig(t, map[string]string{"main.hcl": planBase})
	same := loadPlanConfig(t, map[string]string{"main.hcl": planBase})
	p := engine.Diff(base, same)
	if p.HasChanges() {
		t.Fatalf("unexpected changes:\n%s", planText(p))
	}
	p.PriorRevision = 7
	if got, want := planText(p), "No changes. The configuration matches revision 7.\n"; got != want {
		t.Errorf("text = %q, want %q", got, want)
	}
	if p.FormatVersion != "1.0" || p.Summary != (engine.PlanSummary{}) {
		t.Errorf("plan = %+v", p)
	}
}

func TestDiffFormattingOnlyIsNoChange(t *testing.T) {
	base := loadPlanConfig(t, map[string]string{"main.hcl": planBase})
	// Reformatted, commented, reordered, split over files, heredoc instead of a
	// quoted expr, dotted field instead of nested, expression spacing changed.
	reformatted := edit(t, planBase,
		`  store = "acme.example.com"`, "  # the shop\n  store    =    \"acme.example.com\"   # trailing",
		`  prefix = "acme-${var.region}"`, `  prefix = "acme-${ var.region }" /* c */`,
		`  key = "string(id)"`, "  key = <<EOT\n  string(id)\nEOT",
		`  input   = { id = 1, title = " x ", variants = [{ sku = "a" }] }`, "  input   = {\n    # comment\n    id = 1\n    title = \" x \",\n\n    variants = [{ sku = \"a\" }]\n  }",
	)
	sched := "\nschedule \"hourly\" {\n  cron = \"@hourly\"\n  integration = integration.sync\n}\n"
	reformatted = edit(t, reformatted, "schedule \"hourly\" {\n  integration = integration.sync\n  cron        = \"@hourly\"\n}\n", "")
	after := loadPlanConfig(t, map[string]string{"main.hcl": reformatted, "z.hcl": sched})
	if p := engine.Diff(base, after); p.HasChanges() {
		t.Fatalf("formatting-only change planned as a change:\n%s", planText(p))
	}
}

func TestDiffChanges(t *testing.T) {
	base := loadPlanConfig(t, map[string]string{"main.hcl": planBase})
	changed := edit(t, planBase,
		`  default = "eu"`, `  default = "us"`,
		`  store = "acme.example.com"`, `  store = "acme-shop.example.com"`,
		`    sku  = "variants[0].sku"`, `    sku  = "variants[1].sku"`+"\n    \"source.id\" = \"gid\"",
		`    name = "trim(title)"`, ``,
		`    max_attempts = 3`, `    max_attempts = 4`+"\n    initial = \"2s\"",
		`    resource   = "products"`, `    resource   = "orders"`,
		// schedule removed, a new connection added.
		"schedule \"hourly\" {\n  integration = integration.sync\n  cron        = \"@hourly\"\n}\n", "connection \"crm\" {\n  type  = \"plantest\"\n  store = \"crm\"\n}\n",
	)
	after := loadPlanConfig(t, map[string]string{"main.hcl": changed})
	p := engine.Diff(base, after)
	if p.Summary != (engine.PlanSummary{Add: 1, Change: 4, Destroy: 1}) {
		t.Errorf("summary = %+v\n%s", p.Summary, planText(p))
	}
	var addrs []string
	for _, c := range p.Changes {
		addrs = append(addrs, c.Action+" "+c.Address)
	}
	want := []string{
		"update var.region",
		"create connection.crm",
		"update connection.shop",
		"update mapping.item",
		"update integration.sync",
		"delete schedule.hourly",
	}
	if strings.Join(addrs, "\n") != strings.Join(want, "\n") {
		t.Errorf("changes (in order):\n%s\nwant:\n%s", strings.Join(addrs, "\n"), strings.Join(want, "\n"))
	}
	m := findChange(p, "mapping.item")
	gotAttrs := map[string]engine.AttributeChange{}
	for _, a := range m.Attributes {
		gotAttrs[a.Path] = a
	}
	if a := gotAttrs["fields.sku"]; a.Action != "update" || a.Before != "variants[0].sku" || a.After != "variants[1].sku" {
		t.Errorf("fields.sku = %+v", a)
	}
	if a := gotAttrs["fields.source.id"]; a.Action != "create" || a.After != "gid" {
		t.Errorf("fields.source.id = %+v", a)
	}
	if a := gotAttrs["fields.name"]; a.Action != "delete" || a.Before != "trim(title)" {
		t.Errorf("fields.name = %+v", a)
	}
	in := findChange(p, "integration.sync")
	var paths []string
	for _, a := range in.Attributes {
		paths = append(paths, a.Action+" "+a.Path)
	}
	if got := strings.Join(paths, ", "); got != "create retry.initial, update retry.max_attempts, update source.resource" {
		t.Errorf("integration attributes: %s", got)
	}
	// var.region is referenced by connection.erp's store, which is compared as
	// written (var.region) and so unchanged.
	if findChange(p, "connection.erp") != nil {
		t.Errorf("connection.erp planned as changed:\n%s", planText(p))
	}
}

func TestDiffEveryKind(t *testing.T) {
	empty := loadPlanConfig(t, map[string]string{"main.hcl": "ferry {\n  tenant = \"acme\"\n}\n"})
	full := loadPlanConfig(t, map[string]string{"main.hcl": planBase})
	kinds := map[string]string{}
	for _, c := range engine.Diff(empty, full).Changes {
		kinds[c.Address] = c.Action + " " + c.Kind + " " + c.Name
	}
	want := map[string]string{
		"var.region":       "create variable region",
		"var.api_key":      "create variable api_key",
		"local.prefix":     "create local prefix",
		"table.families":   "create table families",
		"connection.shop":  "create connection shop",
		"connection.erp":   "create connection erp",
		"mapping.item":     "create mapping item",
		"integration.sync": "create integration sync",
		"schedule.hourly":  "create schedule hourly",
		"test.maps":        "create test maps",
	}
	for addr, w := range want {
		if kinds[addr] != w {
			t.Errorf("%s: %q, want %q", addr, kinds[addr], w)
		}
	}
	if len(kinds) != len(want) {
		t.Errorf("changes: %v", kinds)
	}
	// And everything removed; nil stands for an empty configuration.
	p := engine.Diff(full, nil)
	if p.Summary.Destroy != len(want)+1 || p.Summary.Add != 0 || p.Summary.Change != 0 {
		t.Errorf("destroy summary = %+v", p.Summary)
	}
	if p := engine.Diff(nil, full); p.Summary.Add != len(want)+1 {
		t.Errorf("create summary = %+v", p.Summary)
	}
}

func TestDiffSecretsNeverShown(t *testing.T) {
	const secretValue = "sup3r-s3cret-t0ken"
	base := loadPlanConfig(t, map[string]string{"main.hcl": planBase})
	changed := edit(t, planBase,
		`  token = secret("shop_token")`, `  token = secret("shop_token_v2")`,
		`  default   = "plain-sensitive-default"`, `  default   = "another-sensitive-default"`,
	)
	after := loadPlanConfig(t, map[string]string{"main.hcl": changed})
	// Plant resolved secrets in the loaded model: the plan must still only show
	// secret names (it is computed from the files, never from values).
	for _, cfg := range []*lang.Config{base, after} {
		c := cfg.Connections["shop"]
		if got := lang.SecretNames(c.Config); len(got) != 1 {
			t.Fatalf("secret names = %v", got)
		}
		resolved, err := lang.ResolveSecrets(c.Config, func(string) (string, error) { return secretValue, nil })
		if err != nil {
			t.Fatal(err)
		}
		c.Config = resolved
	}
	p := engine.Diff(base, after)
	text := planText(p)
	js, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{text, string(js)} {
		for _, leak := range []string{secretValue, "((secret:", "plain-sensitive-default", "another-sensitive-default"} {
			if strings.Contains(out, leak) {
				t.Errorf("plan output contains %q:\n%s", leak, out)
			}
		}
	}
	if !strings.Contains(text, `~ token: secret("shop_token") → secret("shop_token_v2")`) {
		t.Errorf("secret change not shown by name:\n%s", text)
	}
	if !strings.Contains(text, `~ default: (sensitive value) → (sensitive value)`) {
		t.Errorf("sensitive variable not masked:\n%s", text)
	}
	for _, c := range p.Changes {
		for _, a := range c.Attributes {
			if (c.Address == "connection.shop" && a.Path == "token") || (c.Address == "var.api_key" && a.Path == "default") {
				if !a.Sensitive {
					t.Errorf("%s %s not marked sensitive", c.Address, a.Path)
				}
			}
		}
	}
	// A new connection with a secret shows the call, never a value.
	withNew := edit(t, planBase, `connection "erp" {`, "connection \"new\" {\n  type  = \"plantest\"\n  token = secret(\"new_token\")\n}\n\nconnection \"erp\" {")
	p = engine.Diff(base, loadPlanConfig(t, map[string]string{"main.hcl": withNew}))
	if text := planText(p); !strings.Contains(text, `+ token: secret("new_token")`) || strings.Contains(text, "((secret:") {
		t.Errorf("new secret:\n%s", text)
	}
}

func TestDiffDeterministic(t *testing.T) {
	base := loadPlanConfig(t, map[string]string{"main.hcl": planBase})
	after := loadPlanConfig(t, map[string]string{"main.hcl": edit(t, planBase,
		`    sku  = "variants[0].sku"`, `    sku  = "variants[1].sku"`+"\n    a = \"1\"\n    b = \"2\"\n    c = \"3\"",
		`  values  = { Shirts = "apparel" }`, `  values  = { Shirts = "tops", Hats = "acc", Bags = "acc", "Odd key" = "x" }`)})
	first, _ := json.Marshal(engine.Diff(base, after))
	for range 20 {
		again, _ := json.Marshal(engine.Diff(base, after))
		if !bytes.Equal(first, again) {
			t.Fatalf("plans differ:\n%s\n%s", first, again)
		}
	}
	p := engine.Diff(base, after)
	tbl := findChange(p, "table.families")
	var paths []string
	for _, a := range tbl.Attributes {
		paths = append(paths, a.Path)
	}
	if got := strings.Join(paths, " "); got != `values.Bags values.Hats values.Shirts values["Odd key"]` {
		t.Errorf("paths = %s", got)
	}
}

func TestPlanWriteTextGolden(t *testing.T) {
	before := loadPlanConfig(t, map[string]string{"main.hcl": `
connection "old" {
  type  = "plantest"
  store = "old"
}

mapping "x" {
  key = "id"
  fields = {
    sku  = "a"
    keep = "k"
  }
}
`})
	after := loadPlanConfig(t, map[string]string{"main.hcl": `
connection "shop" {
  type  = "plantest"
  store = var.store
  token = secret("shop_token")
}

variable "store" {
  default = "acme.example.com"
}

mapping "x" {
  key = "id"
  fields = {
    sku  = "b"
    keep = "k"
    tags = "split(tags, ', ')"
  }
  unset = ["tmp"]
}
`})
	p := engine.Diff(before, after)
	p.PriorRevision = 3
	want := `  + var.store
      + default: "acme.example.com"

  - connection.old

  + connection.shop
      + store: var.store
      + token: secret("shop_token")
      + type: "plantest"

  ~ mapping.x
      ~ fields.sku: "a" → "b"
      + fields.tags: "split(tags, ', ')"
      + unset: ["tmp"]

Plan: 2 to add, 1 to change, 1 to destroy.
`
	if got := planText(p); got != want {
		t.Errorf("text:\n%s\nwant:\n%s", got, want)
	}
	js, _ := json.Marshal(p)
	for _, s := range []string{`"format_version":"1.0"`, `"prior_revision":3`, `"summary":{"add":2,"change":1,"destroy":1}`,
		`{"path":"token","action":"create","after":{"secret":"shop_token"},"sensitive":true}`,
		`{"path":"store","action":"create","after":{"hcl":"var.store"}}`} {
		if !strings.Contains(string(js), s) {
			t.Errorf("JSON lacks %s:\n%s", s, js)
		}
	}
}

func TestPlanHash(t *testing.T) {
	files := map[string][]byte{"a.hcl": []byte("x"), "b.hcl": []byte("y")}
	h := engine.PlanHash(1, files)
	if len(h) != 64 || h != engine.PlanHash(1, map[string][]byte{"b.hcl": []byte("y"), "a.hcl": []byte("x")}) {
		t.Fatalf("hash %q not stable", h)
	}
	for name, other := range map[string]string{
		"revision":     engine.PlanHash(2, files),
		"content":      engine.PlanHash(1, map[string][]byte{"a.hcl": []byte("x"), "b.hcl": []byte("z")}),
		"file added":   engine.PlanHash(1, map[string][]byte{"a.hcl": []byte("x"), "b.hcl": []byte("y"), "c.hcl": nil}),
		"file renamed": engine.PlanHash(1, map[string][]byte{"a.hcl": []byte("x"), "c.hcl": []byte("y")}),
		"boundary":     engine.PlanHash(1, map[string][]byte{"a.hcl": []byte("xb.hcl"), "": []byte("y")}),
	} {
		if other == h {
			t.Errorf("%s: hash unchanged", name)
		}
	}
}
