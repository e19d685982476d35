package apiserver

// REST resources derived from HCL: /v1/connections, /v1/mappings,
// /v1/integrations and /v1/schedules.
//
// The applied configuration (a revision of HCL files) stays the only source
// of truth. A resource's JSON is its block as lang.BlockJSON reads it from
// the current revision, plus "name" (and, for integrations, the read-only
// server-side "active"). A write renders the new block with lang.BlockHCL,
// splices it into the current revision's files with lang.ReplaceBlock or
// lang.RemoveBlock (every other byte, comments included, is kept; a new
// block goes to lang.RESTFile), and stores the result through the same
// validate/compile/store path as PUT /v1/config (apply), with CAS on the
// current revision. So a REST write is a new revision whose files show the
// change as HCL, `ferry plan` shows it as drift, and `ferry pull` brings it
// back into git.
//
// ETags are per resource: a hash of the resource's JSON as GET returns it
// (not the configuration's revision), so concurrent edits of different
// resources do not conflict. If-Match guards the resource; the store is
// guarded by CAS on the configuration's revision pointer. A write that loses
// that race (another REST write or an apply got the next revision first) is
// redone on the new revision, If-Match checked again against the resource as
// it is there, a few times (retryRace): so it succeeds if its resource is
// unchanged and is 412 if the other change touched it. If-Match: * matches
// any existing resource.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/ferryhq/ferry/apiserver/listquery"
	"github.com/ferryhq/ferry/lang"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// resourceKind is one block type served as a REST collection.
type resourceKind struct {
	kind       string // block type: "connection"
	plural     string // collection: "connections"
	listFields []string
}

var resourceKinds = []resourceKind{
	{kind: "connection", plural: "connections", listFields: []string{"name", "type"}},
	{kind: "mapping", plural: "mappings", listFields: []string{"name", "key", "filter", "pass_through"}},
	{kind: "integration", plural: "integrations", listFields: []string{"name", "active", "workers", "allow_parallel_runs"}},
	{kind: "schedule", plural: "schedules", listFields: []string{"name", "integration", "cron", "timezone", "concurrency", "missed_fire", "enabled"}},
}

// Resource is a configuration block as JSON: "name" and the block's
// attributes as written (see lang.BlockJSON: literals as JSON values,
// references as "connection.shop", secret("x") as {"secret": "x"}, other
// expressions as {"hcl": "var.x"}, nested blocks as objects). Integrations
// also carry the read-only "active".
type Resource map[string]any

// dependenciesResponse is GET .../dependencies.
type dependenciesResponse struct {
	Address    string   `json:"address"`
	DependsOn  []string `json:"dependsOn"`
	Dependents []string `json:"dependents"`
}

type cloneRequest struct {
	Name string `json:"name"`
}

func (k resourceKind) names(cfg *lang.Config) []string {
	if cfg == nil {
		return nil
	}
	switch k.kind {
	case "connection":
		return cfg.ConnectionNames()
	case "mapping":
		return cfg.MappingNames()
	case "integration":
		return cfg.IntegrationNames()
	case "schedule":
		return cfg.ScheduleNames()
	}
	return nil
}

func (k resourceKind) exists(cfg *lang.Config, name string) bool {
	return slices.Contains(k.names(cfg), name)
}

// currentConfig is the tenant's current revision and its loaded config (nil
// when nothing was applied), from the compiled-program cache when it is fresh.
func (s *Server) currentConfig(ctx context.Context, tenant string) (Revision, *lang.Config, error) {
	cur, _, err := s.current(ctx, tenant)
	if err != nil || cur.Revision == 0 {
		return cur, nil, err
	}
	s.mu.Lock()
	c, ok := s.programs[tenant]
	s.mu.Unlock()
	if ok && c.revision == cur.Revision {
		return cur, c.prog.Config, nil
	}
	comp, err := s.compile(tenant, cur.Files)
	if err != nil {
		var prob *Problem
		if errors.As(err, &prob) && prob.Status == http.StatusUnprocessableEntity {
			p := newProblem(http.StatusConflict, probInvalidConfig, "the current revision %d does not load on this server (e.g. a connector it uses is missing): fix the HCL and run ferry apply", cur.Revision)
			p.Errors = prob.Errors
			return cur, nil, p
		}
		return cur, nil, err
	}
	s.mu.Lock()
	if c, ok := s.programs[tenant]; !ok || c.revision < cur.Revision {
		s.programs[tenant] = cachedProgram{revision: cur.Revision, prog: comp.prog}
	}
	s.mu.Unlock()
	return cur, comp.cfg, nil
}

// resourceOf is the JSON of kind.name in cfg.
func (s *Server) resourceOf(ctx context.Context, tenant string, cfg *lang.Config, k resourceKind, name string) (Resource, error) {
	body, err := lang.BlockJSON(cfg, k.kind, name)
	if err != nil {
		return nil, err
	}
	res := Resource{}
	for a, v := range body {
		res[a] = v
	}
	res["name"] = name
	if k.kind == "integration" {
		active, err := s.IntegrationActive(ctx, tenant, name)
		if err != nil {
			return nil, err
		}
		res["active"] = active
	}
	return res, nil
}

// resourceETag is a strong ETag of a resource's JSON (encoding/json sorts
// map keys, so equal resources hash equally).
func resourceETag(res Resource) string {
	b, _ := json.Marshal(res)
	sum := sha256.Sum256(b)
	return `"r` + hex.EncodeToString(sum[:12]) + `"`
}

// lookupResource reads the current resource named by the path (404 when the
// tenant has no such block).
func (s *Server) lookupResource(r *http.Request, p *Principal, k resourceKind) (Revision, *lang.Config, Resource, error) {
	name := r.PathValue("name")
	cur, cfg, err := s.currentConfig(r.Context(), p.Tenant)
	if err != nil {
		return cur, cfg, nil, err
	}
	if !k.exists(cfg, name) {
		return cur, cfg, nil, notFound(fmt.Sprintf("%s %q", k.kind, name))
	}
	res, err := s.resourceOf(r.Context(), p.Tenant, cfg, k, name)
	return cur, cfg, res, err
}

// checkResourceMatch enforces If-Match on an update or delete: 428 when
// missing, 412 when it is not the resource's current ETag.
func checkResourceMatch(r *http.Request, k resourceKind, name, etag string) *Problem {
	im := strings.TrimSpace(r.Header.Get("If-Match"))
	if im == "" {
		return newProblem(http.StatusPreconditionRequired, probPrecondRequired, "send If-Match with the ETag of GET /v1/%s/%s", k.plural, name)
	}
	if !etagListContains(im, etag) {
		return newProblem(http.StatusPreconditionFailed, probPrecondition, "%s %q changed since you read it (its ETag is now %s): read it again and retry", k.kind, name, etag)
	}
	return nil
}

func (s *Server) listResources(k resourceKind) HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p *Principal) error {
		q, prob := parseList(r, s.routeFor(r))
		if prob != nil {
			return prob
		}
		_, cfg, err := s.currentConfig(r.Context(), p.Tenant)
		if err != nil {
			return err
		}
		items := []Resource{}
		for _, n := range k.names(cfg) {
			res, err := s.resourceOf(r.Context(), p.Tenant, cfg, k, n)
			if err != nil {
				return err
			}
			items = append(items, res)
		}
		if len(q.Order) == 0 {
			q.Order = []listquery.Order{{Field: "name"}}
		}
		return writeList(w, r, items, q)
	}
}

func (s *Server) getResource(k resourceKind) HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p *Principal) error {
		_, _, res, err := s.lookupResource(r, p, k)
		if err != nil {
			return err
		}
		w.Header().Set("ETag", resourceETag(res))
		writeJSON(w, r, http.StatusOK, res)
		return nil
	}
}

// bodyOf checks a resource body sent by a client against the resource it
// replaces (cur: nil for a create) and returns the block's attributes.
// "name" must match (renaming is clone + delete); "active" is read-only: it
// is ignored when it equals the current value (so GET → PUT round-trips).
func bodyOf(k resourceKind, name string, body map[string]any, cur Resource) (map[string]any, *Problem) {
	out := make(map[string]any, len(body))
	for a, v := range body {
		out[a] = v
	}
	if v, ok := out["name"]; ok {
		if v != name {
			return nil, newProblem(http.StatusUnprocessableEntity, probBadRequest, "name %s does not match %s %q: a resource cannot be renamed; clone it (POST /v1/%s/%s/clone) and delete the old one", mustJSONString(v), k.kind, name, k.plural, name)
		}
		delete(out, "name")
	}
	if k.kind == "integration" {
		if v, ok := out["active"]; ok {
			want := true
			if cur != nil {
				want, _ = cur["active"].(bool)
			}
			if v != want {
				return nil, newProblem(http.StatusUnprocessableEntity, probBadRequest, "active is read-only here: use POST /v1/integrations/%s/activate or /deactivate", name)
			}
			delete(out, "active")
		}
	}
	return out, nil
}

func mustJSONString(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// restWrite turns one resource change into a new revision: body nil deletes
// kind.name, else it becomes the block's attributes. It returns the new
// configuration's resource (nil after a delete) and the revision.
func (s *Server) restWrite(ctx context.Context, p *Principal, cur Revision, k resourceKind, name, verb string, body map[string]any) (Resource, int, error) {
	if err := s.restWritesAllowed(ctx, p.Tenant); err != nil {
		return nil, 0, err
	}
	files := filesBytes(cur.Files)
	if cur.Revision == 0 || len(files) == 0 {
		// Nothing applied yet: the configuration starts with its ferry block.
		files = map[string][]byte{lang.RESTFile: fmt.Appendf(nil, "ferry {\n  tenant = %q\n}\n", p.Tenant)}
	}
	var (
		next map[string][]byte
		err  error
	)
	if body == nil {
		next, err = lang.RemoveBlock(files, k.kind, name)
	} else {
		var block []byte
		block, err = lang.BlockHCL(k.kind, name, body)
		var uae *lang.UnknownAttributeError
		switch {
		case errors.As(err, &uae):
			detail := fmt.Sprintf("%s has no attribute %q", uae.Block, uae.Path)
			if uae.Suggestion != "" {
				detail += fmt.Sprintf(" (did you mean %q?)", uae.Suggestion)
			}
			prob := newProblem(http.StatusUnprocessableEntity, probInvalidConfig, "%s", detail)
			prob.Errors = diagnosticsJSON(hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Unsupported attribute", Detail: detail}})
			return nil, 0, prob
		case err != nil:
			return nil, 0, newProblem(http.StatusUnprocessableEntity, probInvalidConfig, "%s %q: %s", k.kind, name, err.Error())
		}
		next, err = lang.ReplaceBlock(files, k.kind, name, block)
	}
	switch {
	case errors.Is(err, lang.ErrJSONSyntax):
		return nil, 0, newProblem(http.StatusConflict, probConflict, "%s %q is declared in a JSON-syntax (.hcl.json) file, which the server does not rewrite: change it in git and run ferry apply", k.kind, name)
	case errors.Is(err, lang.ErrBlockNotFound):
		return nil, 0, notFound(fmt.Sprintf("%s %q", k.kind, name))
	case err != nil:
		return nil, 0, err
	}
	nf := make(map[string]string, len(next))
	for f, b := range next {
		nf[f] = string(b)
	}
	addr := k.kind + "." + name
	resp, after, err := s.applyCompiled(ctx, p, applyArgs{planned: cur.Revision, files: nf, rest: true,
		message: fmt.Sprintf("REST: %s %s (key %s)", verb, addr, p.KeyID), action: k.kind + "." + verb, resource: addr})
	if err != nil {
		return nil, 0, err
	}
	if body == nil {
		return nil, resp.Revision, nil
	}
	res, err := s.resourceOf(ctx, p.Tenant, after.cfg, k, name)
	return res, resp.Revision, err
}

// writeResourceResponse answers a write with the resource, its ETag and the
// new revision (Ferry-Revision).
func writeResourceResponse(w http.ResponseWriter, r *http.Request, status int, res Resource, revision int) {
	w.Header().Set("ETag", resourceETag(res))
	w.Header().Set("Ferry-Revision", strconv.Itoa(revision))
	writeJSON(w, r, status, res)
}

func validName(name string) bool {
	return name != "" && len(name) <= 128 && hclsyntax.ValidIdentifier(name)
}

func (s *Server) createResource(k resourceKind) HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p *Principal) error {
		var body map[string]any
		if prob := s.decodeJSON(w, r, &body); prob != nil {
			return prob
		}
		if body == nil {
			return newProblem(http.StatusBadRequest, probBadRequest, "send the %s as a JSON object with its name and attributes", k.kind)
		}
		name, _ := body["name"].(string)
		if !validName(name) {
			return newProblem(http.StatusUnprocessableEntity, probBadRequest, "name: a %s needs a name of letters, digits, '_' and '-', starting with a letter (got %s)", k.kind, mustJSONString(body["name"]))
		}
		return s.create(w, r, p, k, name, body)
	}
}

// restWriteAttempts bounds retryRace.
const restWriteAttempts = 5

// retryRace runs a REST write again while it loses the race for the next
// revision (see the comment at the top of this file).
func retryRace(write func() error) error {
	var err error
	for range restWriteAttempts {
		err = write()
		var prob *Problem
		if !errors.As(err, &prob) || !prob.revisionRace {
			return err
		}
	}
	return err
}

func (s *Server) create(w http.ResponseWriter, r *http.Request, p *Principal, k resourceKind, name string, body map[string]any) error {
	return retryRace(func() error { return s.createOnce(w, r, p, k, name, body) })
}

func (s *Server) createOnce(w http.ResponseWriter, r *http.Request, p *Principal, k resourceKind, name string, body map[string]any) error {
	if err := s.restWritesAllowed(r.Context(), p.Tenant); err != nil {
		return err
	}
	cur, cfg, err := s.currentConfig(r.Context(), p.Tenant)
	if err != nil {
		return err
	}
	if k.exists(cfg, name) {
		return newProblem(http.StatusConflict, probConflict, "%s %q already exists: replace it with PUT /v1/%s/%s", k.kind, name, k.plural, name)
	}
	attrs, prob := bodyOf(k, name, body, nil)
	if prob != nil {
		return prob
	}
	if k.kind == "integration" {
		// A new integration starts active, whatever an earlier one of the
		// same name was.
		s.forgetActive(r.Context(), p.Tenant, name)
	}
	res, rev, err := s.restWrite(r.Context(), p, cur, k, name, "create", attrs)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/"+k.plural+"/"+name)
	writeResourceResponse(w, r, http.StatusCreated, res, rev)
	return nil
}

func (s *Server) replaceResource(k resourceKind) HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p *Principal) error {
		var body map[string]any
		if prob := s.decodeJSON(w, r, &body); prob != nil {
			return prob
		}
		if body == nil {
			return newProblem(http.StatusBadRequest, probBadRequest, "send the %s as a JSON object with its attributes", k.kind)
		}
		return s.replace(w, r, p, k, body)
	}
}

// replace is PUT, and PATCH after the patch was applied.
func (s *Server) replace(w http.ResponseWriter, r *http.Request, p *Principal, k resourceKind, body map[string]any) error {
	return retryRace(func() error { return s.replaceOnce(w, r, p, k, body) })
}

func (s *Server) replaceOnce(w http.ResponseWriter, r *http.Request, p *Principal, k resourceKind, body map[string]any) error {
	if err := s.restWritesAllowed(r.Context(), p.Tenant); err != nil {
		return err
	}
	cur, _, res, err := s.lookupResource(r, p, k)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	if prob := checkResourceMatch(r, k, name, resourceETag(res)); prob != nil {
		return prob
	}
	attrs, prob := bodyOf(k, name, body, res)
	if prob != nil {
		return prob
	}
	out, rev, err := s.restWrite(r.Context(), p, cur, k, name, "update", attrs)
	if err != nil {
		return err
	}
	writeResourceResponse(w, r, http.StatusOK, out, rev)
	return nil
}

func (s *Server) deleteResource(k resourceKind) HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p *Principal) error {
		return retryRace(func() error { return s.deleteOnce(w, r, p, k) })
	}
}

func (s *Server) deleteOnce(w http.ResponseWriter, r *http.Request, p *Principal, k resourceKind) error {
	if err := s.restWritesAllowed(r.Context(), p.Tenant); err != nil {
		return err
	}
	cur, cfg, res, err := s.lookupResource(r, p, k)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	if prob := checkResourceMatch(r, k, name, resourceETag(res)); prob != nil {
		return prob
	}
	addr := k.kind + "." + name
	if deps := cfg.Dependents(addr); len(deps) > 0 {
		return newProblem(http.StatusConflict, probHasDependents, "%s is used by %s: change or delete those first", addr, strings.Join(deps, ", "))
	}
	_, rev, err := s.restWrite(r.Context(), p, cur, k, name, "delete", nil)
	if err != nil {
		return err
	}
	if k.kind == "integration" {
		s.forgetActive(r.Context(), p.Tenant, name)
	}
	w.Header().Set("Ferry-Revision", strconv.Itoa(rev))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) cloneResource(k resourceKind) HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p *Principal) error {
		var req cloneRequest
		if prob := s.decodeJSON(w, r, &req); prob != nil {
			return prob
		}
		_, _, res, err := s.lookupResource(r, p, k)
		if err != nil {
			return err
		}
		if !validName(req.Name) {
			return newProblem(http.StatusUnprocessableEntity, probBadRequest, "name: the clone needs a name of letters, digits, '_' and '-', starting with a letter (got %q)", req.Name)
		}
		body := map[string]any{}
		for a, v := range res {
			body[a] = v
		}
		body["name"] = req.Name
		delete(body, "active") // a clone starts active
		return s.create(w, r, p, k, req.Name, body)
	}
}

func (s *Server) resourceTemplate(k resourceKind) HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p *Principal) error {
		_, cfg, res, err := s.lookupResource(r, p, k)
		if err != nil {
			return err
		}
		name := r.PathValue("name")
		body, err := lang.BlockJSON(cfg, k.kind, name)
		if err != nil {
			return err
		}
		hclText, err := lang.BlockHCL(k.kind, name, body)
		if err != nil {
			return err
		}
		etag := resourceETag(res)
		w.Header().Set("ETag", etag)
		if inm := r.Header.Get("If-None-Match"); inm != "" && etagListContains(inm, etag) {
			w.WriteHeader(http.StatusNotModified)
			return nil
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(hclText)
		return nil
	}
}

func (s *Server) resourceDependencies(k resourceKind) HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p *Principal) error {
		_, cfg, _, err := s.lookupResource(r, p, k)
		if err != nil {
			return err
		}
		addr := k.kind + "." + r.PathValue("name")
		resp := dependenciesResponse{Address: addr, DependsOn: slices.Clone(cfg.Dependencies[addr]), Dependents: cfg.Dependents(addr)}
		if resp.DependsOn == nil {
			resp.DependsOn = []string{}
		}
		slices.Sort(resp.DependsOn)
		if resp.Dependents == nil {
			resp.Dependents = []string{}
		}
		writeJSON(w, r, http.StatusOK, resp)
		return nil
	}
}

// setActivation is POST /v1/integrations/{name}/activate|deactivate: server
// state, not HCL, so it makes no revision and is allowed when REST config
// writes are disabled; it is audited.
func (s *Server) setActivation(active bool) HandlerFunc {
	k := resourceKinds[2]
	return func(w http.ResponseWriter, r *http.Request, p *Principal) error {
		_, cfg, res, err := s.lookupResource(r, p, k)
		if err != nil {
			return err
		}
		name := r.PathValue("name")
		if res["active"] != active {
			if err := s.setActive(r.Context(), p, name, active); err != nil {
				return err
			}
			action := "integration.activate"
			if !active {
				action = "integration.deactivate"
			}
			s.audit(r.Context(), p.Tenant, p, action, "integration."+name, 0, "")
			if res, err = s.resourceOf(r.Context(), p.Tenant, cfg, k, name); err != nil {
				return err
			}
		}
		w.Header().Set("ETag", resourceETag(res))
		writeJSON(w, r, http.StatusOK, res)
		return nil
	}
}

// resourceRoutes are the routes of the REST resources.
func (s *Server) resourceRoutes() []Route {
	var out []Route
	for _, k := range resourceKinds {
		base := "/v1/" + k.plural
		item := base + "/{name}"
		tag := k.plural
		out = append(out,
			Route{Method: "GET", Pattern: base, Roles: tenantRead, TenantScoped: true, Summary: "List " + k.plural + " of the current configuration", Tag: tag, Response: listOf[Resource]{}, List: true, ListFields: k.listFields, Handle: s.listResources(k)},
			Route{Method: "POST", Pattern: base, Roles: tenantWrite, TenantScoped: true, Summary: "Create a " + k.kind + " (a new revision; 409 if the name exists)", Tag: tag, Request: Resource{}, Response: Resource{}, Status: 201, Handle: s.createResource(k)},
			Route{Method: "GET", Pattern: item, Roles: tenantRead, TenantScoped: true, Summary: "Get a " + k.kind + "; ETag is a hash of its JSON", Tag: tag, Response: Resource{}, Handle: s.getResource(k)},
			Route{Method: "PUT", Pattern: item, Roles: tenantWrite, TenantScoped: true, IfMatch: true, Summary: "Replace a " + k.kind + " (a new revision)", Tag: tag, Request: Resource{}, Response: Resource{}, Handle: s.replaceResource(k)},
			Route{Method: "PATCH", Pattern: item, Roles: tenantWrite, TenantScoped: true, IfMatch: true, Summary: "Patch a " + k.kind + " with JSON Patch or JSON merge patch (a new revision)", Tag: tag, Request: Resource{}, RequestTypes: []string{mediaJSONPatch, mediaMergePatch}, Response: Resource{}, Handle: s.patchResource(k)},
			Route{Method: "DELETE", Pattern: item, Roles: tenantWrite, TenantScoped: true, IfMatch: true, Summary: "Delete a " + k.kind + " (a new revision; 409 while others depend on it)", Tag: tag, Status: 204, Handle: s.deleteResource(k)},
			Route{Method: "POST", Pattern: item + "/clone", Roles: tenantWrite, TenantScoped: true, Summary: "Copy a " + k.kind + " under a new name (a new revision)", Tag: tag, Request: cloneRequest{}, Response: Resource{}, Status: 201, Handle: s.cloneResource(k)},
			Route{Method: "GET", Pattern: item + "/template", Roles: tenantRead, TenantScoped: true, Summary: "The " + k.kind + " as HCL", Tag: tag, Response: "text/plain", Handle: s.resourceTemplate(k)},
			Route{Method: "GET", Pattern: item + "/dependencies", Roles: tenantRead, TenantScoped: true, Summary: "What the " + k.kind + " refers to, and what refers to it", Tag: tag, Response: dependenciesResponse{}, Handle: s.resourceDependencies(k)},
		)
		switch k.kind {
		case "integration":
			out = append(out,
				Route{Method: "POST", Pattern: item + "/activate", Roles: tenantWrite, TenantScoped: true, Summary: "Activate an integration (server state, not HCL): triggers may start runs", Tag: tag, Response: Resource{}, Handle: s.setActivation(true)},
				Route{Method: "POST", Pattern: item + "/deactivate", Roles: tenantWrite, TenantScoped: true, Summary: "Deactivate an integration (server state, not HCL): no trigger starts a run", Tag: tag, Response: Resource{}, Handle: s.setActivation(false)},
			)
		case "connection":
			out = append(out, Route{Method: "POST", Pattern: item + "/test", Roles: tenantWrite, TenantScoped: true, Summary: "Open the connection with the tenant's secrets and run the connector's check", Tag: tag, Response: connectionTestResponse{}, Handle: s.testConnection})
		case "mapping":
			out = append(out, Route{Method: "POST", Pattern: item + "/test", Roles: tenantRead, TenantScoped: true, Summary: "Map one input record with the mapping: output and per-field errors", Tag: tag, Request: mappingTestRequest{}, Response: mappingTestResponse{}, Handle: s.testNamedMapping})
		}
	}
	return out
}
