package file

import (
	"errors"
	"io"
)

// readArray emits the elements of a top-level JSON array.
//
// It only finds element boundaries (brackets, strings, commas) instead of
// running a full JSON decoder: the reading goroutine is the one part of a run
// that cannot be spread over cores, and the engine's workers parse and validate
// every element anyway, so an element that is not valid JSON fails on its own
// as a record error. A broken array structure (a missing comma or bracket, a
// truncated file) is still a read error with its line, column and offset.
func (r *fileReader) readArray() error {
	var off int64 // bytes consumed after the BOM
	if err := r.skipSpace(&off); err != nil {
		return err
	}
	if b, err := r.br.ReadByte(); err != nil || b != '[' {
		return r.jsonErrf(off, "expected '[' at the start of the array")
	}
	off++
	for first := true; ; first = false {
		if err := r.skipSpace(&off); err != nil {
			return r.truncated(err)
		}
		c, err := r.br.ReadByte()
		if err != nil {
			return r.truncated(err)
		}
		if c == ']' {
			off++
			break
		}
		if !first {
			if c != ',' {
				return r.jsonErrf(off, "expected ',' or ']' after array element, found %q", c)
			}
			off++
			if err := r.skipSpace(&off); err != nil {
				return r.truncated(err)
			}
		} else if err := r.br.UnreadByte(); err != nil {
			return r.ioErr(err)
		}
		start := off
		raw, err := r.scanValue(&off)
		if err != nil {
			if errors.Is(err, errStructure) {
				return r.jsonErrf(off, "unbalanced brackets in the element that starts at byte %d", start)
			}
			return r.truncated(err)
		}
		if len(raw) == 0 {
			return r.jsonErrf(off, "expected an array element")
		}
		if err := r.emitRaw(raw, "record", r.n+1); err != nil {
			return err
		}
	}
	if err := r.skipSpace(&off); err != nil && err != io.EOF {
		return r.ioErr(err)
	}
	if _, err := r.br.ReadByte(); err != io.EOF {
		return r.jsonErrf(off, "unexpected data after the JSON array")
	}
	return nil
}

var errStructure = errors.New("unbalanced brackets")

func (r *fileReader) truncated(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		var off int64
		if fi, statErr := r.f.Stat(); statErr == nil {
			off = fi.Size() - r.skipped
		}
		return r.jsonErrf(off, "unexpected end of file (the file is truncated or a bracket is missing)")
	}
	if r.ctx.Err() != nil {
		return r.ctx.Err()
	}
	return r.ioErr(err)
}

// skipSpace consumes JSON whitespace.
func (r *fileReader) skipSpace(off *int64) error {
	for {
		buf, err := r.br.Peek(1)
		if len(buf) == 0 {
			if err == nil {
				err = io.EOF
			}
			return err
		}
		buf, _ = r.br.Peek(r.br.Buffered())
		n := 0
		for n < len(buf) && isSpace(buf[n]) {
			n++
		}
		r.br.Discard(n)
		*off += int64(n)
		if n < len(buf) {
			return nil
		}
	}
}

// scanValue consumes one JSON value and returns a copy of its bytes. It tracks
// strings and bracket depth only; the value's own syntax is checked by whoever
// decodes it.
func (r *fileReader) scanValue(off *int64) ([]byte, error) {
	var out []byte
	depth, inString, escaped := 0, false, false
	for {
		if _, err := r.br.Peek(1); err != nil {
			return nil, err
		}
		buf, _ := r.br.Peek(r.br.Buffered())
		end := -1
	scan:
		for i, c := range buf {
			if inString {
				switch {
				case escaped:
					escaped = false
				case c == '\\':
					escaped = true
				case c == '"':
					inString = false
					if depth == 0 {
						end = i + 1
						break scan
					}
				}
				continue
			}
			switch c {
			case '"':
				inString = true
			case '{', '[':
				depth++
			case '}', ']':
				if depth == 0 { // end of a scalar element: the array's ']'
					end = i
					break scan
				}
				depth--
				if depth == 0 {
					end = i + 1
					break scan
				}
			case ',', ' ', '\t', '\n', '\r':
				if depth == 0 {
					end = i
					break scan
				}
			}
		}
		if end >= 0 {
			out = append(out, buf[:end]...)
			r.br.Discard(end)
			*off += int64(end)
			return out, nil
		}
		out = append(out, buf...)
		r.br.Discard(len(buf))
		*off += int64(len(buf))
		if len(out) > maxLineSize {
			return nil, errStructure
		}
	}
}
