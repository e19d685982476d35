package engine

import (
	"encoding/json"
	"testing"

	"github.com/ferryhq/ferry/connectors"
)

// BenchmarkPrepare: the 10-field product mapping with a filter on an ~800-byte
// Shopify-like product (decoded once; Prepare's cost without JSON decoding).
func BenchmarkPrepare(b *testing.B) {
	cfg := productConfig()
	cfg.Integrations["products_to_erp"].Transform.SkipUnchanged = false
	p := mustCompile(b, cfg)
	w := p.Pipelines["products_to_erp"].NewWorker()
	var data map[string]any
	if err := json.Unmarshal([]byte(shopifyProduct), &data); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		rec := connectors.Record{Data: data}
		if pr := w.Prepare(&rec); pr.Outcome != Ready {
			b.Fatal(pr.Err)
		}
	}
}

// BenchmarkPrepareRaw includes decoding the raw JSON record and the content hash.
func BenchmarkPrepareRaw(b *testing.B) {
	p := mustCompile(b, productConfig())
	w := p.Pipelines["products_to_erp"].NewWorker()
	raw := json.RawMessage(shopifyProduct)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		rec := connectors.Record{Raw: raw}
		if pr := w.Prepare(&rec); pr.Outcome != Ready {
			b.Fatal(pr.Err)
		}
	}
}
