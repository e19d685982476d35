package apiserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/connectors"
	"github.com/ferryhq/ferry/connectors/secretscrub"
	"github.com/ferryhq/ferry/engine"
	"github.com/ferryhq/ferry/runtime"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/zclconf/go-cty/cty"
)

// Security proofs of the server: a planted secret never shows in clear
// anywhere (responses, plans, runs, DLQ, events, metrics, audit, logs, NATS),
// every subject and key carries its tenant, every change is audited, body
// limits hold on every route, and key changes apply on the very next request
// of every server sharing the NATS.

// secEcho is a connector that does what careless connectors do: it puts its
// configuration, secrets resolved, into its errors. Records with id 1 fail
// permanently, id 2 transiently (retried, then dead-lettered), others pass.
// fail_open = true fails at open; its Test always fails.
type secEchoConn struct{ cfg cty.Value }

func (c secEchoConn) echo() string {
	tok := c.cfg.GetAttr("token").AsString()
	return fmt.Sprintf("POST https://erp.invalid/items?token=%s: 401 Unauthorized; token %q; config %#v", url.QueryEscape(tok), tok, c.cfg)
}

func (c secEchoConn) Source(cty.Value) (connectors.Source, error) { return secEchoSource{c}, nil }
func (c secEchoConn) Sink(cty.Value) (connectors.Sink, error)     { return secEchoSink{c}, nil }
func (c secEchoConn) Test(context.Context) error {
	return fmt.Errorf("sececho check failed: %s", c.echo())
}

type secEchoSource struct{ c secEchoConn }

func (s secEchoSource) Read(ctx context.Context, _ connectors.ReadRequest, emit func(connectors.Record) error) error {
	for i := 1; i <= 3; i++ {
		if err := emit(connectors.Record{Data: map[string]any{"id": i}, Position: fmt.Sprint("item ", i)}); err != nil {
			return err
		}
	}
	return nil
}

type secEchoSink struct{ c secEchoConn }

func (s secEchoSink) Write(_ context.Context, ws []connectors.Write) []error {
	errs := make([]error, len(ws))
	for i, w := range ws {
		switch w.Key {
		case "1":
			errs[i] = connectors.Permanent(fmt.Errorf("sececho refused %s: %s", w.Key, s.c.echo()))
		case "2":
			errs[i] = connectors.Transient(fmt.Errorf("sececho busy %s: %s", w.Key, s.c.echo()), 0)
		}
	}
	return errs
}

func (s secEchoSink) Close(context.Context) error { return nil }

func init() {
	connectors.Register(&connectors.Connector{
		Type:        "sececho",
		Description: "apiserver security tests: echoes its configuration, secrets included, in its errors",
		Connection: hcldec.ObjectSpec{
			"token":     &hcldec.AttrSpec{Name: "token", Type: cty.String, Required: true},
			"fail_open": &hcldec.AttrSpec{Name: "fail_open", Type: cty.Bool},
		},
		Source: hcldec.ObjectSpec{},
		Target: hcldec.ObjectSpec{},
		Open: func(_ connectors.Env, cfg cty.Value) (connectors.Connection, error) {
			c := secEchoConn{cfg}
			if v := cfg.GetAttr("fail_open"); !v.IsNull() && v.True() {
				return nil, fmt.Errorf("sececho cannot connect: %s", c.echo())
			}
			return c, nil
		},
	})
}

// secLog collects a server's and its runtime's logs.
type secLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *secLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *secLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newSecEnv is newEnv with every log captured (debug level) and fast event
// retries; the server stops before the runtime closes.
func newSecEnv(t *testing.T) (*env, *secLog) {
	t.Helper()
	logs := &secLog{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rt, err := runtime.Open(context.Background(), runtime.Options{DataDir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	c := &clock{t: time.Now().UTC()}
	s, err := New(rt, Options{AdminKey: testAdminKey, MasterKey: bytes.Repeat([]byte{7}, 32), MaxBodyBytes: 64 << 10,
		Now: c.Now, Logger: log, Events: fastEvents, FilesDir: t.TempDir(), AllowNetworks: loopbackNetworks})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Close(ctx)
	})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &env{t: t, s: s, rt: rt, srv: srv, clock: c}, logs
}

// secConfig: integration push (sececho → sececho, a token webhook, a
// schedule) and broken (its target cannot open), both with the secret
// erp_token.
func secConfig(tenant string) map[string]any {
	return map[string]any{"files": map[string]string{"main.hcl": `ferry {
  tenant = "` + tenant + `"
}

connection "erp" {
  type  = "sececho"
  token = secret("erp_token")
}

connection "erp_broken" {
  type      = "sececho"
  token     = secret("erp_token")
  fail_open = true
}

mapping "m" {
  key = "string(id)"
  fields = {
    id = "id"
  }
}

integration "push" {
  source {
    connection = connection.erp
  }
  transform {
    mapping = mapping.m
  }
  target {
    connection = connection.erp
  }
  retry {
    max_attempts = 2
    initial      = "10ms"
    max          = "20ms"
  }
  webhook {
    verify = "token"
    token  = secret("erp_token")
  }
}

integration "broken" {
  source {
    connection = connection.erp
  }
  transform {
    mapping = mapping.m
  }
  target {
    connection = connection.erp_broken
  }
}

schedule "nightly" {
  integration = integration.push
  cron        = "0 3 * * *"
}
`}}
}

// secFixture is what secTenant made: ids for the routes' path parameters.
type secFixture struct {
	key, keyID, subID, runID, brokenRunID, webhookRunID, entryID string
	hook                                                         *receiver
}

// secTenant creates tenant with a user key, the secret erp_token = secret,
// a subscription to every event, secConfig applied, then runs push (sync
// event), broken, and push again by webhook, and replays a DLQ entry.
func secTenant(t *testing.T, e *env, tenant, secret string) secFixture {
	t.Helper()
	var f secFixture
	f.key = e.tenantWithKey(tenant, RoleUser)
	list := e.expect(e.do("GET", "/v1/api-keys", f.key, nil), 200).json(t)
	f.keyID = list["items"].([]any)[0].(map[string]any)["id"].(string)
	e.expect(e.do("PUT", "/v1/secrets/erp_token", f.key, map[string]any{"value": secret}), 201)
	f.hook = newReceiver(t, nil)
	f.subID = e.expect(e.do("POST", "/v1/subscriptions", f.key, map[string]any{"url": f.hook.URL, "types": EventTypes}), 201).json(t)["id"].(string)
	e.expect(e.do("PUT", "/v1/config", f.key, secConfig(tenant), "If-Match", "0"), 200)

	run := e.expect(e.do("POST", "/v1/sync-events", f.key, map[string]any{"integration": "push", "wait": "30s"}), 200).json(t)
	f.runID = run["id"].(string)
	if run["status"] != "partial" {
		t.Fatalf("run of push: %v", run)
	}
	broken := e.expect(e.do("POST", "/v1/sync-events", f.key, map[string]any{"integration": "broken", "wait": "30s"}), 200).json(t)
	f.brokenRunID = broken["id"].(string)
	if broken["status"] != "failed" {
		t.Fatalf("run of broken: %v", broken)
	}
	// A webhook delivery with the wrong token, then the right one.
	e.expect(e.do("POST", "/v1/webhooks/"+tenant+"/push", "", `[{"id": 1}]`, "Authorization", "Bearer wrong-"+secret), 401)
	wh := e.expect(e.do("POST", "/v1/webhooks/"+tenant+"/push", "", `[{"id": 1}, {"id": 5}]`, "Authorization", "Bearer "+secret), 202).json(t)
	f.webhookRunID = wh["runId"].(string)
	e.expect(e.do("GET", "/v1/sync-events/"+f.webhookRunID+"?wait=30s", f.key, nil), 200)

	dlq := e.expect(e.do("GET", "/v1/dlq?run="+f.runID, f.key, nil), 200).json(t)
	items := dlq["items"].([]any)
	if len(items) != 2 {
		t.Fatalf("DLQ of run %s: %v", f.runID, dlq)
	}
	f.entryID = items[0].(map[string]any)["id"].(string)
	e.expect(e.do("POST", "/v1/dlq/"+items[1].(map[string]any)["id"].(string)+"/replay", f.key, map[string]any{}), 200)
	return f
}

// TestPlantedSecretNeverInClear plants a secret used by a connector that
// echoes it into every error, runs integrations that fail with those errors
// (run errors, DLQ entries with their attempts, events, logs), and searches
// for the secret everywhere the server shows or keeps anything.
func TestPlantedSecretNeverInClear(t *testing.T) {
	e, logs := newSecEnv(t)
	core := randomHex(t)
	// Characters that URLs, Go and JSON quote differently: each escaped form
	// still holds core, which is what the search looks for.
	secret := `pl4nted/S3cr3t+"q"&` + core
	f := secTenant(t, e, "acme", secret)

	var seen []string // where the search looked, for the failure message
	leak := func(where string, b []byte) {
		t.Helper()
		seen = append(seen, where)
		if bytes.Contains(b, []byte(core)) {
			i := bytes.Index(b, []byte(core))
			t.Errorf("the secret is in clear in %s: …%s…", where, b[max(0, i-200):min(len(b), i+len(core)+50)])
		}
	}
	scrubbedIn := func(where string, b []byte) {
		t.Helper()
		if !bytes.Contains(b, []byte(secretscrub.Mask)) {
			t.Errorf("%s shows no scrubbed error: the test proves nothing there\n%s", where, b)
		}
	}

	// Responses of the checks and plans.
	ct := e.expect(e.do("POST", "/v1/connections/erp/test", f.key, nil), 200)
	leak("POST /v1/connections/erp/test", ct.body)
	scrubbedIn("POST /v1/connections/erp/test", ct.body)
	ctb := e.expect(e.do("POST", "/v1/connections/erp_broken/test", f.key, nil), 200)
	leak("POST /v1/connections/erp_broken/test", ctb.body)
	scrubbedIn("POST /v1/connections/erp_broken/test", ctb.body)
	changed := secConfig("acme")
	changed["files"].(map[string]string)["main.hcl"] = strings.Replace(changed["files"].(map[string]string)["main.hcl"], `secret("erp_token")`, `secret("erp_token_2")`, 1)
	leak("POST /v1/config/plan", e.expect(e.do("POST", "/v1/config/plan", f.key, changed), 200).body)
	r := e.expect(e.do("POST", "/v1/dlq/"+f.entryID+"/replay", f.key, map[string]any{}), 200)
	leak("POST /v1/dlq/{entry}/replay", r.body)

	// Every GET route of the table, with this tenant's ids.
	fixtures := map[string]string{"id": f.keyID, "n": "1", "other": "1", "tenant": "acme", "run": f.runID,
		"correlationId": f.runID, "entry": f.entryID}
	names := map[string]string{"/v1/connections/": "erp", "/v1/mappings/": "m", "/v1/integrations/": "push", "/v1/schedules/": "nightly"}
	for _, rt := range e.s.Routes() {
		if rt.Method != "GET" {
			continue
		}
		fx := fixtures
		if strings.HasPrefix(rt.Pattern, "/v1/subscriptions/") {
			fx = map[string]string{"id": f.subID}
		}
		for prefix, n := range names {
			if strings.HasPrefix(rt.Pattern, prefix) {
				fx = map[string]string{"name": n}
			}
		}
		for _, p := range pathParamRe.FindAllStringSubmatch(rt.Pattern, -1) {
			if _, ok := fx[p[1]]; !ok {
				t.Fatalf("GET %s: add a fixture for {%s} to this test", rt.Pattern, p[1])
			}
		}
		path := fillParams(rt.Pattern, fx)
		key := f.key
		if slices.Equal(rt.Roles, adminOnly) {
			key = testAdminKey
		}
		if rt.List {
			path += "?pageSize=500"
		}
		runIDs := []string{f.runID, f.brokenRunID, f.webhookRunID}
		for _, p := range append([]string{path}, runVariants(rt.Pattern, path, runIDs)...) {
			g := e.do("GET", p, key, nil)
			if g.status != 200 {
				t.Errorf("GET %s: %d\n%s", p, g.status, g.body)
			}
			leak("GET "+p, g.body)
		}
	}
	// The walk saw the scrubbed errors where they are recorded.
	scrubbedIn("GET /v1/runs/{run}/errors", e.do("GET", "/v1/runs/"+f.runID+"/errors", f.key, nil).body)
	scrubbedIn("GET /v1/dlq/{entry}", e.do("GET", "/v1/dlq/"+f.entryID, f.key, nil).body)
	scrubbedIn("GET /v1/runs/{broken}", e.do("GET", "/v1/runs/"+f.brokenRunID, f.key, nil).body)
	leak("GET /v1/audit?tenant=acme (admin)", e.expect(e.do("GET", "/v1/audit?tenant=acme&pageSize=500", testAdminKey, nil), 200).body)

	// Events delivered to the subscription (and their delivery history, in
	// the GET walk above).
	waitFor(t, "the run.failed event of broken", func() bool {
		for _, rq := range f.hook.requests() {
			if bytes.Contains(rq.body, []byte(f.brokenRunID)) && bytes.Contains(rq.body, []byte(EventRunFailed)) {
				return true
			}
		}
		return false
	})
	var delivered []byte
	for _, rq := range f.hook.requests() {
		delivered = append(delivered, rq.body...)
		for k, v := range rq.header {
			delivered = append(delivered, []byte(k+": "+strings.Join(v, ",")+"\n")...)
		}
	}
	leak("delivered events", delivered)
	scrubbedIn("delivered events", delivered)

	// Logs of the server and the runtime.
	leak("the server's and the runtime's logs", []byte(logs.String()))

	// Every message of every stream and bucket in NATS, raw: secrets may be
	// there only encrypted.
	var secretsSeen bool
	walkNATS(t, e, func(stream, subject string, header, data []byte) {
		leak("NATS "+stream+" "+subject, append(append([]byte(subject), header...), data...))
		if stream == "KV_"+BucketSecrets && strings.HasSuffix(subject, ".acme."+secretKey("", "erp_token")[1:]) {
			secretsSeen = true
		}
	})
	if !secretsSeen {
		t.Error("the walk of NATS did not see the stored secret")
	}
	if v, err := e.s.Secrets("acme")("erp_token"); err != nil || v != secret {
		t.Fatalf("the secret does not resolve: %v", err)
	}
	if t.Failed() {
		t.Logf("searched: %s", strings.Join(seen, "\n  "))
	}
}

// runVariants are the extra queries of a GET route: one per run, for the run
// routes (the walk shows every run, not only the fixture's).
func runVariants(pattern, path string, runIDs []string) []string {
	if !strings.Contains(pattern, "{run}") && !strings.Contains(pattern, "{correlationId}") {
		return nil
	}
	var out []string
	for _, id := range runIDs[1:] {
		out = append(out, strings.Replace(path, runIDs[0], id, 1))
	}
	return out
}

func randomHex(t *testing.T) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// walkNATS calls fn with every message of every stream (KV buckets
// included), raw.
func walkNATS(t *testing.T, e *env, fn func(stream, subject string, header, data []byte)) {
	t.Helper()
	ctx := t.Context()
	js := e.rt.JetStream()
	l := js.ListStreams(ctx)
	var infos []*jetstream.StreamInfo
	for info := range l.Info() {
		infos = append(infos, info)
	}
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	if len(infos) == 0 {
		t.Fatal("no streams")
	}
	for _, info := range infos {
		st, err := js.Stream(ctx, info.Config.Name)
		if err != nil {
			t.Fatal(err)
		}
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				t.Fatalf("stream %s seq %d: %v", info.Config.Name, seq, err)
			}
			var h bytes.Buffer
			for k, vs := range m.Header {
				fmt.Fprintf(&h, "%s: %s\n", k, strings.Join(vs, ","))
			}
			fn(info.Config.Name, m.Subject, h.Bytes(), m.Data)
		}
	}
}

// TestSubjectsAndKeysCarryTheirTenant: while two tenants run the same
// integrations (sync events, webhooks, DLQ replays, events), every message
// published to a ferry subject or a KV key (tapped live, so also those a
// work queue removes once done), and every one still stored, names its
// tenant in the layout's place; a message whose payload names a tenant
// names the same one.
func TestSubjectsAndKeysCarryTheirTenant(t *testing.T) {
	e, _ := newSecEnv(t)
	type published struct {
		subject string
		data    []byte
	}
	var (
		tapMu sync.Mutex
		tap   []published
	)
	sub, err := e.rt.JetStream().Conn().Subscribe(">", func(m *nats.Msg) {
		if strings.HasPrefix(m.Subject, "ferry.") || strings.HasPrefix(m.Subject, "$KV.") {
			tapMu.Lock()
			tap = append(tap, published{m.Subject, m.Data})
			tapMu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	acme := secTenant(t, e, "acme", "acme-secret-"+randomHex(t))
	beta := secTenant(t, e, "beta", "beta-secret-"+randomHex(t))
	e.expect(e.do("POST", "/v1/sync-events", beta.key, map[string]any{"integration": "push"}, "Idempotency-Key", "same-key"), 202)
	e.expect(e.do("POST", "/v1/sync-events", acme.key, map[string]any{"integration": "push"}, "Idempotency-Key", "same-key"), 202)
	waitFor(t, "events delivered to both tenants", func() bool { return len(acme.hook.requests()) > 0 && len(beta.hook.requests()) > 0 })

	tenants := []string{"acme", "beta", SystemTenant}
	// Keys that are not a tenant's: the server's own indexes (their first
	// token starts with "_", which no tenant name can), each listed here
	// with what makes it safe.
	indexes := map[string]string{
		BucketAPIKeys + "._byid": "key id → tenant: the lookup by a key's public prefix",
	}
	subjects := map[string]int{}
	check := func(stream, subject string, data []byte) {
		var tenant, where string
		if bucket, ok := strings.CutPrefix(stream, "KV_"); ok {
			key := strings.TrimPrefix(subject, "$KV."+bucket+".")
			first, _, _ := strings.Cut(key, ".")
			if strings.HasPrefix(first, "_") {
				if _, ok := indexes[bucket+"."+first]; !ok {
					t.Errorf("bucket %s key %q: neither a tenant's nor a listed index", bucket, key)
				}
				subjects[bucket+" "+first+".*"]++
				return
			}
			tenant, where = first, "bucket "+bucket+" key "+key
			subjects[bucket+" <tenant>.*"]++
		} else {
			// ferry.v1.<kind>.<tenant>...
			tok := strings.Split(subject, ".")
			if len(tok) < 4 || tok[0] != "ferry" || tok[1] != "v1" {
				t.Errorf("stream %s subject %q is not ferry.v1.<kind>.<tenant>...", stream, subject)
				return
			}
			tenant, where = tok[3], "stream "+stream+" subject "+subject
			subjects[stream+" ferry.v1."+tok[2]+".<tenant>"]++
		}
		if !slices.Contains(tenants, tenant) {
			t.Errorf("%s: %q is not a tenant", where, tenant)
			return
		}
		if named := payloadTenant(data); named != "" && named != tenant {
			t.Errorf("%s holds data of tenant %q", where, named)
		}
	}
	walkNATS(t, e, func(stream, subject string, _, data []byte) { check(stream, subject, data) })
	if err := sub.Drain(); err != nil {
		t.Fatal(err)
	}
	tapMu.Lock()
	defer tapMu.Unlock()
	for _, m := range tap {
		stream := streamOf(t, e, m.subject)
		if stream == "" {
			t.Errorf("%s is published but no stream stores it", m.subject)
			continue
		}
		check(stream, m.subject, m.data)
	}
	t.Logf("subjects and keys seen (%d layouts):", len(subjects))
	for _, k := range slices.Sorted(maps.Keys(subjects)) {
		t.Logf("  %s: %d", k, subjects[k])
	}
	// The walk covered the layouts of runtime/names.go and store.go.
	for _, want := range []string{
		runtime.WorkStream + " ferry.v1.work.<tenant>", AuditStream + " ferry.v1.audit.<tenant>",
		"FERRY_INPUTS_V1 ferry.v1.input.<tenant>", "FERRY_EVENTS_V1 ferry.v1.events.<tenant>", "FERRY_DELIVERIES_V1 ferry.v1.deliveries.<tenant>",
		runtime.BucketLocks + " <tenant>.*", BucketRunRequests + " <tenant>.*", BucketDeliveries + " <tenant>.*",
		runtime.BucketRuns + " <tenant>.*", runtime.BucketDLQ + " <tenant>.*", runtime.BucketSettled + " <tenant>.*",
		BucketAPIKeys + " <tenant>.*", BucketAPIKeys + " _byid.*", BucketConfig + " <tenant>.*", BucketSecrets + " <tenant>.*",
		BucketTenants + " <tenant>.*", BucketSubscriptions + " <tenant>.*", BucketIdempotency + " <tenant>.*",
	} {
		if subjects[want] == 0 {
			t.Errorf("no %s seen: the run did not write it, or its layout changed", want)
		}
	}
}

// streamOf is the stream that stores subject.
func streamOf(t *testing.T, e *env, subject string) string {
	if rest, ok := strings.CutPrefix(subject, "$KV."); ok {
		bucket, _, _ := strings.Cut(rest, ".")
		return "KV_" + bucket
	}
	name, err := e.rt.JetStream().StreamNameBySubject(t.Context(), subject)
	if err != nil {
		return ""
	}
	return name
}

// payloadTenant is the "tenant" a JSON payload names, if any.
func payloadTenant(data []byte) string {
	var v struct {
		Tenant string `json:"tenant"`
	}
	if json.Unmarshal(data, &v) != nil {
		return ""
	}
	return v.Tenant
}

// TestTenantNamesCannotInjectSubjectTokens: a tenant name is one subject and
// key token, so "." "*" ">" and the like are refused where a name enters
// (tenant creation, runtime names), and path parameters that would change a
// subject or key's meaning never reach another tenant's data nor fail with
// a 500.
func TestTenantNamesCannotInjectSubjectTokens(t *testing.T) {
	e := newEnv(t)
	for _, name := range []string{"a.b", "a*", "a>", "*", ">", "a b", "acme.>", "_byid", "A", "a\tb", "a/b", "$KV", ""} {
		if r := e.do("POST", "/v1/tenants", testAdminKey, map[string]any{"name": name}); r.status != 422 {
			t.Errorf("tenant %q: %d, want 422", name, r.status)
		}
		if err := e.s.CreateTenant(t.Context(), name); err == nil {
			t.Errorf("CreateTenant(%q) succeeded", name)
		}
	}
	for _, name := range []string{"a.b", "a*", "a>", "a b", ""} {
		_, err := e.rt.RunJob(t.Context(), &runtime.Job{Tenant: name, Integration: "i"}, runtime.RunOptions{})
		if !errors.Is(err, runtime.ErrInvalidName) {
			t.Errorf("RunJob with tenant %q: %v, want ErrInvalidName", name, err)
		}
		_, err = e.rt.RunJob(t.Context(), &runtime.Job{Tenant: "acme", Integration: name}, runtime.RunOptions{})
		if !errors.Is(err, runtime.ErrInvalidName) {
			t.Errorf("RunJob with integration %q: %v, want ErrInvalidName", name, err)
		}
	}

	a := e.tenantWithKey("acme", RoleUser)
	b := e.tenantWithKey("beta", RoleUser)
	e.expect(e.do("PUT", "/v1/config", a, isolationConfig(), "If-Match", "0"), 200)
	runID, entryID := isolationRunFixtures(t, e)
	markers := []string{"alphamarker4", "acmerunmarker", runID, entryID}
	// Every path parameter of every route, filled with wildcard and token
	// separators that would widen a KV key or subject to acme's. PUT
	// (create-or-replace in beta's own tenant) runs last.
	routes := e.s.Routes()
	slices.SortStableFunc(routes, func(x, y Route) int { return boolInt(x.Method == "PUT") - boolInt(y.Method == "PUT") })
	for _, rt := range routes {
		params := pathParamRe.FindAllStringSubmatch(rt.Pattern, -1)
		if len(params) == 0 {
			continue
		}
		for _, inj := range []string{"*", ">", "acme.*", "acme.>", "..", "a.b", "acme", "acme." + runID, "%2A", "%3E"} {
			vals := map[string]string{}
			for _, p := range params {
				vals[p[1]] = url.PathEscape(inj)
			}
			path := fillParams(rt.Pattern, vals)
			key := b
			if rt.Roles == nil {
				key = ""
			}
			r := e.do(rt.Method, path, key, map[string]any{}, "If-Match", "*")
			if r.status >= 500 || (r.status < 400 && rt.Method != "PUT") {
				t.Errorf("%s %s: %d\n%s", rt.Method, path, r.status, r.body)
			}
			for _, m := range markers {
				if bytes.Contains(r.body, []byte(m)) && !strings.Contains(inj, m) {
					t.Errorf("%s %s shows acme's %s: %s", rt.Method, path, m, r.body)
				}
			}
		}
	}
	checkIsolationRunFixtures(t, e, runID, entryID)
}

// isolationConfig is acme's configuration with TestTenantIsolation's
// resources.
func isolationConfig() map[string]any {
	c := config("acme", "alphamarker2")
	c["files"].(map[string]string)["resources.hcl"] = isolationResources
	return c
}

// TestKeyChangesApplyAtOnceAcrossServers: two servers share one NATS; a
// key revoked, rotated or expired through one is refused by the other on
// the very next request (keys are read from the store on every request,
// never cached).
func TestKeyChangesApplyAtOnceAcrossServers(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS not ready")
	}
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	node := func() *env {
		rt, err := runtime.Open(context.Background(), runtime.Options{NATSURL: ns.ClientURL()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rt.Close() })
		s, err := New(rt, Options{AdminKey: testAdminKey, MasterKey: bytes.Repeat([]byte{7}, 32), Now: c.Now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s.Close(ctx)
		})
		srv := httptest.NewServer(s.Handler())
		t.Cleanup(srv.Close)
		return &env{t: t, s: s, rt: rt, srv: srv, clock: c}
	}
	a, b := node(), node()
	user := a.tenantWithKey("acme", RoleUser)

	// Revocation.
	k := a.expect(a.do("POST", "/v1/api-keys", user, map[string]any{"name": "ci", "role": "viewer"}), 201).json(t)
	key, id := k["key"].(string), k["id"].(string)
	b.expect(b.do("GET", "/v1/config", key, nil), 200)
	a.expect(a.do("DELETE", "/v1/api-keys/"+id, user, nil, "If-Match", "*"), 200)
	if d := b.expect(b.do("GET", "/v1/config", key, nil), 401).json(t)["detail"].(string); !strings.Contains(d, "revoked") {
		t.Errorf("detail %q", d)
	}

	// Rotation: the old secret stops, the new one works, on the other node.
	k = a.expect(a.do("POST", "/v1/api-keys", user, map[string]any{"name": "deploy", "role": "viewer"}), 201).json(t)
	key, id = k["key"].(string), k["id"].(string)
	b.expect(b.do("GET", "/v1/config", key, nil), 200)
	fresh := a.expect(a.do("POST", "/v1/api-keys/"+id+"/rotate", user, nil), 200).json(t)["key"].(string)
	b.expect(b.do("GET", "/v1/config", key, nil), 401)
	b.expect(b.do("GET", "/v1/config", fresh, nil), 200)

	// Expiry: the first request at the expiry instant is refused.
	exp := c.Now().Add(time.Hour)
	key = a.expect(a.do("POST", "/v1/api-keys", user, map[string]any{"name": "temp", "role": "viewer", "expiresAt": exp}), 201).json(t)["key"].(string)
	b.expect(b.do("GET", "/v1/config", key, nil), 200)
	c.Add(time.Hour - time.Nanosecond)
	b.expect(b.do("GET", "/v1/config", key, nil), 200)
	c.Add(time.Nanosecond)
	if d := b.expect(b.do("GET", "/v1/config", key, nil), 401).json(t)["detail"].(string); !strings.Contains(d, "expired") {
		t.Errorf("detail %q", d)
	}
	// The hash, not the key, is what either node stored.
	walkNATS(t, a, func(stream, subject string, _, data []byte) {
		if bytes.Contains(data, []byte(fresh[12:])) || strings.Contains(subject, fresh[12:]) {
			t.Errorf("a key's secret is stored in clear in %s %s", stream, subject)
		}
	})
}

// TestAdminKeyPrefixesAndLengthsFail: the admin key is compared by its
// fixed-length hash (so its length does not show in timing); a prefix, an
// extension or another case of it is refused.
func TestAdminKeyPrefixesAndLengthsFail(t *testing.T) {
	e := newEnv(t)
	for _, k := range []string{testAdminKey[:len(testAdminKey)-1], testAdminKey + "x", testAdminKey[:1], strings.ToUpper(testAdminKey)} {
		e.expect(e.do("GET", "/v1/tenants", k, nil), 401)
	}
	e.expect(e.do("GET", "/v1/tenants", testAdminKey, nil), 200)
}

// chunked is a body without Content-Length: the limit must cut it while it
// is read, whoever reads it.
type chunked struct{ r io.Reader }

func (c chunked) Read(p []byte) (int, error) { return c.r.Read(p) }

// TestBodyLimitEveryRoute: every route answers 413 to a body over the limit,
// announced (Content-Length, refused before authentication) or streamed
// (chunked, cut off as it is read).
func TestBodyLimitEveryRoute(t *testing.T) {
	e := newEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	e.applyBase(user)
	sub, _ := e.subscribe(user, map[string]any{"url": "http://127.0.0.1:1/hook", "types": []string{"run.failed"}})
	big := `{"name": "` + strings.Repeat("x", 70<<10) + `"}`
	for _, rt := range e.s.Routes() {
		if rt.Method == "GET" {
			continue
		}
		fx := map[string]string{"name": "m", "tenant": "acme", "integration": "i", "n": "1"}
		if strings.HasPrefix(rt.Pattern, "/v1/subscriptions/") {
			fx["id"] = sub
		}
		path := fillParams(rt.Pattern, fx)
		if rt.Roles == nil && rt.Request != nil {
			// A webhook checks the tenant, the integration and a token first,
			// then its own limit (TestWebhookToken, TestWebhookRejects).
			continue
		}
		for _, key := range []string{"", user} {
			r := e.do(rt.Method, path, key, big, "If-Match", "*")
			if r.status != 413 {
				t.Errorf("%s %s (key %t), %d bytes: %d, want 413\n%.300s", rt.Method, path, key != "", len(big), r.status, r.body)
			}
		}
		if rt.Request == nil || rt.Roles == nil {
			// No body is read (an announced one is refused above); a
			// webhook reads it only once the webhook exists
			// (webhooks_test.go).
			continue
		}
		req, _ := http.NewRequest(rt.Method, e.srv.URL+path, chunked{strings.NewReader(big)})
		req.Header.Set("Content-Type", "application/json")
		if len(rt.RequestTypes) > 0 && !slices.Contains(rt.RequestTypes, "application/json") {
			req.Header.Set("Content-Type", rt.RequestTypes[0])
		}
		key := user
		if slices.Equal(rt.Roles, adminOnly) {
			key = testAdminKey
		}
		req.Header.Set("Authorization", "ApiKey "+key)
		req.Header.Set("If-Match", "*")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 413 {
			t.Errorf("%s %s chunked: %d, want 413\n%.300s", rt.Method, path, res.StatusCode, body)
		}
	}
}

// auditExempt are the non-GET routes that change nothing an auditor looks
// for in the audit log, with why.
var auditExempt = map[string]string{
	"POST /v1/config/plan":                     "read-only: compares files with the current revision",
	"POST /v1/mappings/test":                   "read-only: maps one record with an inline mapping",
	"POST /v1/mappings/{name}/test":            "read-only: maps one record",
	"POST /v1/connections/{name}/test":         "read-only: runs the connector's check",
	"POST /v1/subscriptions/{id}/test":         "sends a test event; kept in the subscription's delivery history",
	"POST /v1/sync-events":                     "starts a run, kept in the run history with the id of the key that started it (GET /v1/runs, triggeredBy); trigger keys send these at upstream volume, which would drown the changes in the log",
	"POST /v1/webhooks/{tenant}/{integration}": "public: a verified delivery starts a run, kept in the run history (trigger webhook)",
}

// auditStep makes one non-GET route succeed; the change must add an entry
// with action to tenant's audit log, by the key that made it.
type auditStep struct {
	route  string // METHOD pattern, as in the route table
	tenant string // whose log
	action string
	do     func() resp
}

// TestEveryChangeIsAudited is generated from the route table: every non-GET
// route is either made to succeed here and must leave an audit entry naming
// the caller, or is in auditExempt with a reason. A new route fails this
// test until it is one or the other.
func TestEveryChangeIsAudited(t *testing.T) {
	e := newRunEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	userID, _ := parseKeyID(user)
	e.applyBase(user)
	dlqFixture(t, e, "acme", "i", "auditrun", 3)

	var steps []auditStep
	step := func(route, tenant, action string, do func() resp) {
		steps = append(steps, auditStep{route, tenant, action, do})
	}
	bases := map[string]string{"connections": "files", "mappings": "m", "integrations": "i", "schedules": "s"}
	changes := map[string][2]map[string]any{ // PUT's change, PATCH's
		"connections":  {{"path": t.TempDir()}, {"path": t.TempDir()}},
		"mappings":     {{"filter": "id != 1"}, {"filter": "id != 2"}},
		"integrations": {{"workers": 2}, {"workers": 3}},
		"schedules":    {{"cron": "*/10 * * * *"}, {"cron": "*/15 * * * *"}},
	}
	for _, k := range resourceKinds {
		base, item := "/v1/"+k.plural, "/v1/"+k.plural+"/"+bases[k.plural]
		pattern := "/v1/" + k.plural + "/{name}"
		current := func() map[string]any { return e.expect(e.do("GET", item, user, nil), 200).json(t) }
		step("PUT "+pattern, "acme", k.kind+".update", func() resp {
			body := current()
			maps.Copy(body, changes[k.plural][0])
			return e.do("PUT", item, user, body, "If-Match", "*")
		})
		step("PATCH "+pattern, "acme", k.kind+".update", func() resp {
			return e.do("PATCH", item, user, changes[k.plural][1], "If-Match", "*", "Content-Type", mediaMergePatch)
		})
		step("POST "+base, "acme", k.kind+".create", func() resp {
			body := current()
			body["name"] = bases[k.plural] + "_new"
			return e.do("POST", base, user, body)
		})
		step("POST "+pattern+"/clone", "acme", k.kind+".create", func() resp {
			return e.do("POST", item+"/clone", user, map[string]any{"name": bases[k.plural] + "_copy"})
		})
		step("DELETE "+pattern, "acme", k.kind+".delete", func() resp {
			return e.do("DELETE", item+"_copy", user, nil, "If-Match", "*")
		})
	}
	step("POST /v1/integrations/{name}/deactivate", "acme", "integration.deactivate", func() resp {
		return e.do("POST", "/v1/integrations/i/deactivate", user, nil)
	})
	step("POST /v1/integrations/{name}/activate", "acme", "integration.activate", func() resp {
		return e.do("POST", "/v1/integrations/i/activate", user, nil)
	})
	step("PUT /v1/config", "acme", "config.apply", func() resp {
		g := e.expect(e.do("GET", "/v1/config", user, nil), 200)
		files := g.json(t)["files"].(map[string]any)
		files["extra.hcl"] = "mapping \"extra\" {\n  fields = {\n    x = \"id\"\n  }\n}\n"
		return e.do("PUT", "/v1/config", user, map[string]any{"files": files}, "If-Match", g.header.Get("ETag"))
	})
	step("POST /v1/revisions/{n}/rollback", "acme", "config.rollback", func() resp {
		return e.do("POST", "/v1/revisions/1/rollback", user, nil)
	})
	step("POST /v1/tenants", SystemTenant, "tenant.create", func() resp {
		return e.do("POST", "/v1/tenants", testAdminKey, map[string]any{"name": "gamma"})
	})
	step("PATCH /v1/tenants/{tenant}", "acme", "settings.update", func() resp {
		return e.do("PATCH", "/v1/tenants/acme", testAdminKey, map[string]any{"settings": map[string]any{"restConfigWrites": false}})
	})
	step("PUT /v1/settings", "acme", "settings.update", func() resp {
		return e.do("PUT", "/v1/settings", user, map[string]any{"restConfigWrites": true})
	})
	var keyID string
	step("POST /v1/api-keys", "acme", "apikey.create", func() resp {
		r := e.do("POST", "/v1/api-keys", user, map[string]any{"name": "ops", "role": "viewer"})
		keyID, _ = r.json(t)["id"].(string)
		return r
	})
	step("POST /v1/api-keys/{id}/rotate", "acme", "apikey.rotate", func() resp {
		return e.do("POST", "/v1/api-keys/"+keyID+"/rotate", user, nil)
	})
	step("DELETE /v1/api-keys/{id}", "acme", "apikey.revoke", func() resp {
		return e.do("DELETE", "/v1/api-keys/"+keyID, user, nil, "If-Match", "*")
	})
	step("PUT /v1/secrets/{name}", "acme", "secret.create", func() resp {
		return e.do("PUT", "/v1/secrets/tok", user, map[string]any{"value": "v4lue"})
	})
	step("DELETE /v1/secrets/{name}", "acme", "secret.delete", func() resp {
		return e.do("DELETE", "/v1/secrets/tok", user, nil, "If-Match", "*")
	})
	var subID string
	step("POST /v1/subscriptions", "acme", "subscription.create", func() resp {
		r := e.do("POST", "/v1/subscriptions", user, map[string]any{"url": "http://127.0.0.1:1/hook", "types": []string{EventRunFailed}})
		subID, _ = r.json(t)["id"].(string)
		return r
	})
	step("PUT /v1/subscriptions/{id}", "acme", "subscription.update", func() resp {
		return e.do("PUT", "/v1/subscriptions/"+subID, user, map[string]any{"url": "http://127.0.0.1:1/other", "types": []string{EventRunStarted}}, "If-Match", "*")
	})
	step("DELETE /v1/subscriptions/{id}", "acme", "subscription.delete", func() resp {
		return e.do("DELETE", "/v1/subscriptions/"+subID, user, nil, "If-Match", "*")
	})
	step("POST /v1/dlq/{entry}/replay", "acme", "dlq.replay", func() resp {
		return e.do("POST", "/v1/dlq/auditrun-1/replay", user, map[string]any{"reason": "fixed upstream"})
	})
	step("DELETE /v1/dlq/{entry}", "acme", "dlq.discard", func() resp {
		return e.do("DELETE", "/v1/dlq/auditrun-0?reason=obsolete", user, nil, "If-Match", "*")
	})

	step("POST /v1/runs/{run}/cancel", "acme", "run.cancel", func() resp {
		// A run another (live) server executes: the cancel is recorded on
		// its request for that server to act on.
		rr := runRequest{RunID: "auditcancel", Tenant: "acme", Integration: "i", Trigger: "api", Revision: 1,
			Queued: time.Now(), Owner: "elsewhere", LeaseUntil: time.Now().Add(time.Hour)}
		b, _ := json.Marshal(rr)
		if _, err := e.s.runs.reqs.Put(context.Background(), requestKey("acme", "auditcancel"), b); err != nil {
			t.Fatal(err)
		}
		return e.do("POST", "/v1/runs/auditcancel/cancel", user, nil)
	})
	step("POST /v1/dlq/replay", "acme", "dlq.replay", func() resp {
		return e.do("POST", "/v1/dlq/replay", user, map[string]any{"run": "auditrun", "reason": "bulk"})
	})
	// Coverage: every non-GET route of the table has a step or an exemption.
	covered := map[string]bool{}
	for _, s := range steps {
		covered[s.route] = true
	}
	table := map[string]bool{}
	for _, rt := range e.s.Routes() {
		name := rt.Method + " " + rt.Pattern
		table[name] = true
		if rt.Method == "GET" {
			continue
		}
		_, exempt := auditExempt[name]
		switch {
		case covered[name] && exempt:
			t.Errorf("%s is both audited and exempt", name)
		case !covered[name] && !exempt:
			t.Errorf("%s changes something: make it succeed in a step of this test (its change must be audited), or exempt it with a reason", name)
		}
	}
	for name := range covered {
		if !table[name] {
			t.Errorf("step %s: no such route", name)
		}
	}
	for name := range auditExempt {
		if !table[name] {
			t.Errorf("exemption %s: no such route", name)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// Each change in order: a 2xx, and one more entry by the caller.
	for _, s := range steps {
		before := len(mustAudit(t, e, s.tenant))
		r := s.do()
		if r.status < 200 || r.status > 299 {
			t.Errorf("%s: %d\n%s", s.route, r.status, r.body)
			continue
		}
		es := mustAudit(t, e, s.tenant)
		if len(es) <= before {
			t.Errorf("%s succeeded (%d) and left no audit entry", s.route, r.status)
			continue
		}
		last := es[len(es)-1]
		actor := userID
		if strings.Contains(s.route, "/v1/tenants") {
			actor = bootstrapKeyID
		}
		if last.Actor != actor || last.Role == "" || last.Resource == "" || last.Time.IsZero() || last.SourceIP == "" {
			t.Errorf("%s: incomplete entry %+v (want actor %s)", s.route, last, actor)
		}
		if last.Action != s.action {
			t.Errorf("%s: action %q, want %q", s.route, last.Action, s.action)
		}
	}
}

// dlqFixture stores a failed run of tenant's integration with n pending DLQ
// entries <runID>-0 … <runID>-(n-1).
func dlqFixture(t *testing.T, e *env, tenant, integration, runID string, n int) {
	t.Helper()
	now := time.Now().UTC()
	js := e.rt.JetStream()
	runs, err := js.KeyValue(t.Context(), runtime.BucketRuns)
	if err != nil {
		t.Fatal(err)
	}
	dlq, err := js.KeyValue(t.Context(), runtime.BucketDLQ)
	if err != nil {
		t.Fatal(err)
	}
	run := runtime.Run{ID: runID, Tenant: tenant, Integration: integration, Trigger: "api", Revision: "1",
		Status: engine.RunFailed, Counts: engine.Counts{Total: int64(n), Failed: int64(n)}, Queued: now, Started: now, Ended: now,
		IngestDone: true, Batches: 1}
	b, _ := json.Marshal(run)
	if _, err := runs.Put(t.Context(), tenant+"."+runID, b); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		id := fmt.Sprintf("%s-%d", runID, i)
		en := runtime.DLQEntry{ID: id, Tenant: tenant, Integration: integration, RunID: runID, Key: fmt.Sprint(i),
			Stage: engine.StageExecute, Category: "permanent", Error: "refused", Record: json.RawMessage(fmt.Sprintf(`{"id":%d,"title":"x"}`, i+1)),
			Revision: "1", Status: runtime.DLQPending, Created: now, Updated: now}
		b, _ := json.Marshal(en)
		if _, err := dlq.Put(t.Context(), tenant+"."+id, b); err != nil {
			t.Fatal(err)
		}
	}
}
