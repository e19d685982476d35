// Package apiserver is ferry's HTTP API: API keys and tenants (with their
// settings), the applied configuration kept as numbered revisions of HCL
// files, REST resources derived from it (connections, mappings, integrations,
// schedules: every write is a new revision, see resources.go), mapping and
// connection tests, connector types, secrets encrypted at rest, the audit
// log, the OpenAPI document and its interactive reference, /metrics and
// health.
//
// Every route is one entry of a single table (Routes): the table drives the
// mux, authentication and roles, the OpenAPI document and the tenant-isolation
// test, so adding a route is one entry plus its handler.
//
// State lives in JetStream (KV buckets and a stream, see store.go), every key
// carrying the tenant, so any number of servers can share one NATS cluster.
package apiserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ferryhq/ferry/connectors"
	"github.com/ferryhq/ferry/engine"
	"github.com/ferryhq/ferry/runtime"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultMaxBodyBytes is the request body limit when Options.MaxBodyBytes is 0.
const DefaultMaxBodyBytes = 8 << 20

// Options configure New.
type Options struct {
	// AdminKey is the bootstrap admin key (FERRY_ADMIN_KEY): it acts as an admin
	// key of the system tenant. Empty disables it.
	AdminKey string
	// MasterKey encrypts secrets at rest (AES-256-GCM): 32 bytes. Empty
	// disables the secrets endpoints (503).
	MasterKey []byte
	// MaxBodyBytes limits request bodies (default DefaultMaxBodyBytes).
	MaxBodyBytes int64
	// RateLimit is the sustained requests per second each API key may send
	// (0: DefaultRateLimit; negative: unlimited), RateBurst how many may come
	// at once (0: DefaultRateBurst); beyond them, 429 with Retry-After.
	// WebhookRateLimit and WebhookRateBurst are the same per webhook (tenant
	// and integration), defaults DefaultWebhookRateLimit and -Burst.
	RateLimit        float64
	RateBurst        int
	WebhookRateLimit float64
	WebhookRateBurst int
	// AuthFailureLimit is the failed authentications per second a source
	// address (IPv6: its /64) or a key id may sustain (0:
	// DefaultAuthFailureLimit; negative: unlimited), AuthFailureBurst how
	// many may come at once (0: DefaultAuthFailureBurst); beyond them, 429
	// with Retry-After before the key store is read. Keys seen to work are
	// never throttled (auth.go authThrottle).
	AuthFailureLimit float64
	AuthFailureBurst int
	// Replicas of the server's buckets and stream on a NATS cluster (default 1).
	Replicas int
	// Logger receives request and error logs (default: discard).
	Logger *slog.Logger
	// Now is the clock (tests). Default time.Now.
	Now func() time.Time
	// Events configure the delivery of events to subscriptions (events.go).
	Events EventOptions
	// MaxConcurrentRuns bounds the runs this server executes at once; others
	// wait, queued (default DefaultMaxConcurrentRuns).
	MaxConcurrentRuns int
	// RunLease is how long a run's lease outlives its owner's last renewal
	// (default DefaultRunLease): after a server crashed, another one resumes
	// its runs within about RunLease and a third. Shorter takes over sooner
	// but risks taking over from a server that is only slow to reach NATS.
	RunLease time.Duration
	// AuditRetention is how long audit entries are kept (at least
	// runtime.MinRetention); 0 keeps them for good.
	AuditRetention time.Duration
	// IdempotencyTTL is how long a sync event's Idempotency-Key returns the
	// same run (default IdempotencyTTL, 24h; 1s to MaxIdempotencyTTL). A
	// webhook's delivery ids are kept for its dedupe_window instead.
	IdempotencyTTL time.Duration
	// FilesDir is where connectors resolve a tenant's relative paths (a file
	// connection's path = "data"): FilesDir/<tenant>. Default: the system's
	// temporary directory. TenantDirs overrides it per tenant (ferry serve
	// --dev DIR points its tenant at DIR).
	//
	// A tenant's connectors may not touch files outside its directory
	// (absolute paths, "..", symbolic links leading out): one tenant cannot
	// reach the host's files nor another tenant's. Only the tenants of
	// TenantDirs, the developer's own (--dev), are not confined: like ferry
	// run, their paths may point anywhere on the machine.
	FilesDir   string
	TenantDirs map[string]string
	// HostFiles lifts that confinement for every tenant: a server whose
	// tenants are all one team's may read and write any path of the host
	// (ferry serve --host-files).
	HostFiles bool
	// AllowNetworks are the exceptions to the network policy of the
	// tenants but those of TenantDirs (HostFiles does not lift it: it is
	// about files). Their connectors and event deliveries may not connect to
	// connectors.DefaultDeniedNetworks: loopback (this server: its API,
	// other local services, Unix sockets), link-local and the cloud metadata
	// service (169.254.169.254, fd00:ec2::254), the unspecified address.
	// The check is on the address dialled, after DNS; a proxy of the
	// environment (HTTP_PROXY) is not used. Private networks (10/8,
	// 172.16/12, 192.168/16, fc00::/7) are not restricted. Allow a denied
	// address here, a database on 127.0.0.1/32, say (ferry serve
	// --allow-networks); 0.0.0.0/0 and ::/0 together lift the policy.
	AllowNetworks []netip.Prefix
}

// tenantDir is the directory a tenant's relative connector paths resolve against.
func (s *Server) tenantDir(tenant string) string {
	if d, ok := s.opts.TenantDirs[tenant]; ok {
		return d
	}
	root := s.opts.FilesDir
	if root == "" {
		root = filepath.Join(os.TempDir(), "ferry-files")
	}
	return filepath.Join(root, tenant)
}

// compile validates and compiles a tenant's files (compileFiles) for use on
// this server: relative connector paths resolve in the tenant's directory,
// and connectors may not touch the file system outside it (issue 7: another
// tenant's files, the host's). Paths known now that lead out are refused
// here, at plan and apply; those held in secrets when a run opens them.
// Their connections are under the network policy (Options.AllowNetworks),
// also with HostFiles.
func (s *Server) compile(tenant string, files map[string]string) (*compiled, error) {
	c, err := compileFiles(tenant, files)
	if err != nil {
		return nil, err
	}
	c.cfg.Dir = s.tenantDir(tenant)
	if _, dev := s.opts.TenantDirs[tenant]; dev {
		return c, nil
	}
	c.cfg.Net = s.netPolicyOf(tenant)
	if s.opts.HostFiles {
		return c, nil
	}
	c.cfg.Root = c.cfg.Dir
	if diags := engine.CheckConnectors(c.cfg); diags.HasErrors() {
		return nil, configProblem("the configuration is invalid", append(c.diags, diags...))
	}
	return c, nil
}

// netPolicyOf is the network policy of tenant's connections and event
// deliveries: the server's (Options.AllowNetworks), nil for a --dev
// tenant (TenantDirs), which is not restricted.
func (s *Server) netPolicyOf(tenant string) *connectors.NetPolicy {
	if _, dev := s.opts.TenantDirs[tenant]; dev {
		return nil
	}
	return s.netPolicy
}

// Server is the API server. Create it with New; serve Handler.
type Server struct {
	rt     *runtime.Runtime
	js     jetstream.JetStream
	opts   Options
	log    *slog.Logger
	now    func() time.Time
	st     *store
	routes []Route
	h      http.Handler
	met    *httpMetrics
	runs   *runManager      // StartRun, Close
	sched  *scheduleRuntime // schedules_runtime.go: fires schedules; stops with Close

	// Token buckets per API key and per webhook (ratelimit.go); nil when off.
	keyLimiter, webhookLimiter *rateLimiter
	// authThrottle limits failed authentications (auth.go); nil when off.
	authThrottle *authThrottle

	mu       sync.Mutex
	programs map[string]cachedProgram // tenant → compiled current revision

	events *eventState // subscriptions and their dispatcher (events.go)

	// netPolicy is the tenants' network policy (Options.AllowNetworks).
	netPolicy *connectors.NetPolicy
}

type cachedProgram struct {
	revision int
	prog     *engine.Program
	// kvrev is the KV revision of the tenant's current pointer it was read
	// from (0: unknown), so CurrentProgram need not decode it again.
	kvrev uint64
}

// New creates the server's buckets and stream (idempotently) and its handler.
func New(rt *runtime.Runtime, opts Options) (*Server, error) {
	if rt == nil {
		return nil, errors.New("apiserver: nil runtime")
	}
	if len(opts.MasterKey) != 0 && len(opts.MasterKey) != 32 {
		return nil, fmt.Errorf("apiserver: the master key must be 32 bytes, got %d", len(opts.MasterKey))
	}
	if opts.AdminKey != "" && len(opts.AdminKey) < 24 {
		return nil, errors.New("apiserver: the admin key must be at least 24 characters; generate one with `openssl rand -base64 32`")
	}
	if math.IsNaN(opts.RateLimit) || math.IsNaN(opts.WebhookRateLimit) || math.IsNaN(opts.AuthFailureLimit) {
		return nil, errors.New("apiserver: a rate limit is NaN; give requests per second, or -1 for unlimited")
	}
	for _, p := range opts.AllowNetworks {
		if !p.IsValid() {
			return nil, fmt.Errorf("apiserver: AllowNetworks holds an invalid prefix %q; give networks as CIDR, 127.0.0.1/32", p)
		}
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.Replicas <= 0 {
		opts.Replicas = 1
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{
		rt:       rt,
		js:       rt.JetStream(),
		opts:     opts,
		log:      opts.Logger,
		now:      opts.Now,
		programs: map[string]cachedProgram{},

		netPolicy: connectors.NewNetPolicy(connectors.DefaultDeniedNetworks(), opts.AllowNetworks),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := openStore(ctx, s.js, opts.Replicas, opts.AuditRetention)
	if err != nil {
		return nil, err
	}
	s.st = st
	if err := s.openEvents(ctx); err != nil {
		return nil, err
	}
	if s.runs, err = newRunManager(ctx, s); err != nil {
		return nil, err
	}
	// Real time, not opts.Now: buckets refill with the wall clock even when a
	// test freezes the server's business clock.
	s.keyLimiter = newRateLimiter(opts.RateLimit, opts.RateBurst, DefaultRateLimit, DefaultRateBurst, time.Now)
	s.webhookLimiter = newRateLimiter(opts.WebhookRateLimit, opts.WebhookRateBurst, DefaultWebhookRateLimit, DefaultWebhookRateBurst, time.Now)
	s.authThrottle = newAuthThrottle(opts.AuthFailureLimit, opts.AuthFailureBurst, time.Now)
	s.met = newHTTPMetrics()
	s.met.reg.MustRegister(rt.Collectors()...) // records, runs, retries, DLQ depth, pending work
	s.routes = s.routeTable()
	s.h = s.buildHandler()
	if err := s.startEvents(ctx); err != nil { // the event dispatcher; stop with stopEvents
		return nil, err
	}
	s.runs.start() // resumes runs left unfinished; stop with Close
	if s.sched, err = s.startSchedules(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Handler is the HTTP handler of the whole API.
func (s *Server) Handler() http.Handler { return s.h }

// Routes is the route table (a copy).
func (s *Server) Routes() []Route { return slices.Clone(s.routes) }

func (s *Server) buildHandler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range s.routes {
		mux.Handle(rt.Method+" "+rt.Pattern, s.wrap(rt))
	}
	// Everything else: 404, or 405 with Allow when the path exists for other
	// methods, both as problem+json.
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		var allow []string
		for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, pat := mux.Handler(probe); pat != "/" && pat != "" {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeProblem(w, newProblem(http.StatusMethodNotAllowed, probMethod, "%s is not allowed on %s; use %s", r.Method, r.URL.Path, strings.Join(allow, ", ")))
			return
		}
		writeProblem(w, newProblem(http.StatusNotFound, probNotFound, "no route for %s %s; see /openapi.json", r.Method, r.URL.Path))
	})
	return s.met.middleware(mux)
}

// wrap authenticates, authorizes and runs a route's handler; a returned
// *Problem is written as problem+json, any other error is a logged 500.
func (s *Server) wrap(rt Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic in handler", "route", rt.Method+" "+rt.Pattern, "panic", fmt.Sprint(v))
				writeProblem(w, newProblem(http.StatusInternalServerError, probInternal, "internal error"))
			}
		}()
		// A body announced over the limit is refused before anything reads
		// it, authentication included; a chunked one is cut off at the limit
		// whoever reads it (413 from decodeJSON and the webhook reader).
		// Public routes that take a body (webhooks) check first what they
		// must (a wrong token is 401 whatever the body), then their limit.
		if r.ContentLength > s.opts.MaxBodyBytes && (rt.Roles != nil || rt.Request == nil) {
			writeProblem(w, newProblem(http.StatusRequestEntityTooLarge, probTooLarge, "the body is larger than the limit of %d bytes", s.opts.MaxBodyBytes))
			return
		}
		if r.Body != nil && r.Body != http.NoBody { // handlers tell "no body" by NoBody
			r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes)
		}
		var p *Principal
		if len(rt.Roles) > 0 {
			var prob *Problem
			p, prob = s.authenticate(w, r)
			if prob != nil {
				if prob.Status == http.StatusUnauthorized {
					w.Header().Set("WWW-Authenticate", `ApiKey realm="ferry", Bearer realm="ferry"`)
				}
				writeProblem(w, prob)
				return
			}
			if s.rateLimited(w, rt, r, p) {
				return
			}
			if !slices.Contains(rt.Roles, p.Role) {
				writeProblem(w, newProblem(http.StatusForbidden, probForbidden, "a %s key may not %s %s; this needs one of: %s", p.Role, rt.Method, rt.Pattern, joinRoles(rt.Roles)))
				return
			}
		} else if s.rateLimited(w, rt, r, nil) {
			return
		}
		if err := rt.Handle(w, r, p); err != nil {
			var prob *Problem
			if errors.As(err, &prob) {
				writeProblem(w, prob)
				return
			}
			if errors.Is(err, context.Canceled) {
				return
			}
			s.log.Error("request failed", "route", rt.Method+" "+rt.Pattern, "error", err)
			writeProblem(w, newProblem(http.StatusInternalServerError, probInternal, "internal error; the server log has the details"))
		}
	})
}

func joinRoles(rs []Role) string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = string(r)
	}
	return strings.Join(out, ", ")
}
