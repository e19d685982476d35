package httpconn

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strings"

	"github.com/zclconf/go-cty/cty"

	"github.com/ferryhq/ferry/connectors"
)

// DefaultIdempotencyHeader is the header that carries a write's idempotency key.
const DefaultIdempotencyHeader = "Idempotency-Key"

type targetConfig struct {
	Method            *string  `cty:"method"`
	Batch             *bool    `cty:"batch"`
	IdempotencyHeader *string  `cty:"idempotency_header"`
	ExistsStatus      *float64 `cty:"exists_status"`
	LookupPath        *string  `cty:"lookup_path"`
	UpdatePath        *string  `cty:"update_path"`
}

// sink sends records to a REST API. It keeps no state between calls, so
// concurrent Write calls are safe (http.Client is).
type sink struct {
	conn         *Connection
	method       string // overrides the operation's method for create/update/upsert
	batch        bool
	idemHeader   string
	existsStatus int
	lookupPath   string
	updatePath   string
}

var (
	_ connectors.Sink           = (*sink)(nil)
	_ connectors.ConcurrentSink = (*sink)(nil)
)

// Sink makes a sink from the attributes of an integration's target block.
func (c *Connection) Sink(cfg cty.Value) (connectors.Sink, error) {
	var tc targetConfig
	if err := decode(cfg, &tc, "target"); err != nil {
		return nil, err
	}
	s := &sink{conn: c, idemHeader: DefaultIdempotencyHeader, lookupPath: str(tc.LookupPath), updatePath: str(tc.UpdatePath)}
	if tc.IdempotencyHeader != nil {
		s.idemHeader = *tc.IdempotencyHeader
	}
	if m := strings.ToUpper(str(tc.Method)); m != "" {
		switch m {
		case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		default:
			return nil, connectors.Permanent(fmt.Errorf(`http target: method %q is not supported; use "POST", "PUT", "PATCH" or "DELETE"`, str(tc.Method)))
		}
		s.method = m
	}
	s.batch = tc.Batch != nil && *tc.Batch
	if tc.ExistsStatus != nil {
		n := *tc.ExistsStatus
		if n != math.Trunc(n) || n < 300 || n > 599 {
			return nil, connectors.Permanent(fmt.Errorf("http target: exists_status must be an HTTP status between 300 and 599 such as 409, not %v", n))
		}
		s.existsStatus = int(n)
	}
	switch {
	case s.existsStatus != 0 && s.lookupPath != "":
		return nil, connectors.Permanent(errors.New("http target: set exists_status or lookup_path, not both: they are two ways to tell create from update"))
	case s.batch && (s.existsStatus != 0 || s.lookupPath != ""):
		return nil, connectors.Permanent(errors.New("http target: batch cannot be combined with exists_status or lookup_path, which decide per record"))
	}
	return s, nil
}

// ConcurrentWrites reports that Write may be called from several goroutines.
func (s *sink) ConcurrentWrites() bool { return true }

// Close releases nothing: the connection owns the client.
func (s *sink) Close(context.Context) error { return nil }

// Write sends each write as its own request, or with batch every group of
// writes sharing a path and method as one JSON array.
func (s *sink) Write(ctx context.Context, writes []Write) []error {
	errs := make([]error, len(writes))
	failed := false
	if s.batch {
		failed = s.writeBatches(ctx, writes, errs)
	} else {
		for i, w := range writes {
			if err := ctx.Err(); err != nil {
				errs[i] = err
				failed = true
				continue
			}
			if errs[i] = s.writeOne(ctx, w); errs[i] != nil {
				failed = true
			}
		}
	}
	if !failed {
		return nil
	}
	return errs
}

// Write is connectors.Write, shortened.
type Write = connectors.Write

func (s *sink) methodFor(op connectors.Operation) (string, error) {
	if op == connectors.OpDelete {
		return http.MethodDelete, nil
	}
	if s.method != "" {
		return s.method, nil
	}
	switch op {
	case connectors.OpCreate:
		return http.MethodPost, nil
	case connectors.OpUpdate, connectors.OpUpsert:
		return http.MethodPut, nil
	}
	return "", connectors.Permanent(fmt.Errorf("http target: unknown operation %q", op))
}

func (s *sink) writeOne(ctx context.Context, w Write) error {
	if w.Path == "" && s.lookupPath == "" {
		return connectors.Permanent(fmt.Errorf(`http target: record %q has no path; set the target's path = "\"/items/\" + id" (relative to base_url)`, w.Key))
	}
	target := s.conn.resolvePath(w.Path)
	var body []byte
	if w.Operation != connectors.OpDelete {
		var err error
		if body, err = encodeJSON(w.Record); err != nil {
			return connectors.Permanent(fmt.Errorf("http target: record %q cannot be encoded as JSON: %w", w.Key, err))
		}
	}
	if w.Operation == connectors.OpUpsert && (s.lookupPath != "" || s.existsStatus != 0) {
		return s.upsert(ctx, w, target, body)
	}
	method, err := s.methodFor(w.Operation)
	if err != nil {
		return err
	}
	err = s.send(ctx, method, target, body, w.Key, string(w.Operation))
	if err != nil && method == http.MethodDelete {
		if st := StatusOf(err); st == http.StatusNotFound || st == http.StatusGone {
			return nil // already gone: a delete is idempotent
		}
	}
	return wrapKey(w.Key, err)
}

// upsert tells create from update by a lookup (GET: 404 → POST, 2xx → PUT) or
// by the status the API answers a POST for an existing entity (→ PUT).
func (s *sink) upsert(ctx context.Context, w Write, target string, body []byte) error {
	update := target
	if s.updatePath != "" {
		update = s.conn.resolvePath(expandKey(s.updatePath, w.Key))
	}
	if s.lookupPath != "" {
		lookupURL := s.conn.resolvePath(expandKey(s.lookupPath, w.Key))
		if s.updatePath == "" {
			update = lookupURL
		}
		resp, err := s.conn.do(ctx, http.MethodGet, lookupURL, nil, nil)
		switch {
		case err == nil:
			resp.Body.Close()
			return wrapKey(w.Key, s.send(ctx, http.MethodPut, update, body, w.Key, string(connectors.OpUpdate)))
		case StatusOf(err) == http.StatusNotFound:
			if w.Path == "" {
				return connectors.Permanent(fmt.Errorf("http target: record %q does not exist and has no path to create it at; set the target's path", w.Key))
			}
			return wrapKey(w.Key, s.send(ctx, http.MethodPost, target, body, w.Key, string(connectors.OpCreate)))
		default:
			return wrapKey(w.Key, fmt.Errorf("lookup: %w", err))
		}
	}
	err := s.send(ctx, http.MethodPost, target, body, w.Key, string(connectors.OpCreate))
	if StatusOf(err) == s.existsStatus {
		err = s.send(ctx, http.MethodPut, update, body, w.Key, string(connectors.OpUpdate))
	}
	return wrapKey(w.Key, err)
}

func (s *sink) send(ctx context.Context, method, target string, body []byte, key, op string) error {
	var hdr http.Header
	if s.idemHeader != "" && key != "" {
		hdr = http.Header{}
		hdr.Set(s.idemHeader, idempotencyKey(op, key, method, target, body))
	}
	resp, err := s.conn.do(ctx, method, target, body, hdr)
	if err != nil {
		return err
	}
	drain(resp)
	return nil
}

type batchGroup struct {
	method, path string
	idx          []int
}

func (s *sink) writeBatches(ctx context.Context, writes []Write, errs []error) bool {
	var groups []*batchGroup
	byKey := map[[2]string]*batchGroup{}
	failed := false
	for i, w := range writes {
		method, err := s.methodFor(w.Operation)
		if err != nil {
			errs[i], failed = err, true
			continue
		}
		if s.method == "" && method != http.MethodDelete {
			method = http.MethodPost // a batch is sent as one POST
		}
		k := [2]string{method, w.Path}
		g := byKey[k]
		if g == nil {
			g = &batchGroup{method: method, path: w.Path}
			byKey[k] = g
			groups = append(groups, g)
		}
		g.idx = append(g.idx, i)
	}
	for _, g := range groups {
		err := s.sendBatch(ctx, writes, g)
		if err != nil {
			failed = true
			for _, i := range g.idx {
				errs[i] = err
			}
		}
	}
	return failed
}

func (s *sink) sendBatch(ctx context.Context, writes []Write, g *batchGroup) error {
	if g.path == "" {
		return connectors.Permanent(errors.New(`http target: batch writes have no path; set the target's path = "\"/items/batch\"" (relative to base_url)`))
	}
	var buf bytes.Buffer
	buf.WriteByte('[')
	enc := json.NewEncoder(&buf) // one encoder for the batch; its newlines are JSON whitespace
	enc.SetEscapeHTML(false)
	h := sha256.New()
	for n, i := range g.idx {
		if n > 0 {
			buf.WriteByte(',')
		}
		rec := writes[i].Record
		if rec == nil {
			rec = map[string]any{}
		}
		if err := enc.Encode(rec); err != nil {
			return connectors.Permanent(fmt.Errorf("http target: record %q cannot be encoded as JSON: %w", writes[i].Key, err))
		}
		io.WriteString(h, string(writes[i].Operation)+"\x00"+writes[i].Key+"\x00")
	}
	buf.WriteByte(']')
	target := s.conn.resolvePath(g.path)
	var hdr http.Header
	if s.idemHeader != "" {
		h.Write(buf.Bytes())
		hdr = http.Header{}
		hdr.Set(s.idemHeader, "ferry-"+hex.EncodeToString(h.Sum(nil))[:40])
	}
	resp, err := s.conn.do(ctx, g.method, target, buf.Bytes(), hdr)
	if err != nil {
		return fmt.Errorf("http target: batch of %d records: %w", len(g.idx), err)
	}
	drain(resp)
	return nil
}

// idempotencyKey derives a write's idempotency key from the entity key and
// operation, and also from the request (method, URL and body): retries of the
// same write send the same key, while a later, different change of the same
// entity gets a new one (a server would otherwise answer it with the stored
// response of the first, and the change would be lost).
func idempotencyKey(op, key, method, target string, body []byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00", op, key, method, target)
	h.Write(body)
	return "ferry-" + hex.EncodeToString(h.Sum(nil))[:40]
}

func expandKey(tmpl, key string) string {
	return strings.ReplaceAll(tmpl, "{key}", url.PathEscape(key))
}

func wrapKey(key string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("http target: record %q: %w", key, err)
}

func encodeJSON(v map[string]any) ([]byte, error) {
	if v == nil {
		return []byte("{}"), nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func drain(resp *http.Response) {
	_, _ = ioCopyLimit(resp)
	resp.Body.Close()
}
