package apiserver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhq/ferry/connectors"
	"github.com/ferryhq/ferry/runtime"
)

// dlqReplayRequest is POST /v1/dlq/{entry}/replay (the body is optional).
type dlqReplayRequest struct {
	// Record replaces the entry's record (an edited record); absent replays the original.
	Record json.RawMessage `json:"record,omitempty"`
	Reason string          `json:"reason,omitempty"`
}

// dlqReplayResponse is the outcome of a replay.
type dlqReplayResponse struct {
	// Result: success or skipped (the entry is replayed) or failed (it stays pending).
	Result string            `json:"result"`
	Error  string            `json:"error,omitempty"`
	Entry  *runtime.DLQEntry `json:"entry"`
}

// dlqReplayManyRequest is POST /v1/dlq/replay: every pending entry matching
// the (optional) filter.
type dlqReplayManyRequest struct {
	Integration string              `json:"integration,omitempty"`
	Run         string              `json:"run,omitempty"`
	Category    connectors.Category `json:"category,omitempty"`
	Reason      string              `json:"reason,omitempty"`
}

func dlqNotFound(id string) *Problem { return notFound(fmt.Sprintf("DLQ entry %q", id)) }

// dlqETag is an entry's version: it changes with every replay or discard.
func dlqETag(e *runtime.DLQEntry) string {
	sum := sha256.Sum256([]byte(e.ID + "\x00" + string(e.Status) + "\x00" + e.Updated.UTC().Format(time.RFC3339Nano) + "\x00" + strconv.Itoa(len(e.Events))))
	return `"d` + hex.EncodeToString(sum[:12]) + `"`
}

func dlqProblem(id string, err error) error {
	switch {
	case errors.Is(err, runtime.ErrNotFound), errors.Is(err, runtime.ErrInvalidName):
		return dlqNotFound(id)
	case errors.Is(err, runtime.ErrNotPending):
		return newProblem(http.StatusConflict, probConflict, "DLQ entry %q is not pending: it was replayed or discarded already", id)
	case errors.Is(err, ErrNoConfig):
		return newProblem(http.StatusConflict, probConflict, "the tenant has no configuration applied: a replay runs through the current configuration")
	}
	return err
}

// replayJobs returns the Jobs of the tenant's current configuration, compiled
// on first use (a replay of nothing needs no configuration).
func (s *Server) replayJobs(ctx context.Context, tenant string) runtime.JobFunc {
	return func(integration string) (*runtime.Job, error) {
		prog, rev, err := s.CurrentProgram(ctx, tenant)
		if err != nil {
			return nil, err
		}
		job, _, err := s.programJob(tenant, prog, integration, strconv.Itoa(rev))
		return job, err
	}
}

func (s *Server) listDLQ(w http.ResponseWriter, r *http.Request, p *Principal) error {
	q, prob := parseList(r, s.routeFor(r))
	if prob != nil {
		return prob
	}
	v := r.URL.Query()
	f := runtime.DLQFilter{Integration: v.Get("integration"), RunID: v.Get("run"), Category: connectors.Category(v.Get("category")),
		Status: runtime.DLQStatus(v.Get("status")), PageSize: 1 << 30}
	switch f.Category {
	case "", connectors.CategoryTransient, connectors.CategoryPermanent:
	default:
		return newProblem(http.StatusBadRequest, probBadRequest, "category=%q: use transient or permanent", f.Category)
	}
	switch f.Status {
	case "", runtime.DLQPending, runtime.DLQReplayed, runtime.DLQDiscarded:
	default:
		return newProblem(http.StatusBadRequest, probBadRequest, "status=%q: use pending, replayed or discarded", f.Status)
	}
	page, err := s.rt.DLQ().List(r.Context(), p.Tenant, f)
	if err != nil {
		return err
	}
	items := page.Entries
	if items == nil {
		items = []*runtime.DLQEntry{}
	}
	return writeList(w, r, items, q)
}

func (s *Server) getDLQEntry(w http.ResponseWriter, r *http.Request, p *Principal) error {
	id, ok := pathID(r, "entry")
	if !ok {
		return dlqNotFound(id)
	}
	e, err := s.rt.DLQ().Get(r.Context(), p.Tenant, id)
	if err != nil {
		return dlqProblem(id, err)
	}
	w.Header().Set("ETag", dlqETag(e))
	writeJSON(w, r, http.StatusOK, e)
	return nil
}

func (s *Server) replayDLQEntry(w http.ResponseWriter, r *http.Request, p *Principal) error {
	id, ok := pathID(r, "entry")
	if !ok {
		return dlqNotFound(id)
	}
	var req dlqReplayRequest
	if prob := s.decodeOptionalJSON(w, r, &req); prob != nil {
		return prob
	}
	if len(req.Record) > 0 {
		if t := strings.TrimSpace(string(req.Record)); t == "null" {
			req.Record = nil
		} else if !strings.HasPrefix(t, "{") {
			return newProblem(http.StatusUnprocessableEntity, probInvalidInput, "record must be a JSON object (the edited record)")
		}
	}
	// Existence first: another tenant's entry is a 404, not a replay attempt.
	if _, err := s.rt.DLQ().Get(r.Context(), p.Tenant, id); err != nil {
		return dlqProblem(id, err)
	}
	e, err := s.rt.DLQ().Replay(r.Context(), p.Tenant, id, s.replayJobs(r.Context(), p.Tenant), runtime.ReplayOptions{Record: req.Record, Reason: req.Reason})
	if err != nil {
		return dlqProblem(id, err)
	}
	resp := dlqReplayResponse{Result: "failed", Entry: e}
	if n := len(e.Events); n > 0 {
		resp.Result, resp.Error = e.Events[n-1].Result, e.Events[n-1].Error
	}
	detail := "result " + resp.Result
	if req.Record != nil {
		detail += " (edited record)"
	}
	s.audit(r.Context(), p.Tenant, p, "dlq.replay", "dlq/"+id, 0, detail)
	w.Header().Set("ETag", dlqETag(e))
	writeJSON(w, r, http.StatusOK, resp)
	return nil
}

func (s *Server) replayDLQ(w http.ResponseWriter, r *http.Request, p *Principal) error {
	var req dlqReplayManyRequest
	if prob := s.decodeOptionalJSON(w, r, &req); prob != nil {
		return prob
	}
	switch req.Category {
	case "", connectors.CategoryTransient, connectors.CategoryPermanent:
	default:
		return newProblem(http.StatusUnprocessableEntity, probInvalidInput, "category %q: use transient or permanent", req.Category)
	}
	f := runtime.DLQFilter{Integration: req.Integration, RunID: req.Run, Category: req.Category, Status: runtime.DLQPending}
	sum, err := s.rt.DLQ().ReplayMany(r.Context(), p.Tenant, f, s.replayJobs(r.Context(), p.Tenant), runtime.ReplayOptions{Reason: req.Reason})
	if err != nil {
		if errors.Is(err, runtime.ErrInvalidName) {
			return newProblem(http.StatusUnprocessableEntity, probInvalidInput, "%s", err.Error())
		}
		return dlqProblem("", err)
	}
	if sum.Matched > 0 {
		s.audit(r.Context(), p.Tenant, p, "dlq.replay", "dlq", 0,
			fmt.Sprintf("%d matched, %d replayed, %d failed", sum.Matched, sum.Replayed, sum.Failed))
	}
	writeJSON(w, r, http.StatusOK, sum)
	return nil
}

func (s *Server) discardDLQEntry(w http.ResponseWriter, r *http.Request, p *Principal) error {
	id, ok := pathID(r, "entry")
	if !ok {
		return dlqNotFound(id)
	}
	cur, err := s.rt.DLQ().Get(r.Context(), p.Tenant, id)
	if err != nil {
		return dlqProblem(id, err)
	}
	if im := strings.TrimSpace(r.Header.Get("If-Match")); im != "" && !etagListContains(im, dlqETag(cur)) {
		return newProblem(http.StatusPreconditionFailed, probPrecondition, "DLQ entry %q changed since you read it; GET it again", id)
	}
	e, err := s.rt.DLQ().Discard(r.Context(), p.Tenant, id, r.URL.Query().Get("reason"))
	if err != nil {
		return dlqProblem(id, err)
	}
	s.audit(r.Context(), p.Tenant, p, "dlq.discard", "dlq/"+id, 0, r.URL.Query().Get("reason"))
	w.Header().Set("ETag", dlqETag(e))
	writeJSON(w, r, http.StatusOK, e)
	return nil
}
