package engine

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zclconf/go-cty/cty"

	"github.com/ferryhq/ferry/connectors"
	"github.com/ferryhq/ferry/lang"
)

// shopifyProduct is an ~800-byte Shopify-like product.
const shopifyProduct = `{
  "id": 7595448918,
  "title": "  Classic Cotton T-Shirt ",
  "body_html": "<p>Soft, breathable cotton tee for everyday wear.</p>",
  "vendor": "Acme Apparel",
  "product_type": "Shirts",
  "handle": "classic-cotton-t-shirt",
  "status": "active",
  "tags": "summer, cotton, bestseller",
  "created_at": "2024-03-10T12:30:00+01:00",
  "updated_at": "2024-05-01T08:15:00+02:00",
  "variants": [
    {"id": 1001, "sku": "TS-CL-S", "price": "19.99", "inventory_quantity": 12, "option1": "S", "weight": 0.2},
    {"id": 1002, "sku": "TS-CL-M", "price": "19.99", "inventory_quantity": 7, "option1": "M", "weight": 0.22},
    {"id": 1003, "sku": "TS-CL-L", "price": "21.99", "inventory_quantity": 0, "option1": "L", "weight": 0.25}
  ],
  "image": {"src": "https://cdn.example.com/ts.jpg", "alt": null}
}`

// productConfig is the DESIGN.md example: product_to_item with ten fields.
func productConfig() *lang.Config {
	cfg := newConfig()
	cfg.Connections["shop"] = &lang.Connection{Name: "shop", Type: "shopify"}
	cfg.Connections["erp"] = &lang.Connection{Name: "erp", Type: "http"}
	cfg.Mappings["product_to_item"] = &lang.Mapping{
		Name:   "product_to_item",
		Key:    ex(`string(id)`),
		Filter: ex(`status != 'archived'`),
		Fields: []*lang.Field{
			field("sku", `variants[0].sku`),
			field("name", `trim(title)`),
			castField("price_cents", `float(variants[0].price) * 100`, "int"),
			field("stock", `sum(map(variants, .inventory_quantity))`),
			field("tags", `split(tags, ", ")`),
			field("active", `status == 'active'`),
			field("vendor.name", `upper(vendor)`),
			field("vendor.handle", `handle`),
			field("image", `image?.src`),
			field("updated", `formatTime(updated_at, "DateOnly", "UTC")`),
		},
	}
	cfg.Integrations["products_to_erp"] = &lang.Integration{
		Name:      "products_to_erp",
		Source:    &lang.Source{Connection: "shop", Cursor: "updated_at"},
		Normalize: &lang.Normalize{Require: []string{"id", "title", "variants"}, Trim: true},
		Transform: &lang.Transform{Mapping: "product_to_item", SkipUnchanged: true},
		Target:    &lang.Target{Connection: "erp", Operation: "upsert", Path: ex(`"/items/" + sku`), BatchSize: 2},
		Retry:     &lang.Retry{MaxAttempts: 3, Initial: time.Millisecond, Max: 10 * time.Millisecond, Multiplier: 2},
	}
	return cfg
}

func TestPrepare(t *testing.T) {
	p := mustCompile(t, productConfig())
	w := p.Pipelines["products_to_erp"].NewWorker()

	rec := connectors.Record{Raw: json.RawMessage(shopifyProduct)}
	pr := w.Prepare(&rec)
	if pr.Outcome != Ready || pr.Err != nil {
		t.Fatalf("outcome %v: %v", pr.Outcome, pr.Err)
	}
	want := map[string]any{
		"sku": "TS-CL-S", "name": "Classic Cotton T-Shirt", "price_cents": 1999, "stock": 19,
		"tags": []any{"summer", "cotton", "bestseller"}, "active": true,
		"vendor": map[string]any{"name": "ACME APPAREL", "handle": "classic-cotton-t-shirt"},
		"image":  "https://cdn.example.com/ts.jpg", "updated": "2024-05-01",
	}
	if !reflect.DeepEqual(pr.Write.Record, want) {
		t.Fatalf("record\n%#v\nwant\n%#v", pr.Write.Record, want)
	}
	if pr.Key != "7595448918" || pr.Write.Key != pr.Key || rec.Key != pr.Key || pr.Write.Path != "/items/TS-CL-S" || pr.Write.Operation != connectors.OpUpsert {
		t.Fatalf("write %+v key %q", pr.Write, pr.Key)
	}
	h, _ := ContentHash(want)
	if pr.Hash != h || len(h) != 64 {
		t.Fatalf("hash %q want %q", pr.Hash, h)
	}
	// Same content, different key order and number spelling → same hash.
	h2, _ := ContentHash(map[string]any{"b": 1, "a": 2.0})
	h3, _ := ContentHash(map[string]any{"a": 2, "b": 1.0})
	if h2 != h3 {
		t.Error("content hash depends on key order or number type")
	}

	// filter → skipped
	rec = connectors.Record{Data: jsonMap(t, `{"id": 5, "title": "x", "variants": [], "status": "archived"}`)}
	if pr := w.Prepare(&rec); pr.Outcome != Skipped || pr.Reason != "filter" || pr.Key != "5" || pr.Stage != StageTransform {
		t.Fatalf("skip: %+v", pr)
	}
	// normalize failure → permanent
	rec = connectors.Record{Data: jsonMap(t, `{"id": 6, "title": " "}`)}
	pr = w.Prepare(&rec)
	if pr.Outcome != Failed || pr.Stage != StageNormalize || connectors.CategoryOf(pr.Err) != connectors.CategoryPermanent ||
		!strings.Contains(pr.Err.Error(), "missing required fields: title, variants") || pr.Key != "6" {
		t.Fatalf("normalize: %+v", pr)
	}
	// transform runtime error → permanent, names mapping, field and key
	rec = connectors.Record{Data: jsonMap(t, `{"id": 7, "title": "x", "variants": [{"price": "abc"}]}`)}
	pr = w.Prepare(&rec)
	if pr.Outcome != Failed || pr.Stage != StageTransform || connectors.CategoryOf(pr.Err) != connectors.CategoryPermanent {
		t.Fatalf("transform: %+v", pr)
	}
	for _, s := range []string{`mapping "product_to_item"`, `field "price_cents"`, `record "7"`} {
		if !strings.Contains(pr.Err.Error(), s) {
			t.Errorf("%q lacks %q", pr.Err, s)
		}
	}
	// empty target path (sku missing) → failed
	rec = connectors.Record{Data: jsonMap(t, `{"id": 8, "title": "x", "variants": [{}]}`)}
	if pr := w.Prepare(&rec); pr.Outcome != Failed || !strings.Contains(pr.Err.Error(), "target path") {
		t.Fatalf("path: %+v", pr)
	}
	// Raw that is not an object → failed at ingest
	rec = connectors.Record{Raw: json.RawMessage(`[1]`)}
	if pr := w.Prepare(&rec); pr.Outcome != Failed || pr.Stage != StageIngest {
		t.Fatalf("raw: %+v", pr)
	}
}

func TestPrepareWithoutTransform(t *testing.T) {
	cfg := newConfig()
	cfg.Integrations["copy"] = &lang.Integration{Name: "copy", Target: &lang.Target{Operation: "delete"}}
	p := mustCompile(t, cfg)
	rec := connectors.Record{Data: map[string]any{"id": 3.0, "x": "y"}}
	pr := p.Pipelines["copy"].NewWorker().Prepare(&rec)
	if pr.Outcome != Ready || pr.Key != "3" || pr.Write.Operation != connectors.OpDelete || pr.Write.Record["x"] != "y" || pr.Hash != "" {
		t.Fatalf("%+v", pr)
	}
}

func records(n int, f func(i int) string) *MemorySource {
	src := &MemorySource{}
	for i := range n {
		src.Records = append(src.Records, connectors.Record{Raw: json.RawMessage(f(i)), Position: fmt.Sprintf("line %d", i+1)})
	}
	return src
}

func product(i int) string {
	status := "active"
	if i%10 == 3 {
		status = "archived"
	}
	title := "T"
	if i%10 == 7 {
		title = " " // fails normalize
	}
	return fmt.Sprintf(`{"id": %d, "title": %q, "status": %q, "variants": [{"sku": "S%d", "price": "1.00"}]}`, i, title, status, i)
}

func TestRunOrderAndCounts(t *testing.T) {
	p := mustCompile(t, productConfig())
	sink := &MemorySink{}
	const n = 2000
	res, err := p.Run(context.Background(), "products_to_erp", RunOptions{
		Source: records(n, product), Sink: sink, Workers: 8, ReadBatch: 7,
	})
	if err != nil {
		t.Fatal(err)
	}
	c := res.Counts
	if c.Total != n || c.Skipped != n/10 || c.Failed != n/10 || c.Success != n-2*n/10 || c.Total != c.Success+c.Failed+c.Skipped {
		t.Fatalf("counts %+v", c)
	}
	if res.Status != RunPartial || res.Error != "" || !sink.Closed {
		t.Fatalf("status %s error %q closed %v", res.Status, res.Error, sink.Closed)
	}
	last := -1
	for _, w := range sink.Writes {
		var i int
		fmt.Sscanf(w.Key, "%d", &i)
		if i <= last {
			t.Fatalf("write %d after %d: order not preserved", i, last)
		}
		last = i
	}
	if len(res.Failures) != n/10 || res.Failures[0].Stage != StageNormalize || res.Failures[0].Key != "7" || res.Failures[0].Position != "line 8" {
		t.Fatalf("failures: %d %+v", len(res.Failures), res.Failures[0])
	}
	if sink.Calls < (n-2*n/10)/2 {
		t.Errorf("batch size 2 not used: %d calls", sink.Calls)
	}
	if !regexp.MustCompile(`^\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{16}$`).MatchString(res.ID) {
		t.Errorf("run id %q", res.ID)
	}
}

func TestRunRetries(t *testing.T) {
	p := mustCompile(t, productConfig())
	var slept []time.Duration
	sleep := func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil }
	src := records(4, func(i int) string {
		return fmt.Sprintf(`{"id": %d, "title": "T", "variants": [{"sku": "S%d"}]}`, i, i)
	})
	sink := &MemorySink{Fail: func(w connectors.Write, attempt int) error {
		switch w.Key {
		case "0": // transient twice, then OK
			if attempt <= 2 {
				return connectors.Transient(errors.New("503"), 0)
			}
		case "1": // permanent
			return connectors.Permanent(errors.New("422 invalid sku"))
		case "2": // transient forever → exhausted after 3 attempts
			return connectors.Transient(errors.New("timeout"), 0)
		case "3": // rate limited once with a server-given delay
			if attempt == 1 {
				return connectors.Transient(errors.New("429"), 7*time.Second)
			}
		}
		return nil
	}}
	dir := t.TempDir()
	res, err := p.Run(context.Background(), "products_to_erp", RunOptions{Source: src, Sink: sink, Workers: 2, Sleep: sleep, FailedDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	c := res.Counts
	if c.Total != 4 || c.Success != 2 || c.Failed != 2 || c.Skipped != 0 || c.Retried != 5 { // 2 for "0", 2 for "2", 1 for "3"
		t.Fatalf("counts %+v", c)
	}
	if got := []string{sink.Writes[0].Key, sink.Writes[1].Key}; !reflect.DeepEqual(got, []string{"0", "3"}) {
		t.Fatalf("writes %v", got)
	}
	if !slices.ContainsFunc(slept, func(d time.Duration) bool { return d >= 7*time.Second }) {
		t.Errorf("retry-after not honoured: %v", slept)
	}
	if res.FailedFile != filepath.Join(dir, res.ID+".failed.ndjson") {
		t.Fatalf("failed file %q", res.FailedFile)
	}
	f, err := os.Open(res.FailedFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []RecordFailure
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var rf RecordFailure
		if err := json.Unmarshal(sc.Bytes(), &rf); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, rf)
	}
	if len(lines) != 2 {
		t.Fatalf("failed file has %d lines", len(lines))
	}
	byKey := map[string]RecordFailure{lines[0].Key: lines[0], lines[1].Key: lines[1]}
	if r := byKey["1"]; r.Category != connectors.CategoryPermanent || r.Attempts != 1 || r.Stage != StageExecute || !strings.Contains(r.Message, "422") || r.Record["title"] != "T" {
		t.Errorf("permanent: %+v", r)
	}
	if r := byKey["2"]; r.Category != connectors.CategoryTransient || r.Attempts != 3 || !strings.Contains(r.Message, "gave up after 3 attempts") {
		t.Errorf("exhausted: %+v", r)
	}
}

type failingSource struct{ n int }

func (s failingSource) Read(ctx context.Context, _ connectors.ReadRequest, emit func(connectors.Record) error) error {
	for i := range s.n {
		if err := emit(connectors.Record{Data: map[string]any{"id": float64(i), "title": "T", "variants": []any{map[string]any{"sku": "x"}}}}); err != nil {
			return err
		}
	}
	return errors.New("connection reset")
}

func TestRunSourceError(t *testing.T) {
	p := mustCompile(t, productConfig())
	res, err := p.Run(context.Background(), "products_to_erp", RunOptions{Source: failingSource{3}, Sink: &MemorySink{}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Counts.Success != 3 || res.Status != RunPartial || !strings.Contains(res.Error, "connection reset") {
		t.Fatalf("%+v", res)
	}
	res, _ = p.Run(context.Background(), "products_to_erp", RunOptions{Source: failingSource{0}, Sink: &MemorySink{}})
	if res.Status != RunFailed {
		t.Fatalf("status %s", res.Status)
	}
	if _, err := p.Run(context.Background(), "nope", RunOptions{}); !errors.Is(err, ErrUnknownIntegration) {
		t.Fatalf("err %v", err)
	}
}

// blockingSource emits records until cancelled.
type blockingSource struct{ emitted *atomic.Int64 }

func (s blockingSource) Read(ctx context.Context, _ connectors.ReadRequest, emit func(connectors.Record) error) error {
	for i := 0; ; i++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := emit(connectors.Record{Data: map[string]any{"id": float64(i), "title": "T", "variants": []any{map[string]any{"sku": "x"}}}}); err != nil {
			return err
		}
		s.emitted.Add(1)
	}
}

func TestRunCancelCountsAddUp(t *testing.T) {
	p := mustCompile(t, productConfig())
	ctx, cancel := context.WithCancel(context.Background())
	var n atomic.Int64
	go func() {
		for n.Load() < 5000 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	res, err := p.Run(ctx, "products_to_erp", RunOptions{Source: blockingSource{&n}, Sink: &MemorySink{}, Workers: 4})
	if err != nil {
		t.Fatal(err)
	}
	c := res.Counts
	if c.Total < 5000 || c.Total != c.Success+c.Failed+c.Skipped || res.Error == "" {
		t.Fatalf("counts %+v error %q", c, res.Error)
	}
}

// fakeConn checks that Run opens connections through the registry with
// secrets resolved.
type fakeConn struct{}

var fakeSink = &MemorySink{}
var fakeOpened atomic.Value

func (fakeConn) Source(cty.Value) (connectors.Source, error) { return records(3, product), nil }
func (fakeConn) Sink(cty.Value) (connectors.Sink, error)     { return fakeSink, nil }

func init() {
	connectors.Register(&connectors.Connector{
		Type: "enginetest",
		Open: func(env connectors.Env, cfg cty.Value) (connectors.Connection, error) {
			fakeOpened.Store(cfg.GetAttr("token").AsString() + "@" + env.Dir)
			return fakeConn{}, nil
		},
	})
}

func TestRunOpensConnections(t *testing.T) {
	*fakeSink = MemorySink{} // a fresh sink when the test repeats (-count)
	cfg := productConfig()
	cfg.Dir = "/cfg"
	tok := cty.StringVal("((secret:tok))").Mark(lang.SecretMark{Name: "tok"})
	cfg.Connections["shop"] = &lang.Connection{Name: "shop", Type: "enginetest", Config: cty.ObjectVal(map[string]cty.Value{"token": tok})}
	cfg.Connections["erp"] = &lang.Connection{Name: "erp", Type: "enginetest", Config: cty.ObjectVal(map[string]cty.Value{"token": cty.StringVal("plain")})}
	p := mustCompile(t, cfg)
	_, err := p.Run(context.Background(), "products_to_erp", RunOptions{})
	if err == nil || !strings.Contains(err.Error(), "no secret store") {
		t.Fatalf("without secrets: %v", err)
	}
	res, err := p.Run(context.Background(), "products_to_erp", RunOptions{
		Secrets: func(name string) (string, error) { return "s3cr3t-" + name, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Counts.Total != 3 || res.Counts.Success != 3 || len(fakeSink.Writes) != 3 {
		t.Fatalf("counts %+v", res.Counts)
	}
	// The last connection opened is the target (plain); check the source got the secret.
	p2 := mustCompile(t, cfg)
	if _, err := p2.openSource(p2.Pipelines["products_to_erp"], func(n string) (string, error) { return "v-" + n, nil }); err != nil {
		t.Fatal(err)
	}
	if got := fakeOpened.Load(); got != "v-tok@/cfg" {
		t.Fatalf("opened with %v", got)
	}
	cfg.Connections["erp"].Type = "nosuch"
	p3 := mustCompile(t, cfg)
	if _, err := p3.Run(context.Background(), "products_to_erp", RunOptions{Source: records(1, product)}); err == nil || !strings.Contains(err.Error(), `unknown connector type "nosuch"`) {
		t.Fatalf("unknown type: %v", err)
	}
}

func TestBackoff(t *testing.T) {
	r := lang.Retry{Initial: time.Second, Max: 10 * time.Second, Multiplier: 2, Jitter: 0.0001}
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second} {
		got := Backoff(r, i+1)
		if d := got - want; d > want/1000 || d < -want/1000 {
			t.Errorf("attempt %d: %v, want ~%v", i+1, got, want)
		}
	}
}
