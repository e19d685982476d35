package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/ferryhq/ferry/apiserver/webhook"
	"github.com/ferryhq/ferry/engine"
	"github.com/ferryhq/ferry/lang"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/zclconf/go-cty/cty"
)

// Inbound webhooks: POST /v1/webhooks/{tenant}/{integration}.
//
// The route is public (no API key): the delivery's signature, token or basic
// credentials, checked per the integration's webhook block (package webhook),
// are its authentication. In order:
//
//  1. the tenant, the integration and its webhook block must exist in the
//     current revision, else 404 (one body for all three: no enumeration);
//     a revision applied on another server applies here within
//     milliseconds, at most webhookRevisionTTL (see endpoint);
//  2. the body is read raw, up to WebhookMaxBodyBytes (413 beyond);
//  3. the delivery is verified (401);
//  4. a topic the block does not accept is acknowledged (200, ignored): a
//     4xx would only make the sender retry, and Shopify removes
//     subscriptions that keep failing;
//  5. the records are extracted (422 when the body does not hold them);
//  6. the delivery joins the integration's open run: the run started for
//     earlier deliveries that has not begun executing (group commit,
//     webhooks_batch.go), or a new one. Its records are stored durably with
//     the deliveries that arrived meanwhile, in one write (JetStream acks),
//     before the 202 that carries the run id; a crash after a 202 loses
//     nothing, the run resumes with all of them. Each record's position
//     names its delivery (webhook:<delivery id>[i]). A delivery id
//     (X-Shopify-Event-Id, ...) is claimed per integration for its webhook
//     block's dedupe_window: a repeated delivery within it stores nothing
//     and gets 200 {"duplicate": true, "runId": <the run the first one
//     joined>}; after it, the id is claimed anew (a new run).
//
// So one run holds many deliveries (its counts are theirs together), and an
// integration has at most one run executing and one filling, however fast
// deliveries arrive. Nothing is enqueued on any error; no hostile input
// yields a 500.

// WebhookMaxBodyBytes bounds a webhook body (and Options.MaxBodyBytes, when
// smaller, bounds it further).
const WebhookMaxBodyBytes = 5 << 20

// webhookEndpointTTL is how long a built endpoint (with its resolved
// secrets) is reused: a changed secret applies within this time; a new
// revision as endpoint says. (A variable for tests.)
var webhookEndpointTTL = 5 * time.Second

// webhookRevisionTTL is how long a delivery may be served on the revision
// read before without reading the revision pointer again, when no newer
// revision reached this server meanwhile (see endpoint). (A variable for
// tests.)
var webhookRevisionTTL = time.Second

// Outcomes of ferry_webhook_requests_total.
const (
	whAccepted     = "accepted"
	whDuplicate    = "duplicate"
	whIgnored      = "ignored"
	whUnauthorized = "unauthorized"
	whNotFound     = "not_found"
	whTooLarge     = "too_large"
	whInvalid      = "invalid"
	whUnavailable  = "unavailable" // misconfigured, deactivated, JetStream down, shutting down
)

// webhookResponse is the body of 202 (accepted), and of 200 for a duplicate
// or an ignored topic.
type webhookResponse struct {
	// RunID is the run the delivery started (or, for a duplicate, the run the
	// first delivery started).
	RunID string `json:"runId,omitempty"`
	// Records is the number of records the delivery holds.
	Records   int    `json:"records"`
	Duplicate bool   `json:"duplicate,omitempty"`
	Ignored   bool   `json:"ignored,omitempty"`
	Topic     string `json:"topic,omitempty"`
}

type webhooks struct {
	s        *Server
	requests *prometheus.CounterVec

	mu        sync.Mutex
	endpoints map[string]endpointEntry // tenant \x00 integration →
}

type endpointEntry struct {
	revision int
	prog     *engine.Program // of revision, as CurrentProgram returned it
	built    time.Time
	read     time.Time // when the revision pointer was read last
	ep       *webhook.Endpoint
	err      error
}

// webhookRoutes is the webhook route, with its metrics registered.
func (s *Server) webhookRoutes() []Route {
	wh := &webhooks{s: s, endpoints: map[string]endpointEntry{}}
	wh.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_webhook_requests_total",
		Help: "Inbound webhook deliveries by outcome (accepted, duplicate, ignored, unauthorized, not_found, too_large, invalid, unavailable) and tenant (empty when the tenant or integration is unknown).",
	}, []string{"outcome", "tenant"})
	if err := s.Registry().Register(wh.requests); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			wh.requests = are.ExistingCollector.(*prometheus.CounterVec)
		}
	}
	return []Route{{
		Method: "POST", Pattern: "/v1/webhooks/{tenant}/{integration}",
		Summary: "Receive a webhook delivery for an integration with a webhook block: verified per its verify mode (no API key), " +
			"its records stored durably and run (202 with the run id); a repeated delivery id answers 200 with the first run",
		Tag: "webhooks", Request: json.RawMessage{}, Response: webhookResponse{}, Status: http.StatusAccepted,
		Handle: wh.post,
	}}
}

func (wh *webhooks) count(outcome, tenant string) {
	wh.requests.WithLabelValues(outcome, tenant).Inc()
}

var errNoWebhook = newProblem(http.StatusNotFound, probNotFound, "no webhook at this address: check the tenant, the integration and that it has a webhook block")

func (wh *webhooks) post(w http.ResponseWriter, r *http.Request, _ *Principal) error {
	s := wh.s
	tenant, name := r.PathValue("tenant"), r.PathValue("integration")
	ctx := r.Context()

	ep, prog, rev, err := wh.endpoint(ctx, tenant, name)
	if err != nil {
		if errors.Is(err, errUnknownWebhook) {
			wh.count(whNotFound, "")
			return errNoWebhook
		}
		wh.count(whUnavailable, tenant)
		if errors.Is(err, context.Canceled) {
			return err
		}
		if !errors.Is(err, errWebhookConfig) { // logged when built
			s.log.Error("webhook cannot be served", "tenant", tenant, "integration", name, "revision", rev, "error", err)
		}
		w.Header().Set("Retry-After", "30")
		return newProblem(http.StatusServiceUnavailable, probUnavailable, "this webhook cannot accept deliveries right now; the server log has the details")
	}

	// Modes that do not sign the body are checked before it is read.
	early := !ep.VerifiesBody()
	if early {
		if err := ep.Verify(r, nil); err != nil {
			return wh.unauthorized(w, ep, tenant, err)
		}
	}

	limit := min(int64(WebhookMaxBodyBytes), s.opts.MaxBodyBytes)
	if r.ContentLength > limit {
		wh.count(whTooLarge, tenant)
		return newProblem(http.StatusRequestEntityTooLarge, probTooLarge, "the body is larger than the limit of %d bytes", limit)
	}
	body, err := readBody(w, r, limit)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			wh.count(whTooLarge, tenant)
			return newProblem(http.StatusRequestEntityTooLarge, probTooLarge, "the body is larger than the limit of %d bytes", limit)
		}
		wh.count(whInvalid, tenant)
		return newProblem(http.StatusBadRequest, probBadRequest, "reading the body failed: %s", err.Error())
	}

	if !early {
		if err := ep.Verify(r, body); err != nil {
			return wh.unauthorized(w, ep, tenant, err)
		}
	}

	topic := ep.Topic(r)
	if !ep.Accepts(topic) {
		wh.count(whIgnored, tenant)
		writeJSON(w, r, http.StatusOK, webhookResponse{Ignored: true, Topic: topic})
		return nil
	}
	recs, err := ep.Records(topic, body)
	if err != nil {
		wh.count(whInvalid, tenant)
		return newProblem(http.StatusUnprocessableEntity, probInvalidInput, "%s", err.Error())
	}

	runID, duplicate, err := s.runs.deliver(ctx, tenant, name, rev, prog, ep.DeliveryID(r), recs)
	if err != nil {
		if errors.Is(err, ErrUnknownIntegration) || errors.Is(err, ErrNoConfig) {
			wh.count(whNotFound, "") // removed by an apply just now
			return errNoWebhook
		}
		wh.count(whUnavailable, tenant)
		switch {
		case errors.Is(err, ErrIntegrationInactive), errors.Is(err, ErrShuttingDown):
			return startRunProblem(w, err)
		case errors.Is(err, ErrInvalidInput):
			return newProblem(http.StatusUnprocessableEntity, probInvalidInput, "%s", err.Error())
		case errors.Is(err, context.Canceled):
			return err
		}
		s.log.Error("webhook delivery could not be stored", "tenant", tenant, "integration", name, "error", err)
		w.Header().Set("Retry-After", "5")
		return newProblem(http.StatusServiceUnavailable, probUnavailable, "the delivery could not be stored; retry")
	}
	w.Header().Set("Location", "/v1/runs/"+runID)
	if duplicate {
		wh.count(whDuplicate, tenant)
		writeJSON(w, r, http.StatusOK, webhookResponse{RunID: runID, Records: len(recs), Duplicate: true, Topic: topic})
		return nil
	}
	wh.count(whAccepted, tenant)
	writeJSON(w, r, http.StatusAccepted, webhookResponse{RunID: runID, Records: len(recs), Topic: topic})
	return nil
}

func (wh *webhooks) unauthorized(w http.ResponseWriter, ep *webhook.Endpoint, tenant string, err error) error {
	wh.count(whUnauthorized, tenant)
	if ep.Mode == webhook.ModeBasic {
		w.Header().Set("WWW-Authenticate", `Basic realm="ferry webhook", charset="UTF-8"`)
	}
	return newProblem(http.StatusUnauthorized, probUnauthorized, "%s", err.Error())
}

// readBody reads the whole body, at most limit bytes (*http.MaxBytesError
// beyond).
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	body := http.MaxBytesReader(w, r.Body, limit)
	if n := r.ContentLength; n > 0 && n <= limit {
		// net/http reads no further than Content-Length, so the body fits
		// exactly: a bytes.Buffer would grow it to twice its size to look
		// for more.
		b := make([]byte, n)
		if _, err := io.ReadFull(body, b); err != nil {
			return nil, err
		}
		return b, nil
	}
	var buf bytes.Buffer
	buf.Grow(4096)
	_, err := buf.ReadFrom(body)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return buf.Bytes(), nil
}

var (
	errUnknownWebhook = errors.New("no such webhook")
	// errWebhookConfig wraps the errors of building an endpoint: its webhook
	// block is invalid or a secret cannot be resolved.
	errWebhookConfig = errors.New("webhook cannot verify deliveries")
)

// endpoint is the webhook of tenant's integration in the current revision
// (prog, rev), its secrets resolved; errUnknownWebhook when the tenant, the
// integration or its webhook block does not exist. Built endpoints are
// reused for webhookEndpointTTL within one revision.
//
// Reading the tenant's revision pointer was a KV round trip per delivery
// (and its value holds every file of the revision); a built endpoint
// serves without it while the program this server compiled for the tenant
// is still the one the endpoint was built with, for webhookRevisionTTL.
// An apply on this server replaces that program at once; one on another
// server reaches this one's programs through the schedules' watch of the
// pointers (milliseconds), else within webhookRevisionTTL.
func (wh *webhooks) endpoint(ctx context.Context, tenant, name string) (*webhook.Endpoint, *engine.Program, int, error) {
	key := tenant + "\x00" + name
	wh.mu.Lock()
	e, ok := wh.endpoints[key] // only valid names have one
	wh.mu.Unlock()
	if ok {
		now := time.Now()
		if now.Sub(e.read) < webhookRevisionTTL && now.Sub(e.built) < webhookEndpointTTL && wh.s.compiledProgram(tenant) == e.prog {
			return e.ep, e.prog, e.revision, e.err
		}
	} else if !tenantNameRe.MatchString(tenant) || !nameRe.MatchString(name) {
		return nil, nil, 0, errUnknownWebhook
	}
	prog, rev, err := wh.s.CurrentProgram(ctx, tenant)
	if err != nil {
		if errors.Is(err, ErrNoConfig) {
			return nil, nil, 0, errUnknownWebhook
		}
		return nil, nil, 0, err
	}
	in := prog.Config.Integrations[name]
	if in == nil || in.Webhook == nil {
		return nil, nil, rev, errUnknownWebhook
	}
	read := time.Now()
	if ok && e.revision == rev && read.Sub(e.built) < webhookEndpointTTL {
		e.prog, e.read = prog, read
		wh.store(key, e)
		return e.ep, prog, rev, e.err
	}
	ep, err := wh.build(tenant, prog, in)
	if err != nil {
		// Once per webhookEndpointTTL, not per request.
		wh.s.log.Error("webhook cannot verify deliveries; fix its block or set its secrets", "tenant", tenant, "integration", name, "revision", rev, "error", err)
		err = fmt.Errorf("%w: %w", errWebhookConfig, err)
	}
	wh.store(key, endpointEntry{revision: rev, prog: prog, built: read, read: read, ep: ep, err: err})
	return ep, prog, rev, err
}

// store keeps an endpoint unless one of a later revision is kept already.
func (wh *webhooks) store(key string, e endpointEntry) {
	wh.mu.Lock()
	if cur, ok := wh.endpoints[key]; !ok || cur.revision <= e.revision {
		wh.endpoints[key] = e
	}
	wh.mu.Unlock()
}

// compiledProgram is the program this server compiled last for tenant's
// current revision (nil: none).
func (s *Server) compiledProgram(tenant string) *engine.Program {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.programs[tenant].prog
}

// build resolves the webhook block's secrets and builds its endpoint. A
// shopify block without secret takes webhook_secret of the integration's
// source connection, as in
//
//	connection "shop" { type = "shopify" ... webhook_secret = secret("shopify_webhook_secret") }
func (wh *webhooks) build(tenant string, prog *engine.Program, in *lang.Integration) (*webhook.Endpoint, error) {
	attrs := make(map[string]cty.Value, len(in.Webhook.Config)+1)
	for k, v := range in.Webhook.Config {
		attrs[k] = v
	}
	if _, ok := attrs["secret"]; !ok && in.Webhook.Verify == webhook.ModeShopify && in.Source != nil {
		if c := prog.Config.Connections[in.Source.Connection]; c != nil && c.Config.IsKnown() && !c.Config.IsNull() &&
			c.Config.Type().IsObjectType() && c.Config.Type().HasAttribute("webhook_secret") {
			if v := c.Config.GetAttr("webhook_secret"); !v.IsNull() {
				attrs["secret"] = v
			}
		}
	}
	resolved := map[string]cty.Value{}
	if len(attrs) > 0 {
		v, err := lang.ResolveSecrets(cty.ObjectVal(attrs), wh.s.Secrets(tenant))
		if err != nil {
			return nil, fmt.Errorf("integration %q: webhook: %w", in.Name, err)
		}
		resolved = v.AsValueMap()
	}
	ep, err := webhook.New(in.Webhook.Verify, resolved, webhook.WithClock(wh.s.now))
	if err != nil {
		return nil, fmt.Errorf("integration %q: %w", in.Name, err)
	}
	return ep, nil
}
