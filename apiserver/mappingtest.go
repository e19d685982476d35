package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"

	"github.com/ferryhq/ferry/engine"
	"github.com/ferryhq/ferry/lang"
)

type mappingTestRequest struct {
	// Input is one record as the source would produce it.
	Input map[string]any `json:"input"`
}

type inlineMappingTestRequest struct {
	// Mapping is a mapping as JSON (like GET /v1/mappings/{name}); "name" is
	// optional. It is compiled along with the current configuration (its
	// tables and mappings for lookup() and apply()); a mapping of the same
	// name is replaced, so an edit can be tried before it is saved.
	Mapping map[string]any `json:"mapping"`
	Input   map[string]any `json:"input"`
}

type mappingTestResponse struct {
	Output  map[string]any `json:"output"`
	Skipped bool           `json:"skipped"`
	Key     string         `json:"key"`
	// Errors are per field ("key", "filter" or the output field's path), every
	// failing field reported.
	Errors []fieldError `json:"errors"`
}

type fieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// inlineMappingName names an inline mapping sent without a name.
const inlineMappingName = "inline_test"

func (s *Server) testNamedMapping(w http.ResponseWriter, r *http.Request, p *Principal) error {
	var req mappingTestRequest
	if prob := s.decodeJSON(w, r, &req); prob != nil {
		return prob
	}
	if req.Input == nil {
		return newProblem(http.StatusUnprocessableEntity, probBadRequest, "input: send the record to map as a JSON object, e.g. {\"input\": {\"id\": 1}}")
	}
	cur, cfg, _, err := s.lookupResource(r, p, resourceKinds[1])
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	prog, _, err := s.CurrentProgram(r.Context(), p.Tenant)
	if err != nil {
		return err
	}
	m := prog.Mappings[name]
	if m == nil {
		return notFound(fmt.Sprintf("mapping %q", name))
	}
	body, err := lang.BlockJSON(cfg, "mapping", name)
	if err != nil {
		return err
	}
	resp, err := s.runMappingTest(r.Context(), p.Tenant, cur, m, body, req.Input)
	if err != nil {
		return err
	}
	writeJSON(w, r, http.StatusOK, resp)
	return nil
}

func (s *Server) testInlineMapping(w http.ResponseWriter, r *http.Request, p *Principal) error {
	var req inlineMappingTestRequest
	if prob := s.decodeJSON(w, r, &req); prob != nil {
		return prob
	}
	if req.Mapping == nil {
		return newProblem(http.StatusUnprocessableEntity, probBadRequest, "mapping: send the mapping as a JSON object, e.g. {\"mapping\": {\"fields\": {\"sku\": \"variants[0].sku\"}}, \"input\": {...}}")
	}
	if req.Input == nil {
		return newProblem(http.StatusUnprocessableEntity, probBadRequest, "input: send the record to map as a JSON object")
	}
	name := inlineMappingName
	body := map[string]any{}
	for k, v := range req.Mapping {
		body[k] = v
	}
	if v, ok := body["name"]; ok {
		n, _ := v.(string)
		if !validName(n) {
			return newProblem(http.StatusUnprocessableEntity, probBadRequest, "mapping.name: use letters, digits, '_' and '-', starting with a letter (got %s)", mustJSONString(v))
		}
		name = n
		delete(body, "name")
	}
	cur, _, err := s.currentConfig(r.Context(), p.Tenant)
	if err != nil {
		return err
	}
	comp, err := s.scratchCompile(p.Tenant, cur, map[string]map[string]any{name: body})
	if err != nil {
		return err
	}
	resp, err := s.runMappingTest(r.Context(), p.Tenant, cur, comp.prog.Mappings[name], body, req.Input)
	if err != nil {
		return err
	}
	writeJSON(w, r, http.StatusOK, resp)
	return nil
}

// scratchCompile compiles the current revision's files with mappings added
// (or replacing those of the same name), never storing anything.
func (s *Server) scratchCompile(tenant string, cur Revision, mappings map[string]map[string]any) (*compiled, error) {
	files := filesBytes(cur.Files)
	if cur.Revision == 0 || len(files) == 0 {
		files = map[string][]byte{lang.RESTFile: fmt.Appendf(nil, "ferry {\n  tenant = %q\n}\n", tenant)}
	}
	names := make([]string, 0, len(mappings))
	for n := range mappings {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		block, err := lang.BlockHCL("mapping", n, mappings[n])
		var uae *lang.UnknownAttributeError
		switch {
		case errors.As(err, &uae):
			msg := fmt.Sprintf("%s has no attribute %q", uae.Block, uae.Path)
			if uae.Suggestion != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", uae.Suggestion)
			}
			return nil, newProblem(http.StatusUnprocessableEntity, probInvalidConfig, "%s", msg)
		case err != nil:
			return nil, newProblem(http.StatusUnprocessableEntity, probInvalidConfig, "mapping %q: %s", n, err.Error())
		}
		files, err = lang.ReplaceBlock(files, "mapping", n, block)
		if errors.Is(err, lang.ErrJSONSyntax) {
			return nil, newProblem(http.StatusUnprocessableEntity, probBadRequest, "mapping %q is declared in a JSON-syntax file: give the inline mapping another name", n)
		} else if err != nil {
			return nil, err
		}
	}
	out := make(map[string]string, len(files))
	for f, b := range files {
		out[f] = string(b)
	}
	return s.compile(tenant, out)
}

// runMappingTest maps input with m. When the mapping fails, the key, the
// filter and every field are evaluated on their own (as one-field mappings
// compiled in a scratch configuration), so every failing field is reported,
// not just the first.
func (s *Server) runMappingTest(ctx context.Context, tenant string, cur Revision, m *engine.Mapping, body map[string]any, input map[string]any) (*mappingTestResponse, error) {
	resp := &mappingTestResponse{Errors: []fieldError{}}
	res, err := m.NewEvaluator().Apply(input)
	if err == nil {
		resp.Output, resp.Skipped, resp.Key = res.Record, res.Skipped, res.Key
		return resp, nil
	}
	resp.Key = res.Key
	probes := map[string]map[string]any{}
	probeField := map[string]string{}
	add := func(field string, b map[string]any) {
		n := "ferry_probe_" + strconv.Itoa(len(probes))
		probes[n] = b
		probeField[n] = field
	}
	if k, ok := body["key"]; ok {
		add("key", map[string]any{"key": k})
	}
	if f, ok := body["filter"]; ok {
		add("filter", map[string]any{"filter": f})
	}
	fields, _ := body["fields"].(map[string]any)
	casts, _ := body["casts"].(map[string]any)
	for f, expr := range fields {
		b := map[string]any{"fields": map[string]any{f: expr}}
		if c, ok := casts[f]; ok {
			b["casts"] = map[string]any{f: c}
		}
		add(f, b)
	}
	comp, cerr := s.scratchCompile(tenant, cur, probes)
	if cerr == nil {
		for n, field := range probeField {
			pm := comp.prog.Mappings[n]
			if pm == nil {
				continue
			}
			if _, perr := pm.NewEvaluator().Apply(input); perr != nil {
				resp.Errors = append(resp.Errors, fieldError{Field: field, Message: mappingErrMessage(perr)})
			}
		}
	}
	if len(resp.Errors) == 0 {
		// Not attributable to one field (defaults, unset, a probe that did
		// not compile): report the mapping's own error.
		field := "mapping"
		var me *engine.MappingError
		if errors.As(err, &me) {
			field = me.Field
		}
		resp.Errors = append(resp.Errors, fieldError{Field: field, Message: mappingErrMessage(err)})
	}
	sort.Slice(resp.Errors, func(i, j int) bool { return resp.Errors[i].Field < resp.Errors[j].Field })
	return resp, nil
}

func mappingErrMessage(err error) string {
	var me *engine.MappingError
	if errors.As(err, &me) && me.Err != nil {
		return me.Err.Error()
	}
	return err.Error()
}
