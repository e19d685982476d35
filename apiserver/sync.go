package apiserver

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/ferryhq/ferry/runtime"
)

// MaxSyncWait is the longest a sync event request waits for its run.
const MaxSyncWait = 5 * time.Minute

// maxIdempotencyKey is the longest Idempotency-Key accepted.
const maxIdempotencyKey = 255

const probInvalidInput = "invalid-input"

// syncEventRequest is POST /v1/sync-events.
type syncEventRequest struct {
	// Integration to run.
	Integration string `json:"integration"`
	// Input records (JSON objects) read in place of the integration's source;
	// absent reads the source.
	Input []json.RawMessage `json:"input,omitempty"`
	// Wait up to this long (a duration like "30s", at most 5m) for the run to
	// end: 200 when it ended, 202 when the wait elapsed first.
	Wait string `json:"wait,omitempty"`
}

func parseWait(raw string) (time.Duration, *Problem) {
	if raw == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(raw)
	if err != nil || d < 0 {
		return 0, newProblem(http.StatusBadRequest, probBadRequest, "wait %q: write a duration such as \"30s\" or \"2m\" (at most %s)", raw, MaxSyncWait)
	}
	if d > MaxSyncWait {
		return 0, newProblem(http.StatusBadRequest, probBadRequest, "wait %q is longer than the maximum of %s; poll GET /v1/sync-events/{correlationId} instead", raw, MaxSyncWait)
	}
	return d, nil
}

func (s *Server) postSyncEvent(w http.ResponseWriter, r *http.Request, p *Principal) error {
	var req syncEventRequest
	if prob := s.decodeJSON(w, r, &req); prob != nil {
		return prob
	}
	if req.Integration == "" {
		return newProblem(http.StatusUnprocessableEntity, probInvalidInput, "integration is required: send {\"integration\": \"name\"}")
	}
	wait, prob := parseWait(req.Wait)
	if prob != nil {
		return prob
	}
	ik := r.Header.Get("Idempotency-Key")
	if len(ik) > maxIdempotencyKey {
		return newProblem(http.StatusBadRequest, probBadRequest, "Idempotency-Key is longer than %d characters", maxIdempotencyKey)
	}
	id, err := s.StartRun(r.Context(), TriggerRequest{Tenant: p.Tenant, Integration: req.Integration, Trigger: "api", TriggeredBy: p.KeyID,
		Input: req.Input, IdempotencyKey: ik})
	if err != nil {
		return startRunProblem(w, err)
	}
	return s.answerRun(w, r, p.Tenant, id, wait)
}

func (s *Server) getSyncEvent(w http.ResponseWriter, r *http.Request, p *Principal) error {
	id := r.PathValue("correlationId")
	wait, prob := parseWait(r.URL.Query().Get("wait"))
	if prob != nil {
		return prob
	}
	if wait == 0 {
		run, err := s.runState(r.Context(), p.Tenant, id)
		if err != nil {
			if errors.Is(err, runtime.ErrNotFound) || errors.Is(err, runtime.ErrInvalidName) {
				return notFound("sync event " + quote(id))
			}
			return err
		}
		writeJSON(w, r, http.StatusOK, runInfo(run))
		return nil
	}
	return s.answerRun(w, r, p.Tenant, id, wait)
}

// answerRun writes a run's state after waiting up to wait for it to end: 200
// when it ended, 202 while it has not (a GET without wait: always 200).
func (s *Server) answerRun(w http.ResponseWriter, r *http.Request, tenant, id string, wait time.Duration) error {
	run, err := s.waitRun(r.Context(), tenant, id, wait)
	if err != nil {
		if errors.Is(err, runtime.ErrNotFound) || errors.Is(err, runtime.ErrInvalidName) {
			return notFound("sync event " + quote(id))
		}
		return err
	}
	status := http.StatusAccepted
	if run.Finished() && wait > 0 {
		status = http.StatusOK
	}
	w.Header().Set("Location", "/v1/sync-events/"+id)
	writeJSON(w, r, status, runInfo(run))
	return nil
}

// startRunProblem maps StartRun's errors to problems.
func startRunProblem(w http.ResponseWriter, err error) error {
	switch {
	case errors.Is(err, ErrUnknownIntegration):
		return newProblem(http.StatusNotFound, probNotFound, "%s; see GET /v1/integrations", err.Error())
	case errors.Is(err, ErrIntegrationInactive):
		return newProblem(http.StatusConflict, probConflict, "%s; activate it with POST /v1/integrations/{name}/activate", err.Error())
	case errors.Is(err, ErrNoConfig):
		return newProblem(http.StatusConflict, probConflict, "the tenant has no configuration applied yet: apply one with ferry apply or PUT /v1/config")
	case errors.Is(err, ErrInvalidInput):
		return newProblem(http.StatusUnprocessableEntity, probInvalidInput, "%s", err.Error())
	case errors.Is(err, ErrRunIDInUse):
		return newProblem(http.StatusConflict, probConflict, "%s", err.Error())
	case errors.Is(err, ErrShuttingDown):
		w.Header().Set("Retry-After", "5")
		return newProblem(http.StatusServiceUnavailable, probUnavailable, "the server is shutting down; retry on another server or in a few seconds")
	}
	return err
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
