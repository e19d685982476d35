package engine

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/ferryhq/ferry/lang"
)

func TestRunTests(t *testing.T) {
	cfg := productConfig()
	product := jsonMap(t, shopifyProduct)
	cfg.Tests["mapping_ok"] = &lang.Test{Name: "mapping_ok", Mapping: "product_to_item", Input: product,
		Expect: map[string]any{"sku": "TS-CL-S", "active": true, "price_cents": 1999.0, "stock": int64(19),
			"vendor": map[string]any{"name": "ACME APPAREL"}, "nothing": nil}}
	cfg.Tests["mapping_diff"] = &lang.Test{Name: "mapping_diff", Mapping: "product_to_item", Input: product,
		Expect: map[string]any{"sku": "TS-CL-M", "tags": []any{"summer"}, "vendor": map[string]any{"name": "Acme"}, "absent": 1}}
	archived := jsonMap(t, `{"id": 1, "status": "archived"}`)
	cfg.Tests["skip_ok"] = &lang.Test{Name: "skip_ok", Mapping: "product_to_item", Input: archived, ExpectSkip: true}
	cfg.Tests["skip_fail"] = &lang.Test{Name: "skip_fail", Mapping: "product_to_item", Input: product, ExpectSkip: true}
	cfg.Tests["integration_ok"] = &lang.Test{Name: "integration_ok", Integration: "products_to_erp",
		Records: []any{product, map[string]any{"id": 1, "status": "archived", "title": "A", "variants": []any{}}, map[string]any{"id": int64(2), "title": "B", "variants": []any{map[string]any{"sku": "B1", "price": "1"}}}},
		ExpectWrites: []any{
			map[string]any{"sku": "TS-CL-S"},
			map[string]any{"sku": "B1", "price_cents": int64(100), "name": "B"},
		},
		ExpectCounts: map[string]int{"total": 3, "success": 2, "skipped": 1, "failed": 0}}
	cfg.Tests["integration_fail"] = &lang.Test{Name: "integration_fail", Integration: "products_to_erp",
		Records:      []any{product, map[string]any{"id": 9}},
		ExpectWrites: []any{map[string]any{"sku": "X"}, map[string]any{"sku": "Y"}},
		ExpectCounts: map[string]int{"failed": 0}}

	p := mustCompile(t, cfg)
	results := p.RunTests(context.Background(), nil)
	byName := map[string]TestResult{}
	for _, r := range results {
		byName[r.Name] = r
	}
	if len(results) != 6 || results[0].Name != "integration_fail" {
		t.Fatalf("results %+v", results)
	}
	for _, n := range []string{"mapping_ok", "skip_ok", "integration_ok"} {
		if r := byName[n]; !r.Passed || r.Diff != "" || r.Err != "" {
			t.Errorf("%s: %+v", n, r)
		}
	}
	wantDiff := `absent
  - 1
  + (missing)
sku
  - "TS-CL-M"
  + "TS-CL-S"
tags[1]
  - (nothing)
  + "cotton"
tags[2]
  - (nothing)
  + "bestseller"
vendor.name
  - "Acme"
  + "ACME APPAREL"
`
	if r := byName["mapping_diff"]; r.Passed || r.Diff != wantDiff {
		t.Errorf("mapping_diff: passed=%v diff:\n%s", r.Passed, r.Diff)
	}
	if r := byName["skip_fail"]; r.Passed || !strings.Contains(r.Diff, "- skipped by the filter") {
		t.Errorf("skip_fail: %+v", r)
	}
	r := byName["integration_fail"]
	if r.Passed || !strings.Contains(r.Diff, "writes[0].sku\n  - \"X\"\n  + \"TS-CL-S\"") ||
		!strings.Contains(r.Diff, "writes[1]\n  - {\"sku\":\"Y\"}\n  + (missing)") ||
		!strings.Contains(r.Diff, "counts.failed\n  - 0\n  + 1") || !strings.Contains(r.Err, "missing required fields") {
		t.Errorf("integration_fail: %+v\n%s", r, r.Diff)
	}

	if got := p.RunTests(context.Background(), regexp.MustCompile(`^skip_`)); len(got) != 2 {
		t.Errorf("filter: %d results", len(got))
	}
}

func TestGraph(t *testing.T) {
	cfg := productConfig()
	cfg.Integrations["copy"] = &lang.Integration{Name: "copy", Source: &lang.Source{Connection: "shop"}, Target: &lang.Target{Connection: "erp"}}
	p := mustCompile(t, cfg)

	var b bytes.Buffer
	if err := p.Graph(&b, "products_to_erp"); err != nil {
		t.Fatal(err)
	}
	dot := b.String()
	for _, want := range []string{
		"digraph ferry {",
		`"products_to_erp.ingest" [label="ingest\nconnection: shop (shopify)\ncursor: updated_at"];`,
		`"products_to_erp.normalize" [label="normalize\nrequire: id, title, variants\ntrim"];`,
		`"products_to_erp.transform" [label="transform\nmapping: product_to_item\nfilter: status != 'archived'\n10 fields\nskip unchanged"];`,
		`"products_to_erp.execute" [label="execute\nconnection: erp (http)\noperation: upsert\npath: \"/items/\" + sku\nbatch: 2\nretry: 3 attempts, 1ms..10ms"];`,
		`"products_to_erp.ingest" -> "products_to_erp.normalize";`,
		`"products_to_erp.normalize" -> "products_to_erp.transform";`,
		`"products_to_erp.transform" -> "products_to_erp.execute";`,
		`"products_to_erp.execute" -> "products_to_erp.finalize";`,
		`"products_to_erp.finalize" [label="finalize\nadvance cursor updated_at\nrecord outcomes"];`,
	} {
		if !strings.Contains(dot, want) {
			t.Errorf("missing %s in\n%s", want, dot)
		}
	}
	if strings.Contains(dot, "subgraph") || strings.Contains(dot, "copy") {
		t.Error("single integration graph has clusters or other integrations")
	}
	if strings.Count(dot, "->") != 4 {
		t.Errorf("%d edges", strings.Count(dot, "->"))
	}

	b.Reset()
	if err := p.Graph(&b, ""); err != nil {
		t.Fatal(err)
	}
	dot = b.String()
	for _, want := range []string{`subgraph "cluster_copy" {`, `subgraph "cluster_products_to_erp" {`, `label="integration copy";`,
		`"copy.transform" [label="transform\n(pass through)"];`, `"copy.normalize" [label="normalize\n(none)"];`} {
		if !strings.Contains(dot, want) {
			t.Errorf("missing %s in\n%s", want, dot)
		}
	}
	if strings.Count(dot, "->") != 8 {
		t.Errorf("%d edges", strings.Count(dot, "->"))
	}
	if err := p.Graph(&b, "nope"); err == nil {
		t.Error("unknown integration accepted")
	}
}
