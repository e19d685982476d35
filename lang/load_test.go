package lang

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/zclconf/go-cty/cty"
)

const fullConfig = `
ferry {
  tenant           = "acme"
  required_version = ">= 0.1"
}

variable "erp_path" {
  type    = string
  default = "out/erp"
}

variable "batch" {
  type    = number
  default = 50
}

locals {
  base     = "data/${var.erp_path}"
  upper    = upper(local.base)
  glob     = "${local.base}/*.json"
}

table "country_names" {
  values  = { NL = "Netherlands", BE = "Belgium" }
  default = "unknown"
}

connection "shop" {
  type   = "test"
  path   = local.base
  token  = secret("shop_token")
  port   = 8080
}

connection "out" {
  type = "file"
  path = var.erp_path
}

mapping "product_to_item" {
  key    = "string(id)"
  filter = "status != 'archived'"
  fields = {
    sku            = "variants[0].sku"
    "address.city" = "city"
    address = {
      zip = "zip"
    }
    price_cents = "int(float(variants[0].price) * 100)"
  }
  casts        = { price_cents = "int" }
  defaults     = { currency = "EUR", n = 2, r = 1.5 }
  unset        = ["internal.id"]
  pass_through = true
}

integration "products_to_erp" {
  source {
    connection = connection.shop
    cursor     = "updated_at"
    resource   = "products"
  }
  normalize {
    require = ["id", "title"]
    types   = { id = "int" }
  }
  transform {
    mapping        = mapping.product_to_item
    skip_unchanged = true
  }
  target {
    connection = connection.out
    operation  = "create"
    path       = "items.ndjson"
    batch_size = var.batch
    format     = "ndjson"
  }
  retry {
    max_attempts = 3
    initial      = "2s"
    max          = "1m"
    multiplier   = 1.5
    jitter       = 0
  }
  webhook {
    verify = "shopify"
    secret = secret("shopify_webhook_secret")
    header = "X-Sig"
  }
  allow_parallel_runs = true
  workers             = 4
}

integration "shop_to_shop" {
  source {
    connection = connection.shop
  }
  target {
    connection = connection.shop
    path       = <<EXPR
"/items/" + sku
EXPR
  }
}

schedule "every_15m" {
  integration = integration.products_to_erp
  cron        = "*/15 * * * *"
  timezone    = "Europe/Amsterdam"
  concurrency = "replace"
  missed      = "run_once"
  enabled     = false
}

test "maps" {
  mapping = mapping.product_to_item
  input   = { id = 1, status = "active", variants = [{ sku = "S", price = "1.5" }] }
  expect  = { sku = "S", ok = true, n = null }
}

test "skips" {
  mapping     = mapping.product_to_item
  input       = { status = "archived" }
  expect_skip = true
}

test "integration" {
  integration   = integration.products_to_erp
  records       = [{ id = 1 }, { id = 2 }]
  expect_writes = [{ sku = "a" }]
  expect_counts = { success = 2, skipped = 1 }
}
`

func TestLoadFullConfig(t *testing.T) {
	cfg := mustLoad(t, map[string]string{"main.hcl": fullConfig}, LoadOptions{})

	if cfg.Tenant() != "acme" || cfg.Ferry.RequiredVersion != ">= 0.1" {
		t.Errorf("ferry = %+v", cfg.Ferry)
	}
	if got := cfg.Locals["upper"].Value.AsString(); got != "DATA/OUT/ERP" {
		t.Errorf("local.upper = %q", got)
	}
	if got := cfg.Locals["glob"].Value.AsString(); got != "data/out/erp/*.json" {
		t.Errorf("local.glob = %q", got)
	}
	tb := cfg.Tables["country_names"]
	if !reflect.DeepEqual(tb.Values, map[string]any{"NL": "Netherlands", "BE": "Belgium"}) || tb.Default != "unknown" {
		t.Errorf("table = %+v", tb)
	}

	shop := cfg.Connections["shop"]
	if shop.Type != "test" || shop.Config.GetAttr("path").AsString() != "data/out/erp" {
		t.Errorf("connection shop = %#v", shop.Config)
	}
	if port, _ := shop.Config.GetAttr("port").AsBigFloat().Int64(); port != 8080 {
		t.Errorf("port = %d", port)
	}
	if names := SecretNames(shop.Config); !reflect.DeepEqual(names, []string{"shop_token"}) {
		t.Errorf("SecretNames = %v", names)
	}

	m := cfg.Mappings["product_to_item"]
	if m.Key.Source != "string(id)" || m.Filter.Source != "status != 'archived'" {
		t.Errorf("key/filter = %q %q", m.Key.Source, m.Filter.Source)
	}
	var paths []string
	for _, f := range m.Fields {
		paths = append(paths, strings.Join(f.Path, "/")+"="+f.Expr.Source+":"+f.Cast)
	}
	wantPaths := []string{"sku=variants[0].sku:", "address/city=city:", "address/zip=zip:", "price_cents=int(float(variants[0].price) * 100):int"}
	if !reflect.DeepEqual(paths, wantPaths) {
		t.Errorf("fields = %q, want %q", paths, wantPaths)
	}
	// every field keeps its own range
	zipLine := strings.Count(fullConfig[:strings.Index(fullConfig, `zip = "zip"`)], "\n") + 1
	if r := m.Fields[2].Expr.Range; r.Start.Line != zipLine || r.Start.Column != 13 {
		t.Errorf("address.zip at %d:%d, want %d:13", r.Start.Line, r.Start.Column, zipLine)
	}
	if !reflect.DeepEqual(m.Defaults, map[string]any{"currency": "EUR", "n": int64(2), "r": 1.5}) {
		t.Errorf("defaults = %#v", m.Defaults)
	}
	if !reflect.DeepEqual(m.Unset, [][]string{{"internal", "id"}}) || !m.PassThrough {
		t.Errorf("unset/pass_through = %v %v", m.Unset, m.PassThrough)
	}

	in := cfg.Integrations["products_to_erp"]
	if in.Source.Connection != "shop" || in.Source.Cursor != "updated_at" || in.Source.Config.GetAttr("resource").AsString() != "products" {
		t.Errorf("source = %+v", in.Source)
	}
	if !reflect.DeepEqual(in.Normalize.Require, []string{"id", "title"}) || !in.Normalize.Trim || in.Normalize.Types["id"] != "int" {
		t.Errorf("normalize = %+v", in.Normalize)
	}
	if in.Transform.Mapping != "product_to_item" || !in.Transform.SkipUnchanged {
		t.Errorf("transform = %+v", in.Transform)
	}
	// The file connector owns `path` in target blocks: it is not an expression.
	if in.Target.Connection != "out" || in.Target.Operation != "create" || in.Target.BatchSize != 50 || in.Target.Path != nil ||
		in.Target.Config.GetAttr("path").AsString() != "items.ndjson" || in.Target.Config.GetAttr("format").AsString() != "ndjson" {
		t.Errorf("target = %+v", in.Target)
	}
	wantRetry := Retry{MaxAttempts: 3, Initial: 2 * time.Second, Max: time.Minute, Multiplier: 1.5, Jitter: 0}
	if *in.Retry != wantRetry {
		t.Errorf("retry = %+v", in.Retry)
	}
	if in.Webhook.Verify != "shopify" || in.Webhook.Config["header"].AsString() != "X-Sig" ||
		!reflect.DeepEqual(SecretNames(in.Webhook.Config["secret"]), []string{"shopify_webhook_secret"}) {
		t.Errorf("webhook = %+v", in.Webhook)
	}
	if !in.AllowParallelRuns || in.Workers != 4 {
		t.Errorf("parallel/workers = %v %d", in.AllowParallelRuns, in.Workers)
	}

	other := cfg.Integrations["shop_to_shop"]
	if other.Target.Path == nil || other.Target.Path.Source != "\"/items/\" + sku\n" {
		t.Errorf("target path = %#v", other.Target.Path)
	}
	if other.Target.Operation != "upsert" || other.Target.BatchSize != 100 || *other.Retry != *DefaultRetry() || other.Transform != nil {
		t.Errorf("defaults not filled: %+v %+v", other.Target, other.Retry)
	}

	s := cfg.Schedules["every_15m"]
	if s.Integration != "products_to_erp" || s.Cron != "*/15 * * * *" || s.Location.String() != "Europe/Amsterdam" ||
		s.Concurrency != "replace" || s.MissedFire != "run_once" || s.Enabled {
		t.Errorf("schedule = %+v", s)
	}

	mt := cfg.Tests["maps"]
	wantInput := map[string]any{"id": int64(1), "status": "active", "variants": []any{map[string]any{"sku": "S", "price": "1.5"}}}
	if mt.Mapping != "product_to_item" || !reflect.DeepEqual(mt.Input, wantInput) ||
		!reflect.DeepEqual(mt.Expect, map[string]any{"sku": "S", "ok": true, "n": nil}) {
		t.Errorf("test maps = %#v", mt)
	}
	if st := cfg.Tests["skips"]; !st.ExpectSkip || st.Expect != nil {
		t.Errorf("test skips = %#v", st)
	}
	it := cfg.Tests["integration"]
	if it.Integration != "products_to_erp" || len(it.Records) != 2 || len(it.ExpectWrites) != 1 ||
		!reflect.DeepEqual(it.ExpectCounts, map[string]int{"success": 2, "skipped": 1}) {
		t.Errorf("test integration = %#v", it)
	}

	// The reference graph.
	if got := cfg.Dependencies["integration.products_to_erp"]; !reflect.DeepEqual(got, []string{"connection.out", "connection.shop", "mapping.product_to_item", "var.batch"}) {
		t.Errorf("deps = %v", got)
	}
	if got := cfg.Dependents("mapping.product_to_item"); !reflect.DeepEqual(got, []string{"integration.products_to_erp", "schedule.every_15m", "test.integration", "test.maps", "test.skips"}) {
		t.Errorf("dependents = %v", got)
	}
	if got := cfg.Dependencies["connection.shop"]; !reflect.DeepEqual(got, []string{"local.base"}) {
		t.Errorf("connection deps = %v", got)
	}
	addrs := cfg.Addresses()
	if addrs[0] != "var.batch" || addrs[len(addrs)-1] != "test.skips" || len(addrs) != 15 {
		t.Errorf("addresses = %v", addrs)
	}
	_ = cty.NilVal
}

// Found by FuzzLoad in CI: hcl reports unsupported arguments by walking a map,
// so the same file listed its errors in a different order from load to load.
func TestLoadDiagnosticsInSourceOrder(t *testing.T) {
	src := []byte("Y = 1\nZ = 2\nA = 3\nconnection \"c\" {\n  type = \"file\"\n  q = 1\n  p = 2\n}\n")
	var first string
	for i := range 40 {
		_, diags := LoadSources(t.TempDir(), map[string][]byte{"main.hcl": src}, LoadOptions{})
		var lines []string
		for _, d := range diags {
			lines = append(lines, fmt.Sprintf("%v %s: %s", d.Subject, d.Summary, d.Detail))
		}
		got := strings.Join(lines, "\n")
		if i == 0 {
			first = got
			for _, want := range []string{`"Y"`, `"Z"`, `"A"`} {
				if !strings.Contains(got, want) {
					t.Fatalf("no diagnostic for %s:\n%s", want, got)
				}
			}
			if strings.Index(got, `"Y"`) > strings.Index(got, `"Z"`) || strings.Index(got, `"Z"`) > strings.Index(got, `"A"`) {
				t.Fatalf("diagnostics not in source order:\n%s", got)
			}
			continue
		}
		if got != first {
			t.Fatalf("load %d listed diagnostics differently:\n%s\n---\n%s", i, first, got)
		}
	}
}
