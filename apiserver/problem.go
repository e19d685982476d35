package apiserver

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/ferryhq/ferry/lang"
	"github.com/hashicorp/hcl/v2"
)

// Problem is an RFC 9457 problem detail, the body of every error response
// (Content-Type application/problem+json).
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Errors are configuration diagnostics with file:line:column.
	Errors json.RawMessage `json:"errors,omitempty"`

	// revisionRace marks a REST write that lost the race for the next
	// revision: it may be retried on the new revision (see retryRace).
	revisionRace bool
}

func (p *Problem) Error() string { return p.Title + ": " + p.Detail }

// problem types; the type URI is urn:ferry:problem:<slug>.
const (
	probBadRequest         = "bad-request"
	probMalformedJSON      = "malformed-json"
	probTooLarge           = "body-too-large"
	probUnsupportedType    = "unsupported-media-type"
	probUnauthorized       = "unauthorized"
	probForbidden          = "forbidden"
	probNotFound           = "not-found"
	probMethod             = "method-not-allowed"
	probConflict           = "conflict"
	probRESTWritesDisabled = "rest-config-writes-disabled"
	probHasDependents      = "has-dependents"
	probPrecondition       = "precondition-failed"
	probPrecondRequired    = "precondition-required"
	probInvalidConfig      = "invalid-config"
	probUnavailable        = "unavailable"
	probInternal           = "internal"
)

func newProblem(status int, slug, detail string, a ...any) *Problem {
	if len(a) > 0 {
		detail = fmt.Sprintf(detail, a...)
	}
	return &Problem{Type: "urn:ferry:problem:" + slug, Title: http.StatusText(status), Status: status, Detail: detail}
}

func notFound(what string) *Problem {
	return newProblem(http.StatusNotFound, probNotFound, "%s not found", what)
}

// configProblem is a 422 carrying diagnostics.
func configProblem(detail string, diags hcl.Diagnostics) *Problem {
	p := newProblem(http.StatusUnprocessableEntity, probInvalidConfig, "%s", detail)
	p.Errors = diagnosticsJSON(diags)
	return p
}

// diagnosticsJSON is the diagnostics array of lang.DiagnosticsJSON.
func diagnosticsJSON(diags hcl.Diagnostics) json.RawMessage {
	b, err := lang.DiagnosticsJSON(diags)
	if err != nil {
		return json.RawMessage("[]")
	}
	var v struct {
		Diagnostics json.RawMessage `json:"diagnostics"`
	}
	if json.Unmarshal(b, &v) != nil || v.Diagnostics == nil {
		return json.RawMessage("[]")
	}
	return v.Diagnostics
}

func writeProblem(w http.ResponseWriter, p *Problem) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// writeJSON writes v with status. A 200 answer to a GET carries an ETag: the
// one set by the handler (a resource's version) or else a hash of the body;
// If-None-Match with that ETag gets 304.
func writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeProblem(w, newProblem(http.StatusInternalServerError, probInternal, "encoding the response failed"))
		return
	}
	b = append(b, '\n')
	if r.Method == http.MethodGet && status == http.StatusOK {
		etag := w.Header().Get("ETag")
		if etag == "" {
			sum := sha256.Sum256(b)
			etag = `"h` + hex.EncodeToString(sum[:12]) + `"`
			w.Header().Set("ETag", etag)
		}
		if inm := r.Header.Get("If-None-Match"); inm != "" && etagListContains(inm, etag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func etagListContains(list, etag string) bool {
	for _, t := range strings.Split(list, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}

// decodeJSON reads a JSON body into v strictly: the media type must be JSON,
// unknown fields, wrong types, trailing data, malformed JSON and bodies over
// the limit are problems (4xx), never 500.
func (s *Server) decodeJSON(w http.ResponseWriter, r *http.Request, v any) *Problem {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return newProblem(http.StatusUnsupportedMediaType, probUnsupportedType, "send the body as application/json, not %q", ct)
		}
	}
	body := http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonProblem(err, s.opts.MaxBodyBytes)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return jsonProblem(err, s.opts.MaxBodyBytes)
		}
		return newProblem(http.StatusBadRequest, probMalformedJSON, "the body must hold exactly one JSON value; found data after it")
	}
	return nil
}

func jsonProblem(err error, limit int64) *Problem {
	var (
		mbe *http.MaxBytesError
		se  *json.SyntaxError
		te  *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &mbe):
		return newProblem(http.StatusRequestEntityTooLarge, probTooLarge, "the body is larger than the limit of %d bytes", limit)
	case errors.Is(err, io.EOF):
		return newProblem(http.StatusBadRequest, probMalformedJSON, "the body is empty; send a JSON object")
	case errors.As(err, &se):
		return newProblem(http.StatusBadRequest, probMalformedJSON, "malformed JSON at byte %d: %s", se.Offset, se.Error())
	case errors.Is(err, io.ErrUnexpectedEOF):
		return newProblem(http.StatusBadRequest, probMalformedJSON, "malformed JSON: the body ends too early")
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "(body)"
		}
		return newProblem(http.StatusBadRequest, probBadRequest, "field %q must be %s, not JSON %s", field, jsonKind(te.Type.Kind().String()), te.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return newProblem(http.StatusBadRequest, probBadRequest, "unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	default:
		return newProblem(http.StatusBadRequest, probMalformedJSON, "malformed JSON: %s", err.Error())
	}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "map", "struct":
		return "an object"
	case "slice", "array":
		return "an array"
	case "int", "int64", "int32", "uint", "uint64", "float64":
		return "a number"
	}
	return goKind
}
