package main

// The sustained mixed load (-load DURATION): one node as `ferry serve` runs
// it (API server, runtime, embedded NATS in a temporary directory, a TCP
// listener), and concurrent clients for the duration:
//
//   - Shopify webhook senders: the products/update fixture with a unique
//     product id and X-Shopify-Event-Id per delivery, signed with the
//     webhook secret (HMAC-SHA256 of the body, base64), expecting 202;
//   - sync-event clients: POST /v1/sync-events with two records and
//     "wait": each request returns when its run ended (200), so its
//     latency is a trigger's whole run;
//   - readers: GET /v1/runs, /v1/runs/{id}, /v1/config and /v1/dlq in turn.
//
// Both integrations write to a sink that counts entity keys. Afterwards
// every run an accepted request named is waited for, and every accepted
// record's key must have reached the sink: nothing lost. Heap in use and
// RSS are read after a GC at the start, in the middle and at the end (runs
// settled), to show growth.
//
// Rate limits are off: the node's capacity is measured, not its limits.
//
// -load-retention keeps run history and webhook delivery ids that long
// (ferry serve --run-retention, the webhook's dedupe_window) instead of the
// defaults of 7 days and 24 hours: a load longer than it shows the memory of
// a node whose retained state stopped growing.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	goruntime "runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ferryhq/ferry/apiserver"
	"github.com/ferryhq/ferry/connectors"
	ferryruntime "github.com/ferryhq/ferry/runtime"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/zclconf/go-cty/cty"
)

//go:embed testdata/webhook-products-update.json
var productsFixture []byte

const (
	loadTenant   = "load"
	loadAdminKey = "ferrybench-load-admin-key-0123456789"
	loadSecret   = "ferrybench-shopify-webhook-secret"
	// The fixture's product id, replaced by a unique one per delivery.
	fixtureID = `"id": 8123456789012,`
	// Ids of webhook products and sync-event items: disjoint ranges.
	productIDBase = 9_000_000_000_000
	itemIDBase    = 1
)

const loadConfig = `ferry {
  tenant = "load"
}

connection "count" {
  type = "benchcount"
}

mapping "product" {
  key = "string(id)"
  fields = {
    id          = "id"
    title       = "trim(title)"
    sku         = "variants[0].sku"
    price_cents = "int(float(variants[0].price) * 100)"
    stock       = "sum(map(variants, .inventory_quantity))"
    tags        = "split(tags, ', ')"
  }
}

mapping "item" {
  key = "string(id)"
  fields = {
    id   = "id"
    name = "name"
  }
}

integration "products" {
  source {
    connection = connection.count
  }
  transform {
    mapping = mapping.product
  }
  target {
    connection = connection.count
  }
  webhook {
    verify = "shopify"
    secret = secret("shopify_webhook_secret")
  }
}

integration "items" {
  allow_parallel_runs = true
  source {
    connection = connection.count
  }
  transform {
    mapping = mapping.item
  }
  target {
    connection = connection.count
  }
}
`

// configFor is loadConfig with the webhook's delivery ids kept for
// retention (0: the default).
func configFor(retention time.Duration) string {
	if retention <= 0 {
		return loadConfig
	}
	return strings.Replace(loadConfig, `verify = "shopify"`, fmt.Sprintf("verify = \"shopify\"\n    dedupe_window = %q", retention.String()), 1)
}

// loadOptions are the -load-* flags.
type loadOptions struct {
	duration, retention       time.Duration
	webhooks, triggers, reads int    // concurrent clients of each kind
	memprofile                string // heap profile written after the runs settled
}

// loadParent runs the load in a child process (its peak RSS is its own)
// and relays its report.
func loadParent(o loadOptions) error {
	cmd := exec.Command(os.Args[0], "-mode", "load", "-load", o.duration.String(),
		"-load-webhooks", strconv.Itoa(o.webhooks), "-load-triggers", strconv.Itoa(o.triggers), "-load-readers", strconv.Itoa(o.reads),
		"-load-memprofile", o.memprofile, "-load-retention", o.retention.String())
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("load: %w", err)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		fmt.Printf("peak RSS of the node and its clients: %.1f MB; CPU %.1fs user, %.1fs system\n",
			float64(ru.Maxrss)/1024, time.Duration(ru.Utime.Nano()).Seconds(), time.Duration(ru.Stime.Nano()).Seconds())
	}
	return nil
}

// tally counts per record number (the seq a key was made from): one byte
// each, so the load's own bookkeeping does not show as the node's memory
// growth (a map of key strings grew by ~100 bytes per record).
type tally struct {
	mu sync.Mutex
	n  []uint8
}

func (t *tally) add(i int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if i < 0 || i > 1<<31 {
		return
	}
	if int(i) >= len(t.n) {
		t.n = append(t.n, make([]uint8, int(i)+1-len(t.n)+len(t.n)/2)...)
	}
	if t.n[i] < 255 {
		t.n[i]++
	}
}

func (t *tally) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n = nil
}

// seqOf is the record number of an entity key: product ids and item ids are
// productIDBase+seq and itemIDBase+seq; -1 for anything else.
func seqOf(key string) int64 {
	id, err := strconv.ParseInt(key, 10, 64)
	switch {
	case err != nil:
		return -1
	case id >= productIDBase:
		return id - productIDBase
	default:
		return id - itemIDBase
	}
}

// written is the "benchcount" sink's tally: how often each record was written.
var written tally

func init() {
	connectors.Register(&connectors.Connector{
		Type:        "benchcount",
		Description: "ferrybench: a source of nothing and a sink that counts entity keys",
		Connection:  hcldec.ObjectSpec{},
		Source:      hcldec.ObjectSpec{},
		Target:      hcldec.ObjectSpec{},
		Open: func(connectors.Env, cty.Value) (connectors.Connection, error) {
			return countConn{}, nil
		},
	})
}

type countConn struct{}

func (countConn) Source(cty.Value) (connectors.Source, error) { return countConn{}, nil }
func (countConn) Sink(cty.Value) (connectors.Sink, error)     { return countConn{}, nil }

func (countConn) Read(context.Context, connectors.ReadRequest, func(connectors.Record) error) error {
	return nil
}

func (countConn) Write(_ context.Context, ws []connectors.Write) []error {
	for _, w := range ws {
		written.add(seqOf(w.Key))
	}
	return nil
}

func (countConn) Close(context.Context) error { return nil }

// kind is one kind of request: its latencies and errors.
type kind struct {
	name   string
	mu     sync.Mutex
	lat    []time.Duration
	errors int
	sample string // the first error
}

func (k *kind) add(d time.Duration, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.lat = append(k.lat, d)
	if err != nil {
		k.errors++
		if k.sample == "" {
			k.sample = err.Error()
		}
	}
}

// memSnapshot is heap in use and RSS after a GC.
type memSnapshot struct {
	label         string
	heapMB, rssMB float64
}

func snapshot(label string) memSnapshot {
	// Two GCs: the first moves sync.Pool contents (nats-server pools its
	// block buffers) to the victim cache, the second frees them; then freed
	// pages go back to the OS, so RSS shows what is held.
	goruntime.GC()
	debug.FreeOSMemory()
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	return memSnapshot{label: label, heapMB: float64(ms.HeapInuse) / 1e6, rssMB: rssMB()}
}

// rssMB is the resident set size from /proc (Linux); -1 elsewhere.
func rssMB() float64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return -1
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return -1
	}
	return float64(pages*int64(os.Getpagesize())) / 1e6
}

// retained reports what JetStream holds at the end: the history a node
// keeps (runs, settlements, idempotency keys, events, ...). The embedded
// server keeps per-subject state in memory, so this is what memory grows
// with until the retention limits are reached.
func retained(ctx context.Context, w io.Writer, js jetstream.JetStream) error {
	fmt.Fprintf(w, "\n  %-30s %9s %9s %9s %9s\n", "retained in JetStream", "messages", "subjects", "MB", "consumers")
	l := js.ListStreams(ctx)
	var infos []*jetstream.StreamInfo
	for si := range l.Info() {
		infos = append(infos, si)
	}
	if err := l.Err(); err != nil {
		return fmt.Errorf("listing streams: %w", err)
	}
	slices.SortFunc(infos, func(a, b *jetstream.StreamInfo) int { return strings.Compare(a.Config.Name, b.Config.Name) })
	for _, si := range infos {
		if si.State.Msgs == 0 && si.State.Consumers == 0 {
			continue
		}
		fmt.Fprintf(w, "  %-30s %9d %9d %9.1f %9d\n", si.Config.Name, si.State.Msgs, si.State.NumSubjects, float64(si.State.Bytes)/1e6, si.State.Consumers)
	}
	return nil
}

// loadNode is the node under load and a client of it.
type loadNode struct {
	url, key string
	client   *http.Client
	api      *apiserver.Server
	js       jetstream.JetStream
}

// do sends a request and returns the status and body.
func (n *loadNode) do(method, path string, body []byte, headers ...string) (int, []byte, http.Header, error) {
	req, err := http.NewRequest(method, n.url+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if n.key != "" {
		req.Header.Set("Authorization", "ApiKey "+n.key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := n.client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, b, res.Header, err
}

func (n *loadNode) expect(want int, method, path string, body []byte, headers ...string) ([]byte, error) {
	status, b, _, err := n.do(method, path, body, headers...)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if status != want {
		return b, fmt.Errorf("%s %s: %d, want %d: %s", method, path, status, want, bytes.TrimSpace(b))
	}
	return b, nil
}

// startNode starts the node in dir and sets up the load tenant.
func startNode(ctx context.Context, dir string, clients int, retention time.Duration) (*loadNode, func(), error) {
	rt, err := ferryruntime.Open(ctx, ferryruntime.Options{DataDir: dir, RunRetention: retention})
	if err != nil {
		return nil, nil, err
	}
	api, err := apiserver.New(rt, apiserver.Options{AdminKey: loadAdminKey, MasterKey: bytes.Repeat([]byte{7}, 32),
		RateLimit: -1, WebhookRateLimit: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		rt.Close()
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		rt.Close()
		return nil, nil, err
	}
	srv := &http.Server{Handler: api.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	stop := func() {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(c)
		_ = api.Close(c)
		rt.Close()
	}
	n := &loadNode{url: "http://" + ln.Addr().String(), api: api, js: rt.JetStream(),
		client: &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConns: 2 * clients, MaxIdleConnsPerHost: 2 * clients}}}
	n.key = loadAdminKey
	if _, err := n.expect(201, "POST", "/v1/tenants", []byte(`{"name":"`+loadTenant+`"}`)); err != nil {
		stop()
		return nil, nil, err
	}
	if n.key, err = api.CreateKey(ctx, loadTenant, "ferrybench", "user"); err != nil {
		stop()
		return nil, nil, err
	}
	steps := []struct {
		method, path string
		body         any
		want         int
		headers      []string
	}{
		{"PUT", "/v1/secrets/shopify_webhook_secret", map[string]string{"value": loadSecret}, 201, nil},
		{"PUT", "/v1/config", map[string]any{"files": map[string]string{"main.hcl": configFor(retention)}}, 200, []string{"If-Match", "0"}},
	}
	for _, s := range steps {
		b, _ := json.Marshal(s.body)
		if _, err := n.expect(s.want, s.method, s.path, b, s.headers...); err != nil {
			stop()
			return nil, nil, err
		}
	}
	return n, stop, nil
}

// runLoad is the child's work: the load, then the report on stdout.
func runLoad(o loadOptions) error { return load(o, os.Stdout) }

// load runs the load and writes its report to w; an error when an accepted
// record did not reach the sink.
func load(o loadOptions, w io.Writer) error {
	if !bytes.Contains(productsFixture, []byte(fixtureID)) {
		return fmt.Errorf("the products fixture lacks %s", fixtureID)
	}
	dir, err := os.MkdirTemp("", "ferrybench-load")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	written.reset()
	ctx := context.Background()
	n, stop, err := startNode(ctx, dir, o.webhooks+o.triggers+o.reads, o.retention)
	if err != nil {
		return fmt.Errorf("starting the node: %w", err)
	}
	defer stop()

	var (
		webhook = &kind{name: "webhook (202)"}
		trigger = &kind{name: "sync event, wait (200)"}
		reads   = []*kind{{name: "GET /v1/runs"}, {name: "GET /v1/runs/{id}"}, {name: "GET /v1/config"}, {name: "GET /v1/dlq"}}

		seq      atomic.Int64 // delivery and item numbers
		acceptMu sync.Mutex
		accepted tally                 // records accepted (by seq)
		runs     = map[string]string{} // run id → kind
		lastRun  atomic.Value          // a recent run id, for GET /v1/runs/{id}
	)
	accept := func(runID, kindName string, keys ...string) {
		acceptMu.Lock()
		defer acceptMu.Unlock()
		for _, k := range keys {
			accepted.add(seqOf(k))
		}
		if runID != "" {
			runs[runID] = kindName
			lastRun.Store(runID)
		}
	}

	mem := []memSnapshot{snapshot("start")}
	deadline := time.Now().Add(o.duration)
	var wg sync.WaitGroup
	for range o.webhooks {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				i := seq.Add(1)
				id := strconv.FormatInt(productIDBase+i, 10)
				body := bytes.Replace(productsFixture, []byte(fixtureID), []byte(`"id": `+id+`,`), 1)
				m := hmac.New(sha256.New, []byte(loadSecret))
				m.Write(body)
				t0 := time.Now()
				status, b, h, err := n.do("POST", "/v1/webhooks/"+loadTenant+"/products", body,
					"X-Shopify-Topic", "products/update", "X-Shopify-Hmac-Sha256", base64.StdEncoding.EncodeToString(m.Sum(nil)),
					"X-Shopify-Shop-Domain", "acme-apparel.myshopify.com", "X-Shopify-Event-Id", "load-"+id)
				if err == nil && status != http.StatusAccepted {
					err = fmt.Errorf("status %d: %s", status, bytes.TrimSpace(b))
				}
				webhook.add(time.Since(t0), err)
				if err == nil {
					accept(strings.TrimPrefix(h.Get("Location"), "/v1/runs/"), "webhook", id)
				}
			}
		})
	}
	for range o.triggers {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				a, b := seq.Add(1)+itemIDBase, seq.Add(1)+itemIDBase
				body := fmt.Sprintf(`{"integration":"items","wait":"60s","input":[{"id":%d,"name":"item %d"},{"id":%d,"name":"item %d"}]}`, a, a, b, b)
				t0 := time.Now()
				status, resp, _, err := n.do("POST", "/v1/sync-events", []byte(body))
				var run struct {
					ID     string `json:"id"`
					Status string `json:"status"`
				}
				if err == nil {
					_ = json.Unmarshal(resp, &run)
					if status != http.StatusOK && status != http.StatusAccepted || run.ID == "" {
						err = fmt.Errorf("status %d: %s", status, bytes.TrimSpace(resp))
					} else if status == http.StatusOK && run.Status != "succeeded" {
						err = fmt.Errorf("run %s: %s", run.ID, run.Status)
					}
				}
				trigger.add(time.Since(t0), err)
				if run.ID != "" && (status == http.StatusOK || status == http.StatusAccepted) {
					accept(run.ID, "sync event", strconv.FormatInt(a, 10), strconv.FormatInt(b, 10))
				}
			}
		})
	}
	for r := range o.reads {
		wg.Go(func() {
			for i := r; time.Now().Before(deadline); i++ {
				k := reads[i%len(reads)]
				path := [...]string{"/v1/runs?pageSize=20", "", "/v1/config", "/v1/dlq?pageSize=20"}[i%len(reads)]
				if path == "" {
					id, _ := lastRun.Load().(string)
					if id == "" {
						continue
					}
					path = "/v1/runs/" + id
				}
				t0 := time.Now()
				_, err := n.expect(200, "GET", path, nil)
				k.add(time.Since(t0), err)
			}
		})
	}
	// Samples through the load: after a warm-up (caches filling, the first
	// runs' state) the node's memory should stay flat; what grows with
	// the history kept is reported below as retained state.
	const samples = 6
	for i := 1; i < samples; i++ {
		time.Sleep(time.Until(deadline.Add(-o.duration * time.Duration(samples-i) / samples)))
		mem = append(mem, snapshot(fmt.Sprintf("during, at %s", (o.duration*time.Duration(i)/samples).Round(time.Second))))
	}
	wg.Wait()
	loadEnd := time.Now()

	// Every run an accepted request named must end.
	acceptMu.Lock()
	ids := make([]string, 0, len(runs))
	for id := range runs {
		ids = append(ids, id)
	}
	acceptMu.Unlock()
	statuses := map[string]int{}
	for _, id := range ids {
		for {
			status, b, _, err := n.do("GET", "/v1/runs/"+id, nil)
			if err == nil && status == http.StatusNotFound && o.retention > 0 {
				// A run in flight is kept fresh: one that is gone ended
				// more than the retention ago.
				statuses["ended, expired"]++
				break
			}
			if err == nil && status != http.StatusOK {
				err = fmt.Errorf("GET /v1/runs/%s: %d: %s", id, status, bytes.TrimSpace(b))
			}
			if err != nil {
				return fmt.Errorf("waiting for the runs to settle: %w", err)
			}
			var run struct {
				Status string `json:"status"`
			}
			_ = json.Unmarshal(b, &run)
			if run.Status == "succeeded" || run.Status == "partial" || run.Status == "failed" || run.Status == "cancelled" {
				statuses[run.Status]++
				break
			}
			if time.Since(loadEnd) > 5*time.Minute {
				return fmt.Errorf("run %s has not ended 5 minutes after the load: %s", id, run.Status)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	settled := time.Since(loadEnd)
	n.client.CloseIdleConnections()
	mem = append(mem, snapshot("end (runs settled)"))
	if o.memprofile != "" {
		f, err := os.Create(o.memprofile)
		if err != nil {
			return err
		}
		err = pprof.WriteHeapProfile(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("writing the heap profile: %w", err)
		}
	}

	written.mu.Lock()
	missing, twice, acceptedN := 0, 0, 0
	for i, a := range accepted.n {
		if a == 0 {
			continue
		}
		acceptedN++
		w := uint8(0)
		if i < len(written.n) {
			w = written.n[i]
		}
		switch {
		case w == 0:
			missing++
		case w > 1:
			twice++
		}
	}
	written.mu.Unlock()

	byKind := map[string]int{}
	for _, k := range runs {
		byKind[k]++
	}
	fmt.Fprintf(w, "ferrybench load: %s on one node (embedded NATS, GOMAXPROCS %d): %d webhook senders, %d sync-event clients, %d readers\n\n",
		o.duration, goruntime.GOMAXPROCS(0), o.webhooks, o.triggers, o.reads)
	if o.retention > 0 {
		fmt.Fprintf(w, "run history and webhook delivery ids kept %s\n\n", o.retention)
	}
	fmt.Fprintf(w, "  %-24s %9s %9s %9s %9s %7s\n", "kind", "requests", "req/s", "p50 ms", "p99 ms", "errors")
	for _, k := range append([]*kind{webhook, trigger}, reads...) {
		slices.Sort(k.lat)
		pct := func(p float64) float64 {
			if len(k.lat) == 0 {
				return 0
			}
			return float64(k.lat[min(len(k.lat)-1, int(float64(len(k.lat))*p))].Microseconds()) / 1000
		}
		fmt.Fprintf(w, "  %-24s %9d %9.0f %9.2f %9.2f %7d\n", k.name, len(k.lat), float64(len(k.lat))/o.duration.Seconds(), pct(0.50), pct(0.99), k.errors)
		if k.sample != "" {
			fmt.Fprintf(w, "    first error: %.200s\n", k.sample)
		}
	}
	fmt.Fprintf(w, "\n  %-24s %9s %9s\n", "memory (after GC)", "heap MB", "RSS MB")
	for _, m := range mem {
		fmt.Fprintf(w, "  %-24s %9.1f %9.1f\n", m.label, m.heapMB, m.rssMB)
	}
	if err := retained(ctx, w, n.js); err != nil {
		return err
	}
	deliveries := len(webhook.lat) - webhook.errors
	perRun := 0.0
	if byKind["webhook"] > 0 {
		perRun = float64(deliveries) / float64(byKind["webhook"])
	}
	fmt.Fprintf(w, "\n  runs: %d webhook (%.1f deliveries per run), %d sync event; all ended %.1fs after the load (%v)\n",
		byKind["webhook"], perRun, byKind["sync event"], settled.Seconds(), statuses)
	fmt.Fprintf(w, "  records: %d accepted, %d missing from the sink, %d written more than once (at-least-once)\n", acceptedN, missing, twice)
	if missing > 0 {
		return fmt.Errorf("%d accepted records never reached the sink", missing)
	}
	return nil
}
