package runtime

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferryhq/ferry/engine"
)

// metrics are the runtime's Prometheus series. Labels are bounded by the
// configuration (tenant, integration, stage, outcome, status): never run ids or
// entity keys.
type metrics struct {
	records     *prometheus.CounterVec
	retries     *prometheus.CounterVec
	runs        *prometheus.CounterVec
	runDuration *prometheus.HistogramVec
}

func newMetrics() *metrics {
	return &metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_records_total",
			Help: "Records settled, by the stage where they ended and their outcome (success, skipped, failed).",
		}, []string{"tenant", "integration", "stage", "outcome"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_record_retries_total",
			Help: "Record retries scheduled after transient failures.",
		}, []string{"tenant", "integration"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_runs_total",
			Help: "Finished runs by status (succeeded, partial, failed).",
		}, []string{"tenant", "integration", "status"}),
		runDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ferry_run_duration_seconds",
			Help:    "Duration of finished runs, from start to end.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10), // 10ms .. ~44min
		}, []string{"tenant", "integration"}),
	}
}

// settled counts the records of one settlement. Successes end in execute;
// skips in transform (filter, unchanged); failures where they failed.
func (m *metrics) settled(tenant, integration string, s *settlement) {
	if s.Success > 0 {
		m.records.WithLabelValues(tenant, integration, string(engine.StageExecute), "success").Add(float64(s.Success))
	}
	if s.Skipped > 0 {
		m.records.WithLabelValues(tenant, integration, string(engine.StageTransform), "skipped").Add(float64(s.Skipped))
	}
	for _, d := range s.Dead {
		m.records.WithLabelValues(tenant, integration, string(d.Stage), "failed").Inc()
	}
	if s.Retried > 0 {
		m.retries.WithLabelValues(tenant, integration).Add(float64(s.Retried))
	}
}

func (m *metrics) finished(run *Run) {
	m.runs.WithLabelValues(run.Tenant, run.Integration, string(run.Status)).Inc()
	if !run.Started.IsZero() && !run.Ended.IsZero() {
		m.runDuration.WithLabelValues(run.Tenant, run.Integration).Observe(run.Ended.Sub(run.Started).Seconds())
	}
}

// Collectors returns the runtime's Prometheus collectors, for the caller's
// registry: record, retry and run series, and — read from JetStream at scrape
// time, so every node of a cluster reports the same — the DLQ depth per
// integration and the work pending per tenant.
func (rt *Runtime) Collectors() []prometheus.Collector {
	m := rt.metrics
	return []prometheus.Collector{m.records, m.retries, m.runs, m.runDuration, &stateCollector{rt: rt}}
}

var (
	dlqDepthDesc = prometheus.NewDesc("ferry_dlq_entries",
		"DLQ entries waiting for replay or discard (status pending), per integration.",
		[]string{"tenant", "integration"}, nil)
	workPendingDesc = prometheus.NewDesc("ferry_work_pending_messages",
		"Work messages not yet acknowledged by workers (JetStream consumer pending plus in flight), per tenant.",
		[]string{"tenant"}, nil)
)

// stateCollector reads DLQ depth and consumer backlogs at scrape time. It
// scans the DLQ bucket (O(entries)): fine for the DLQ sizes a team works
// through by hand; an index per integration is the next step if it is not.
type stateCollector struct{ rt *Runtime }

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- dlqDepthDesc
	ch <- workPendingDesc
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	depth := map[[2]string]int{}
	if entries, err := listValues(ctx, c.rt.dlqKV, ">"); err == nil {
		for _, kv := range entries {
			var e DLQEntry
			if json.Unmarshal(kv.Value(), &e) == nil && e.Status == DLQPending {
				depth[[2]string{e.Tenant, e.Integration}]++
			}
		}
	}
	for k, n := range depth {
		ch <- prometheus.MustNewConstMetric(dlqDepthDesc, prometheus.GaugeValue, float64(n), k[0], k[1])
	}
	pending := map[string]uint64{}
	lister := c.rt.work.ListConsumers(ctx)
	for info := range lister.Info() {
		if tenant, ok := subjectTenant(info.Config.FilterSubject); ok {
			pending[tenant] += info.NumPending + uint64(info.NumAckPending)
		}
	}
	for tenant, n := range pending {
		ch <- prometheus.MustNewConstMetric(workPendingDesc, prometheus.GaugeValue, float64(n), tenant)
	}
}

// subjectTenant extracts the tenant from a run consumer's filter subject,
// ferry.v1.work.<tenant>.<integration>.<run> (names are subject-safe tokens).
func subjectTenant(subject string) (string, bool) {
	rest, ok := strings.CutPrefix(subject, "ferry.v1.work.")
	if !ok {
		return "", false
	}
	tenant, _, ok := strings.Cut(rest, ".")
	return tenant, ok && tenant != ""
}
