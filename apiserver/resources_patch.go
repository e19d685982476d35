package apiserver

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"

	"github.com/ferryhq/ferry/apiserver/patch"
)

// Media types of PATCH bodies.
const (
	mediaJSONPatch  = "application/json-patch+json"  // RFC 6902
	mediaMergePatch = "application/merge-patch+json" // RFC 7396
)

// patchResource is PATCH /v1/<kind>/{name}: a JSON Patch or a JSON merge
// patch applied to the resource's JSON (as GET returns it), then stored as a
// replace. Other media types are 415; a patch that does not apply is 422; a
// patch that changes "name" is 422 (renaming is clone + delete).
func (s *Server) patchResource(k resourceKind) HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p *Principal) error {
		ct := r.Header.Get("Content-Type")
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != mediaJSONPatch && mt != mediaMergePatch) {
			prob := newProblem(http.StatusUnsupportedMediaType, probUnsupportedType, "send the patch as %s (RFC 6902) or %s (RFC 7396), not %q", mediaJSONPatch, mediaMergePatch, ct)
			w.Header().Set("Accept-Patch", mediaJSONPatch+", "+mediaMergePatch)
			return prob
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes))
		if err != nil {
			return jsonProblem(err, s.opts.MaxBodyBytes)
		}
		if !json.Valid(body) {
			return newProblem(http.StatusBadRequest, probMalformedJSON, "the patch is not valid JSON")
		}
		if err := s.restWritesAllowed(r.Context(), p.Tenant); err != nil {
			return err
		}
		_, _, res, err := s.lookupResource(r, p, k)
		if err != nil {
			return err
		}
		name := r.PathValue("name")
		// Check If-Match before patching, so a stale patch is 412 whatever it does.
		if prob := checkResourceMatch(r, k, name, resourceETag(res)); prob != nil {
			return prob
		}
		// The document as a client sees it: plain JSON values.
		var doc any
		b, err := json.Marshal(res)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			return err
		}
		var out any
		if mt == mediaJSONPatch {
			out, err = patch.ApplyJSONPatch(doc, body)
		} else {
			out, err = patch.ApplyMergePatch(doc, body)
		}
		var pe *patch.Error
		switch {
		case errors.As(err, &pe) && pe.Malformed(): // the patch document itself is wrong
			return newProblem(http.StatusBadRequest, probBadRequest, "%s", pe.Error())
		case err != nil:
			return newProblem(http.StatusUnprocessableEntity, probBadRequest, "the patch does not apply to %s %q: %s", k.kind, name, err.Error())
		}
		obj, ok := out.(map[string]any)
		if !ok {
			return newProblem(http.StatusUnprocessableEntity, probBadRequest, "the patched %s must be a JSON object", k.kind)
		}
		if v, ok := obj["name"]; !ok || v != name {
			return newProblem(http.StatusUnprocessableEntity, probBadRequest, "a patch may not change or remove name: a resource cannot be renamed; clone it (POST /v1/%s/%s/clone) and delete the old one", k.plural, name)
		}
		return s.replace(w, r, p, k, obj)
	}
}
