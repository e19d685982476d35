package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ferryhq/ferry/apiserver"
	"github.com/ferryhq/ferry/runtime"
)

const (
	defaultListen     = "127.0.0.1:8080"
	defaultServerData = ".ferry-server"
	masterKeyFile     = "master.key"
	devKeyFile        = "dev-api-key"
	shutdownTimeout   = 30 * time.Second
)

// serveOptions are the flags of ferry serve.
type serveOptions struct {
	listen    string
	conn      connFlags
	dev       string
	devTenant string // the tenant of --dev DIR, whose relative paths resolve in DIR
	hostFiles bool
	maxBody   int64

	// allowNetworks are the exceptions to the tenants' network policy.
	allowNetworks []netip.Prefix
	// Rate limits (0: FERRY_RATE_LIMIT etc., else the server's defaults).
	rateLimit, webhookRateLimit, authFailureLimit float64
	rateBurst, webhookRateBurst, authFailureBurst int
	// auditRetention: how long audit entries are kept (unset or 0: for good).
	auditRetention retentionValue
	// idempotencyTTL: how long a sync event's Idempotency-Key is kept (0:
	// the server's default).
	idempotencyTTL time.Duration
}

func (o *serveOptions) declare(fs *flag.FlagSet) {
	fs.StringVar(&o.listen, "listen", defaultListen, "address to serve HTTP on (host:port; port 0 picks a free one)")
	fs.StringVar(&o.conn.dataDir, "data-dir", defaultServerData, "data directory: the embedded JetStream store, the generated master key, the dev API key")
	fs.StringVar(&o.conn.natsURL, "nats-url", "", "use an external NATS (nats://host:4222) instead of the embedded one")
	fs.StringVar(&o.conn.creds, "creds", "", "NATS credentials file for --nats-url")
	fs.StringVar(&o.conn.tls.CAFile, "tls-ca", "", "CA certificate that signed the external NATS's certificate")
	fs.StringVar(&o.conn.tls.CertFile, "tls-cert", "", "client certificate for mutual TLS with the external NATS (with --tls-key)")
	fs.StringVar(&o.conn.tls.KeyFile, "tls-key", "", "client key for --tls-cert")
	o.conn.declareSync(fs)
	o.conn.declareReplicas(fs)
	o.conn.declareSinkTimeout(fs)
	o.conn.declareRetention(fs, true)
	fs.StringVar(&o.dev, "dev", "", "development mode: create the tenant of the configuration in `DIR`, apply DIR, print an API key")
	fs.BoolVar(&o.hostFiles, "host-files", false, "let every tenant's connectors use any path of this machine (absolute paths, ..); by default each tenant is confined to DATA_DIR/files/<tenant>. For servers whose tenants are all one team's")
	fs.Func("allow-networks", "let tenants' connectors reach `CIDR,...`: networks or addresses (comma-separated, repeatable) they may not reach by default: loopback (127.0.0.0/8, ::1, and Unix sockets with 127.0.0.1), link-local (169.254.0.0/16, fe80::/10, cloud metadata), 0.0.0.0/8, ::, fd00:ec2::254. E.g. 127.0.0.1/32 for a database on this machine; 0.0.0.0/0,::/0 lifts the policy", func(v string) error {
		p, err := parseNetworks(v)
		o.allowNetworks = append(o.allowNetworks, p...)
		return err
	})
	fs.Int64Var(&o.maxBody, "max-body", 0, "request body limit in bytes (default 8 MiB)")
	fs.Float64Var(&o.rateLimit, "rate-limit", 0, fmt.Sprintf("requests per second each API key may send, beyond its burst; -1: unlimited (env FERRY_RATE_LIMIT; default %d)", apiserver.DefaultRateLimit))
	fs.IntVar(&o.rateBurst, "rate-burst", 0, fmt.Sprintf("requests each API key may send at once (env FERRY_RATE_BURST; default %d)", apiserver.DefaultRateBurst))
	fs.Float64Var(&o.webhookRateLimit, "webhook-rate-limit", 0, fmt.Sprintf("requests per second each webhook (tenant and integration) may receive, beyond its burst; -1: unlimited (env FERRY_WEBHOOK_RATE_LIMIT; default %d)", apiserver.DefaultWebhookRateLimit))
	fs.IntVar(&o.webhookRateBurst, "webhook-rate-burst", 0, fmt.Sprintf("requests each webhook may receive at once (env FERRY_WEBHOOK_RATE_BURST; default %d)", apiserver.DefaultWebhookRateBurst))
	fs.Float64Var(&o.authFailureLimit, "auth-failure-limit", 0, fmt.Sprintf("failed authentications per second a source address or an API key id may send, beyond its burst, before 429; keys seen to work are never limited; -1: unlimited (env FERRY_AUTH_FAILURE_LIMIT; default %g)", apiserver.DefaultAuthFailureLimit))
	fs.IntVar(&o.authFailureBurst, "auth-failure-burst", 0, fmt.Sprintf("failed authentications a source address or an API key id may send at once (env FERRY_AUTH_FAILURE_BURST; default %d)", apiserver.DefaultAuthFailureBurst))
	fs.Var(&o.auditRetention, "audit-retention", fmt.Sprintf("keep audit entries for `DURATION`: 400d, 90d; 0 keeps them for good (env FERRY_AUDIT_RETENTION; default 0; at least %s)", runtime.MinRetention))
	fs.DurationVar(&o.idempotencyTTL, "idempotency-ttl", 0, fmt.Sprintf("how long a sync event's Idempotency-Key returns the same run, 1s to %gh (default %gh); a webhook keeps its delivery ids for its dedupe_window", apiserver.MaxIdempotencyTTL.Hours(), apiserver.IdempotencyTTL.Hours()))
}

func init() {
	var o serveOptions
	register(&command{
		name:  "serve",
		usage: "serve [--listen ADDR] [--data-dir DIR] [--nats-url URL] [--dev DIR]",
		summary: `Run the ferry server: the REST API, the runtime and (unless --nats-url) an embedded NATS JetStream, in one process.

FERRY_ADMIN_KEY sets the bootstrap admin key (at least 24 characters; without
it the admin routes, such as creating tenants, are unreachable).
FERRY_MASTER_KEY (32 bytes, base64 or hex) encrypts secrets at rest; without it
the server generates one in DATA_DIR/master.key and says so.

Tenants' connectors and event subscriptions (but --dev DIR's) may not connect to this server itself
(loopback, Unix sockets), link-local addresses or the cloud metadata service
(169.254.169.254, fd00:ec2::254): the check is on the address dialled, after
DNS, and HTTP_PROXY is not used for them. Private networks are reachable.
--allow-networks 127.0.0.1/32 lets them reach a database on this machine, say;
--host-files is about files only, it allows no network.

--dev DIR creates DIR's tenant, applies DIR, creates an API key (printed, and
written to DATA_DIR/dev-api-key) and prints the URLs of the API reference and
/metrics: everything ferry plan, ferry apply and ferry pull need.

SIGINT or SIGTERM stops the server gracefully: requests in flight finish, then
the NATS connection drains.`,
		examples: `  ferry serve --dev examples/quickstart        # a local server with the quickstart applied
  FERRY_ADMIN_KEY=$(openssl rand -base64 32) FERRY_MASTER_KEY=$(openssl rand -base64 32) \
    ferry serve --listen 0.0.0.0:8080 --data-dir /var/lib/ferry
  ferry serve --nats-url nats://nats-1:4222 --creds ferry.creds   # one of several nodes`,
		flags: o.declare,
		run: func(c *ctx, args []string) int {
			if len(args) > 0 {
				return c.errorf("ferry serve takes no arguments, got %q; to serve a configuration in development, use --dev DIR", strings.Join(args, " "))
			}
			var lc *localConfig
			if o.dev != "" { // check DIR before starting anything
				if lc = loadDev(c, o.dev); lc == nil {
					return 1
				}
				o.devTenant = lc.tenant
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			s, err := startServer(ctx, c, &o)
			if err != nil {
				return c.errorf("%v", err)
			}
			if lc != nil {
				if code := s.dev(ctx, c, o.dev, lc); code != 0 {
					s.shutdown()
					return code
				}
			}
			s.serve()
			var serveErr error
			select {
			case <-ctx.Done():
			case serveErr = <-s.done:
			}
			stop() // a second signal kills the process
			if serveErr != nil {
				s.shutdown()
				return c.errorf("serving HTTP: %v", serveErr)
			}
			s.log.Info("shutting down: finishing requests in flight, then draining NATS")
			if err := s.shutdown(); err != nil {
				return c.errorf("shutting down: %v", err)
			}
			s.log.Info("stopped")
			return 0
		},
	})
}

// ferryServer is a running ferry serve.
type ferryServer struct {
	opts    *serveOptions
	log     *slog.Logger
	rt      *store
	api     *apiserver.Server
	http    *http.Server
	url     string // http://host:port, as clients reach it
	ln      net.Listener
	served  bool
	dataDir string
	done    chan error // the result of http.Server.Serve
}

// startServer listens on o.listen, opens the runtime and creates the API
// server; serve starts serving. Stop it with shutdown.
func startServer(ctx context.Context, c *ctx, o *serveOptions) (*ferryServer, error) {
	log := slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if o.conn.dataDir == "" {
		o.conn.dataDir = defaultServerData
	}
	master, err := envMasterKey()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.conn.dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create the data directory: %w", err)
	}
	adminKey := os.Getenv("FERRY_ADMIN_KEY")
	if err := o.rateLimitsFromEnv(); err != nil {
		return nil, err
	}
	name, err := o.auditRetention.orEnv("--audit-retention", "FERRY_AUDIT_RETENTION")
	if err != nil {
		return nil, err
	}
	if d := o.auditRetention.d; d != 0 && d < runtime.MinRetention {
		return nil, fmt.Errorf("%s %s: must be at least %s, e.g. 400d; 0 keeps the audit log for good", name, retentionString(d), runtime.MinRetention)
	}
	if t := o.idempotencyTTL; t != 0 && (t < time.Second || t > apiserver.MaxIdempotencyTTL) {
		return nil, fmt.Errorf("--idempotency-ttl %s: write a duration from 1s to %gh, e.g. 24h", t, apiserver.MaxIdempotencyTTL.Hours())
	}
	// Listen before opening the runtime: a busy port fails fast, without
	// starting the embedded NATS.
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w (choose another address with --listen)", o.listen, err)
	}
	rt, err := o.conn.open(ctx, c, o.conn.dataDir, false)
	if err != nil {
		ln.Close()
		return nil, err
	}
	if master == nil {
		// Read or generated only now, while the embedded store's lock keeps
		// another ferry serve out of this data directory.
		var file string
		if master, file, err = fileMasterKey(o.conn.dataDir); err != nil {
			ln.Close()
			rt.Close()
			return nil, err
		}
		log.Warn("FERRY_MASTER_KEY is not set: secrets are encrypted at rest with the key in "+file+
			"; back that file up (without it the stored secrets are lost) and set FERRY_MASTER_KEY in production", "file", file)
		if o.conn.natsURL != "" {
			log.Warn("with --nats-url every ferry server node must use the same master key: set FERRY_MASTER_KEY on all of them")
		}
	}
	// A tenant's relative connector paths (file path = "data") resolve in
	// DATA_DIR/files/<tenant>; with --dev DIR, its tenant's resolve in DIR, as
	// they do for ferry run.
	replicas, _ := o.conn.resolvedReplicas() // checked when the runtime opened
	opts := apiserver.Options{AdminKey: adminKey, MasterKey: master, MaxBodyBytes: o.maxBody, Logger: log, Replicas: replicas,
		FilesDir: filepath.Join(o.conn.dataDir, "files"), HostFiles: o.hostFiles,
		RateLimit: o.rateLimit, RateBurst: o.rateBurst, WebhookRateLimit: o.webhookRateLimit, WebhookRateBurst: o.webhookRateBurst,
		AuthFailureLimit: o.authFailureLimit, AuthFailureBurst: o.authFailureBurst, IdempotencyTTL: o.idempotencyTTL,
		AuditRetention: o.auditRetention.d}
	opts.AllowNetworks = o.allowNetworks
	if o.devTenant != "" {
		abs, err := filepath.Abs(o.dev)
		if err != nil {
			ln.Close()
			rt.Close()
			return nil, err
		}
		opts.TenantDirs = map[string]string{o.devTenant: abs}
	}
	api, err := apiserver.New(rt.Runtime, opts)
	if err != nil {
		ln.Close()
		rt.Close()
		if adminKey != "" && strings.Contains(err.Error(), "admin key") {
			return nil, fmt.Errorf("FERRY_ADMIN_KEY: %w", err)
		}
		return nil, err
	}
	s := &ferryServer{
		opts: o, log: log, rt: rt, api: api, dataDir: o.conn.dataDir,
		url:  "http://" + clientAddr(ln.Addr()),
		done: make(chan error, 1),
		http: newHTTPServer(api.Handler(), log, defaultHTTPLimits),
	}
	s.ln = ln
	if adminKey == "" {
		log.Info("FERRY_ADMIN_KEY is not set: the admin routes (tenants, other tenants' keys) are unreachable")
	}
	return s, nil
}

// httpLimits bound what one client may hold of the server: a connection
// that sends its headers (slowloris) or its body slowly, or reads its answer
// slowly, is cut off; so is an idle keep-alive connection.
type httpLimits struct {
	readHeader, read, write, idle time.Duration
	maxHeaderBytes                int
}

var defaultHTTPLimits = httpLimits{
	readHeader: 10 * time.Second,
	// A body at the 8 MiB limit needs ~70 KB/s to arrive in time.
	read: 2 * time.Minute,
	// The longest answer waits for a run: a sync event's wait is at most
	// apiserver.MaxSyncWait; a shorter write timeout would drop it unanswered.
	write:          apiserver.MaxSyncWait + time.Minute,
	idle:           2 * time.Minute,
	maxHeaderBytes: 64 << 10, // an API key and a few headers need ~1 KB
}

func newHTTPServer(h http.Handler, log *slog.Logger, l httpLimits) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.readHeader,
		ReadTimeout:       l.read,
		WriteTimeout:      l.write,
		IdleTimeout:       l.idle,
		MaxHeaderBytes:    l.maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// rateLimitsFromEnv fills the rate limits not given as flags from
// FERRY_RATE_LIMIT, FERRY_RATE_BURST, FERRY_WEBHOOK_RATE_LIMIT,
// FERRY_WEBHOOK_RATE_BURST, FERRY_AUTH_FAILURE_LIMIT and
// FERRY_AUTH_FAILURE_BURST.
func (o *serveOptions) rateLimitsFromEnv() error {
	for _, v := range []struct {
		env  string
		rate *float64
		n    *int
	}{
		{"FERRY_RATE_LIMIT", &o.rateLimit, nil},
		{"FERRY_RATE_BURST", nil, &o.rateBurst},
		{"FERRY_WEBHOOK_RATE_LIMIT", &o.webhookRateLimit, nil},
		{"FERRY_WEBHOOK_RATE_BURST", nil, &o.webhookRateBurst},
		{"FERRY_AUTH_FAILURE_LIMIT", &o.authFailureLimit, nil},
		{"FERRY_AUTH_FAILURE_BURST", nil, &o.authFailureBurst},
	} {
		s := strings.TrimSpace(os.Getenv(v.env))
		switch {
		case s == "":
		case v.rate != nil && *v.rate == 0:
			f, err := strconv.ParseFloat(s, 64)
			if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
				return fmt.Errorf("%s=%q: write requests per second as a number, e.g. 50 (-1: unlimited)", v.env, s)
			}
			*v.rate = f
		case v.n != nil && *v.n == 0:
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				return fmt.Errorf("%s=%q: write a whole number of requests of at least 1, e.g. 100", v.env, s)
			}
			*v.n = n
		}
	}
	return nil
}

// serve starts answering requests. Until then the listener is bound and
// connections wait in its backlog, so --dev can prepare the tenant first and
// clients never see a half-ready server.
func (s *ferryServer) serve() {
	s.served = true
	go func() {
		err := s.http.Serve(s.ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	nats := "embedded NATS, data in " + s.opts.conn.dataDir
	if s.opts.conn.natsURL != "" {
		nats = "external NATS at " + s.opts.conn.natsURL
	}
	s.log.Info("ferry serve listening", "url", s.url, "version", version, "nats", nats)
}

// inProcess is an API client that calls the server's handler directly, for
// --dev before the server serves.
func (s *ferryServer) inProcess(key string) *apiClient {
	return &apiClient{base: mustURL(s.url), key: key, hc: &http.Client{Transport: handlerTransport{s.http.Handler}}}
}

// handlerTransport is an http.RoundTripper that calls a handler in process.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.RemoteAddr = "127.0.0.1:0"
	r.RequestURI = r.URL.RequestURI()
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

// shutdown stops accepting requests, waits for those in flight (up to
// shutdownTimeout), then for the runs in flight (up to shutdownTimeout again;
// runs still going are interrupted and resume on the next start), then closes
// the runtime, which drains NATS.
func (s *ferryServer) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if !s.served {
		s.ln.Close()
	}
	herr := s.http.Shutdown(ctx)
	if herr != nil {
		herr = fmt.Errorf("requests still in flight after %s: %w", shutdownTimeout, herr)
		s.http.Close()
	}
	// Runs in flight get their own shutdownTimeout, then stay resumable.
	rctx, rcancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer rcancel()
	return errors.Join(herr, s.api.Close(rctx), s.rt.Close())
}

// clientAddr is the address clients use for a listener: an unspecified host
// (0.0.0.0, ::) becomes 127.0.0.1.
func clientAddr(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// envMasterKey decodes FERRY_MASTER_KEY; nil when it is not set (or empty).
func envMasterKey() ([]byte, error) {
	v := os.Getenv("FERRY_MASTER_KEY")
	if v == "" {
		return nil, nil
	}
	key, err := decodeKey(v)
	if err != nil {
		return nil, fmt.Errorf("FERRY_MASTER_KEY: %w", err)
	}
	return key, nil
}

// fileMasterKey reads the master key kept in dataDir/master.key, generating
// it the first time; file is the file's path.
func fileMasterKey(dataDir string) (key []byte, file string, err error) {
	p := filepath.Join(dataDir, masterKeyFile)
	if b, err := os.ReadFile(p); err == nil {
		key, err := decodeKey(string(b))
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", p, err)
		}
		return key, p, nil
	} else if !os.IsNotExist(err) {
		return nil, "", err
	}
	key = make([]byte, 32)
	rand.Read(key)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, "", fmt.Errorf("write the generated master key: %w", err)
	}
	_, err = io.WriteString(f, base64.StdEncoding.EncodeToString(key)+"\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, "", fmt.Errorf("write the generated master key: %w", err)
	}
	return key, p, nil
}

// decodeKey decodes a 32-byte key written in hex or base64 (standard or URL
// alphabet, padded or not).
func decodeKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if len(s) == 64 {
		if b, err := hex.DecodeString(s); err == nil {
			return b, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != 32 {
				return nil, fmt.Errorf("the key must be 32 bytes, this one is %d; generate one with: openssl rand -base64 32", len(b))
			}
			return b, nil
		}
	}
	return nil, errors.New("the key must be 32 bytes written in base64 or hex; generate one with: openssl rand -base64 32")
}

// loadDev loads and checks the configuration of ferry serve --dev DIR; it
// prints the problems and returns nil if it cannot be served.
func loadDev(c *ctx, dir string) *localConfig {
	lc := loadLocal(c, &configFlags{}, dir)
	if lc != nil && lc.tenant == "" {
		c.errorf("%s has no ferry { tenant = \"...\" } block: the server keeps each tenant's configuration apart, so add one", dir)
		return nil
	}
	return lc
}

// dev is ferry serve --dev DIR: the tenant of DIR, an API key, DIR applied.
func (s *ferryServer) dev(ctx context.Context, c *ctx, dir string, lc *localConfig) int {
	key, err := s.devKey(ctx, lc.tenant)
	if err != nil {
		return c.errorf("%v", err)
	}
	cl := s.inProcess(key)
	plan, err := cl.plan(ctx, lc.files)
	if err != nil {
		return writeAPIError(c, err, lc.paths, lc.parsed)
	}
	// The whole plan of a configuration is long: the summary says enough at
	// startup, and ferry plan shows the details.
	fmt.Fprintf(c.stdout, "Applying %s to tenant %s.", dir, lc.tenant)
	if code := applyFiles(ctx, c, cl, plan, lc.files, "ferry serve --dev "+dir, lc.paths, lc.parsed); code != 0 {
		return code
	}
	keyFile, err := s.writeDevKey(key)
	if err != nil {
		return c.errorf("%v", err)
	}
	fmt.Fprintf(c.stdout, `
ferry is serving tenant %[1]s at %[2]s.

  API key (role user, also in %[3]s):
    %[4]s

  export FERRY_SERVER=%[2]s
  export FERRY_API_KEY=%[4]s

  API reference: %[2]s/docs
  Metrics:       %[2]s/metrics

Then: ferry plan %[5]s, ferry apply %[5]s, ferry pull %[5]s. Ctrl-C stops the server.
`, lc.tenant, s.url, keyFile, key, dir)
	return 0
}

// devKey returns a user key of tenant for development, creating the tenant
// if needed. The key kept in DATA_DIR/dev-api-key is reused while it works,
// so restarts do not pile up keys. (The file is written once DIR is applied:
// on a new data directory, a script that waits for it finds a ready server.)
func (s *ferryServer) devKey(ctx context.Context, tenant string) (string, error) {
	if err := s.api.CreateTenant(ctx, tenant); err != nil && !errors.Is(err, apiserver.ErrTenantExists) {
		return "", fmt.Errorf("create tenant %q: %w", tenant, err)
	}
	p := filepath.Join(s.dataDir, devKeyFile)
	if b, err := os.ReadFile(p); err == nil {
		key := strings.TrimSpace(string(b))
		if s.keyOfTenant(ctx, key, tenant) {
			return key, nil
		}
	}
	key, err := s.api.CreateKey(ctx, tenant, "dev", string(apiserver.RoleUser))
	if err != nil {
		return "", fmt.Errorf("create an API key for tenant %q: %w", tenant, err)
	}
	return key, nil
}

// writeDevKey writes DATA_DIR/dev-api-key (0600) atomically.
func (s *ferryServer) writeDevKey(key string) (string, error) {
	p := filepath.Join(s.dataDir, devKeyFile)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(key+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write the dev API key: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return "", fmt.Errorf("write the dev API key: %w", err)
	}
	return p, nil
}

// keyOfTenant reports whether key is a working user key of tenant.
func (s *ferryServer) keyOfTenant(ctx context.Context, key, tenant string) bool {
	cl := s.inProcess(key)
	var list struct {
		Items []struct {
			Tenant string `json:"tenant"`
		} `json:"items"`
	}
	_, err := cl.do(ctx, http.MethodGet, "/v1/api-keys?pageSize=1", nil, nil, &list)
	return err == nil && len(list.Items) > 0 && list.Items[0].Tenant == tenant
}

// parseNetworks reads --allow-networks: comma-separated CIDR prefixes, or
// addresses, which stand for themselves alone (/32, /128).
func parseNetworks(v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil || a.Zone() != "" {
			return out, fmt.Errorf("%q is not a network: write it in CIDR notation (127.0.0.1/32, 169.254.0.0/16, ::1/128) or as an address", f)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
