// Package file is ferry's connector for local files: it reads JSON (an array, a
// single object, or newline-delimited), NDJSON and CSV, and writes NDJSON, JSON
// arrays and CSV.
//
// Reading and writing stream: memory stays flat however large the file. Sources
// hand the engine each record's JSON bytes (connectors.Record.Raw) undecoded, so
// decoding happens in the engine's parallel workers.
//
//	connection "files" {
//	  type   = "file"
//	  path   = "data"        # base directory, relative to the configuration (default: its directory)
//	  format = "json"        # default format for sources and targets (optional)
//	}
//
//	integration "import" {
//	  source {
//	    connection = connection.files
//	    path       = "exports/products-*.json"  # a file or a glob, relative to the connection path
//	    format     = "auto"                     # json | ndjson | csv | auto (default)
//	    records    = "data.products"            # dotted path to the array inside a JSON document
//	  }
//	  target {
//	    connection = connection.files
//	    path       = "out/items.csv"
//	    format     = "csv"                      # ndjson | json | csv (default: by extension, else ndjson)
//	    columns    = ["sku", "name", "price"]   # csv only; default: the first record's keys, sorted
//	    append     = false                      # default false: the file is truncated when the run starts
//	  }
//	}
//
// Confined (connectors.Env.Root set, as on ferry serve), every path must be
// relative and stay inside the root, and files are opened through an os.Root,
// so that neither "..", an absolute path, a glob nor a symbolic link reaches
// a file outside it.
package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"

	"github.com/ferryhq/ferry/connectors"
)

// Type is the connection type of this connector.
const Type = "file"

// Formats.
const (
	FormatAuto   = "auto"
	FormatJSON   = "json"
	FormatNDJSON = "ndjson"
	FormatCSV    = "csv"
)

// bufferSize is the size of the read and write buffers.
const bufferSize = 256 << 10

// maxLineSize bounds one NDJSON line.
const maxLineSize = 64 << 20

// ConnectionSpec is the schema of a file connection block's own attributes.
var ConnectionSpec = hcldec.ObjectSpec{
	"path":   &hcldec.AttrSpec{Name: "path", Type: cty.String},
	"format": &hcldec.AttrSpec{Name: "format", Type: cty.String},
}

// SourceSpec is the schema of the file connector's attributes in a source block.
var SourceSpec = hcldec.ObjectSpec{
	"path":    &hcldec.AttrSpec{Name: "path", Type: cty.String, Required: true},
	"format":  &hcldec.AttrSpec{Name: "format", Type: cty.String},
	"records": &hcldec.AttrSpec{Name: "records", Type: cty.String},
}

// TargetSpec is the schema of the file connector's attributes in a target block.
var TargetSpec = hcldec.ObjectSpec{
	"path":    &hcldec.AttrSpec{Name: "path", Type: cty.String, Required: true},
	"format":  &hcldec.AttrSpec{Name: "format", Type: cty.String},
	"columns": &hcldec.AttrSpec{Name: "columns", Type: cty.List(cty.String)},
	"append":  &hcldec.AttrSpec{Name: "append", Type: cty.Bool},
}

func init() {
	connectors.Register(&connectors.Connector{
		Type:        Type,
		Description: "Local files: read JSON, NDJSON and CSV; write NDJSON, JSON arrays and CSV",
		Connection:  ConnectionSpec,
		Source:      SourceSpec,
		Target:      TargetSpec,
		Open:        Open,
		Check:       check,
	})
}

type connectionConfig struct {
	Path   *string `cty:"path"`
	Format *string `cty:"format"`
}

type sourceConfig struct {
	Path    *string `cty:"path"`
	Format  *string `cty:"format"`
	Records *string `cty:"records"`
}

type targetConfig struct {
	Path    *string  `cty:"path"`
	Format  *string  `cty:"format"`
	Columns []string `cty:"columns"`
	Append  *bool    `cty:"append"`
}

// Connection is an opened file connection: a base directory and a default format.
type Connection struct {
	// Dir is the absolute or env-relative base directory paths resolve against.
	Dir string
	// Format is the default format of sources and targets ("" = none).
	Format string

	// root confines the connection (connectors.Env.Root; "" = not confined);
	// rel is Dir inside it, a local path for the methods of an os.Root.
	root, rel string
}

var (
	_ connectors.Connection = (*Connection)(nil)
	_ connectors.SinkOpener = (*Connection)(nil)
	_ connectors.Tester     = (*Connection)(nil)
)

// Open opens a file connection from its decoded attributes. It does not touch the
// file system; Test checks that the directory exists.
func Open(env connectors.Env, cfg cty.Value) (connectors.Connection, error) {
	var c connectionConfig
	if err := decode(cfg, &c, "connection"); err != nil {
		return nil, err
	}
	conn := &Connection{Dir: baseDir(env, str(c.Path))}
	if env.Root != "" {
		rel, err := env.InRoot(str(c.Path))
		if err != nil {
			return nil, connectors.Permanent(fmt.Errorf("file connection: %w", err))
		}
		conn.root, conn.rel = env.Root, rel
	}
	if f := str(c.Format); f != "" {
		if !oneOf(f, FormatAuto, FormatJSON, FormatNDJSON, FormatCSV) {
			return nil, connectors.Permanent(fmt.Errorf(`file connection: unknown format %q; use "json", "ndjson", "csv" or "auto"`, f))
		}
		conn.Format = f
	}
	return conn, nil
}

// baseDir is the directory of a connection whose path is p.
func baseDir(env connectors.Env, p string) string {
	dir := env.Dir
	if dir == "" {
		dir = "."
	}
	if p != "" {
		dir = resolve(dir, p)
	}
	return filepath.Clean(dir)
}

// Test checks that the base directory exists and can be read.
func (c *Connection) Test(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if c.root == "" {
		fi, err := os.Stat(c.Dir)
		return c.checkDir(fi, err, func() (*os.File, error) { return os.Open(c.Dir) }, func(error) string { return "" })
	}
	root, err := os.OpenRoot(c.root)
	if err != nil {
		return c.checkDir(nil, err, nil, escapeHint)
	}
	defer root.Close()
	fi, err := root.Stat(c.rel)
	return c.checkDir(fi, err, func() (*os.File, error) { return root.Open(c.rel) }, escapeHint)
}

// checkDir judges the base directory from its Stat (fi, err), then reads it
// with open; hint adds to an error that is neither a missing file nor a
// denied one. Confined or not, the checks and their messages are the same.
func (c *Connection) checkDir(fi os.FileInfo, err error, open func() (*os.File, error), hint func(error) string) error {
	dir := shownDir(c.root, c.Dir, c.rel)
	if errors.Is(err, os.ErrNotExist) {
		return connectors.Permanent(fmt.Errorf("file connection: directory %s does not exist; create it or fix the connection's path", dir))
	}
	if err != nil {
		return connectors.Permanent(fmt.Errorf("file connection: %w%s", hideRoot(c.root, err), hint(err)))
	}
	if !fi.IsDir() {
		return connectors.Permanent(fmt.Errorf("file connection: %s is not a directory; the connection's path must name a directory", dir))
	}
	d, err := open()
	if err != nil {
		return connectors.Permanent(fmt.Errorf("file connection: cannot read directory %s: %w; check its permissions", dir, hideRoot(c.root, err)))
	}
	defer d.Close()
	if _, err := d.Readdirnames(1); err != nil && err != io.EOF {
		return connectors.Permanent(fmt.Errorf("file connection: cannot read directory %s: %w; check its permissions", dir, hideRoot(c.root, err)))
	}
	return nil
}

// shownDir is how a connection's directory appears in errors: confined
// (root set), as the tenant wrote it, relative to its files directory (rel);
// where the server keeps that directory is no business of the tenant's.
func shownDir(root, dir, rel string) string {
	if root == "" {
		return dir
	}
	if rel == "" || rel == "." {
		return "the tenant's files directory"
	}
	return filepath.ToSlash(rel) + " (in the tenant's files directory)"
}

// hideRoot is err with the path of a confined connection's root left out.
func hideRoot(root string, err error) error {
	var pe *os.PathError
	if root == "" || !errors.As(err, &pe) || !strings.HasPrefix(pe.Path, root) {
		return err
	}
	return fmt.Errorf("%s %s: %w", pe.Op, shownDir(root, "", strings.TrimPrefix(strings.TrimPrefix(pe.Path, root), string(filepath.Separator))), pe.Err)
}

// escapeHint follows an error of an os.Root: other than a missing file or a
// permission, its error ("path escapes from parent") means a symbolic link
// that leads out of the root.
func escapeHint(err error) string {
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
		return ""
	}
	return "; on this server a path must stay inside the tenant's files directory, and so must the symbolic links it goes through"
}

// inRoot is connectors.Env.InRoot for a path relative to the connection's directory.
func (c *Connection) inRoot(p string) (string, error) {
	return connectors.Env{Dir: c.Dir, Root: c.root}.InRoot(p)
}

// check is the connector's Check: the paths known before a run must stay
// inside env.Root. It touches nothing.
func check(env connectors.Env, conn, source, target cty.Value) error {
	if env.Root == "" {
		return nil
	}
	var cc connectionConfig
	if err := decode(conn, &cc, "connection"); err != nil {
		return err
	}
	if _, err := env.InRoot(str(cc.Path)); err != nil {
		return connectors.Permanent(fmt.Errorf("file connection: %w", err))
	}
	c := &Connection{Dir: baseDir(env, str(cc.Path)), root: env.Root}
	if source != cty.NilVal {
		var sc sourceConfig
		if err := decode(source, &sc, "source"); err != nil {
			return err
		}
		if _, err := c.inRoot(str(sc.Path)); err != nil {
			return connectors.Permanent(fmt.Errorf("file source: %w", err))
		}
	}
	if target != cty.NilVal {
		var tc targetConfig
		if err := decode(target, &tc, "target"); err != nil {
			return err
		}
		if _, err := c.inRoot(str(tc.Path)); err != nil {
			return connectors.Permanent(fmt.Errorf("file target: %w", err))
		}
	}
	return nil
}

// Source makes a source from the attributes of an integration's source block.
func (c *Connection) Source(cfg cty.Value) (connectors.Source, error) {
	var sc sourceConfig
	if err := decode(cfg, &sc, "source"); err != nil {
		return nil, err
	}
	pattern := str(sc.Path)
	if pattern == "" {
		return nil, connectors.Permanent(errors.New(`file source: path is required: set path = "name.json" (a file or a glob, relative to the connection path)`))
	}
	format := str(sc.Format)
	if format == "" {
		format = c.Format
	}
	if format == "" {
		format = FormatAuto
	}
	if !oneOf(format, FormatAuto, FormatJSON, FormatNDJSON, FormatCSV) {
		return nil, connectors.Permanent(fmt.Errorf(`file source %q: unknown format %q; use "json", "ndjson", "csv" or "auto"`, pattern, format))
	}
	s := &source{dir: c.Dir, pattern: pattern, format: format, root: c.root}
	if c.root != "" {
		rel, err := c.inRoot(pattern)
		if err != nil {
			return nil, connectors.Permanent(fmt.Errorf("file source: %w", err))
		}
		s.rel, s.relDir = rel, c.rel
	}
	if r := str(sc.Records); r != "" {
		if format == FormatNDJSON || format == FormatCSV {
			return nil, connectors.Permanent(fmt.Errorf(`file source %q: records applies only to JSON documents, not format %q; remove records or set format = "json"`, pattern, format))
		}
		s.records = strings.Split(r, ".")
		for _, seg := range s.records {
			if seg == "" {
				return nil, connectors.Permanent(fmt.Errorf(`file source %q: records %q has an empty segment; write a dotted path such as "data.products"`, pattern, r))
			}
		}
	}
	return s, nil
}

// Sink makes a sink from the attributes of an integration's target block. It
// creates the file's directory and opens the file (truncating it unless append
// is set), so that a file that cannot be written fails the run before any
// record is read.
func (c *Connection) Sink(cfg cty.Value) (connectors.Sink, error) {
	return c.SinkWith(cfg, connectors.SinkOptions{})
}

// SinkWith opens a file target. With opts.Continue (a resumed run, a DLQ
// replay) the file is appended to instead of truncated, whatever append says:
// truncating would drop records that earlier attempts already delivered.
func (c *Connection) SinkWith(cfg cty.Value, opts connectors.SinkOptions) (connectors.Sink, error) {
	var tc targetConfig
	if err := decode(cfg, &tc, "target"); err != nil {
		return nil, err
	}
	p := str(tc.Path)
	if p == "" {
		return nil, connectors.Permanent(errors.New(`file target: path is required: set path = "out.ndjson" (relative to the connection path)`))
	}
	format := str(tc.Format)
	if format == "" && c.Format != FormatAuto {
		format = c.Format
	}
	if format == "" || format == FormatAuto {
		format = formatByExtension(p, FormatNDJSON)
	}
	if !oneOf(format, FormatJSON, FormatNDJSON, FormatCSV) {
		return nil, connectors.Permanent(fmt.Errorf(`file target %q: unknown format %q; use "ndjson", "json" or "csv"`, p, format))
	}
	if tc.Columns != nil && format != FormatCSV {
		return nil, connectors.Permanent(fmt.Errorf(`file target %q: columns applies only to format "csv", not %q`, p, format))
	}
	seen := map[string]bool{}
	for _, col := range tc.Columns {
		if seen[col] {
			return nil, connectors.Permanent(fmt.Errorf("file target %q: column %q is listed twice in columns", p, col))
		}
		seen[col] = true
	}
	appendMode := (tc.Append != nil && *tc.Append) || opts.Continue
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if appendMode {
		flags = os.O_RDWR | os.O_CREATE
	}
	f, err := c.openTarget(p, flags)
	if err != nil {
		return nil, err
	}
	return openSink(f, p, format, tc.Columns, appendMode)
}

// openTarget creates the directory of target path p and opens p with flags.
func (c *Connection) openTarget(p string, flags int) (*os.File, error) {
	if c.root == "" {
		path := resolve(c.Dir, p)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, connectors.Permanent(fmt.Errorf("file target %s: cannot create its directory: %w", p, err))
		}
		f, err := os.OpenFile(path, flags, 0o644)
		if err != nil {
			return nil, connectors.Permanent(fmt.Errorf("file target %s: cannot open for writing: %w", p, err))
		}
		return f, nil
	}
	rel, err := c.inRoot(p)
	if err != nil {
		return nil, connectors.Permanent(fmt.Errorf("file target: %w", err))
	}
	// The root itself is the server's choice (a tenant's directory, created
	// on first use); everything below it goes through the os.Root.
	if err := os.MkdirAll(c.root, 0o755); err != nil {
		return nil, connectors.Permanent(fmt.Errorf("file target %s: cannot create the tenant's files directory: %w", p, err))
	}
	root, err := os.OpenRoot(c.root)
	if err != nil {
		return nil, connectors.Permanent(fmt.Errorf("file target %s: %w", p, err))
	}
	defer root.Close()
	if err := root.MkdirAll(filepath.Dir(rel), 0o755); err != nil {
		return nil, connectors.Permanent(fmt.Errorf("file target %s: cannot create its directory: %w%s", p, err, escapeHint(err)))
	}
	f, err := root.OpenFile(rel, flags, 0o644)
	if err != nil {
		return nil, connectors.Permanent(fmt.Errorf("file target %s: cannot open for writing: %w%s", p, err, escapeHint(err)))
	}
	return f, nil
}

func decode(cfg cty.Value, into any, what string) error {
	return connectors.DecodeConfig(cfg, into, "file "+what)
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func oneOf(s string, options ...string) bool {
	for _, o := range options {
		if s == o {
			return true
		}
	}
	return false
}

// resolve joins p to dir unless p is absolute.
func resolve(dir, p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(dir, p)
}

// formatByExtension returns the format a file name's extension implies, or def.
func formatByExtension(name, def string) string {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".json":
		return FormatJSON
	case ".ndjson", ".jsonl":
		return FormatNDJSON
	case ".csv":
		return FormatCSV
	}
	return def
}
