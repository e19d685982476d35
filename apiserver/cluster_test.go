package apiserver

// The scale-out proof: two ferry servers on one 3-node NATS JetStream cluster
// (all of it in this process, on loopback) share the work of one tenant. A
// run of 50,000 records loses a NATS node and then the server running it, and
// the other server finishes it with nothing lost and counts that reconcile.
//
// It lives in package apiserver (not a package of its own) because it uses
// the test connectors registered here (testgate) and looks at a server's
// scheduler metrics; the servers are composed as ferry serve composes them
// (runtime.Open with an external NATS, New, an HTTP server on its handler).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhq/ferry/connectors"
	"github.com/ferryhq/ferry/connectors/file"
	"github.com/ferryhq/ferry/runtime"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/zclconf/go-cty/cty"
)

// natsCluster is a JetStream cluster of in-process nats-servers.
type natsCluster struct {
	t       *testing.T
	servers []*server.Server
	opts    []*server.Options // each server's, its client port fixed once known (restart)
	down    []bool
}

// startNATSCluster starts size clustered JetStream servers on loopback and
// waits until they elected a meta leader.
func startNATSCluster(t *testing.T, size int) *natsCluster {
	t.Helper()
	// Every server is configured with the routes to all: JetStream sizes its
	// meta group by the configured routes. The cluster ports are picked free
	// first (a listener on port 0, closed again).
	ports := make([]int, size)
	routes := make([]string, size)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		routes[i] = "nats://127.0.0.1:" + strconv.Itoa(ports[i])
	}
	c := &natsCluster{t: t, down: make([]bool, size)}
	t.Cleanup(func() {
		for i := range c.servers {
			c.stop(i)
		}
	})
	for i := range size {
		opts := &server.Options{
			ServerName:         "nats-" + strconv.Itoa(i+1),
			Host:               "127.0.0.1",
			Port:               -1, // a random free port
			JetStream:          true,
			StoreDir:           t.TempDir(),
			JetStreamMaxMemory: 64 << 20,
			JetStreamMaxStore:  4 << 30,
			Cluster:            server.ClusterOpts{Name: "ferry-test", Host: "127.0.0.1", Port: ports[i]},
			Routes:             server.RoutesFromStr(strings.Join(routes, ",")),
			NoLog:              true,
			NoSigs:             true,
		}
		ns, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		ns.Start()
		c.servers = append(c.servers, ns)
		c.opts = append(c.opts, opts)
		if !ns.ReadyForConnections(30 * time.Second) {
			t.Fatalf("nats server %d did not start", i+1)
		}
		// A restart listens where clients knew the server.
		opts.Port = ns.Addr().(*net.TCPAddr).Port
	}
	waitWithin(t, 30*time.Second, "a JetStream meta leader", func() bool {
		leaders := 0
		for _, ns := range c.servers {
			if ns.JetStreamIsLeader() {
				leaders++
			}
			if !ns.JetStreamIsCurrent() {
				return false
			}
		}
		return leaders == 1
	})
	return c
}

// url is the client URL list of the servers (nats.go tries them in turn).
func (c *natsCluster) url() string {
	var urls []string
	for _, ns := range c.servers {
		urls = append(urls, ns.ClientURL())
	}
	return strings.Join(urls, ",")
}

func (c *natsCluster) byName(name string) int {
	for i, ns := range c.servers {
		if ns.Name() == name {
			return i
		}
	}
	return -1
}

func (c *natsCluster) stop(i int) {
	if c.down[i] {
		return
	}
	c.down[i] = true
	c.servers[i].Shutdown()
	c.servers[i].WaitForShutdown()
}

// restart starts stopped server i again as it was: same name, store
// directory, client and cluster ports, and routes.
func (c *natsCluster) restart(i int) {
	c.t.Helper()
	if !c.down[i] {
		c.t.Fatalf("nats server %d is running", i+1)
	}
	opts := *c.opts[i]
	ns, err := server.NewServer(&opts)
	if err != nil {
		c.t.Fatalf("restart nats server %d: %v", i+1, err)
	}
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		c.t.Fatalf("nats server %d did not restart", i+1)
	}
	c.servers[i], c.down[i] = ns, false
}

// waitCaughtUp waits until server i holds a current replica of every stream
// (the work stream, the buckets' streams, ...) with the last sequence its
// leader reports, and returns how many streams it checked.
func (c *natsCluster) waitCaughtUp(ctx context.Context, i int, js jetstream.JetStream, within time.Duration) int {
	c.t.Helper()
	ns := c.servers[i]
	var names []string
	for name := range js.StreamNames(ctx).Name() {
		names = append(names, name)
	}
	if len(names) == 0 {
		c.t.Fatal("no streams to check")
	}
	// lagging says how server i lags ("" when it does not).
	lagging := func() string {
		local := map[string]uint64{}
		acc, err := ns.JszAccount(&server.JSzOptions{Account: "$G", Streams: true})
		if err != nil {
			return err.Error()
		}
		for _, sd := range acc.Streams {
			local[sd.Name] = sd.State.LastSeq
		}
		for _, name := range names {
			st, err := js.Stream(ctx, name)
			if err != nil {
				return name + ": " + err.Error()
			}
			leader := st.CachedInfo()
			seq, ok := local[name]
			if !ok || !ns.JetStreamIsStreamCurrent("$G", name) || seq != leader.State.LastSeq {
				return fmt.Sprintf("stream %s: last sequence %d here (replica found: %v), %d at its leader %s", name, seq, ok, leader.State.LastSeq, leader.Cluster.Leader)
			}
		}
		return ""
	}
	for deadline := time.Now().Add(within); ; time.Sleep(20 * time.Millisecond) {
		lag := lagging()
		if lag == "" {
			break
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("nats server %s did not catch up within %s: %s", ns.Name(), within, lag)
		}
	}
	return len(names)
}

// clusterSink is the target of the cluster test: it counts every key a node
// wrote. The "clustersink" connector finds a node's sink by the directory the
// node resolves the tenant's paths in (Options.FilesDir), as a file target
// would write into that node's own directory.
type clusterSink struct {
	node    string
	dead    atomic.Bool // the node crashed: nothing it does reaches the target any more
	written atomic.Int64

	first, last atomic.Int64 // UnixNano of the first and the last write

	mu   sync.Mutex
	keys map[string]int
}

var clusterSinks sync.Map // tenant directory → *clusterSink

func (s *clusterSink) Write(_ context.Context, ws []connectors.Write) []error {
	if s.dead.Load() {
		errs := make([]error, len(ws))
		for i := range errs {
			errs[i] = connectors.Transient(errors.New("node "+s.node+" crashed"), 0)
		}
		return errs
	}
	s.mu.Lock()
	for _, w := range ws {
		s.keys[w.Key]++
	}
	s.mu.Unlock()
	s.written.Add(int64(len(ws)))
	now := time.Now().UnixNano()
	s.first.CompareAndSwap(0, now)
	s.last.Store(now)
	return nil
}

func (s *clusterSink) Close(context.Context) error { return nil }
func (s *clusterSink) ConcurrentWrites() bool      { return true }

func (s *clusterSink) Keys() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.keys))
	for k, v := range s.keys {
		out[k] = v
	}
	return out
}

type clusterSinkConn struct{ s *clusterSink }

func (c clusterSinkConn) Source(cty.Value) (connectors.Source, error) {
	return nil, errors.New("clustersink is a target only")
}
func (c clusterSinkConn) Sink(cty.Value) (connectors.Sink, error) { return c.s, nil }

func init() {
	connectors.Register(&connectors.Connector{
		Type:        "clustersink",
		Description: "apiserver cluster test: a target that counts the keys each node wrote",
		Connection:  hcldec.ObjectSpec{},
		Target:      hcldec.ObjectSpec{},
		Open: func(env connectors.Env, _ cty.Value) (connectors.Connection, error) {
			s, ok := clusterSinks.Load(env.Dir)
			if !ok {
				return nil, fmt.Errorf("clustersink: no test node resolves paths in %s", env.Dir)
			}
			return clusterSinkConn{s.(*clusterSink)}, nil
		},
	})
}

// syncBuffer collects a node's log; the test prints it when it fails.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// ferryNode is one ferry serve: runtime, API server and HTTP server.
type ferryNode struct {
	*env
	name    string
	sink    *clusterSink
	log     *syncBuffer
	crashed bool
}

// clusterRunLease is short for a quick takeover, long enough that a node
// does not give its run up while the NATS cluster elects new leaders.
const clusterRunLease = 10 * time.Second

func startFerryNode(t *testing.T, name, natsURL string, c *clock) *ferryNode {
	t.Helper()
	ctx := t.Context()
	logs := &syncBuffer{}
	level := slog.LevelInfo
	if os.Getenv("FERRY_CLUSTER_LOG") == "debug" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: level})).With("node", name)
	rt, err := runtime.Open(ctx, runtime.Options{NATSURL: natsURL, Replicas: 3, Logger: log})
	if err != nil {
		t.Fatalf("node %s: %v", name, err)
	}
	filesDir := filepath.Join(t.TempDir(), "files")
	sink := &clusterSink{node: name, keys: map[string]int{}}
	clusterSinks.Store(filepath.Join(filesDir, "acme"), sink)
	// HostFiles: both nodes read the input from one shared directory, as
	// nodes would from a volume mounted at the same path.
	s, err := New(rt, Options{AdminKey: testAdminKey, MasterKey: bytes.Repeat([]byte{7}, 32), Replicas: 3,
		FilesDir: filesDir, HostFiles: true, RunLease: clusterRunLease, Logger: log, Now: c.Now})
	if err != nil {
		rt.Close()
		t.Fatalf("node %s: %v", name, err)
	}
	n := &ferryNode{env: &env{t: t, s: s, rt: rt, srv: httptest.NewServer(s.Handler()), clock: c}, name: name, sink: sink, log: logs}
	t.Cleanup(func() {
		clusterSinks.Delete(filepath.Join(filesDir, "acme"))
		if t.Failed() || os.Getenv("FERRY_CLUSTER_LOG") != "" {
			t.Logf("log of node %s:\n%s", name, tail(logs.String(), 6000))
		}
	})
	t.Cleanup(func() {
		if n.crashed {
			return
		}
		n.srv.Close()
		cctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		n.s.Close(cctx)
		n.rt.Close()
	})
	return n
}

// crash stops the node as a kill -9 would, as far as NATS and the target can
// tell: its connection closes at once (no drain: nothing it has not sent
// yet is acknowledged, its leases are not released), and nothing it still
// does reaches the target. Its goroutines are then stopped so they do not
// outlive the test; everything they try fails on the closed connection.
func (n *ferryNode) crash() {
	n.crashed = true
	n.rt.JetStream().Conn().Close()
	n.sink.dead.Store(true)
	n.srv.CloseClientConnections()
	n.srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n.s.Close(ctx)
	n.rt.Close()
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func waitWithin(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
	}
}

// without returns m without the keys.
func without(m map[string]any, keys ...string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	for _, k := range keys {
		delete(out, k)
	}
	return out
}

func clusterConfig(inputDir string) map[string]any {
	return map[string]any{"files": map[string]string{"main.hcl": `ferry {
  tenant = "acme"
}

connection "catalog" {
  type = "file"
  path = "` + filepath.ToSlash(inputDir) + `"
}

connection "warehouse" {
  type = "clustersink"
}

connection "gate" {
  type = "testgate"
  name = "cluster-tick"
}

mapping "product_to_item" {
  key    = "string(id)"
  filter = "status != 'archived'"
  fields = {
    sku         = "variants[0].sku"
    name        = "trim(title)"
    price_cents = "int(round(parseMoney(variants[0].price) * 100))"
    stock       = "sum(map(variants, .inventory_quantity))"
  }
}

integration "products" {
  source {
    connection = connection.catalog
    path       = "products.ndjson"
  }
  normalize {
    require = ["id", "title", "variants"]
  }
  transform {
    mapping = mapping.product_to_item
  }
  target {
    connection = connection.warehouse
  }
  retry {
    max_attempts = 10
    initial      = "50ms"
    max          = "1s"
  }
  workers = ` + strconv.Itoa(clusterWorkers) + `
}

mapping "tick" {
  key = "string(id)"
  fields = {
    id = "id"
  }
}

integration "tick" {
  source {
    connection = connection.gate
  }
  transform {
    mapping = mapping.tick
  }
  target {
    connection = connection.gate
  }
  webhook {
    verify = "none"
  }
}

schedule "tick" {
  integration = integration.tick
  cron        = "*/5 * * * *"
}
`}}
}

const clusterWorkers = 4

// TestClusterScaleOut: two ferry servers on a 3-node JetStream cluster with
// R3 streams and buckets. A schedule fires once across both; a webhook sent
// to one server runs and shows on the other; a run of 50,000 records,
// triggered on server A, survives losing a NATS node (the work stream's
// leader) and then server A itself: server B takes the run over and ends it
// with every record delivered, duplicates only of what A had in flight, and
// counts that reconcile. The API answers the same on both servers.
func TestClusterScaleOut(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node NATS cluster and runs 50,000 records")
	}
	const n = 50000
	began := time.Now()
	ctx := t.Context()
	cluster := startNATSCluster(t, 3)

	// The input: n Shopify-like products, of which the archived ones are
	// filtered out (skipped).
	inputDir := t.TempDir()
	f, err := os.Create(filepath.Join(inputDir, "products.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	if err := file.GenerateProducts(f, n, 42, "ndjson"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	want := map[string]bool{} // keys expected at the target
	archived := 0
	{
		f, err := os.Open(filepath.Join(inputDir, "products.ndjson"))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var p struct {
				ID     int64  `json:"id"`
				Status string `json:"status"`
			}
			if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
				t.Fatal(err)
			}
			if p.Status == "archived" {
				archived++
			} else {
				want[strconv.FormatInt(p.ID, 10)] = true
			}
		}
		f.Close()
		if len(want)+archived != n {
			t.Fatalf("read %d products, want %d", len(want)+archived, n)
		}
	}

	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	a := startFerryNode(t, "a", cluster.url(), c)
	b := startFerryNode(t, "b", cluster.url(), c)
	t.Logf("NATS cluster and two ferry nodes up in %s", time.Since(began).Round(time.Millisecond))

	// Reads see the writes before them (on a cluster, buckets are read from
	// their stream's leader, not from a follower that may lag).
	for i := range 200 {
		key := "acme.read-your-writes-" + strconv.Itoa(i)
		if _, err := a.s.runs.reqs.Create(ctx, key, []byte("{}")); err != nil {
			t.Fatal(err)
		}
		if _, err := a.s.runs.reqs.Get(ctx, key); err != nil {
			t.Fatalf("read %s just after writing it: %v", key, err)
		}
		if err := a.s.runs.reqs.Purge(ctx, key); err != nil {
			t.Fatal(err)
		}
	}

	// Keys, tenants and configuration written through A work on B.
	user := a.tenantWithKey("acme", RoleUser)
	newGate(t, "cluster-tick", records(1, 1))
	a.expect(a.do("PUT", "/v1/config", user, clusterConfig(inputDir), "If-Match", "0"), 200)
	cfgA := a.expect(a.do("GET", "/v1/config", user, nil), 200)
	cfgB := b.expect(b.do("GET", "/v1/config", user, nil), 200)
	if !bytes.Equal(cfgA.body, cfgB.body) || cfgA.header.Get("ETag") != cfgB.header.Get("ETag") {
		t.Fatalf("GET /v1/config differs:\nA %s %s\nB %s %s", cfgA.header.Get("ETag"), cfgA.body, cfgB.header.Get("ETag"), cfgB.body)
	}

	// A schedule fires once across both servers.
	due := time.Date(2026, 3, 1, 12, 5, 0, 0, time.UTC)
	for _, nd := range []*ferryNode{a, b} {
		waitWithin(t, 10*time.Second, "node "+nd.name+" to load the schedule", func() bool {
			next, ok := nd.s.sched.sched.NextDue()
			return ok && next.Equal(due)
		})
	}
	c.Add(5 * time.Minute)
	var fireWG sync.WaitGroup
	for _, nd := range []*ferryNode{a, b} {
		fireWG.Go(func() {
			if err := nd.s.sched.sched.RunDue(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	fireWG.Wait()
	// (Polled on the runtime: the API limits a key's request rate.)
	waitWithin(t, 20*time.Second, "the scheduled run to end", func() bool {
		p, err := b.rt.Runs().List(ctx, "acme", runtime.RunFilter{Integration: "tick"})
		return err == nil && p.Total == 1 && p.Runs[0].Finished()
	})
	if items := b.expect(b.do("GET", "/v1/runs?trigger=schedule", user, nil), 200).json(t)["items"].([]any); len(items) != 1 || items[0].(map[string]any)["status"] != "succeeded" {
		t.Fatalf("scheduled runs: %v", items)
	}
	var fired, dup float64
	for _, nd := range []*ferryNode{a, b} {
		fired += testutil.ToFloat64(nd.s.sched.fires.WithLabelValues("fired"))
		dup += testutil.ToFloat64(nd.s.sched.fires.WithLabelValues("duplicate"))
	}
	if fired != 1 || dup != 1 {
		t.Fatalf("schedule outcomes across the nodes: fired %v, duplicate %v; want 1 and 1", fired, dup)
	}

	// A webhook can arrive at any server; the run shows on every server.
	wh := b.expect(b.do("POST", "/v1/webhooks/acme/tick", "", map[string]any{"id": 7}), 202).json(t)
	whID, _ := wh["runId"].(string)
	if whID == "" {
		t.Fatalf("webhook answer %v", wh)
	}
	waitWithin(t, 20*time.Second, "the webhook's run to end", func() bool {
		run, err := a.rt.Runs().Get(ctx, "acme", whID)
		return err == nil && run.Finished()
	})
	if r := a.expect(a.do("GET", "/v1/runs/"+whID, user, nil), 200).json(t); r["status"] != "succeeded" || r["trigger"] != "webhook" {
		t.Fatalf("webhook run on A: %v", r)
	}

	// The big run, triggered on A.
	trig := a.expect(a.do("POST", "/v1/sync-events", user, map[string]any{"integration": "products"}), 202).json(t)
	runID := trig["correlationId"].(string)
	started := time.Now()
	waitWithin(t, 60*time.Second, "a fifth of the records at the target", func() bool { return a.sink.written.Load() >= n/5 })
	runA := without(a.expect(a.do("GET", "/v1/runs/"+runID, user, nil), 200).json(t), "counts")
	runB := without(b.expect(b.do("GET", "/v1/runs/"+runID, user, nil), 200).json(t), "counts")
	if mustJSON(runA) != mustJSON(runB) || runA["status"] != "running" {
		t.Fatalf("GET /v1/runs/%s differs:\nA %v\nB %v", runID, runA, runB)
	}

	// Lose a NATS node: the leader of the work stream.
	info, err := a.rt.JetStream().Stream(ctx, runtime.WorkStream)
	if err != nil {
		t.Fatal(err)
	}
	si, err := info.Info(ctx)
	if err != nil || si.Cluster == nil || len(si.Cluster.Replicas) != 2 {
		t.Fatalf("work stream is not replicated 3 times: %+v %v", si, err)
	}
	leader := cluster.byName(si.Cluster.Leader)
	if leader < 0 {
		t.Fatalf("no server named %q", si.Cluster.Leader)
	}
	atNATSStop := a.sink.written.Load()
	cluster.stop(leader)
	t.Logf("stopped NATS server %s (the work stream's leader) after %d records at the target", si.Cluster.Leader, atNATSStop)
	// A goes on after the NATS cluster lost a node.
	waitWithin(t, 45*time.Second, "server A to go on after the NATS node stopped", func() bool {
		return a.sink.written.Load() >= atNATSStop+n/10
	})
	if w := b.sink.written.Load(); w != 0 {
		t.Fatalf("server B wrote %d records while A ran the run: a run runs on one server at a time", w)
	}
	// The NATS server comes back (same store, same routes) under the run;
	// it catches up while the run goes on (checked once the run ended).
	cluster.restart(leader)
	t.Logf("restarted NATS server %s after %d records at the target", si.Cluster.Leader, a.sink.written.Load())

	// Crash A mid-run.
	atCrash := a.sink.written.Load()
	if atCrash >= int64(len(want)) {
		t.Fatalf("server A finished before it could be crashed (%d records)", atCrash)
	}
	crashed := time.Now()
	a.crash()
	t.Logf("crashed server A after %d records at the target, %s into the run", atCrash, crashed.Sub(started).Round(time.Millisecond))

	// B takes the run over and ends it.
	waitWithin(t, 60*time.Second, "server B to end the run", func() bool {
		run, err := b.rt.Runs().Get(ctx, "acme", runID)
		return err == nil && run.Finished()
	})
	end := b.expect(b.do("GET", "/v1/sync-events/"+runID, user, nil), 200).json(t)
	t.Logf("server B ended the run %s after the crash (%s in all); B wrote %d records",
		time.Since(crashed).Round(time.Millisecond), time.Since(started).Round(time.Millisecond), b.sink.written.Load())
	total, success, failed, skipped := counts(t, end)
	if end["status"] != "succeeded" || total != n || success != len(want) || skipped != archived || failed != 0 {
		t.Fatalf("run ended %v with counts %v; want succeeded, total %d, success %d, skipped %d", end["status"], end["counts"], n, len(want), archived)
	}
	run, err := b.rt.Runs().Get(ctx, "acme", runID)
	if err != nil {
		t.Fatal(err)
	}
	if run.Resumes < 1 {
		t.Fatalf("the run was not resumed: %+v", run)
	}

	// Every record reached the target; duplicates only of what A had in
	// flight when it crashed and when its NATS node stopped: at most one
	// message per worker each time.
	keysA, keysB := a.sink.Keys(), b.sink.Keys()
	missing, dups := 0, 0
	for k := range want {
		switch c := keysA[k] + keysB[k]; {
		case c == 0:
			missing++
		case c > 1:
			dups++
		}
	}
	for _, keys := range []map[string]int{keysA, keysB} {
		for k := range keys {
			if !want[k] {
				t.Fatalf("key %s reached the target but is archived or unknown", k)
			}
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d records never reached the target", missing, len(want))
	}
	if bound := 2 * clusterWorkers * 1024; dups > bound {
		t.Fatalf("%d records were written twice; at most %d (one message per worker, twice) were in flight", dups, bound)
	}
	if b.sink.first.Load() < a.sink.last.Load() {
		t.Fatalf("server B wrote before server A's last write: the run executed on both at once")
	}
	t.Logf("A wrote %d keys, B %d; %d written twice (in flight at the failures)", len(keysA), len(keysB), dups)

	// B answers as A did.
	if r := b.expect(b.do("GET", "/v1/config", user, nil), 200); !bytes.Equal(r.body, cfgA.body) || r.header.Get("ETag") != cfgA.header.Get("ETag") {
		t.Fatalf("GET /v1/config on B after the crash differs from A's answer:\n%s", r.body)
	}
	// What a run's progress changes aside, B shows the run as A showed it.
	progress := []string{"status", "outcome", "ended", "resumes"}
	runB = without(b.expect(b.do("GET", "/v1/runs/"+runID, user, nil), 200).json(t), append(progress, "counts")...)
	if runA = without(runA, progress...); mustJSON(runB) != mustJSON(runA) {
		t.Fatalf("GET /v1/runs/%s on B after the run differs from A's answer during it:\nA %v\nB %v", runID, runA, runB)
	}
	if dlq := b.expect(b.do("GET", "/v1/dlq", user, nil), 200).json(t); dlq["total"] != float64(0) {
		t.Fatalf("DLQ: %v", dlq)
	}
	waitWithin(t, 10*time.Second, "the run's request to be removed", func() bool {
		keys, _ := keysOf(ctx, b.s.runs.reqs, "acme.*")
		return len(keys) == 0
	})

	// The restarted NATS server rejoined: its replicas of every stream (the
	// work stream, the buckets) caught up with their leaders...
	streams := cluster.waitCaughtUp(ctx, leader, b.rt.JetStream(), 30*time.Second)
	t.Logf("NATS server %s holds current replicas of all %d streams", si.Cluster.Leader, streams)
	// ...and a second, small run succeeds with all three servers up, its
	// writes replicated to the restarted server too.
	wh2 := b.expect(b.do("POST", "/v1/webhooks/acme/tick", "", map[string]any{"id": 8}), 202).json(t)
	whID2, _ := wh2["runId"].(string)
	waitWithin(t, 20*time.Second, "the second run to end", func() bool {
		run, err := b.rt.Runs().Get(ctx, "acme", whID2)
		return err == nil && run.Finished()
	})
	if run, err := b.rt.Runs().Get(ctx, "acme", whID2); err != nil || run.Status != "succeeded" || run.Counts.Success != 1 {
		t.Fatalf("the run after the NATS server came back: %+v %v", run, err)
	}
	cluster.waitCaughtUp(ctx, leader, b.rt.JetStream(), 30*time.Second)
	t.Logf("done in %s", time.Since(began).Round(time.Millisecond))
}

// A run stops on a server whose lease on it passed to another server (so it
// never executes on two at once), and is taken over once that lease expired.
func TestRunStopsWhenItsLeaseIsTakenOver(t *testing.T) {
	rt, err := runtime.Open(t.Context(), runtime.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	const lease = 900 * time.Millisecond
	s, err := New(rt, Options{AdminKey: testAdminKey, RunLease: lease})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Close(ctx)
	}()
	ctx := t.Context()
	if err := s.CreateTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	p := &Principal{Tenant: "acme", KeyID: "test", Role: RoleUser}
	if _, err := s.apply(ctx, p, applyArgs{planned: 0, files: gateConfig("lease", "r1")["files"].(map[string]string)}); err != nil {
		t.Fatal(err)
	}
	g := newGate(t, "lease", nil)
	g.sinkHold = make(chan struct{})
	in := make([]json.RawMessage, 10)
	for i := range in {
		in[i] = json.RawMessage(fmt.Sprintf(`{"id": %d, "name": "n%d"}`, i, i))
	}
	id, err := s.StartRun(ctx, TriggerRequest{Tenant: "acme", Integration: "items", Input: in})
	if err != nil {
		t.Fatal(err)
	}
	<-g.writing
	done := s.runs.doneChan("acme", id)
	key := requestKey("acme", id)
	if err := s.runs.update(ctx, key, func(r *runRequest) bool {
		r.Owner, r.LeaseUntil = "other", time.Now().Add(time.Hour)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * lease):
		t.Fatal("the run kept executing here after another server took its lease")
	}
	var rr runRequest
	if _, _, err := getJSON(ctx, s.runs.reqs, key, &rr); err != nil || rr.Owner != "other" {
		t.Fatalf("the request after the run stopped: %+v %v (the other server's lease must stay)", rr, err)
	}
	if run, err := rt.Runs().Get(ctx, "acme", id); err != nil || run.Finished() {
		t.Fatalf("the run should be unfinished: %+v %v", run, err)
	}

	// The other server dies: once its lease expired, this one takes over.
	close(g.sinkHold)
	if err := s.runs.update(ctx, key, func(r *runRequest) bool {
		r.LeaseUntil = time.Now().Add(-time.Second)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	waitWithin(t, 10*lease, "the run to be taken over and end", func() bool {
		run, err := rt.Runs().Get(ctx, "acme", id)
		return err == nil && run.Finished()
	})
	if run, _ := rt.Runs().Get(ctx, "acme", id); run.Status != "succeeded" || run.Counts.Success != 10 || run.Resumes != 1 {
		t.Fatalf("run %+v", run)
	}
}
