package apiserver

// Schedules at run time: every server keeps a runtime/scheduler.Scheduler
// with the schedule blocks of every tenant's current revision and fires them
// through StartRun (trigger "schedule", idempotency key
// schedule:<name>:<unix fire time>). Every server fires; the scheduler's
// JetStream claim makes each fire happen once cluster-wide.
//
// The schedules follow the configuration through a watch on the current
// revision pointers (KV ferry_v1_config <tenant>.current), so an apply on any
// server reaches the schedulers of all servers at once; the watch delivers
// every tenant's current revision first, so a starting server has them all.
// A revision that does not load on this server keeps the tenant's previous
// schedules (logged).
//
// Concurrency policies: forbid and replace check for a run of the
// integration in flight (a stored run request, see runs_manager.go). replace
// cancels it (Server.CancelRun: it ends as cancelled, its unprocessed
// records dropped) and starts the new run. A deactivated integration's
// fires are skipped (outcome "skipped").
//
// Metrics: ferry_schedule_fires_total{outcome} (fired, failed, skipped,
// skipped_running, missed, duplicate — duplicate counts the fires another
// server claimed) and ferry_schedule_fire_lag_seconds (how late after its
// fire time a fire was handled).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferryhq/ferry/lang"
	"github.com/ferryhq/ferry/runtime/scheduler"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// scheduleRuntime is the server's scheduler and what feeds it.
type scheduleRuntime struct {
	s     *Server
	sched *scheduler.Scheduler
	fires *prometheus.CounterVec
	lag   prometheus.Histogram

	mu       sync.Mutex
	byTenant map[string]tenantSchedules

	cancel context.CancelFunc
	done   chan struct{} // closed when the watch and the scheduler stopped
}

type tenantSchedules struct {
	revision int
	entries  []scheduler.Entry
}

// serverClock is the scheduler's clock: the server's Now (tests set it) and
// real timers.
type serverClock struct{ s *Server }

func (c serverClock) Now() time.Time                         { return c.s.now() }
func (c serverClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// startSchedules creates the scheduler and its metrics and starts it; it
// stops when the run manager closes (Close).
func (s *Server) startSchedules(ctx context.Context) (*scheduleRuntime, error) {
	r := &scheduleRuntime{s: s, byTenant: map[string]tenantSchedules{}, done: make(chan struct{})}
	r.fires = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_schedule_fires_total",
		Help: "Schedule fire times handled by this server, by outcome: fired, failed, skipped (integration deactivated), skipped_running (concurrency forbid), missed (missed-fire policy), duplicate (another server claimed it).",
	}, []string{"outcome"})
	r.lag = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "ferry_schedule_fire_lag_seconds",
		Help:    "How late after its fire time a schedule fire was handled (claimed and started) by this server.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 3600},
	})
	for _, o := range []scheduler.Outcome{scheduler.OutcomeFired, scheduler.OutcomeFailed, scheduler.OutcomeSkipped,
		scheduler.OutcomeSkippedRunning, scheduler.OutcomeMissed, scheduler.OutcomeDuplicate} {
		r.fires.WithLabelValues(string(o))
	}
	if err := s.met.reg.Register(r.fires); err != nil {
		return nil, err
	}
	if err := s.met.reg.Register(r.lag); err != nil {
		return nil, err
	}
	opts := scheduler.Options{
		JetStream: s.js,
		Replicas:  s.opts.Replicas,
		Clock:     serverClock{s},
		Fire:      r.fire,
		Running:   r.running,
		Observe:   r.observe,
		Logger:    s.log,
	}
	if s.runs != nil {
		opts.Node = s.runs.node
	}
	if c, ok := any(s).(interface {
		CancelRun(ctx context.Context, tenant, runID string) error
	}); ok {
		opts.Cancel = c.CancelRun
	}
	var err error
	if r.sched, err = scheduler.New(ctx, opts); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	var closing <-chan struct{}
	if s.runs != nil {
		closing = s.runs.closing
	}
	var wg sync.WaitGroup
	wg.Go(func() { r.watch(runCtx) })
	wg.Go(func() { _ = r.sched.Run(runCtx) })
	go func() {
		select {
		case <-closing:
			cancel()
		case <-runCtx.Done():
		}
		wg.Wait()
		close(r.done)
	}()
	return r, nil
}

// stop stops the watch and the scheduler and waits for them.
func (r *scheduleRuntime) stop() {
	r.cancel()
	<-r.done
}

// watch follows the current revision of every tenant.
func (r *scheduleRuntime) watch(ctx context.Context) {
	for ctx.Err() == nil {
		w, err := r.s.st.config.Watch(ctx, "*.current")
		if err != nil {
			r.s.log.Warn("schedules: watching the configuration", "error", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(2 * time.Second):
			}
			continue
		}
		r.follow(ctx, w)
		_ = w.Stop()
	}
}

func (r *scheduleRuntime) follow(ctx context.Context, w jetstream.KeyWatcher) {
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil {
				continue // the initial values were delivered
			}
			tenant := strings.TrimSuffix(e.Key(), ".current")
			if e.Operation() != jetstream.KeyValuePut {
				r.setTenant(tenant, nil)
				continue
			}
			var rev Revision
			if err := json.Unmarshal(e.Value(), &rev); err != nil {
				r.s.log.Warn("schedules: decoding the current revision", "tenant", tenant, "error", err)
				continue
			}
			r.load(ctx, tenant, rev)
		}
	}
}

// load installs the schedules of a tenant's revision.
func (r *scheduleRuntime) load(ctx context.Context, tenant string, rev Revision) {
	r.mu.Lock()
	cur, ok := r.byTenant[tenant]
	r.mu.Unlock()
	if ok && cur.revision == rev.Revision {
		return
	}
	cfg, err := r.s.revisionConfig(ctx, tenant, rev)
	if err != nil {
		r.s.log.Warn("schedules: the current revision does not load; keeping the previous schedules", "tenant", tenant, "revision", rev.Revision, "error", err)
		return
	}
	r.setTenant(tenant, &tenantSchedules{revision: rev.Revision, entries: scheduleEntries(tenant, cfg)})
}

// revisionConfig is the loaded configuration of a revision, from the
// compiled-program cache when it holds that revision.
func (s *Server) revisionConfig(ctx context.Context, tenant string, rev Revision) (*lang.Config, error) {
	if rev.Revision == 0 {
		return nil, nil
	}
	s.mu.Lock()
	c, ok := s.programs[tenant]
	s.mu.Unlock()
	if ok && c.revision == rev.Revision {
		return c.prog.Config, nil
	}
	comp, err := s.compile(tenant, rev.Files)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if c, ok := s.programs[tenant]; !ok || c.revision < rev.Revision {
		s.programs[tenant] = cachedProgram{revision: rev.Revision, prog: comp.prog}
	}
	s.mu.Unlock()
	return comp.cfg, nil
}

func scheduleEntries(tenant string, cfg *lang.Config) []scheduler.Entry {
	if cfg == nil {
		return nil
	}
	var out []scheduler.Entry
	for _, name := range cfg.ScheduleNames() {
		sc := cfg.Schedules[name]
		if sc == nil || sc.Cron == "" {
			continue
		}
		out = append(out, scheduler.Entry{Tenant: tenant, Name: name, Integration: sc.Integration, Spec: sc.Cron,
			Location: sc.Location, Concurrency: scheduler.Concurrency(sc.Concurrency), Missed: scheduler.Missed(sc.MissedFire),
			Enabled: sc.Enabled})
	}
	return out
}

// setTenant replaces a tenant's schedules (nil: none) and hands every
// tenant's to the scheduler.
func (r *scheduleRuntime) setTenant(tenant string, ts *tenantSchedules) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ts == nil {
		delete(r.byTenant, tenant)
	} else {
		r.byTenant[tenant] = *ts
	}
	tenants := make([]string, 0, len(r.byTenant))
	for t := range r.byTenant {
		tenants = append(tenants, t)
	}
	sort.Strings(tenants)
	var all []scheduler.Entry
	for _, t := range tenants {
		all = append(all, r.byTenant[t].entries...)
	}
	if err := r.sched.Set(all); err != nil {
		r.s.log.Warn("schedules: some schedules cannot run", "error", err)
	}
}

// fire starts the run of one fire.
func (r *scheduleRuntime) fire(ctx context.Context, f scheduler.Fire) error {
	// The key lasts as long as the scheduler's claim of the fire (its
	// stream's duplicate window), whatever Options.IdempotencyTTL says.
	id, err := r.s.StartRun(ctx, TriggerRequest{Tenant: f.Tenant, Integration: f.Integration, Trigger: "schedule",
		IdempotencyKey: "schedule:" + f.Schedule + ":" + strconv.FormatInt(f.At.Unix(), 10), IdempotencyTTL: scheduler.DedupWindow})
	if errors.Is(err, ErrIntegrationInactive) {
		return fmt.Errorf("%w: %v", scheduler.ErrSkip, err)
	}
	if err != nil {
		return err
	}
	r.s.log.Info("schedule fired", "tenant", f.Tenant, "schedule", f.Schedule, "integration", f.Integration, "at", f.At, "run", id, "catchUp", f.CatchUp)
	return nil
}

// running reports a run of the integration in flight on any server: a stored
// run request that did not fail to start.
func (r *scheduleRuntime) running(ctx context.Context, tenant, integration string) (string, bool, error) {
	if r.s.runs == nil {
		return "", false, nil
	}
	keys, err := keysOf(ctx, r.s.runs.reqs, tenant+".*")
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		return "", false, err
	}
	sort.Strings(keys)
	for _, k := range keys {
		var rr runRequest
		if _, found, err := getJSON(ctx, r.s.runs.reqs, k, &rr); err != nil {
			return "", false, err
		} else if found && rr.Integration == integration && rr.Error == "" {
			return rr.RunID, true, nil
		}
	}
	return "", false, nil
}

func (r *scheduleRuntime) observe(ev scheduler.Event) {
	r.fires.WithLabelValues(string(ev.Outcome)).Add(float64(ev.Count))
	switch ev.Outcome {
	case scheduler.OutcomeMissed, scheduler.OutcomeDuplicate:
	default:
		r.lag.Observe(max(ev.Lag, 0).Seconds())
	}
}

// scheduleNextResponse is GET /v1/schedules/{name}/next.
type scheduleNextResponse struct {
	Schedule    string `json:"schedule"`
	Integration string `json:"integration"`
	Cron        string `json:"cron"`
	Timezone    string `json:"timezone"`
	Enabled     bool   `json:"enabled"`
	Concurrency string `json:"concurrency"`
	MissedFire  string `json:"missedFire"`
	// Next are the next fire times (RFC 3339, in the schedule's time zone);
	// empty when the schedule is disabled.
	Next []string `json:"next"`
	// LastFire is the latest fire time any server started (null: never).
	LastFire    *string `json:"lastFire"`
	LastOutcome string  `json:"lastOutcome,omitempty"`
	LastError   string  `json:"lastError,omitempty"`
}

const maxNextCount = 100

// scheduleRoutes are the routes of schedules at run time.
func (s *Server) scheduleRoutes() []Route {
	return []Route{
		{Method: "GET", Pattern: "/v1/schedules/{name}/next", Roles: tenantRead, TenantScoped: true,
			Summary: "The schedule's next fire times (in its time zone, daylight-saving rules applied) and its last fire", Tag: "schedules",
			Response: scheduleNextResponse{}, Query: map[string]string{"count": "how many fire times (1-100, default 5)"}, Handle: s.scheduleNext},
	}
}

func (s *Server) scheduleNext(w http.ResponseWriter, r *http.Request, p *Principal) error {
	name := r.PathValue("name")
	count := 5
	if v := r.URL.Query().Get("count"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxNextCount {
			return newProblem(http.StatusBadRequest, probBadRequest, "count %q: give a number from 1 to %d", v, maxNextCount)
		}
		count = n
	}
	_, cfg, err := s.currentConfig(r.Context(), p.Tenant)
	if err != nil {
		return err
	}
	var sc *lang.Schedule
	if cfg != nil {
		sc = cfg.Schedules[name]
	}
	if sc == nil {
		return notFound(fmt.Sprintf("schedule %q", name))
	}
	spec, err := scheduler.Parse(sc.Cron, sc.Location)
	if err != nil {
		return fmt.Errorf("schedule %s: %w", name, err)
	}
	loc := spec.Location()
	resp := scheduleNextResponse{Schedule: name, Integration: sc.Integration, Cron: sc.Cron, Timezone: loc.String(),
		Enabled: sc.Enabled, Concurrency: sc.Concurrency, MissedFire: sc.MissedFire, Next: []string{}}
	if sc.Enabled {
		ts, err := spec.NextN(s.now(), count)
		if err != nil && !errors.Is(err, scheduler.ErrNoFireTime) {
			return err
		}
		for _, t := range ts {
			resp.Next = append(resp.Next, t.In(loc).Format(time.RFC3339))
		}
	}
	st, found, err := scheduler.ReadState(r.Context(), s.js, p.Tenant, name)
	if err != nil {
		return err
	}
	if found {
		if !st.LastFire.IsZero() {
			lf := st.LastFire.In(loc).Format(time.RFC3339)
			resp.LastFire = &lf
		}
		resp.LastOutcome, resp.LastError = string(st.LastOutcome), st.LastError
	}
	writeJSON(w, r, http.StatusOK, resp)
	return nil
}
