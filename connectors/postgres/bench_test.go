package postgres

import (
	"context"
	"fmt"
	"testing"

	"github.com/ferryhq/ferry/connectors"
)

// BenchmarkSinkUpsert measures upsert throughput: each Write is one batch of
// records (half of them new rows, half updates of existing ones), one
// transaction, into a 6-column table with a primary key.
func BenchmarkSinkUpsert(b *testing.B) {
	for _, size := range []int{100, 1000} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			db := newDB(b)
			db.exec(`CREATE TABLE items (id bigint PRIMARY KEY, name text, qty int, price numeric(12,2), updated_at timestamptz, attrs jsonb)`)
			s := db.sink(fmt.Sprintf(`
table       = "items"
key_columns = ["id"]
batch_size  = %d
`, size))
			writes := make([]connectors.Write, size)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for j := range writes {
					id := int64(i*size/2 + j) // overlaps the previous batch by half
					writes[j] = upsert(map[string]any{
						"id":         id,
						"name":       "item name",
						"qty":        int64(j),
						"price":      "19.99",
						"updated_at": "2024-05-06T07:08:09.123456Z",
						"attrs":      map[string]any{"color": "red", "size": int64(j)},
					})
				}
				if errs := s.Write(ctx, writes); errs != nil {
					for _, err := range errs {
						if err != nil {
							b.Fatal(err)
						}
					}
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
