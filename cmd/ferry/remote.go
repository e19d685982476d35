package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"time"

	"github.com/ferryhq/ferry/apiserver"
	"github.com/ferryhq/ferry/apiserver/listquery"
	"github.com/ferryhq/ferry/engine"
	"github.com/ferryhq/ferry/runtime"
)

// remoteNote is the help text on where runs and dlq read their data.
const remoteNote = `
Against a server: with --server URL, or FERRY_SERVER set, the command calls that
ferry server's REST API with --api-key (default: $FERRY_API_KEY) and works on the
key's tenant; the output is the same. Explicit local flags win: --data-dir, --config,
--nats-url, --tenant, -var or -var-file mean the local data even when FERRY_SERVER
is set (--server together with one of them is an error).`

// remoteFlags choose between the local data (storeFlags) and a ferry server
// for runs and dlq.
type remoteFlags struct {
	serverFlags
	// base is the server's URL, for messages; explicit says it came from --server.
	base     string
	explicit bool
}

// localFlagNames are the flags of storeFlags that select local data.
func localFlagNames() map[string]bool {
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	(&storeFlags{}).declare(fs)
	names := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { names[f.Name] = true })
	delete(names, "json")
	return names
}

// pick decides where the data is: it returns a client for a server, nil for
// the local data, and ok false after printing an error.
func (r *remoteFlags) pick(c *ctx) (cl *apiClient, ok bool) {
	var local string
	names := localFlagNames()
	c.fs.Visit(func(f *flag.Flag) {
		if names[f.Name] && local == "" {
			local = "--" + f.Name
		}
	})
	r.explicit = r.server != ""
	switch {
	case r.explicit && local != "":
		c.errorf("--server reads the server's data and %s the local data: give one of them", local)
		return nil, false
	case local != "" || (!r.explicit && os.Getenv("FERRY_SERVER") == ""):
		if r.apiKey != "" {
			c.errorf("--api-key is for a ferry server: add --server URL or set FERRY_SERVER (without %s)", orDefault(local, "local flags"))
			return nil, false
		}
		return nil, true
	}
	cl, err := r.client()
	if err != nil {
		if !r.explicit {
			c.errorf("%v\n(FERRY_SERVER is set, so ferry %s asks the server; for the local data, pass --config DIR or --data-dir DIR)", err, c.fs.Name()[len("ferry "):])
		} else {
			c.errorf("%v", err)
		}
		return nil, false
	}
	r.base = cl.base.Redacted()
	return cl, true
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// hint is what a follow-up command needs to reach the same server.
func (r *remoteFlags) hint() string {
	if r.explicit {
		return " --server " + r.server
	}
	return ""
}

// where names the server in messages.
func (r *remoteFlags) where() string {
	return "on the server " + r.base
}

// remoteError prints an error of the server: a 404 says what is missing
// and where to look.
func (r *remoteFlags) remoteError(c *ctx, err error, what, id, see string) int {
	switch {
	case errors.Is(err, context.Canceled):
		return c.errorf("interrupted")
	case statusOf(err) == http.StatusNotFound && id != "":
		return c.errorf("no %s %s %s (see: %s%s)", what, id, r.where(), see, r.hint())
	}
	return c.errorf("%v", err)
}

// remoteCtx is the context of a remote command: Ctrl-C cancels it.
func remoteCtx() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt)
}

// maxRemotePageSize is the server's largest page.
const maxRemotePageSize = listquery.MaxPageSize

// apiList is the envelope of the API's list answers.
type apiList[T any] struct {
	Items    []T `json:"items"`
	Page     int `json:"page"`
	PageSize int `json:"pageSize"`
	Total    int `json:"total"`
}

// apiRun is a run read from the server, printed with --json: runtime.Run's
// fields in its order, without those the API does not show (tenant, batches,
// ingestDone, cursorFrom).
type apiRun struct {
	ID          string           `json:"id"`
	Integration string           `json:"integration"`
	Trigger     string           `json:"trigger,omitempty"`
	TriggeredBy string           `json:"triggeredBy,omitempty"`
	Revision    string           `json:"revision,omitempty"`
	Status      engine.RunStatus `json:"status"`
	Counts      engine.Counts    `json:"counts"`
	Queued      time.Time        `json:"queued"`
	Started     time.Time        `json:"started,omitzero"`
	Ended       time.Time        `json:"ended,omitzero"`
	Error       string           `json:"error,omitempty"`
	Resumes     int              `json:"resumes,omitempty"`
	Replays     int              `json:"replays,omitempty"`
}

func toAPIRun(r *runtime.Run) *apiRun {
	if r == nil {
		return nil
	}
	return &apiRun{ID: r.ID, Integration: r.Integration, Trigger: r.Trigger, TriggeredBy: r.TriggeredBy, Revision: r.Revision, Status: r.Status, Counts: r.Counts,
		Queued: r.Queued, Started: r.Started, Ended: r.Ended, Error: r.Error, Resumes: r.Resumes, Replays: r.Replays}
}

// fromRunInfo maps the API's run onto the runtime's (the tenant is the key's,
// which the API does not name).
func fromRunInfo(ri apiserver.RunInfo) *runtime.Run {
	r := &runtime.Run{ID: ri.ID, Integration: ri.Integration, Trigger: ri.Trigger, TriggeredBy: ri.TriggeredBy, Revision: ri.Revision, Status: ri.Status,
		Counts: ri.Counts, Queued: ri.Queued, Error: ri.Error, Resumes: ri.Resumes, Replays: ri.Replays}
	if ri.Started != nil {
		r.Started = *ri.Started
	}
	if ri.Ended != nil {
		r.Ended = *ri.Ended
	}
	return r
}

func runPath(id string) string { return "/v1/runs/" + url.PathEscape(id) }
func dlqPath(id string) string { return "/v1/dlq/" + url.PathEscape(id) }

// withQuery adds the non-empty values of kv (name, value, ...) to path.
func withQuery(path string, kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			v.Set(kv[i], kv[i+1])
		}
	}
	if len(v) == 0 {
		return path
	}
	return path + "?" + v.Encode()
}

func (c *apiClient) listRuns(ctx context.Context, integration, status string, page, pageSize int) (*runtime.RunPage, error) {
	var l apiList[apiserver.RunInfo]
	path := withQuery("/v1/runs", "integration", integration, "status", status, "page", strconv.Itoa(page), "pageSize", strconv.Itoa(pageSize))
	if _, err := c.do(ctx, http.MethodGet, path, nil, nil, &l); err != nil {
		return nil, err
	}
	p := &runtime.RunPage{Runs: []*runtime.Run{}, Total: l.Total, Page: l.Page, PageSize: l.PageSize}
	for _, ri := range l.Items {
		p.Runs = append(p.Runs, fromRunInfo(ri))
	}
	return p, nil
}

func (c *apiClient) getRun(ctx context.Context, id string) (*runtime.Run, error) {
	var ri apiserver.RunInfo
	if _, err := c.do(ctx, http.MethodGet, runPath(id), nil, nil, &ri); err != nil {
		return nil, err
	}
	return fromRunInfo(ri), nil
}

// runErrors reads every page of a run's per-entity errors.
func (c *apiClient) runErrors(ctx context.Context, id string) ([]runError, error) {
	errs := []runError{}
	for page := 1; ; page++ {
		var l apiList[apiserver.RunError]
		if _, err := c.do(ctx, http.MethodGet, withQuery(runPath(id)+"/errors", "page", strconv.Itoa(page), "pageSize", strconv.Itoa(maxRemotePageSize)), nil, nil, &l); err != nil {
			return nil, err
		}
		for _, e := range l.Items {
			errs = append(errs, runError{
				RecordFailure: engine.RecordFailure{Key: e.Key, Stage: e.Stage, Category: e.Category, Message: e.Message, Attempts: e.Attempts, Position: e.Position},
				DLQID:         e.Entry, DLQStatus: string(e.EntryStatus)})
		}
		if len(l.Items) == 0 || len(errs) >= l.Total {
			return errs, nil
		}
	}
}

func (c *apiClient) listDLQ(ctx context.Context, f runtime.DLQFilter) (*runtime.DLQPage, error) {
	var l apiList[*runtime.DLQEntry]
	path := withQuery("/v1/dlq", "integration", f.Integration, "run", f.RunID, "category", string(f.Category), "status", string(f.Status),
		"page", strconv.Itoa(f.Page), "pageSize", strconv.Itoa(f.PageSize))
	if _, err := c.do(ctx, http.MethodGet, path, nil, nil, &l); err != nil {
		return nil, err
	}
	if l.Items == nil {
		l.Items = []*runtime.DLQEntry{}
	}
	return &runtime.DLQPage{Entries: l.Items, Total: l.Total, Page: l.Page, PageSize: l.PageSize}, nil
}

func (c *apiClient) getDLQ(ctx context.Context, id string) (*runtime.DLQEntry, error) {
	var e runtime.DLQEntry
	if _, err := c.do(ctx, http.MethodGet, dlqPath(id), nil, nil, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// replayDLQ is POST /v1/dlq/{entry}/replay; record nil replays the original.
func (c *apiClient) replayDLQ(ctx context.Context, id string, record json.RawMessage, reason string) (*runtime.DLQEntry, error) {
	var body any
	if record != nil || reason != "" {
		body = struct {
			Record json.RawMessage `json:"record,omitempty"`
			Reason string          `json:"reason,omitempty"`
		}{record, reason}
	}
	var resp struct {
		Result string            `json:"result"`
		Error  string            `json:"error"`
		Entry  *runtime.DLQEntry `json:"entry"`
	}
	if _, err := c.do(ctx, http.MethodPost, dlqPath(id)+"/replay", nil, body, &resp); err != nil {
		return nil, err
	}
	if resp.Entry == nil {
		return nil, fmt.Errorf("POST %s/replay: the answer has no entry; is %s a ferry server?", dlqPath(id), c.base.Redacted())
	}
	return resp.Entry, nil
}

// replayDLQMany is POST /v1/dlq/replay: every pending entry matching f.
func (c *apiClient) replayDLQMany(ctx context.Context, f runtime.DLQFilter, reason string) (*runtime.ReplaySummary, error) {
	body := map[string]string{}
	for k, v := range map[string]string{"integration": f.Integration, "run": f.RunID, "category": string(f.Category), "reason": reason} {
		if v != "" {
			body[k] = v
		}
	}
	var s runtime.ReplaySummary
	if _, err := c.do(ctx, http.MethodPost, "/v1/dlq/replay", nil, body, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

func (c *apiClient) discardDLQ(ctx context.Context, id, reason string) (*runtime.DLQEntry, error) {
	var e runtime.DLQEntry
	if _, err := c.do(ctx, http.MethodDelete, withQuery(dlqPath(id), "reason", reason), nil, nil, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// dlqRemoteOpError prints an error of a replay or discard on the server: a
// 409 of an entry that is not pending says so like the local mode.
func (r *remoteFlags) dlqRemoteOpError(ctx context.Context, c *ctx, cl *apiClient, err error, op, id string) int {
	if statusOf(err) == http.StatusConflict {
		if e, gerr := cl.getDLQ(ctx, id); gerr == nil && e.Status != runtime.DLQPending {
			return c.errorf("DLQ entry %s is no longer pending, so there is nothing to %s (see: ferry dlq show %s%s)", id, op, id, r.hint())
		}
	}
	return r.remoteError(c, err, "DLQ entry", id, "ferry dlq ls")
}

// apiRunPage is runtime.RunPage with runs read from the server, for --json.
type apiRunPage struct {
	Runs     []*apiRun `json:"runs"`
	Total    int       `json:"total"`
	Page     int       `json:"page"`
	PageSize int       `json:"pageSize"`
}

func toAPIRunPage(p *runtime.RunPage) apiRunPage {
	out := apiRunPage{Runs: []*apiRun{}, Total: p.Total, Page: p.Page, PageSize: p.PageSize}
	for _, r := range p.Runs {
		out.Runs = append(out.Runs, toAPIRun(r))
	}
	return out
}
