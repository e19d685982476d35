package runtime

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ferryhq/ferry/connectors"
	"github.com/nats-io/nats.go"
)

// Message headers of the work stream.
const (
	hdrKind      = "Ferry-Kind"       // batch | retry
	hdrSeq       = "Ferry-Seq"        // the origin batch sequence (1-based) within the run
	hdrAttempt   = "Ferry-Attempt"    // retry: the attempt number the message carries (≥2)
	hdrNotBefore = "Ferry-Not-Before" // retry: unix nanoseconds before which it is not processed
	hdrRun       = "Ferry-Run"

	kindBatch = "batch"
	kindRetry = "retry"
)

// Attempt is one try of executing a record.
type Attempt struct {
	At       time.Time           `json:"at"`
	Stage    string              `json:"stage,omitempty"`
	Category connectors.Category `json:"category,omitempty"`
	Error    string              `json:"error"`
}

// item is one record inside a work message, with where it came from.
type item struct {
	Idx      int               `json:"idx"` // index in the origin batch
	Rec      connectors.Record `json:"-"`
	Key      string            `json:"key,omitempty"`
	Position string            `json:"pos,omitempty"`
	Raw      json.RawMessage   `json:"raw"`
	Attempts []Attempt         `json:"attempts,omitempty"`
}

// encodeBatch writes records as: 'B', then per record uvarint-prefixed key,
// position and raw JSON. Compact and cheap to decode on the workers.
func encodeBatch(buf []byte, recs []connectors.Record) []byte {
	buf = append(buf[:0], 'B')
	for i := range recs {
		r := &recs[i]
		buf = binary.AppendUvarint(buf, uint64(len(r.Key)))
		buf = append(buf, r.Key...)
		buf = binary.AppendUvarint(buf, uint64(len(r.Position)))
		buf = append(buf, r.Position...)
		buf = binary.AppendUvarint(buf, uint64(len(r.Raw)))
		buf = append(buf, r.Raw...)
	}
	return buf
}

var errBadMessage = errors.New("malformed work message")

func decodeBatch(b []byte) ([]item, error) {
	if len(b) == 0 || b[0] != 'B' {
		return nil, errBadMessage
	}
	b = b[1:]
	var out []item
	next := func() ([]byte, error) {
		n, w := binary.Uvarint(b)
		if w <= 0 || uint64(len(b)-w) < n {
			return nil, errBadMessage
		}
		v := b[w : w+int(n)]
		b = b[w+int(n):]
		return v, nil
	}
	for idx := 0; len(b) > 0; idx++ {
		k, err := next()
		if err != nil {
			return nil, err
		}
		p, err := next()
		if err != nil {
			return nil, err
		}
		r, err := next()
		if err != nil {
			return nil, err
		}
		out = append(out, item{Idx: idx, Key: string(k), Position: string(p), Raw: json.RawMessage(r)})
	}
	return out, nil
}

func decodeRetry(b []byte) ([]item, error) {
	var out []item
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadMessage, err)
	}
	return out, nil
}

// workMsg is a decoded work message.
type workMsg struct {
	kind      string
	seq       int64
	attempt   int // attempt number of every record in the message (1 for batches)
	notBefore time.Time
	items     []item
}

func (w *workMsg) settlementID() string {
	if w.kind == kindBatch {
		return "b" + strconv.FormatInt(w.seq, 10)
	}
	return "r" + strconv.FormatInt(w.seq, 10) + "_" + strconv.Itoa(w.attempt)
}

func parseWorkMsg(h nats.Header, data []byte) (*workMsg, error) {
	w := &workMsg{kind: h.Get(hdrKind), attempt: 1}
	var err error
	if w.seq, err = strconv.ParseInt(h.Get(hdrSeq), 10, 64); err != nil {
		return nil, fmt.Errorf("%w: sequence: %v", errBadMessage, err)
	}
	switch w.kind {
	case kindBatch:
		w.items, err = decodeBatch(data)
	case kindRetry:
		if w.attempt, err = strconv.Atoi(h.Get(hdrAttempt)); err != nil {
			return nil, fmt.Errorf("%w: attempt: %v", errBadMessage, err)
		}
		if nb, perr := strconv.ParseInt(h.Get(hdrNotBefore), 10, 64); perr == nil {
			w.notBefore = time.Unix(0, nb)
		}
		w.items, err = decodeRetry(data)
	default:
		err = fmt.Errorf("%w: kind %q", errBadMessage, w.kind)
	}
	if err != nil {
		return nil, err
	}
	for i := range w.items {
		it := &w.items[i]
		it.Rec = connectors.Record{Key: it.Key, Raw: it.Raw, Position: it.Position}
	}
	return w, nil
}

// rawOf returns the record as JSON, marshalling Data when the source did not set Raw.
func rawOf(r *connectors.Record) (json.RawMessage, error) {
	if r.Raw != nil {
		return r.Raw, nil
	}
	if r.Data == nil {
		return json.RawMessage("{}"), nil
	}
	b, err := json.Marshal(r.Data)
	if err != nil {
		return nil, fmt.Errorf("record %s: %w", r.Position, err)
	}
	return b, nil
}
