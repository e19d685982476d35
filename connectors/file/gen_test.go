package file

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/ferryhq/ferry/connectors"
)

func TestGenerateProducts(t *testing.T) {
	const n = 2000
	gen := func(seed int64, format string) []byte {
		var b bytes.Buffer
		if err := GenerateProducts(&b, n, seed, format); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	a, b := gen(7, "ndjson"), gen(7, "ndjson")
	if sha256.Sum256(a) != sha256.Sum256(b) {
		t.Fatal("same seed, different output")
	}
	if bytes.Equal(a, gen(8, "ndjson")) {
		t.Fatal("different seeds, same output")
	}
	if avg := len(a) / n; avg < 700 || avg > 900 {
		t.Errorf("average record size %d bytes, want 700-900", avg)
	}

	arr := gen(7, "json")
	var products []Product
	if err := json.Unmarshal(arr, &products); err != nil {
		t.Fatalf("json format is not a JSON array: %v", err)
	}
	if len(products) != n {
		t.Fatalf("%d products, want %d", len(products), n)
	}
	// The two formats hold the same records.
	sc := bufio.NewScanner(bytes.NewReader(a))
	sc.Buffer(nil, 1<<20)
	for i := 0; sc.Scan(); i++ {
		var p Product
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			t.Fatalf("ndjson line %d: %v", i+1, err)
		}
		if p.ID != products[i].ID || p.UpdatedAt != products[i].UpdatedAt || len(p.Variants) != len(products[i].Variants) {
			t.Fatalf("record %d differs between formats", i)
		}
	}

	statuses := map[string]int{}
	untrimmed, nullCompare := 0, 0
	for _, p := range products {
		statuses[p.Status]++
		if p.Title != "" && (p.Title[0] == ' ' || p.Title[len(p.Title)-1] == ' ') {
			untrimmed++
		}
		if len(p.Variants) < 1 || len(p.Variants) > 4 {
			t.Fatalf("product %d has %d variants", p.ID, len(p.Variants))
		}
		for _, v := range p.Variants {
			if v.CompareAtPrice == nil {
				nullCompare++
			}
			var price float64
			if err := json.Unmarshal([]byte(v.Price), &price); err != nil || price <= 0 {
				t.Fatalf("variant %s price %q is not a positive decimal", v.SKU, v.Price)
			}
		}
	}
	if products[0].ID != 1 || products[0].Variants[0].SKU != "SKU-1-0" {
		t.Errorf("first product: id %d, sku %s", products[0].ID, products[0].Variants[0].SKU)
	}
	if arch := statuses["archived"]; arch < n*6/100 || arch > n*14/100 {
		t.Errorf("%d archived of %d, want about 10%%", arch, n)
	}
	if statuses["active"] == 0 || statuses["draft"] == 0 || untrimmed == 0 || nullCompare == 0 {
		t.Errorf("dataset lacks variety: statuses %v, untrimmed titles %d, null compare_at_price %d", statuses, untrimmed, nullCompare)
	}
	if err := GenerateProducts(&bytes.Buffer{}, 1, 1, "csv"); err == nil {
		t.Error("unknown format: want an error")
	}
}

// TestReadStreamsJSONArray proves that reading a JSON array does not hold the
// file in memory: the live heap while reading stays far below the file size.
func TestReadStreamsJSONArray(t *testing.T) {
	if testing.Short() {
		t.Skip("generates a 17 MB file")
	}
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "products.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := GenerateProducts(f, 20000, 42, "json"); err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	f.Close()
	size := fi.Size()

	heapInuse := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	src := newSource(t, openConn(t, dir, ""), `path = "products.json"`)
	before := heapInuse()
	var peak uint64
	n := 0
	err = src.Read(context.Background(), connectors.ReadRequest{}, func(r connectors.Record) error {
		n++
		if n%2000 == 0 {
			peak = max(peak, heapInuse())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 20000 {
		t.Fatalf("read %d records, want 20000", n)
	}
	growth := int64(peak) - int64(before)
	t.Logf("file %d bytes, live heap growth while reading %d bytes", size, growth)
	if growth > size/4 {
		t.Fatalf("live heap grew by %d bytes while reading a %d-byte file: the reader is not streaming", growth, size)
	}
}
