// Package lang reads ferry's HCL configuration: schema, decoding, references and
// their graph, functions, diagnostics, formatting.
//
// The decoded structs keep source ranges so that later stages (the engine's expr
// compiler, plan) can report problems at the right file, line and column.
package lang

import (
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"

	"github.com/ferryhq/ferry/connectors"
)

// Config is one tenant's configuration: every *.hcl and *.hcl.json file of a directory.
type Config struct {
	// Dir is the directory the files were loaded from.
	Dir string
	// Root, when set, confines the connectors: they must not touch the file
	// system outside it (connectors.Env.Root). A server sets it to the
	// tenant's files directory; ferry run leaves it empty.
	Root string
	// Net, when set, is the connectors' network policy (connectors.Env.Net):
	// a server sets it for its tenants; ferry run leaves it nil.
	Net *connectors.NetPolicy
	// Files maps file name (as given in diagnostics) to its parsed file, for snippets.
	Files map[string]*hcl.File

	Ferry        *Ferry
	Variables    map[string]*Variable
	Locals       map[string]*Local
	Tables       map[string]*Table
	Connections  map[string]*Connection
	Mappings     map[string]*Mapping
	Integrations map[string]*Integration
	Schedules    map[string]*Schedule
	Tests        map[string]*Test

	// Dependencies maps a resource address ("integration.x") to the addresses it
	// refers to directly ("connection.shop", "mapping.m", "var.v", "local.l").
	Dependencies map[string][]string
}

// Env is what connectors opened for this configuration get: relative paths
// against Dir, confined to Root, connections under Net.
func (c *Config) Env() connectors.Env {
	return connectors.Env{Dir: c.Dir, Root: c.Root, Net: c.Net}
}

// Ferry is the `ferry` block.
type Ferry struct {
	Tenant          string
	RequiredVersion string
	DeclRange       hcl.Range
}

// Variable is a `variable` block with its final value (default, -var, -var-file or
// FERRY_VAR_<name>).
type Variable struct {
	Name        string
	Type        cty.Type
	Default     cty.Value
	Description string
	Sensitive   bool
	Value       cty.Value
	DeclRange   hcl.Range
}

// Local is one attribute of a `locals` block, evaluated.
type Local struct {
	Name      string
	Value     cty.Value
	DeclRange hcl.Range
}

// Table is a static lookup table (`table "name" { values = {...} default = ... }`),
// used in expressions as lookup("name", key).
type Table struct {
	Name      string
	Values    map[string]any
	Default   any // nil when absent
	DeclRange hcl.Range
}

// Expr is a per-record expr-lang expression written as an HCL string or heredoc.
// It is never evaluated by HCL.
type Expr struct {
	Source string
	// Range is the range of the whole HCL expression (quotes included).
	Range hcl.Range
	// start is the file position of Source's first byte when the literal was
	// written without escapes (so byte offsets map 1:1 onto the file); nil when
	// it cannot be mapped exactly. See SubRange.
	start *hcl.Pos
}

// Connection is a `connection` block.
type Connection struct {
	Name string
	Type string
	// Config holds the connector-specific attributes decoded with the connector's
	// schema. secret("x") values are strings marked with SecretMark.
	Config    cty.Value
	TypeRange hcl.Range
	DeclRange hcl.Range
}

// Field is one target field of a mapping. Path is split on "." for nested targets.
type Field struct {
	Path []string
	Expr *Expr
	// Cast is "", "string", "int", "float", "bool", "decimal" or "time".
	Cast string
}

// Mapping is a `mapping` block.
type Mapping struct {
	Name   string
	Key    *Expr // may be nil
	Filter *Expr // may be nil
	Fields []*Field
	// Defaults are set on the output when the field is missing or nil after mapping.
	Defaults map[string]any
	// Unset lists output paths removed at the end.
	Unset [][]string
	// PassThrough copies every input field before the mapped fields are applied.
	PassThrough bool
	DeclRange   hcl.Range
}

// Integration is an `integration` block.
type Integration struct {
	Name      string
	Source    *Source
	Normalize *Normalize // may be nil
	Transform *Transform // may be nil: records pass unchanged
	Target    *Target
	Retry     *Retry // never nil after decoding (defaults filled in)
	Webhook   *Webhook
	// AllowParallelRuns lets a second run start while one is in progress.
	AllowParallelRuns bool
	// Workers is the number of parallel record workers (default: number of CPUs).
	Workers   int
	DeclRange hcl.Range
}

// Source is an integration's `source` block.
type Source struct {
	Connection string // name of the connection
	// Cursor names the record field used for incremental reads ("" = full reads).
	Cursor string
	// Config holds the connector-specific attributes.
	Config          cty.Value
	ConnectionRange hcl.Range
	DeclRange       hcl.Range
}

// Normalize is an integration's `normalize` block.
type Normalize struct {
	// Require lists fields that must be present and non-null (dotted paths allowed).
	Require []string
	// Trim trims surrounding whitespace of every string field (default true).
	Trim bool
	// Types coerces fields: path -> "string" | "int" | "float" | "bool" | "time".
	Types     map[string]string
	DeclRange hcl.Range
}

// Transform is an integration's `transform` block.
type Transform struct {
	Mapping string // name of the mapping
	// SkipUnchanged skips records whose mapped content hash did not change since the
	// last successful write of the same entity key.
	SkipUnchanged bool
	MappingRange  hcl.Range
	DeclRange     hcl.Range
}

// Target is an integration's `target` block.
type Target struct {
	Connection string
	Operation  string // create | update | upsert | delete
	Path       *Expr  // optional per-record path expression
	BatchSize  int    // records per sink call (default 100)
	// Timeout bounds one sink call (a batch of BatchSize records); 0: the
	// runtime's default (ferry run/serve --sink-timeout, else 5m).
	Timeout time.Duration
	// Config holds the connector-specific attributes.
	Config          cty.Value
	ConnectionRange hcl.Range
	DeclRange       hcl.Range
}

// Retry is an integration's `retry` block.
type Retry struct {
	MaxAttempts int           // default 5
	Initial     time.Duration // default 1s
	Max         time.Duration // default 5m
	Multiplier  float64       // default 2
	Jitter      float64       // 0..1, default 0.2
}

// Webhook is an integration's `webhook` block.
type Webhook struct {
	Verify string // shopify | hmac | token | basic | none
	// DedupeWindow is how long a delivery id is remembered after its first
	// delivery: a repeat within it is a duplicate, one after it a new
	// delivery (dedupe_window, DefaultDedupeWindow when absent).
	DedupeWindow time.Duration
	// Config holds the remaining attributes (secret, header, algorithm, ...).
	Config    map[string]cty.Value
	DeclRange hcl.Range
}

// The range of a webhook's dedupe_window. Every remembered id costs memory
// on the server (a key in its store), so the default covers the retries of
// common senders (Shopify: 4 hours) with room, not every sender's. The
// store expires keys to the second; the maximum is what the server's
// idempotency store keeps at most (its bucket's age limit), long enough for
// Stripe's 3 days of retries.
const (
	DefaultDedupeWindow = 24 * time.Hour
	MinDedupeWindow     = time.Second
	MaxDedupeWindow     = 72 * time.Hour
)

// Schedule is a `schedule` block.
type Schedule struct {
	Name        string
	Integration string
	Cron        string
	Timezone    string
	Location    *time.Location
	Concurrency string // allow | forbid | replace (default forbid)
	MissedFire  string // skip | run_once (default skip)
	Enabled     bool
	DeclRange   hcl.Range
}

// Test is a `test` block: either a mapping test or an integration test.
type Test struct {
	Name string
	// Mapping test.
	Mapping string
	Input   any            // one record (mapping test)
	Expect  map[string]any // expected mapped record; nil with ExpectSkip
	// ExpectSkip says the record must be skipped by the filter.
	ExpectSkip bool
	// Integration test: Records stand in for the source; writes are captured.
	Integration  string
	Records      []any
	ExpectWrites []any          // expected target writes (records), in order
	ExpectCounts map[string]int // optional: total, success, failed, skipped
	DeclRange    hcl.Range
}
