package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/ferryhq/ferry/engine"
	"github.com/ferryhq/ferry/lang"
	"github.com/ferryhq/ferry/runtime"
)

// defaultTenant is the tenant of a configuration without ferry { tenant }.
const defaultTenant = "default"

// connFlags say where the runtime's data lives: the embedded server's data
// directory, or an external NATS.
type connFlags struct {
	dataDir  string
	natsURL  string
	creds    string
	tls      runtime.TLSOptions
	sync     string
	replicas int
	// sinkTimeout is the runtime's default limit of one target call (0: its default).
	sinkTimeout time.Duration
	retention   retentionFlags // declareRetention (retention.go)
}

func (f *connFlags) declare(fs *flag.FlagSet) {
	fs.StringVar(&f.dataDir, "data-dir", "", "data directory of the embedded runtime: run history, DLQ, cursors (default: .ferry in the configuration directory)")
	fs.StringVar(&f.natsURL, "nats-url", "", "use an external NATS (nats://host:4222) instead of the embedded runtime")
	fs.StringVar(&f.creds, "creds", "", "NATS credentials file for --nats-url")
	fs.StringVar(&f.tls.CAFile, "tls-ca", "", "CA certificate that signed the external NATS's certificate")
	fs.StringVar(&f.tls.CertFile, "tls-cert", "", "client certificate for mutual TLS with the external NATS (with --tls-key)")
	fs.StringVar(&f.tls.KeyFile, "tls-key", "", "client key for --tls-cert")
	f.declareReplicas(fs)
}

// declareReplicas: on a NATS cluster every stream and bucket must be
// replicated, or losing one NATS server loses ferry's data with it.
func (f *connFlags) declareReplicas(fs *flag.FlagSet) {
	fs.IntVar(&f.replicas, "replicas", 0, "replicas of ferry's streams and buckets on an external NATS cluster: 3 survives the loss of one server (env FERRY_NATS_REPLICAS; default 1)")
}

// resolvedReplicas is --replicas, else FERRY_NATS_REPLICAS, else 1.
func (f *connFlags) resolvedReplicas() (int, error) {
	n := f.replicas
	if n == 0 {
		if v := os.Getenv("FERRY_NATS_REPLICAS"); v != "" {
			if _, err := fmt.Sscanf(v, "%d", &n); err != nil {
				return 0, fmt.Errorf("FERRY_NATS_REPLICAS=%q is not a number: set it to 1, 3 or 5", v)
			}
		}
	}
	switch {
	case n == 0:
		return 1, nil
	case n < 1 || n > 5:
		return 0, fmt.Errorf("--replicas %d: JetStream keeps 1 to 5 replicas; use 3 on a 3-node cluster", n)
	case n > 1 && f.natsURL == "":
		return 0, fmt.Errorf("--replicas %d needs a NATS cluster: add --nats-url (the embedded NATS is a single server)", n)
	}
	return n, nil
}

func (f *connFlags) checkSinkTimeout() error {
	if f.sinkTimeout < 0 {
		return fmt.Errorf("invalid --sink-timeout %s: it must be positive, like 30s or 5m (or leave it out for the default, %s)", f.sinkTimeout, runtime.DefaultSinkTimeout)
	}
	return nil
}

// declareSinkTimeout: the commands that run integrations (run, serve) bound
// each call of a target that sets no timeout of its own.
func (f *connFlags) declareSinkTimeout(fs *flag.FlagSet) {
	fs.DurationVar(&f.sinkTimeout, "sink-timeout", 0, fmt.Sprintf("limit of one call of a target (a batch of its batch_size records), for targets without a timeout attribute; a call over it is cancelled and its records retried (default %s)", runtime.DefaultSinkTimeout))
}

func (f *connFlags) declareSync(fs *flag.FlagSet) {
	fs.StringVar(&f.sync, "sync", runtime.SyncDefault, "embedded file store fsync policy: default (periodic) or always (every write)")
}

// resolvedDataDir is the data directory for the configuration in dir.
func (f *connFlags) resolvedDataDir(dir string) string {
	if f.dataDir != "" {
		return f.dataDir
	}
	return filepath.Join(dir, ".ferry")
}

// store is an open runtime (which holds the lock on its local data directory).
type store struct {
	*runtime.Runtime
}

// open opens the runtime for the configuration in dir. With mustExist, a
// missing local data directory is an error instead of being created (commands
// that only read or change existing data). A local data directory is locked
// while open: the embedded server's store cannot be shared by two processes.
func (f *connFlags) open(ctx context.Context, c *ctx, dir string, mustExist bool) (*store, error) {
	if f.sync != "" && f.sync != runtime.SyncDefault && f.sync != runtime.SyncAlways {
		return nil, fmt.Errorf("invalid --sync %q: use default or always", f.sync)
	}
	tlsSet := f.tls != (runtime.TLSOptions{})
	if (f.creds != "" || tlsSet) && f.natsURL == "" {
		return nil, fmt.Errorf("--creds and --tls-* apply to an external NATS: add --nats-url")
	}
	if (f.tls.CertFile == "") != (f.tls.KeyFile == "") {
		return nil, fmt.Errorf("--tls-cert and --tls-key go together")
	}
	replicas, err := f.resolvedReplicas()
	if err != nil {
		return nil, err
	}
	if err := f.checkSinkTimeout(); err != nil {
		return nil, err
	}
	opts := runtime.Options{
		Replicas:   replicas,
		NATSURL:    f.natsURL,
		CredsFile:  f.creds,
		SyncPolicy: f.sync,
		TLS:        tlsOptions(f.tls, tlsSet),
		Logger:     slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelInfo, ReplaceAttr: dropTime})),
	}
	opts.SinkTimeout = f.sinkTimeout
	if err := f.retention.apply(&opts); err != nil {
		return nil, err
	}
	if f.natsURL == "" {
		opts.DataDir = f.resolvedDataDir(dir)
		if mustExist {
			if _, err := os.Stat(filepath.Join(opts.DataDir, "jetstream")); err != nil {
				return nil, fmt.Errorf("no run data in %s yet: run 'ferry run %s' first, or point --data-dir at another data directory", opts.DataDir, dir)
			}
		}
	}
	rt, err := runtime.Open(ctx, opts)
	if errors.Is(err, runtime.ErrDataDirBusy) {
		return nil, fmt.Errorf("the data directory %s is in use by another ferry process (a ferry run in progress?): wait until it ends and try again", opts.DataDir)
	}
	if err != nil {
		where := opts.DataDir
		if where == "" {
			where = f.natsURL
		}
		return nil, fmt.Errorf("open the runtime (%s): %w", where, err)
	}
	return &store{rt}, nil
}

func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// storeFlags are the flags of the commands that work on run data: runs, dlq,
// cursor. The configuration directory comes from --config (default "."): it
// names the tenant, the default data directory and, for replays, the
// integrations records run through.
type storeFlags struct {
	connFlags
	cf      configFlags
	config  string
	tenant  string
	jsonOut bool
}

func (f *storeFlags) declare(fs *flag.FlagSet) {
	f.connFlags.declare(fs)
	f.cf.declare(fs)
	fs.StringVar(&f.config, "config", ".", "configuration directory: its ferry { tenant } and its data directory CONFIG/.ferry")
	fs.StringVar(&f.tenant, "tenant", "", "tenant when the configuration directory has no configuration (default: \"default\")")
	fs.BoolVar(&f.jsonOut, "json", false, "print JSON instead of a table")
}

// hasConfigFiles reports whether dir holds configuration files.
func hasConfigFiles(dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if !e.IsDir() && lang.IsConfigFile(e.Name()) {
			return true
		}
	}
	return false
}

// configTenant is the tenant of a loaded configuration.
func configTenant(cfg *lang.Config) string {
	if cfg != nil && cfg.Ferry != nil && cfg.Ferry.Tenant != "" {
		return cfg.Ferry.Tenant
	}
	return defaultTenant
}

// pickTenant reconciles the configuration's tenant with --tenant.
func (f *storeFlags) pickTenant(cfgTenant string) (string, error) {
	if f.tenant != "" && cfgTenant != "" && f.tenant != cfgTenant {
		return "", fmt.Errorf("the configuration in %s belongs to tenant %q, not %q: drop --tenant or point --config elsewhere", f.config, cfgTenant, f.tenant)
	}
	if cfgTenant != "" {
		return cfgTenant, nil
	}
	if f.tenant != "" {
		return f.tenant, nil
	}
	return defaultTenant, nil
}

// readTenant returns the tenant for commands that only need its name: the
// configuration's when --config has one, else --tenant, else "default". A
// configuration with errors is tolerated when --tenant is given (you may be
// fixing it to replay a record).
func (f *storeFlags) readTenant(c *ctx) (tenant string, prog *engine.Program, ok bool) {
	if !hasConfigFiles(f.config) {
		t, err := f.pickTenant("")
		if err != nil {
			c.errorf("%v", err)
			return "", nil, false
		}
		return t, nil, true
	}
	prog, diags, files := loadProgram(c, &f.cf, f.config)
	if prog == nil {
		if f.tenant != "" {
			return f.tenant, nil, true
		}
		lang.WriteDiagnostics(c.stderr, files, diags, false)
		c.errorf("cannot read the tenant from the configuration in %s: fix it, or pass --tenant", f.config)
		return "", nil, false
	}
	t, err := f.pickTenant(configTenant(prog.Config))
	if err != nil {
		c.errorf("%v", err)
		return "", nil, false
	}
	return t, prog, true
}

// loadForReplay loads and compiles the configuration records are replayed through.
func (f *storeFlags) loadForReplay(c *ctx) (tenant string, prog *engine.Program, ok bool) {
	if !hasConfigFiles(f.config) {
		c.errorf("replay runs records through the current configuration, and %s has none: pass --config DIR", f.config)
		return "", nil, false
	}
	if prog = mustLoad(c, &f.cf, f.config); prog == nil {
		return "", nil, false
	}
	t, err := f.pickTenant(configTenant(prog.Config))
	if err != nil {
		c.errorf("%v", err)
		return "", nil, false
	}
	return t, prog, true
}

// withStore opens the runtime for a store command and runs fn with it.
func (f *storeFlags) withStore(c *ctx, fn func(ctx context.Context, rt *runtime.Runtime) int) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rt, err := f.open(ctx, c, f.config, true)
	if err != nil {
		return c.errorf("%v", err)
	}
	defer rt.Close()
	return fn(ctx, rt.Runtime)
}

// hintFlags are the flags a follow-up command needs to find the same data.
func hintFlags(dir string, f *connFlags) string {
	var b strings.Builder
	if dir != "." && dir != "" {
		fmt.Fprintf(&b, " --config %s", dir)
	}
	if f.natsURL != "" {
		fmt.Fprintf(&b, " --nats-url %s", f.natsURL)
		if f.creds != "" {
			fmt.Fprintf(&b, " --creds %s", f.creds)
		}
	} else if f.dataDir != "" {
		fmt.Fprintf(&b, " --data-dir %s", f.dataDir)
	}
	return b.String()
}

// revisionOf identifies a configuration by the content of its files.
func revisionOf(cfg *lang.Config) string {
	if cfg == nil || len(cfg.Files) == 0 {
		return ""
	}
	names := make([]string, 0, len(cfg.Files))
	for n := range cfg.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		fmt.Fprintf(h, "%s\x00%d\x00", filepath.Base(n), len(cfg.Files[n].Bytes))
		h.Write(cfg.Files[n].Bytes)
	}
	return "local-" + hex.EncodeToString(h.Sum(nil))[:12]
}

// storeError turns the runtime's errors into what to do about them.
func storeError(c *ctx, err error, what, id, tenant, see string) int {
	switch {
	case errors.Is(err, runtime.ErrNotFound):
		return c.errorf("no %s %s in tenant %s (see: %s)", what, id, tenant, see)
	case errors.Is(err, runtime.ErrInvalidName):
		return c.errorf("%v", err)
	case errors.Is(err, context.Canceled):
		return c.errorf("interrupted")
	}
	return c.errorf("%v", err)
}

// Output helpers.

func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// fmtTime prints t in RFC3339 UTC, "-" when unset.
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// fmtDuration prints end-start rounded to ms, "-" when not ended.
func fmtDuration(start, end time.Time) string {
	if start.IsZero() || end.IsZero() {
		return "-"
	}
	return end.Sub(start).Round(time.Millisecond).String()
}

// oneLine flattens s for a table cell, cut at max runes.
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	r := []rune(s)
	return string(r[:max-1]) + "…"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// pageFooter tells how to see the next page when there is one.
func pageFooter(w io.Writer, page, pageSize, shown, total int, noun string) {
	if total <= shown && page <= 1 {
		return
	}
	first := (page-1)*pageSize + 1
	if shown == 0 {
		fmt.Fprintf(w, "\nPage %d is empty: %d %s in all.\n", page, total, noun)
		return
	}
	fmt.Fprintf(w, "\n%d-%d of %d %s.", first, first+shown-1, total, noun)
	if first+shown-1 < total {
		fmt.Fprintf(w, " Next page: --page %d", page+1)
	}
	fmt.Fprintln(w)
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

func countsLine(k engine.Counts) string {
	return fmt.Sprintf("total=%d success=%d failed=%d skipped=%d retried=%d", k.Total, k.Success, k.Failed, k.Skipped, k.Retried)
}

func tlsOptions(t runtime.TLSOptions, set bool) *runtime.TLSOptions {
	if !set {
		return nil
	}
	return &t
}
