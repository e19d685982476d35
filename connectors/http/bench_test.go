package httpconn

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhq/ferry/connectors"
)

// benchTarget is an API that reads and decodes every body, as a real one
// would, and answers 201 (POST) or 200.
func benchTarget(b *testing.B) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var v any
		if err := json.NewDecoder(r.Body).Decode(&v); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		io.Copy(io.Discard, r.Body)
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusCreated)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	b.Cleanup(srv.Close)
	return srv
}

// benchWrites are 100 upserts of product-like records to per-record paths.
func benchWrites() []Write {
	writes := make([]Write, 100)
	for i := range writes {
		sku := fmt.Sprintf("SKU-%05d", i)
		writes[i] = Write{Key: sku, Operation: connectors.OpUpsert, Path: "/items/" + sku, Record: map[string]any{
			"sku": sku, "name": "Organic cotton tee " + sku, "price_cents": int64(1999 + i), "stock": int64(i),
			"active": true, "tags": []any{"summer", "cotton"}, "dimensions": map[string]any{"w": 30.5, "h": 40.0},
		}}
	}
	return writes
}

func BenchmarkSinkWrite(b *testing.B) {
	srv := benchTarget(b)
	conn := openConn(b, "", fmt.Sprintf("base_url = %q\nauth {\n type = \"bearer\"\n token = \"t\"\n}", srv.URL))
	writes := benchWrites()
	batchWrites := benchWrites()
	for i := range batchWrites {
		batchWrites[i].Path = "/items/bulk"
	}
	run := func(b *testing.B, s connectors.Sink, writes []Write, parallel bool) {
		b.ReportAllocs()
		var calls atomic.Int64
		start := time.Now()
		if parallel {
			b.SetParallelism(4) // I/O bound: 4 callers per CPU
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					calls.Add(1)
					if errs := s.Write(context.Background(), writes); errs != nil {
						b.Error(errs)
						return
					}
				}
			})
		} else {
			for b.Loop() {
				calls.Add(1)
				if errs := s.Write(context.Background(), writes); errs != nil {
					b.Fatal(errs)
				}
			}
		}
		b.ReportMetric(float64(calls.Load()*int64(len(writes)))/time.Since(start).Seconds(), "records/s")
	}
	b.Run("per-record", func(b *testing.B) { run(b, newSink(b, conn, ""), writes, false) })
	b.Run("per-record-parallel", func(b *testing.B) { run(b, newSink(b, conn, ""), writes, true) })
	b.Run("batch", func(b *testing.B) { run(b, newSink(b, conn, "batch = true"), batchWrites, false) })
	b.Run("batch-parallel", func(b *testing.B) { run(b, newSink(b, conn, "batch = true"), batchWrites, true) })
}

// benchPage is a page of 1000 records under "data", 400 bytes or so each.
func benchPage() []byte {
	var sb strings.Builder
	sb.WriteString(`{"data":[`)
	for i := range 1000 {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"id":%d,"email":"customer%d@example.com","first_name":"Anna","last_name":"de Vries","company":"Brouwer Fietsen B.V.","phone":"+31 (0)20 123 4567","address":{"street":"Keizersgracht 1","city":"Amsterdam","country":"NL"},"tags":["vip","newsletter"],"lifetime_value":18250.5,"updated_at":"2025-03-01T10:00:00Z"}`, i, i)
	}
	sb.WriteString(`],"meta":{"next_cursor":null}}`)
	return []byte(sb.String())
}

// BenchmarkSourcePage compares how the source splits a page into raw records
// with decoding the whole page on the reading goroutine (what it did before).
func BenchmarkSourcePage(b *testing.B) {
	page := benchPage()
	s := &source{records: []string{"data"}}
	b.Run("raw-split", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(page)))
		for b.Loop() {
			items, err := s.items(page)
			if err != nil || len(items) != 1000 {
				b.Fatal(err, len(items))
			}
		}
	})
	b.Run("decode-whole-page", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(page)))
		for b.Loop() {
			if _, err := connectors.DecodeJSON(page); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkSourceRead reads 10 pages of 1000 records from a local API.
func BenchmarkSourceRead(b *testing.B) {
	page := benchPage()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("page") == "11" {
			w.Write([]byte(`{"data":[]}`))
			return
		}
		w.Write(page)
	}))
	b.Cleanup(srv.Close)
	conn := openConn(b, "", fmt.Sprintf("base_url = %q", srv.URL))
	s := newSource(b, conn, "path = \"/items\"\nrecords = \"data\"\npagination {\n type = \"page\"\n}")
	b.ReportAllocs()
	start := time.Now()
	var n int
	for b.Loop() {
		// Decode as the engine's workers would, here on one goroutine.
		err := s.Read(context.Background(), connectors.ReadRequest{}, func(r connectors.Record) error { n++; return r.Decode() })
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "records/s")
}
