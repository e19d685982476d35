package runtime

import (
	"context"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ferryhq/ferry/engine"
)

// BenchmarkDurableRun measures the durable path: file source → JetStream work
// stream → normalize/transform (the real engine) → file target, acking each
// message after its records settled. One iteration is one run of 50,000 records.
//
//	go test ./runtime -run '^$' -bench DurableRun -benchtime 3x
func BenchmarkDurableRun(b *testing.B) {
	const n = 50000
	for _, policy := range []string{SyncDefault, SyncAlways} {
		b.Run("sync="+policy, func(b *testing.B) {
			prog, _ := writeProgram(b, n)
			rt := openTest(b, Options{DataDir: filepath.Join(b.TempDir(), "data"), SyncPolicy: policy})
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				res, err := rt.Run(context.Background(), "", prog, "items", RunOptions{})
				if err != nil {
					b.Fatal(err)
				}
				if res.Status != engine.RunSucceeded || res.Counts.Total != n {
					b.Fatalf("%s %+v", res.Status, res.Counts)
				}
			}
			el := time.Since(start)
			b.ReportMetric(float64(n*b.N)/el.Seconds(), "records/s")
			var ru syscall.Rusage
			if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
				b.ReportMetric(float64(ru.Maxrss)/1024, "peak-RSS-MB")
			}
		})
	}
}
