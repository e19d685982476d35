package runtime

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/ferryhq/ferry/engine"
)

// BenchmarkSmallRun measures a run's fixed cost: one run of 2 records, as a
// sync event or a webhook delivery makes (create, lock, consumer, ingest,
// settle, end), sequentially.
//
//	go test ./runtime -run '^$' -bench SmallRun -cpuprofile cpu.out
func BenchmarkSmallRun(b *testing.B) {
	prog, _ := writeProgram(b, 2)
	rt := openTest(b, Options{DataDir: filepath.Join(b.TempDir(), "data")})
	b.ResetTimer()
	for range b.N {
		res, err := rt.Run(context.Background(), "", prog, "items", RunOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if res.Status != engine.RunSucceeded || res.Counts.Total != 2 {
			b.Fatalf("%s %+v", res.Status, res.Counts)
		}
	}
}
