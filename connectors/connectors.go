// Package connectors is ferry's small connector SDK: the Source, Sink and Tester
// interfaces, records, error categories, and the registry in which every connector
// declares its HCL schema. It depends on nothing of ferry's; connectors live in
// sub-packages and register themselves in init().
package connectors

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"sync"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/gocty"
)

// Record is one unit of data flowing through a pipeline.
//
// A source may fill Raw (undecoded JSON) instead of Data so that decoding happens
// in the engine's parallel workers rather than on the single reading goroutine.
type Record struct {
	// Key is the entity key, set by the engine from the mapping's key expression.
	Key string
	// Data is the decoded record. Nil until decoded when the source set Raw.
	Data map[string]any
	// Raw is the record as JSON bytes, if the source produced it that way.
	Raw json.RawMessage
	// Position says where the record came from (file:line, page, offset), for errors.
	Position string
}

// Decode fills Data from Raw if needed.
func (r *Record) Decode() error {
	if r.Data != nil || r.Raw == nil {
		if r.Data == nil {
			r.Data = map[string]any{}
		}
		return nil
	}
	v, err := DecodeJSON(r.Raw)
	if err != nil {
		return Permanent(fmt.Errorf("record %s is not valid JSON: %w", r.Position, err))
	}
	switch m := v.(type) {
	case map[string]any:
		r.Data = m
	case nil:
		r.Data = map[string]any{}
	default:
		return Permanent(fmt.Errorf("record %s is a JSON %s, not an object", r.Position, jsonKind(v)))
	}
	return nil
}

// Operation is what a sink does with a record.
type Operation string

const (
	OpCreate Operation = "create"
	OpUpdate Operation = "update"
	OpUpsert Operation = "upsert"
	OpDelete Operation = "delete"
)

// Operations lists the valid operations, for validation messages.
var Operations = []Operation{OpCreate, OpUpdate, OpUpsert, OpDelete}

// Write is one record handed to a sink.
type Write struct {
	Key       string
	Operation Operation
	// Path is the evaluated per-record target path expression ("" when none).
	Path   string
	Record map[string]any
}

// ReadRequest tells a source what to read.
type ReadRequest struct {
	// Cursor is the last settled cursor value for incremental sources ("" = from the start).
	Cursor string
	// CursorField names the record field that carries the cursor ("" = not incremental).
	CursorField string
}

// Source reads records. Read calls emit for every record in order and stops at
// the first error emit returns. It returns nil at the end of the input.
type Source interface {
	Read(ctx context.Context, req ReadRequest, emit func(Record) error) error
}

// Sink writes records. Write returns one error per write (nil = success), in the
// same order; a nil slice means all succeeded. Errors should be categorised with
// Permanent or Transient. Close flushes and releases resources.
type Sink interface {
	Write(ctx context.Context, writes []Write) []error
	Close(ctx context.Context) error
}

// Tester checks that a connection works (credentials, reachability).
type Tester interface {
	Test(ctx context.Context) error
}

// Connection is an opened connection profile; it makes sources and sinks.
// Config values are the connector-specific attributes of the integration's
// source or target block, decoded with the connector's SourceSchema/TargetSchema.
type Connection interface {
	Source(cfg cty.Value) (Source, error)
	Sink(cfg cty.Value) (Sink, error)
}

// Env is what a connector may use of its surroundings when it opens.
type Env struct {
	// Dir is the directory of the configuration; relative paths resolve against it.
	Dir string
	// Root, when set, confines the connector: it must not touch the file
	// system outside this directory. A server sets it to the tenant's files
	// directory, so that one tenant cannot read or write the host's files or
	// another tenant's; ferry run leaves it empty (the user's own machine).
	// Connectors resolve the paths they are given with InRoot and open them
	// through an os.Root, which also refuses symbolic links leading out.
	Root string
	// Net, when set, is the network policy of the connector: every
	// connection it opens must go through a dialer of Net.Dialer (or with
	// Net.Control), so that the policy sees the address actually dialled,
	// and not through a proxy of the environment, which would dial on its
	// own. A server sets it for its tenants (not loopback, not the cloud
	// metadata service); ferry run leaves it nil: unrestricted.
	Net *NetPolicy
}

// InRoot returns where p, a path relative to Dir, lies inside Root, as a
// local path for the methods of an os.Root opened on Root ("." for Root
// itself). It refuses an absolute p, and one whose ".." lead out of Root,
// with an error that names p. Call it only when Root is set.
func (e Env) InRoot(p string) (string, error) {
	if filepath.IsAbs(p) || filepath.VolumeName(p) != "" {
		return "", fmt.Errorf("path %q is absolute; on this server paths must be relative to the tenant's files directory", p)
	}
	base := "."
	if e.Dir != "" && filepath.Clean(e.Dir) != filepath.Clean(e.Root) {
		dir, derr := filepath.Abs(e.Dir)
		root, rerr := filepath.Abs(e.Root)
		rel, err := filepath.Rel(root, dir)
		if derr != nil || rerr != nil || err != nil || !filepath.IsLocal(rel) {
			return "", fmt.Errorf("path %q: the configuration's directory is outside the tenant's files directory", p)
		}
		base = rel
	}
	full := filepath.Join(base, p)
	if !filepath.IsLocal(full) {
		return "", fmt.Errorf("path %q leads out of the tenant's files directory; on this server paths must be relative to the tenant's files directory and stay inside it", p)
	}
	return full, nil
}

// Connector describes one connector type.
type Connector struct {
	// Type is the value of `type` in a connection block.
	Type string
	// Description is one line for help output.
	Description string
	// Connection is the schema of the connection block's own attributes (not `type`).
	Connection hcldec.ObjectSpec
	// Source and Target are the schemas of the connector-specific attributes of an
	// integration's source and target blocks. Nil means the connector cannot be
	// used in that role.
	Source hcldec.ObjectSpec
	Target hcldec.ObjectSpec
	// Open opens a connection from its decoded attributes, secrets resolved.
	Open func(env Env, cfg cty.Value) (Connection, error)
	// Check, when set, checks the attributes of a connection block, and of a
	// source or a target block that uses it (cty.NilVal when none), against
	// env without touching the file system or the network: a server calls
	// it when a configuration is planned or applied, so that a path leading
	// out of env.Root is refused then rather than when a run opens it.
	// Values a run only knows (secrets) are null here.
	Check func(env Env, conn, source, target cty.Value) error
}

var (
	mu       sync.RWMutex
	registry = map[string]*Connector{}
)

// Register adds a connector; it panics on a duplicate type (a programming error
// caught at init time).
func Register(c *Connector) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := registry[c.Type]; dup {
		panic("connectors: duplicate registration of " + c.Type)
	}
	registry[c.Type] = c
}

// Lookup returns the connector of a type.
func Lookup(typ string) (*Connector, bool) {
	mu.RLock()
	defer mu.RUnlock()
	c, ok := registry[typ]
	return c, ok
}

// Types lists registered connector types, sorted.
func Types() []string {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]string, 0, len(registry))
	for t := range registry {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

func jsonKind(v any) string {
	switch v.(type) {
	case []any:
		return "array"
	case string:
		return "string"
	case bool:
		return "boolean"
	default:
		return "number"
	}
}

// Flusher is implemented by sinks that buffer writes. The durable runtime calls
// Flush after a message's writes and before it acknowledges the message, so an
// acknowledged record is never only in a process's memory.
type Flusher interface {
	Flush(ctx context.Context) error
}

// ConcurrentSink is implemented by sinks whose Write may be called from several
// goroutines at once. Other sinks get one call at a time.
type ConcurrentSink interface {
	ConcurrentWrites() bool
}

// SinkOptions say how a sink is opened.
type SinkOptions struct {
	// Continue is set when the sink continues earlier output: an interrupted
	// run resumed, or DLQ entries replayed. A sink that replaces its target
	// when a run starts (a file is truncated) must keep what is there.
	Continue bool
}

// SinkOpener is implemented by connections whose sinks depend on SinkOptions.
// Callers use OpenSink, which falls back to Connection.Sink.
type SinkOpener interface {
	SinkWith(cfg cty.Value, opts SinkOptions) (Sink, error)
}

// OpenSink opens a sink of conn with opts.
func OpenSink(conn Connection, cfg cty.Value, opts SinkOptions) (Sink, error) {
	if o, ok := conn.(SinkOpener); ok {
		return o.SinkWith(cfg, opts)
	}
	return conn.Sink(cfg)
}

// DecodeConfig decodes a connection, source or target block's decoded
// attributes (cfg, as Open, Source and Sink get them) into a struct with cty
// tags. what names the block in errors ("http connection"); a null cfg
// leaves into as it is. Errors are permanent: the configuration is wrong.
func DecodeConfig(cfg cty.Value, into any, what string) error {
	if cfg == cty.NilVal || cfg.IsNull() {
		return nil
	}
	if !cfg.IsWhollyKnown() {
		return Permanent(fmt.Errorf("%s: configuration is not known yet", what))
	}
	if err := gocty.FromCtyValue(cfg, into); err != nil {
		return Permanent(fmt.Errorf("%s: invalid configuration: %w", what, err))
	}
	return nil
}
