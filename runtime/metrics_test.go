package runtime

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferryhq/ferry/connectors"
)

// After a run with successes and failures, the runtime's series carry
// the run's counts, its status and the DLQ depth, with bounded labels only.
func TestMetricsAfterRun(t *testing.T) {
	ctx := context.Background()
	rt := openTest(t, Options{})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(rt.Collectors()...)

	sink := newFileSink(t, filepath.Join(t.TempDir(), "out.ndjson"))
	sink.fail = func(w connectors.Write) error {
		if n, _ := strconv.Atoi(w.Key); n%10 == 0 {
			return connectors.Permanent(errors.New("422 invalid"))
		}
		return nil
	}
	res, err := rt.RunJob(ctx, testJob("acme", "orders", genSource{n: 100}, sink), RunOptions{RunID: "m1"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Counts.Failed != 10 || res.Counts.Success != 90 {
		t.Fatalf("counts %+v", res.Counts)
	}
	want := `
# HELP ferry_dlq_entries DLQ entries waiting for replay or discard (status pending), per integration.
# TYPE ferry_dlq_entries gauge
ferry_dlq_entries{integration="orders",tenant="acme"} 10
# HELP ferry_records_total Records settled, by the stage where they ended and their outcome (success, skipped, failed).
# TYPE ferry_records_total counter
ferry_records_total{integration="orders",outcome="failed",stage="execute",tenant="acme"} 10
ferry_records_total{integration="orders",outcome="success",stage="execute",tenant="acme"} 90
# HELP ferry_runs_total Finished runs by status (succeeded, partial, failed).
# TYPE ferry_runs_total counter
ferry_runs_total{integration="orders",status="partial",tenant="acme"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "ferry_dlq_entries", "ferry_records_total", "ferry_runs_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(rt.metrics.runDuration); n != 1 {
		t.Fatalf("run duration series: %d", n)
	}
	// The run is over: nothing is pending for the tenant.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.Contains(l.GetValue(), "m1") {
					t.Errorf("%s has a run id in label %s", mf.GetName(), l.GetName())
				}
			}
		}
	}
}
