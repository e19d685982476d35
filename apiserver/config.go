package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhq/ferry/apiserver/listquery"
	"github.com/ferryhq/ferry/engine"
	"github.com/ferryhq/ferry/lang"
)

// Revision is an applied configuration: its HCL files, who applied it, when.
type Revision struct {
	Revision   int               `json:"revision"`
	Files      map[string]string `json:"files"`
	AppliedBy  string            `json:"appliedBy,omitempty"`
	AppliedAt  time.Time         `json:"appliedAt,omitzero"`
	Message    string            `json:"message,omitempty"`
	PlanHash   string            `json:"planHash,omitempty"`
	RollbackOf int               `json:"rollbackOf,omitempty"`
}

// RevisionSummary is a revision as listed: its file names, not their content.
type RevisionSummary struct {
	Revision   int       `json:"revision"`
	FileNames  []string  `json:"fileNames"`
	AppliedBy  string    `json:"appliedBy"`
	AppliedAt  time.Time `json:"appliedAt"`
	Message    string    `json:"message,omitempty"`
	RollbackOf int       `json:"rollbackOf,omitempty"`
}

type planRequest struct {
	Files map[string]string `json:"files"`
}

type planResponse struct {
	PriorRevision int             `json:"priorRevision"`
	PlanHash      string          `json:"planHash"`
	HasChanges    bool            `json:"hasChanges"`
	Plan          *engine.Plan    `json:"plan"`
	Diagnostics   json.RawMessage `json:"diagnostics"`
}

type applyRequest struct {
	Files   map[string]string `json:"files"`
	Message string            `json:"message,omitempty"`
	// PlanHash, when given, must equal the hash of planning these files
	// against the current revision (412 otherwise).
	PlanHash string `json:"planHash,omitempty"`
}

type applyResponse struct {
	Revision    int             `json:"revision"`
	Changed     bool            `json:"changed"`
	PlanHash    string          `json:"planHash"`
	Plan        *engine.Plan    `json:"plan"`
	Diagnostics json.RawMessage `json:"diagnostics"`
}

type rollbackRequest struct {
	Message string `json:"message,omitempty"`
}

type diffResponse struct {
	From int    `json:"from"`
	To   int    `json:"to"`
	Diff string `json:"diff"` // unified diff
}

// ErrNoConfig is returned by CurrentProgram for a tenant that applied nothing.
var ErrNoConfig = errors.New("no configuration applied")

func revKey(tenant string, n int) string { return tenant + ".rev." + strconv.Itoa(n) }

// current reads the applied revision (revision 0, no files, when none) and
// the KV revision of the pointer for CAS.
func (s *Server) current(ctx context.Context, tenant string) (Revision, uint64, error) {
	var cur Revision
	kvrev, found, err := getJSON(ctx, s.st.config, tenant+".current", &cur)
	if err != nil || !found {
		return Revision{Files: map[string]string{}}, 0, err
	}
	return cur, kvrev, nil
}

func (s *Server) revision(ctx context.Context, tenant string, n int) (Revision, bool, error) {
	var rev Revision
	_, found, err := getJSON(ctx, s.st.config, revKey(tenant, n), &rev)
	if err != nil || found {
		return rev, found, err
	}
	// The history copy is written after the pointer; if the process died in
	// between, the pointer has it.
	cur, _, err := s.current(ctx, tenant)
	if err == nil && cur.Revision == n && n > 0 {
		return cur, true, nil
	}
	return rev, false, err
}

func revisionETag(n int) string { return `"` + strconv.Itoa(n) + `"` }

// parseRevisionMatch reads If-Match as a configuration revision.
func parseRevisionMatch(r *http.Request) (int, *Problem) {
	im := strings.TrimSpace(r.Header.Get("If-Match"))
	if im == "" {
		return 0, newProblem(http.StatusPreconditionRequired, probPrecondRequired, "send If-Match: <revision> with the revision you planned against (the ETag of GET /v1/config; 0 for the first apply)")
	}
	n, err := strconv.Atoi(strings.Trim(strings.TrimPrefix(im, "W/"), `"`))
	if err != nil || n < 0 {
		return 0, newProblem(http.StatusPreconditionFailed, probPrecondition, "If-Match %q is not a configuration revision", im)
	}
	return n, nil
}

func (s *Server) getConfig(w http.ResponseWriter, r *http.Request, p *Principal) error {
	cur, _, err := s.current(r.Context(), p.Tenant)
	if err != nil {
		return err
	}
	w.Header().Set("ETag", revisionETag(cur.Revision))
	writeJSON(w, r, http.StatusOK, cur)
	return nil
}

func (s *Server) planConfig(w http.ResponseWriter, r *http.Request, p *Principal) error {
	var req planRequest
	if prob := s.decodeJSON(w, r, &req); prob != nil {
		return prob
	}
	after, err := s.compile(p.Tenant, req.Files)
	if err != nil {
		return err
	}
	cur, _, err := s.current(r.Context(), p.Tenant)
	if err != nil {
		return err
	}
	plan := planOf(s.configOf(p.Tenant, cur), after.cfg, cur.Revision, req.Files)
	w.Header().Set("ETag", revisionETag(cur.Revision))
	writeJSON(w, r, http.StatusOK, planResponse{PriorRevision: cur.Revision, PlanHash: plan.Hash,
		HasChanges: plan.HasChanges(), Plan: plan, Diagnostics: diagnosticsJSON(after.diags)})
	return nil
}

// configOf loads a stored revision for planning (nil for none, or if it no
// longer loads, e.g. a connector was removed from the binary).
func (s *Server) configOf(tenant string, rev Revision) *lang.Config {
	if rev.Revision == 0 {
		return nil
	}
	if c, err := s.compile(tenant, rev.Files); err == nil {
		return c.cfg
	}
	return nil
}

func (s *Server) applyConfig(w http.ResponseWriter, r *http.Request, p *Principal) error {
	var req applyRequest
	if prob := s.decodeJSON(w, r, &req); prob != nil {
		return prob
	}
	planned, prob := parseRevisionMatch(r)
	if prob != nil {
		return prob
	}
	resp, err := s.apply(r.Context(), p, applyArgs{planned: planned, files: req.Files, message: req.Message, planHash: req.PlanHash})
	if err != nil {
		return err
	}
	w.Header().Set("ETag", revisionETag(resp.Revision))
	writeJSON(w, r, http.StatusOK, resp)
	return nil
}

// applyArgs are the inputs of apply.
type applyArgs struct {
	planned    int // the revision the files were planned against (If-Match)
	files      map[string]string
	message    string
	planHash   string // optional: must match the plan of files against planned
	rollbackOf int
	// rest marks a REST write of one resource: audited as action on resource,
	// and a write that changes nothing (formatting only) makes no revision.
	rest     bool
	action   string // audit action (default config.apply / config.rollback)
	resource string // audit resource (default "config")
}

// apply stores files as the revision after planned, if planned is still the
// current revision. The pointer <tenant>.current is updated with CAS on its
// KV revision, so of two concurrent applies (or REST writes) exactly one wins;
// the other gets 412.
func (s *Server) apply(ctx context.Context, p *Principal, a applyArgs) (*applyResponse, error) {
	resp, _, err := s.applyCompiled(ctx, p, a)
	return resp, err
}

// applyCompiled is apply that also returns the compiled files.
func (s *Server) applyCompiled(ctx context.Context, p *Principal, a applyArgs) (resp *applyResponse, after *compiled, err error) {
	cur, kvrev, err := s.current(ctx, p.Tenant)
	if err != nil {
		return nil, nil, err
	}
	if a.planned != cur.Revision {
		if a.rest {
			prob := newProblem(http.StatusPreconditionFailed, probPrecondition, "the configuration changed (revision %d is now current, not %d): read the resource again and retry", cur.Revision, a.planned)
			prob.revisionRace = true
			return nil, nil, prob
		}
		return nil, nil, newProblem(http.StatusPreconditionFailed, probPrecondition, "the plan was made against revision %d, but the current revision is %d: plan again", a.planned, cur.Revision)
	}
	after, err = s.compile(p.Tenant, a.files)
	if err != nil {
		return nil, nil, err
	}
	plan := planOf(s.configOf(p.Tenant, cur), after.cfg, cur.Revision, a.files)
	hash := plan.Hash
	if a.planHash != "" && a.planHash != hash {
		return nil, nil, newProblem(http.StatusPreconditionFailed, probPrecondition, "planHash does not match these files planned against revision %d: plan again", cur.Revision)
	}
	resp = &applyResponse{Revision: cur.Revision, PlanHash: hash, Plan: plan, Diagnostics: diagnosticsJSON(after.diags)}
	if cur.Revision > 0 && (sameFiles(cur.Files, a.files) || (a.rest && !plan.HasChanges())) {
		return resp, after, nil // nothing to apply
	}
	if len(a.message) > 1000 {
		return nil, nil, newProblem(http.StatusUnprocessableEntity, probBadRequest, "message is longer than 1000 characters")
	}
	next := Revision{Revision: cur.Revision + 1, Files: a.files, AppliedBy: p.KeyID, AppliedAt: s.now().UTC(),
		Message: a.message, PlanHash: hash, RollbackOf: a.rollbackOf}
	b, err := json.Marshal(next)
	if err != nil {
		return nil, nil, err
	}
	if kvrev == 0 {
		_, err = s.st.config.Create(ctx, p.Tenant+".current", b)
	} else {
		_, err = s.st.config.Update(ctx, p.Tenant+".current", b, kvrev)
	}
	if isConflict(err) {
		if a.rest {
			prob := newProblem(http.StatusPreconditionFailed, probPrecondition, "another change won the race for revision %d: read the resource again and retry", next.Revision)
			prob.revisionRace = true
			return nil, nil, prob
		}
		return nil, nil, newProblem(http.StatusPreconditionFailed, probPrecondition, "another apply won the race for revision %d: plan again", next.Revision)
	}
	if err != nil {
		return nil, nil, err
	}
	if _, err := s.st.config.Put(ctx, revKey(p.Tenant, next.Revision), b); err != nil {
		s.log.Error("writing revision history", "tenant", p.Tenant, "revision", next.Revision, "error", err)
	}
	s.mu.Lock()
	s.programs[p.Tenant] = cachedProgram{revision: next.Revision, prog: after.prog}
	s.mu.Unlock()
	action, resource := a.action, a.resource
	if action == "" {
		action = "config.apply"
		if a.rollbackOf > 0 {
			action = "config.rollback"
		}
	}
	if resource == "" {
		resource = "config"
	}
	s.audit(ctx, p.Tenant, p, action, resource, next.Revision, a.message)
	s.emitConfigApplied(ctx, p.Tenant, next, action, resource)
	resp.Revision, resp.Changed = next.Revision, true
	return resp, after, nil
}

func (s *Server) listRevisions(w http.ResponseWriter, r *http.Request, p *Principal) error {
	q, prob := parseList(r, s.routeFor(r))
	if prob != nil {
		return prob
	}
	keys, err := keysOf(r.Context(), s.st.config, p.Tenant+".rev.*")
	if err != nil {
		return err
	}
	seen := map[int]bool{}
	var items []RevisionSummary
	add := func(rev Revision) {
		if seen[rev.Revision] {
			return
		}
		seen[rev.Revision] = true
		names := make([]string, 0, len(rev.Files))
		for n := range rev.Files {
			names = append(names, n)
		}
		sort.Strings(names)
		items = append(items, RevisionSummary{Revision: rev.Revision, FileNames: names, AppliedBy: rev.AppliedBy,
			AppliedAt: rev.AppliedAt, Message: rev.Message, RollbackOf: rev.RollbackOf})
	}
	for _, k := range keys {
		var rev Revision
		if _, found, err := getJSON(r.Context(), s.st.config, k, &rev); err != nil {
			return err
		} else if found {
			add(rev)
		}
	}
	if cur, _, err := s.current(r.Context(), p.Tenant); err != nil {
		return err
	} else if cur.Revision > 0 {
		add(cur)
	}
	if items == nil {
		items = []RevisionSummary{}
	}
	if len(q.Order) == 0 {
		q.Order = []listquery.Order{{Field: "revision", Desc: true}}
	}
	return writeList(w, r, items, q)
}

func (s *Server) revisionParam(r *http.Request, p *Principal, param string) (Revision, error) {
	raw := r.PathValue(param)
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 {
		return Revision{}, notFound(fmt.Sprintf("revision %q", raw))
	}
	rev, found, err := s.revision(r.Context(), p.Tenant, n)
	if err != nil {
		return rev, err
	}
	if !found {
		return rev, notFound(fmt.Sprintf("revision %d", n))
	}
	return rev, nil
}

func (s *Server) getRevision(w http.ResponseWriter, r *http.Request, p *Principal) error {
	rev, err := s.revisionParam(r, p, "n")
	if err != nil {
		return err
	}
	w.Header().Set("ETag", revisionETag(rev.Revision))
	writeJSON(w, r, http.StatusOK, rev)
	return nil
}

func (s *Server) diffRevisions(w http.ResponseWriter, r *http.Request, p *Principal) error {
	from, err := s.revisionParam(r, p, "n")
	if err != nil {
		return err
	}
	to, err := s.revisionParam(r, p, "other")
	if err != nil {
		return err
	}
	writeJSON(w, r, http.StatusOK, diffResponse{From: from.Revision, To: to.Revision,
		Diff: diffFiles(from.Files, to.Files, fmt.Sprintf("revision %d", from.Revision), fmt.Sprintf("revision %d", to.Revision))})
	return nil
}

func (s *Server) rollback(w http.ResponseWriter, r *http.Request, p *Principal) error {
	var req rollbackRequest
	if r.ContentLength != 0 {
		if prob := s.decodeJSON(w, r, &req); prob != nil {
			return prob
		}
	}
	target, err := s.revisionParam(r, p, "n")
	if err != nil {
		return err
	}
	cur, _, err := s.current(r.Context(), p.Tenant)
	if err != nil {
		return err
	}
	planned := cur.Revision
	if r.Header.Get("If-Match") != "" {
		n, prob := parseRevisionMatch(r)
		if prob != nil {
			return prob
		}
		planned = n
	}
	msg := req.Message
	if msg == "" {
		msg = fmt.Sprintf("rollback to revision %d", target.Revision)
	}
	resp, err := s.apply(r.Context(), p, applyArgs{planned: planned, files: target.Files, message: msg, rollbackOf: target.Revision})
	if err != nil {
		return err
	}
	w.Header().Set("ETag", revisionETag(resp.Revision))
	writeJSON(w, r, http.StatusOK, resp)
	return nil
}

// CurrentProgram is the compiled current revision of a tenant (ErrNoConfig if
// none), cached per revision.
func (s *Server) CurrentProgram(ctx context.Context, tenant string) (*engine.Program, int, error) {
	// Every webhook and sync event asks: decoding the revision (its files)
	// each time was a third of a webhook's cost, so the pointer's KV
	// revision (it changes with every write) tells whether it is needed.
	e, err := s.st.config.Get(ctx, tenant+".current")
	if err != nil {
		if isNotFound(err) {
			return nil, 0, ErrNoConfig
		}
		return nil, 0, fmt.Errorf("reading %s.current: %w", tenant, err)
	}
	s.mu.Lock()
	c, ok := s.programs[tenant]
	s.mu.Unlock()
	if ok && c.kvrev == e.Revision() {
		return c.prog, c.revision, nil
	}
	var cur Revision
	if err := json.Unmarshal(e.Value(), &cur); err != nil {
		return nil, 0, fmt.Errorf("decoding %s.current: %w", tenant, err)
	}
	if cur.Revision == 0 {
		return nil, 0, ErrNoConfig
	}
	if ok && c.revision == cur.Revision {
		s.mu.Lock()
		if c2, ok := s.programs[tenant]; ok && c2.revision == cur.Revision {
			c2.kvrev = e.Revision()
			s.programs[tenant] = c2
		}
		s.mu.Unlock()
		return c.prog, c.revision, nil
	}
	comp, err := s.compile(tenant, cur.Files)
	if err != nil {
		return nil, 0, fmt.Errorf("compiling revision %d of tenant %s: %w", cur.Revision, tenant, err)
	}
	s.mu.Lock()
	if c, ok := s.programs[tenant]; !ok || c.revision < cur.Revision {
		s.programs[tenant] = cachedProgram{revision: cur.Revision, prog: comp.prog, kvrev: e.Revision()}
	}
	s.mu.Unlock()
	return comp.prog, cur.Revision, nil
}
