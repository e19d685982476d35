package runtime

import (
	"bytes"
	"encoding/json"
	"errors"
	"time"

	"github.com/ferryhq/ferry/engine"
)

// runHead is what listing runs needs of a run record: the fields that
// filter and order it, and the record to decode if it is on the page.
type runHead struct {
	ID          string           `json:"id"`
	Integration string           `json:"integration"`
	Trigger     string           `json:"trigger"`
	Status      engine.RunStatus `json:"status"`
	Queued      time.Time        `json:"queued"`
	Started     time.Time        `json:"started"`
	raw         []byte
}

var errRunHead = errors.New("not a run record")

// decodeRunHead reads a run record's head fields. Listing reads every run
// of a tenant, and encoding/json spent longer decoding them than JetStream
// took to deliver them; this scans the record's top level once and skips
// what it does not need. Anything it does not expect (escapes, non-ASCII,
// a key in another case, a value of another type) goes to encoding/json,
// so a record encoding/json decodes reads the same (FuzzRunHead). Skipped
// values are not validated: a record encoding/json would refuse may be
// read anyway, where its head fields are well-formed; ferry writes every
// record with encoding/json.
func decodeRunHead(b []byte, h *runHead) error {
	if err := scanRunHead(b, h); err != nil {
		*h = runHead{}
		if json.Unmarshal(b, h) != nil {
			return errRunHead
		}
	}
	return nil
}

func scanRunHead(b []byte, h *runHead) error {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return errRunHead
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return trailing(b, i+1)
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return errRunHead
		}
		end := stringEnd(b, i)
		if end < 0 {
			return errRunHead
		}
		key := b[i+1 : end-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			return errRunHead // encoding/json matches escaped and case-folded keys
		}
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return errRunHead
		}
		i = skipSpace(b, i+1)
		var dst *string
		var tdst *time.Time
		switch string(key) {
		case "id":
			dst = &h.ID
		case "integration":
			dst = &h.Integration
		case "trigger":
			dst = &h.Trigger
		case "status":
			dst = (*string)(&h.Status)
		case "queued":
			tdst = &h.Queued
		case "started":
			tdst = &h.Started
		default:
			if foldsOntoHead(key) {
				return errRunHead // encoding/json matches keys case-insensitively
			}
		}
		var vend int
		if dst != nil || tdst != nil {
			if i >= len(b) || b[i] != '"' {
				return errRunHead // null, or not a string: encoding/json decides
			}
			vend = stringEnd(b, i)
			if vend < 0 {
				return errRunHead
			}
			v := b[i+1 : vend-1]
			if !plainASCII(v) {
				return errRunHead // escapes, or what encoding/json would replace
			}
			if dst != nil {
				*dst = string(v)
			} else if tdst.UnmarshalText(v) != nil { // as time.Time's UnmarshalJSON
				return errRunHead
			}
		} else if vend = valueEnd(b, i); vend < 0 {
			return errRunHead
		}
		i = skipSpace(b, vend)
		if i >= len(b) {
			return errRunHead
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return trailing(b, i+1)
		default:
			return errRunHead
		}
	}
}

var headKeys = [][]byte{[]byte("id"), []byte("integration"), []byte("trigger"), []byte("status"), []byte("queued"), []byte("started")}

// foldsOntoHead reports whether encoding/json could decode key into a head
// field it is not spelled as: same letters in another case, or non-ASCII
// (which folds onto 'k' and 's' too).
func foldsOntoHead(key []byte) bool {
	for _, c := range key {
		if c >= 0x80 {
			return true
		}
	}
	for _, k := range headKeys {
		if len(k) == len(key) && bytes.EqualFold(key, k) {
			return true
		}
	}
	return false
}

// plainASCII: printable ASCII without escapes, which encoding/json decodes
// as it is.
func plainASCII(v []byte) bool {
	for _, c := range v {
		if c < 0x20 || c >= 0x80 || c == '\\' {
			return false
		}
	}
	return true
}

func trailing(b []byte, i int) error {
	if skipSpace(b, i) != len(b) {
		return errRunHead
	}
	return nil
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index after the string starting at b[i] ('"'), or -1.
func stringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

// valueEnd returns the index after the JSON value starting at b[i], or -1.
// It only finds the value's end (strings, nesting); encoding/json is not
// asked about values that are skipped, as a record ferry wrote is valid.
func valueEnd(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				e := stringEnd(b, j)
				if e < 0 {
					return -1
				}
				j = e - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ' ' && b[j] != '\n' && b[j] != '\t' && b[j] != '\r' {
		j++
	}
	if j == i {
		return -1
	}
	return j
}
