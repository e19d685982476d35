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
	"math"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferryhq/ferry/connectors"
)

// sink writes records to one file. Create, update and upsert all append the
// record; delete is refused. Writes go through a buffer that Close flushes; the
// file is written in place (no temporary file), so appends and partly written
// runs stay visible. A sink is safe for concurrent use.
type sink struct {
	mu     sync.Mutex
	name   string // the path as configured, for messages
	format string

	f       *os.File
	w       *bufio.Writer
	scratch bytes.Buffer  // encoding/json output
	enc     *json.Encoder // encodes into scratch
	buf     []byte        // appendJSON output
	keys    []string      // appendJSON's key buffer

	// json
	needComma bool // an element precedes the next one in the array

	// csv
	cw         *csv.Writer
	columns    []string
	colSet     map[string]bool
	inferred   bool // columns come from the first record (not configured nor read from the file)
	headerDone bool
	cells      []string

	err    error // the first write error; the file is in an unknown state after it
	closed bool
}

var (
	_ connectors.Sink           = (*sink)(nil)
	_ connectors.Flusher        = (*sink)(nil)
	_ connectors.ConcurrentSink = (*sink)(nil)
)

// ConcurrentWrites: Write takes the sink's lock, so callers need not serialise.
func (s *sink) ConcurrentWrites() bool { return true }

// Flush hands buffered records to the operating system, so they survive the
// process being killed once the runtime acknowledges them. It does not fsync
// (Close does): a file target is as durable as the file system's own
// write-back, and an fsync per acknowledged message would cost more than the
// run. A JSON array's closing ']' is written only by Close; durable runs that
// may be interrupted should write ndjson, which is valid after every line.
func (s *sink) Flush(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	if s.err != nil {
		return s.writeErr()
	}
	if s.cw != nil {
		s.cw.Flush()
	}
	if err := s.w.Flush(); err != nil {
		s.err = err
		return s.writeErr()
	}
	return nil
}

// openSink writes to f, opened by Connection.openTarget; it closes f on error.
func openSink(f *os.File, name, format string, columns []string, appendMode bool) (*sink, error) {
	s := &sink{name: name, format: format, columns: slices.Clone(columns)}
	s.enc = json.NewEncoder(&s.scratch)
	s.enc.SetEscapeHTML(false)
	s.f = f
	if err := s.start(appendMode); err != nil {
		f.Close()
		return nil, err
	}
	return s, nil
}

// start positions the file for writing and writes what precedes the records.
func (s *sink) start(appendMode bool) error {
	var size int64
	if appendMode {
		fi, err := s.f.Stat()
		if err != nil {
			return connectors.Permanent(fmt.Errorf("file target %s: %w", s.name, err))
		}
		size = fi.Size()
	}
	prefix := ""
	switch {
	case size == 0:
		if s.format == FormatJSON {
			prefix = "["
		}
	case s.format == FormatJSON:
		// Reopen the array: cut the closing ']' and continue after the last element.
		pos, c, err := lastNonSpace(s.f, size)
		if err != nil {
			return connectors.Permanent(fmt.Errorf("file target %s: cannot read the file to append to it: %w", s.name, err))
		}
		if c != ']' {
			return connectors.Permanent(fmt.Errorf("file target %s: cannot append: the file does not end with a JSON array's ']'; remove it, fix it, or set append = false", s.name))
		}
		prev, pc, err := lastNonSpace(s.f, pos)
		if err != nil {
			return connectors.Permanent(fmt.Errorf("file target %s: cannot read the file to append to it: %w", s.name, err))
		}
		if prev < 0 {
			return connectors.Permanent(fmt.Errorf("file target %s: cannot append: the file is not a JSON array; remove it, fix it, or set append = false", s.name))
		}
		s.needComma = pc != '['
		if err := s.f.Truncate(prev + 1); err != nil {
			return connectors.Permanent(fmt.Errorf("file target %s: cannot append: %w", s.name, err))
		}
	default: // ndjson, csv: finish a partly written last line
		last := make([]byte, 1)
		if _, err := s.f.ReadAt(last, size-1); err != nil {
			return connectors.Permanent(fmt.Errorf("file target %s: cannot read the file to append to it: %w", s.name, err))
		}
		if last[0] != '\n' {
			prefix = "\n"
		}
		if s.format == FormatCSV {
			if err := s.readHeader(size); err != nil {
				return err
			}
		}
	}
	if _, err := s.f.Seek(0, io.SeekEnd); err != nil {
		return connectors.Permanent(fmt.Errorf("file target %s: %w", s.name, err))
	}
	s.w = bufio.NewWriterSize(s.f, bufferSize)
	s.w.WriteString(prefix)
	if s.format == FormatCSV {
		s.cw = csv.NewWriter(s.w) // writes straight into s.w, which is large enough
		if s.columns != nil && !s.headerDone {
			s.writeHeader()
		}
	}
	return nil
}

// readHeader takes the columns of a CSV file being appended to from its header row.
func (s *sink) readHeader(size int64) error {
	header, err := csv.NewReader(io.NewSectionReader(s.f, 0, size)).Read()
	if err != nil {
		return connectors.Permanent(fmt.Errorf("file target %s: cannot append: cannot read the CSV header row: %w; remove the file, fix it, or set append = false", s.name, err))
	}
	header = slices.Clone(header)
	if len(header) > 0 {
		header[0] = strings.TrimPrefix(header[0], "\ufeff")
	}
	if s.columns != nil && !slices.Equal(s.columns, header) {
		return connectors.Permanent(fmt.Errorf("file target %s: cannot append: the file's header row is %q but columns = %q; make them match, or set append = false", s.name, header, s.columns))
	}
	s.columns = header
	s.headerDone = true
	s.colSet = setOf(header)
	return nil
}

func setOf(cols []string) map[string]bool {
	m := make(map[string]bool, len(cols))
	for _, c := range cols {
		m[c] = true
	}
	return m
}

func (s *sink) writeHeader() {
	s.colSet = setOf(s.columns)
	s.headerDone = true
	if err := s.cw.Write(s.columns); err != nil {
		s.err = err
	}
}

// lastNonSpace returns the offset and value of the last non-whitespace byte
// before end, or -1 when there is none.
func lastNonSpace(f *os.File, end int64) (int64, byte, error) {
	buf := make([]byte, 4096)
	for end > 0 {
		n := min(int64(len(buf)), end)
		start := end - n
		if _, err := f.ReadAt(buf[:n], start); err != nil {
			return -1, 0, err
		}
		for i := n - 1; i >= 0; i-- {
			if !isSpace(buf[i]) {
				return start + i, buf[i], nil
			}
		}
		end = start
	}
	return -1, 0, nil
}

// Write writes each record in order. It returns nil when all were written, or
// one error per write: delete is refused, and a record that cannot be encoded
// fails alone; all are permanent.
func (s *sink) Write(ctx context.Context, writes []connectors.Write) []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	fail := func(i int, err error) {
		if errs == nil {
			errs = make([]error, len(writes))
		}
		errs[i] = err
	}
	for i, w := range writes {
		if err := ctx.Err(); err != nil {
			for j := i; j < len(writes); j++ {
				fail(j, connectors.Transient(fmt.Errorf("file target %s: not written: %w", s.name, err), 0))
			}
			break
		}
		switch {
		case s.closed:
			fail(i, connectors.Permanent(fmt.Errorf("file target %s: write after close", s.name)))
		case s.err != nil:
			fail(i, s.writeErr())
		case w.Operation == connectors.OpDelete:
			fail(i, connectors.Permanent(fmt.Errorf("file target does not support delete (%s, key %q); use operation = \"create\" or \"upsert\" to write records, or a target that can delete", s.name, w.Key)))
		default:
			if err := s.writeRecord(w.Record); err != nil {
				fail(i, err)
			}
		}
	}
	return errs
}

func (s *sink) writeErr() error {
	return connectors.Permanent(fmt.Errorf("file target %s: write failed: %w; check free disk space and permissions", s.name, s.err))
}

func (s *sink) writeRecord(rec map[string]any) error {
	if rec == nil {
		rec = map[string]any{}
	}
	if s.format == FormatCSV {
		return s.writeCSV(rec)
	}
	b, ok := appendJSON(s.buf[:0], rec, &s.keys)
	if ok {
		s.buf = b
	} else { // a type the fast path does not know, or an error to report
		s.scratch.Reset()
		if err := s.enc.Encode(rec); err != nil {
			return connectors.Permanent(fmt.Errorf("file target %s: cannot encode the record as JSON: %w", s.name, err))
		}
		b = bytes.TrimSuffix(s.scratch.Bytes(), []byte{'\n'})
	}
	if s.format == FormatNDJSON {
		b = append(b, '\n')
	} else {
		if s.needComma {
			s.w.WriteString(",\n")
		} else {
			s.w.WriteByte('\n')
		}
		s.needComma = true
	}
	if _, err := s.w.Write(b); err != nil {
		s.err = err
		return s.writeErr()
	}
	return nil
}

func (s *sink) writeCSV(rec map[string]any) error {
	if !s.headerDone {
		s.columns = make([]string, 0, len(rec))
		for k := range rec {
			s.columns = append(s.columns, k)
		}
		sort.Strings(s.columns)
		s.inferred = true
		s.writeHeader()
		if s.err != nil {
			return s.writeErr()
		}
	}
	if s.inferred {
		var extra []string
		for k := range rec {
			if !s.colSet[k] {
				extra = append(extra, k)
			}
		}
		if extra != nil {
			sort.Strings(extra)
			return connectors.Permanent(fmt.Errorf("file target %s: the record has fields %q that are not columns of the file (the columns %q come from the first record); list every column in the target's columns attribute", s.name, extra, s.columns))
		}
	}
	if len(s.cells) != len(s.columns) {
		s.cells = make([]string, len(s.columns))
	}
	for i, c := range s.columns {
		cell, err := s.cell(rec[c])
		if err != nil {
			return connectors.Permanent(fmt.Errorf("file target %s: field %q: %w", s.name, c, err))
		}
		s.cells[i] = cell
	}
	if err := s.cw.Write(s.cells); err != nil {
		s.err = err
		return s.writeErr()
	}
	return nil
}

// cell formats one CSV value: strings as they are, null as "", numbers and
// booleans as in JSON, and objects and arrays as JSON.
func (s *sink) cell(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", nil
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case float64:
		return formatFloat(x, 64), nil
	case float32:
		return formatFloat(float64(x), 32), nil
	case int:
		return strconv.Itoa(x), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case int32:
		return strconv.FormatInt(int64(x), 10), nil
	case uint64:
		return strconv.FormatUint(x, 10), nil
	case json.Number:
		return x.String(), nil
	case time.Time:
		return x.Format(time.RFC3339Nano), nil
	}
	if b, ok := appendJSON(s.buf[:0], v, &s.keys); ok {
		s.buf = b
		return string(b), nil
	}
	s.scratch.Reset()
	if err := s.enc.Encode(v); err != nil {
		return "", fmt.Errorf("cannot encode as JSON: %w", err)
	}
	return string(bytes.TrimSuffix(s.scratch.Bytes(), []byte{'\n'})), nil
}

func formatFloat(f float64, bits int) string {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return strconv.FormatFloat(f, 'g', -1, bits)
	}
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		return strconv.FormatFloat(f, 'g', -1, bits)
	}
	return strconv.FormatFloat(f, 'f', -1, bits)
}

// Close finishes the file (the closing ']' of a JSON array), flushes, syncs and
// closes it. Closing twice is harmless.
func (s *sink) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	if s.err != nil {
		errs = append(errs, s.writeErr())
	}
	if s.format == FormatJSON {
		s.w.WriteString("\n]\n")
	}
	if s.cw != nil {
		s.cw.Flush()
	}
	if err := s.w.Flush(); err != nil && s.err == nil {
		errs = append(errs, connectors.Permanent(fmt.Errorf("file target %s: write failed: %w; check free disk space and permissions", s.name, err)))
	}
	if err := s.f.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		errs = append(errs, fmt.Errorf("file target %s: sync: %w", s.name, err))
	}
	if err := s.f.Close(); err != nil {
		errs = append(errs, fmt.Errorf("file target %s: close: %w", s.name, err))
	}
	return errors.Join(errs...)
}
