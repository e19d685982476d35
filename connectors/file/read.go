package file

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/ferryhq/ferry/connectors"
)

// source reads the files matching a path or glob pattern.
type source struct {
	dir     string   // base directory of the connection
	pattern string   // path or glob, as configured (relative to dir unless absolute)
	format  string   // json | ndjson | csv | auto
	records []string // path to the array inside a JSON document; nil = top level

	// Confined (root set): rel is the pattern and relDir the connection's
	// directory inside root, and files are listed and opened through an os.Root.
	root, rel, relDir string
}

var _ connectors.Source = (*source)(nil)

// Read emits every record of every matching file, files in sorted order, records
// in file order. Each record carries its JSON bytes in Raw and its origin in
// Position ("products.json:record 17", "orders.ndjson:line 4", "orders.csv:line 4").
//
// Files have no cursor of their own: when req names a CursorField and a Cursor,
// the source still emits every record and the engine filters by cursor.
func (s *source) Read(ctx context.Context, req connectors.ReadRequest, emit func(connectors.Record) error) error {
	var root *os.Root
	if s.root != "" {
		var err error
		if root, err = os.OpenRoot(s.root); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return connectors.Permanent(fmt.Errorf("file source: file %q not found: the tenant's files directory does not exist yet; write the file there first", s.pattern))
			}
			return fmt.Errorf("file source: %w", err)
		}
		defer root.Close()
	}
	files, err := s.files(root)
	if err != nil {
		return err
	}
	for _, path := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.readFile(ctx, root, path, emit); err != nil {
			return err
		}
	}
	return nil
}

// files returns the regular files matching the pattern, sorted; confined,
// as paths inside root, listed and checked through it.
func (s *source) files(root *os.Root) ([]string, error) {
	var (
		matches []string
		err     error
		stat    = os.Stat
		statErr error // confined: why a match was left out, other than not existing
	)
	if root == nil {
		matches, err = filepath.Glob(resolve(s.dir, s.pattern))
	} else {
		stat = root.Stat
		if hasMeta(s.rel) {
			// fs.Glob lists directories through the root, so a directory
			// symlinked out of it is never listed.
			matches, err = fs.Glob(root.FS(), filepath.ToSlash(s.rel))
		} else {
			// Not through fs.Glob, which would drop a symbolic link leading
			// out without saying why.
			matches = []string{s.rel}
		}
	}
	if err != nil {
		return nil, connectors.Permanent(fmt.Errorf("file source: invalid path pattern %q: %w; check the brackets and escapes in path", s.pattern, err))
	}
	files := matches[:0]
	for _, m := range matches {
		fi, err := stat(m)
		if err != nil || fi.IsDir() {
			if root != nil && err != nil && !errors.Is(err, os.ErrNotExist) && statErr == nil {
				statErr = err
			}
			continue
		}
		files = append(files, m)
	}
	if len(files) == 0 && statErr != nil {
		return nil, connectors.Permanent(fmt.Errorf("file source: cannot read %q: %w%s", s.pattern, statErr, escapeHint(statErr)))
	}
	if len(files) == 0 {
		if !hasMeta(s.pattern) {
			return nil, connectors.Permanent(fmt.Errorf("file source: file %q not found in directory %s; check the source path (it is relative to the connection path)", s.pattern, shownDir(s.root, s.dir, s.relDir)))
		}
		return nil, connectors.Permanent(fmt.Errorf("file source: no files match %q in directory %s; check the source path (it is relative to the connection path)", s.pattern, shownDir(s.root, s.dir, s.relDir)))
	}
	sort.Strings(files)
	return files, nil
}

func hasMeta(p string) bool { return strings.ContainsAny(p, `*?[\`) }

// displayName is how a file appears in positions and errors: relative to the
// connection's directory when it lies inside it.
func (s *source) displayName(path string) string {
	dir := s.dir
	if s.root != "" {
		dir = s.relDir
	}
	if rel, err := filepath.Rel(dir, path); err == nil && !strings.HasPrefix(rel, "..") {
		return filepath.ToSlash(rel)
	}
	return filepath.ToSlash(path)
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

func (s *source) readFile(ctx context.Context, root *os.Root, path string, emit func(connectors.Record) error) error {
	name := s.displayName(path)
	var f *os.File
	var err error
	if root != nil {
		f, err = root.Open(path)
	} else {
		f, err = os.Open(path)
	}
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
			return connectors.Permanent(fmt.Errorf("file source: cannot open %s: %w", name, err))
		}
		return fmt.Errorf("file source: cannot open %s: %w", name, err)
	}
	defer f.Close()

	r := &fileReader{ctx: ctx, name: name, f: f, br: bufio.NewReaderSize(f, bufferSize), emit: emit}
	if b, _ := r.br.Peek(len(utf8BOM)); bytes.Equal(b, utf8BOM) {
		r.br.Discard(len(utf8BOM))
		r.skipped = int64(len(utf8BOM))
	}

	format := s.format
	if format == FormatAuto {
		format = formatByExtension(path, "")
		if format == "" {
			c, ok, err := firstNonSpace(r.br)
			if err != nil {
				return r.ioErr(err)
			}
			switch {
			case !ok:
				format = FormatJSON // empty, or whitespace only: the JSON reader copes
			case c == '[' || c == '{':
				format = FormatJSON
			default:
				format = FormatCSV
			}
		}
	}
	if s.records != nil && format != FormatJSON {
		return connectors.Permanent(fmt.Errorf(`file source: %s is read as %s, but records applies only to JSON documents; set format = "json" or remove records`, name, format))
	}
	switch format {
	case FormatJSON:
		if s.records != nil {
			return r.readJSONPath(s.records)
		}
		return r.readJSON()
	case FormatNDJSON:
		return r.readNDJSON()
	default:
		return r.readCSV()
	}
}

// fileReader reads the records of one file.
type fileReader struct {
	ctx     context.Context
	name    string   // display name
	f       *os.File // the file, which error reports read again at an offset
	br      *bufio.Reader
	skipped int64 // bytes consumed before the format reader started (a BOM)
	emit    func(connectors.Record) error
	n       int // records emitted
}

func (r *fileReader) emitRaw(raw []byte, unit string, n int) error {
	if err := r.ctx.Err(); err != nil {
		return err
	}
	r.n++
	return r.emit(connectors.Record{Raw: raw, Position: r.name + ":" + unit + " " + strconv.Itoa(n)})
}

func (r *fileReader) ioErr(err error) error {
	return fmt.Errorf("file source: reading %s: %w", r.name, err)
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// firstNonSpace peeks at the first non-whitespace byte without consuming input.
// ok is false at end of input, or when the whole read buffer is whitespace.
func firstNonSpace(br *bufio.Reader) (c byte, ok bool, err error) {
	for n := 0; n < br.Size(); n++ {
		b, err := br.Peek(n + 1)
		if len(b) <= n {
			if err == io.EOF || err == nil {
				return 0, false, nil
			}
			return 0, false, err
		}
		if !isSpace(b[n]) {
			return b[n], true, nil
		}
	}
	return 0, false, nil
}

// readJSON reads a JSON array of records, a single record, or a stream of
// records; a file whose first line is a complete JSON value is read as NDJSON,
// so that one bad line does not stop the file.
func (r *fileReader) readJSON() error {
	c, ok, err := firstNonSpace(r.br)
	if err != nil {
		return r.ioErr(err)
	}
	if ok && c == '{' && r.firstLineIsJSON() {
		return r.readNDJSON()
	}
	if ok && c == '[' {
		return r.readArray()
	}
	dec := json.NewDecoder(r.br)
	// One object (maybe pretty-printed), or several concatenated values.
	for {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return r.jsonErr(dec, err)
		}
		if err := r.emitRaw(raw, "record", r.n+1); err != nil {
			return err
		}
	}
}

// firstLineIsJSON reports whether the first line of the input (within the read
// buffer) is one complete JSON value.
func (r *fileReader) firstLineIsJSON() bool {
	p, _ := r.br.Peek(r.br.Size())
	i := bytes.IndexByte(p, '\n')
	if i < 0 {
		if len(p) == r.br.Size() {
			return false // a line longer than the buffer: leave it to the decoder
		}
		i = len(p)
	}
	return json.Valid(p[:i])
}

// readArrayElements emits the elements of an array whose '[' has been read, and
// reads the closing ']'.
func (r *fileReader) readArrayElements(dec *json.Decoder) error {
	for dec.More() {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return r.jsonErr(dec, err)
		}
		if err := r.emitRaw(raw, "record", r.n+1); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // ']'
		return r.jsonErr(dec, err)
	}
	return nil
}

// readJSONPath emits the elements of the array at a dotted path of object keys.
func (r *fileReader) readJSONPath(path []string) error {
	dec := json.NewDecoder(r.br)
	for i, seg := range path {
		where := "the document"
		if i > 0 {
			where = strconv.Quote(strings.Join(path[:i], "."))
		}
		tok, err := dec.Token()
		if err == io.EOF && i == 0 {
			return connectors.Permanent(fmt.Errorf("file source: %s is empty, but records = %q expects a JSON object", r.name, strings.Join(path, ".")))
		}
		if err != nil {
			return r.jsonErr(dec, err)
		}
		if tok != json.Delim('{') {
			return connectors.Permanent(fmt.Errorf("file source: %s: %s is %s, not an object, so records = %q cannot be followed; fix records", r.name, where, describeToken(tok), strings.Join(path, ".")))
		}
		found := false
		for dec.More() {
			key, err := dec.Token()
			if err != nil {
				return r.jsonErr(dec, err)
			}
			if key == seg {
				found = true
				break
			}
			if err := skipValue(dec); err != nil {
				return r.jsonErr(dec, err)
			}
		}
		if !found {
			return connectors.Permanent(fmt.Errorf("file source: %s: %s has no key %q, so records = %q finds nothing; fix records", r.name, where, seg, strings.Join(path, ".")))
		}
	}
	tok, err := dec.Token()
	if err != nil {
		return r.jsonErr(dec, err)
	}
	switch tok {
	case json.Delim('['):
		if err := r.readArrayElements(dec); err != nil {
			return err
		}
	case nil: // "products": null holds no records
	default:
		return connectors.Permanent(fmt.Errorf("file source: %s: records = %q is %s, not an array; point records at the array of records", r.name, strings.Join(path, "."), describeToken(tok)))
	}
	// Read the rest of the enclosing objects, so a truncated or broken file is reported.
	for range path {
		for dec.More() {
			if _, err := dec.Token(); err != nil {
				return r.jsonErr(dec, err)
			}
			if err := skipValue(dec); err != nil {
				return r.jsonErr(dec, err)
			}
		}
		if _, err := dec.Token(); err != nil {
			return r.jsonErr(dec, err)
		}
	}
	return nil
}

func describeToken(tok json.Token) string {
	switch t := tok.(type) {
	case json.Delim:
		if t == '[' {
			return "an array"
		}
		return "an object"
	case string:
		return "a string"
	case float64, json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%v", tok)
}

// skipValue skips one value token by token, so memory stays flat however large it is.
func skipValue(dec *json.Decoder) error {
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			if err == io.EOF {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		switch tok {
		case json.Delim('['), json.Delim('{'):
			depth++
		case json.Delim(']'), json.Delim('}'):
			depth--
		}
		if depth == 0 {
			return nil
		}
	}
}

// jsonErr turns an error of dec.Decode or dec.Token into a read error naming the
// file and the line, column and byte offset of the problem.
func (r *fileReader) jsonErr(dec *json.Decoder, err error) error {
	if r.ctx.Err() != nil {
		return r.ctx.Err()
	}
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		// The decoder's offsets count only some of the bytes it consumed; but it
		// stays at the start of the value it failed on, so rescan that value alone.
		return r.jsonErrf(r.rescan(dec.InputOffset()), "%s", se.Error())
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		offset := dec.InputOffset()
		if fi, err := r.f.Stat(); err == nil {
			offset = fi.Size() - r.skipped
		}
		return r.jsonErrf(offset, "unexpected end of file (the file is truncated or a bracket is missing)")
	}
	return r.ioErr(err)
}

// rescan decodes the value at start (an offset after the BOM) once more with a
// fresh decoder and returns the offset of its syntax error, or start if it has
// none (the error was between values) or is too large to rescan.
func (r *fileReader) rescan(start int64) int64 {
	var raw json.RawMessage
	var se *json.SyntaxError
	if err := json.NewDecoder(io.NewSectionReader(r.f, start+r.skipped, maxLineSize)).Decode(&raw); errors.As(err, &se) && se.Offset > 0 {
		return start + se.Offset - 1 // Offset counts the offending byte
	}
	return start
}

// jsonErrf reports a JSON problem at a byte offset (after the BOM) of the file.
func (r *fileReader) jsonErrf(offset int64, format string, args ...any) error {
	offset += r.skipped
	line, col := lineCol(r.f, offset)
	return connectors.Permanent(fmt.Errorf("file source: %s: invalid JSON at line %d, column %d (byte offset %d), after record %d: %s; fix the file, or set format = \"ndjson\" if it holds one JSON value per line",
		r.name, line, col, offset, r.n, fmt.Sprintf(format, args...)))
}

// lineCol converts a byte offset of a file into a 1-based line and column.
func lineCol(f io.ReaderAt, offset int64) (line, col int) {
	line, col = 1, 1
	br := bufio.NewReaderSize(io.NewSectionReader(f, 0, offset), 64<<10)
	for {
		b, err := br.ReadByte()
		if err != nil {
			return line, col
		}
		if b == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
}

// readNDJSON emits one record per non-blank line. A line that is not valid JSON
// is still emitted, so that it fails alone when the engine decodes it.
func (r *fileReader) readNDJSON() error {
	var (
		long   []byte // a line longer than the read buffer, being assembled
		isLong bool
		lineNo int
	)
	for {
		frag, err := r.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			if len(long)+len(frag) > maxLineSize {
				return connectors.Permanent(fmt.Errorf("file source: %s: line %d is longer than %d MiB; split the record or check that the file is NDJSON", r.name, lineNo+1, maxLineSize>>20))
			}
			long = append(long, frag...)
			isLong = true
			continue
		}
		line := frag
		if isLong {
			long = append(long, frag...)
			line = long
		}
		if len(line) > 0 {
			lineNo++
			if t := bytes.TrimSpace(line); len(t) > 0 {
				if e := r.emitRaw(bytes.Clone(t), "line", lineNo); e != nil {
					return e
				}
			}
		}
		if isLong {
			isLong = false
			if cap(long) > 4*bufferSize {
				long = nil
			} else {
				long = long[:0]
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return r.ioErr(err)
		}
	}
}

// readCSV emits one record per row: an object of the header's columns, in
// header order, all values strings. Missing trailing cells are "".
func (r *fileReader) readCSV() error {
	cr := csv.NewReader(r.br)
	cr.ReuseRecord = true
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err == io.EOF {
		return nil
	}
	if err != nil {
		return r.csvErr(err)
	}
	keys := make([][]byte, len(header))
	seen := make(map[string]int, len(header))
	for i, h := range header {
		if h == "" {
			return connectors.Permanent(fmt.Errorf("file source: %s: column %d of the header row is empty; every column needs a name", r.name, i+1))
		}
		if j, dup := seen[h]; dup {
			return connectors.Permanent(fmt.Errorf("file source: %s: columns %d and %d of the header row are both named %q; rename one", r.name, j+1, i+1, h))
		}
		seen[h] = i
		keys[i] = append(appendJSONString(nil, h), ':')
	}
	buf := make([]byte, 0, 1024)
	for {
		row, err := cr.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return r.csvErr(err)
		}
		line, _ := cr.FieldPos(0)
		for i := len(keys); i < len(row); i++ {
			if row[i] != "" {
				return connectors.Permanent(fmt.Errorf("file source: %s: line %d has %d fields but the header has %d columns; fix the row or the header", r.name, line, len(row), len(keys)))
			}
		}
		buf = append(buf[:0], '{')
		for i, k := range keys {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = append(buf, k...)
			if i < len(row) {
				buf = appendJSONString(buf, row[i])
			} else {
				buf = append(buf, '"', '"')
			}
		}
		buf = append(buf, '}')
		if err := r.emitRaw(bytes.Clone(buf), "line", line); err != nil {
			return err
		}
	}
}

func (r *fileReader) csvErr(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return connectors.Permanent(fmt.Errorf("file source: %s: invalid CSV: %w; fix the file", r.name, err))
	}
	return r.ioErr(err)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string as encoding/json does without
// HTML escaping: invalid UTF-8 becomes U+FFFD, U+2028 and U+2029 are escaped.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' { // as encoding/json does, for JavaScript
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
