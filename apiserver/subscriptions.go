package apiserver

// Subscriptions: a tenant's URLs that receive its events (events.go), with
// their delivery history.

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhq/ferry/apiserver/listquery"
	"github.com/nats-io/nats.go/jetstream"
)

// Subscription is a URL that receives a tenant's events: never its secret.
type Subscription struct {
	ID  string `json:"id"`
	URL string `json:"url"`
	// Types are the event types it receives (EventTypes).
	Types []string `json:"types"`
	// Integration, when set, limits it to the events of that integration.
	Integration string    `json:"integration,omitempty"`
	Description string    `json:"description,omitempty"`
	Enabled     bool      `json:"enabled"`
	CreatedAt   time.Time `json:"createdAt"`
	CreatedBy   string    `json:"createdBy"`
	UpdatedAt   time.Time `json:"updatedAt"`
	UpdatedBy   string    `json:"updatedBy"`
}

// subscriptionRecord is the stored subscription: its signing secret
// AES-256-GCM under the master key (as secrets.go), with the tenant and id as
// additional data.
type subscriptionRecord struct {
	Subscription
	Tenant       string `json:"tenant"`
	SecretNonce  []byte `json:"secretNonce"`
	SecretSealed []byte `json:"secretSealed"`
}

// subscriptionRequest is the body of POST and PUT (PUT replaces every field;
// the secret stays).
type subscriptionRequest struct {
	URL         string   `json:"url"`
	Types       []string `json:"types"`
	Integration string   `json:"integration,omitempty"`
	Description string   `json:"description,omitempty"`
	// Enabled: default true; a disabled subscription receives nothing
	// (deliveries already queued are still attempted).
	Enabled *bool `json:"enabled,omitempty"`
}

// createdSubscription is the only answer that ever holds the secret.
type createdSubscription struct {
	Subscription
	// Secret signs every delivery (Ferry-Signature); shown this once.
	Secret string `json:"secret"`
}

// Delivery statuses.
const (
	DeliveryPending   = "pending"   // queued, no attempt yet
	DeliveryRetrying  = "retrying"  // failed attempts, another one is due
	DeliveryDelivered = "delivered" // a 2xx answer
	DeliveryFailed    = "failed"    // the last attempt failed
)

// EventDelivery is one event sent (or being sent) to one subscription.
type EventDelivery struct {
	ID             string `json:"id"`
	SubscriptionID string `json:"subscriptionId"`
	EventID        string `json:"eventId"` // the CloudEvent id
	EventType      string `json:"eventType"`
	Subject        string `json:"subject,omitempty"`
	Integration    string `json:"integration,omitempty"`
	// Status: pending, retrying, delivered, failed.
	Status        string                 `json:"status"`
	AttemptCount  int                    `json:"attemptCount"`
	Attempts      []EventDeliveryAttempt `json:"attempts"`
	NextAttemptAt *time.Time             `json:"nextAttemptAt,omitempty"`
	CreatedAt     time.Time              `json:"createdAt"`
	UpdatedAt     time.Time              `json:"updatedAt"`
	// Test marks a POST /v1/subscriptions/{id}/test delivery (one attempt).
	Test bool `json:"test,omitempty"`
}

// EventDeliveryAttempt is one POST of a delivery.
type EventDeliveryAttempt struct {
	Attempt    int       `json:"attempt"`
	Time       time.Time `json:"time"`
	StatusCode int       `json:"statusCode,omitempty"` // absent: no answer
	Error      string    `json:"error,omitempty"`
	DurationMs int64     `json:"durationMs"`
	// Response is the start of a failed answer's body.
	Response string `json:"response,omitempty"`
}

func (a EventDeliveryAttempt) ok() bool { return a.StatusCode >= 200 && a.StatusCode < 300 }

func (d *EventDelivery) settled() bool {
	return d.Status == DeliveryDelivered || d.Status == DeliveryFailed
}

// add records attempt a; wait is the backoff before the next one.
func (d *EventDelivery) add(a EventDeliveryAttempt, maxAttempts int, now time.Time, wait time.Duration) {
	d.Attempts = append(d.Attempts, a)
	d.AttemptCount = len(d.Attempts)
	d.UpdatedAt = now
	d.NextAttemptAt = nil
	switch {
	case a.ok():
		d.Status = DeliveryDelivered
	case d.AttemptCount >= maxAttempts:
		d.Status = DeliveryFailed
	default:
		d.Status = DeliveryRetrying
		next := now.Add(wait)
		d.NextAttemptAt = &next
	}
}

const (
	subscriptionIDPrefix = "sub_"
	subscriptionIDLen    = 16
	secretPrefix         = "whsec_"
	// maxSubscriptions per tenant: every event reads them all.
	maxSubscriptions = 100
)

var subscriptionIDRe = regexp.MustCompile(`^sub_[0-9A-Za-z]{16}$`)

func subscriptionKey(tenant, id string) string { return tenant + "." + id }

func subscriptionAD(tenant, id string) []byte {
	return []byte("ferry-subscription-secret-v1\x00" + tenant + "\x00" + id)
}

func (s *Server) subscriptionRoutes() []Route {
	deliveryFields := []string{"id", "eventId", "eventType", "subject", "integration", "status", "attemptCount", "createdAt", "updatedAt", "test"}
	return []Route{
		{Method: "POST", Pattern: "/v1/subscriptions", Roles: tenantWrite, TenantScoped: true, Summary: "Subscribe a URL to events (run.started, run.completed, run.failed, dlq.added, config.applied); the signing secret is shown once", Tag: "subscriptions", Request: subscriptionRequest{}, Response: createdSubscription{}, Status: 201, Handle: s.createSubscription},
		{Method: "GET", Pattern: "/v1/subscriptions", Roles: tenantRead, TenantScoped: true, Summary: "List event subscriptions (never their secrets)", Tag: "subscriptions", Response: listOf[Subscription]{}, List: true, ListFields: []string{"id", "url", "integration", "description", "enabled", "createdAt", "updatedAt"}, Handle: s.listSubscriptions},
		{Method: "GET", Pattern: "/v1/subscriptions/{id}", Roles: tenantRead, TenantScoped: true, Summary: "Get an event subscription (never its secret)", Tag: "subscriptions", Response: Subscription{}, Handle: s.getSubscription},
		{Method: "PUT", Pattern: "/v1/subscriptions/{id}", Roles: tenantWrite, TenantScoped: true, IfMatch: true, Summary: "Replace an event subscription's URL, types, filter, description, enabled (the secret stays)", Tag: "subscriptions", Request: subscriptionRequest{}, Response: Subscription{}, Handle: s.putSubscription},
		{Method: "DELETE", Pattern: "/v1/subscriptions/{id}", Roles: tenantWrite, TenantScoped: true, IfMatch: true, Summary: "Delete an event subscription with its delivery history", Tag: "subscriptions", Status: 204, Handle: s.deleteSubscription},
		{Method: "POST", Pattern: "/v1/subscriptions/{id}/test", Roles: tenantWrite, TenantScoped: true, Summary: "Send a ferry.test event now, once (no retries), and answer with the delivery", Tag: "subscriptions", Response: EventDelivery{}, Handle: s.testSubscription},
		{Method: "GET", Pattern: "/v1/subscriptions/{id}/deliveries", Roles: tenantRead, TenantScoped: true, Summary: "A subscription's deliveries with their attempts (time, status code, error, duration)", Tag: "subscriptions", Response: listOf[EventDelivery]{}, List: true, ListFields: deliveryFields, Handle: s.listDeliveries},
	}
}

// validate checks req and turns it into the subscription's fields.
func (s *Server) validateSubscription(tenant string, req subscriptionRequest, sub *Subscription) *Problem {
	bad := func(format string, a ...any) *Problem {
		return newProblem(http.StatusUnprocessableEntity, probBadRequest, format, a...)
	}
	u, err := url.Parse(strings.TrimSpace(req.URL))
	switch {
	case req.URL == "":
		return bad("url is required: the http(s) URL that receives the events")
	case err != nil:
		return bad("url %q does not parse: %s", req.URL, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return bad("url %q: the scheme must be http or https", req.URL)
	case u.Host == "" || u.Hostname() == "":
		return bad("url %q has no host", req.URL)
	case u.User != nil:
		return bad("url %q holds credentials, which every reader of the subscription would see: verify deliveries by their Ferry-Signature instead", u.Redacted())
	case u.Fragment != "":
		return bad("url %q: remove the #fragment", req.URL)
	case len(req.URL) > 2048:
		return bad("url is longer than 2048 characters")
	}
	if policy := s.netPolicyOf(tenant); policy != nil {
		// The tenants' network policy, refused now when the url says so
		// (deliveries check the address dialled, after DNS).
		host := u.Hostname()
		if host == "localhost" || strings.HasSuffix(host, ".localhost") {
			host = "127.0.0.1"
		}
		port, _ := strconv.ParseUint(u.Port(), 10, 16)
		if port == 0 {
			port = map[string]uint64{"http": 80, "https": 443}[u.Scheme]
		}
		if ip, err := netip.ParseAddr(host); err == nil {
			if err := policy.Check(netip.AddrPortFrom(ip, uint16(port))); err != nil {
				return bad("url %q: %s", req.URL, err)
			}
		}
	}
	if s.events.opts.DenyPrivateTargets {
		host := u.Hostname()
		ip, err := netip.ParseAddr(host)
		if host == "localhost" || strings.HasSuffix(host, ".localhost") || (err == nil && internalAddr(ip)) {
			return bad("url %q: this server does not deliver to loopback, private or link-local addresses", req.URL)
		}
	}
	if len(req.Types) == 0 {
		return bad("types is required: one or more of %s", strings.Join(EventTypes, ", "))
	}
	var types []string
	for _, t := range req.Types {
		if !slices.Contains(EventTypes, t) {
			return bad("types: %q is not an event type; use %s", t, strings.Join(EventTypes, ", "))
		}
		if !slices.Contains(types, t) {
			types = append(types, t)
		}
	}
	slices.Sort(types)
	if req.Integration != "" {
		if !eventIntegrationRe.MatchString(req.Integration) {
			return bad("integration %q is not an integration name", req.Integration)
		}
		if slices.Contains(types, EventConfigApplied) {
			return bad("config.applied concerns no single integration, so a subscription filtered by integration %q would never receive it: subscribe to config.applied separately", req.Integration)
		}
	}
	if len(req.Description) > 1000 {
		return bad("description is longer than 1000 characters")
	}
	sub.URL, sub.Types, sub.Integration, sub.Description = u.String(), types, req.Integration, req.Description
	sub.Enabled = req.Enabled == nil || *req.Enabled
	return nil
}

// matches: the subscription wants e.
func (sub *subscriptionRecord) matches(e storedEvent) bool {
	return sub.Enabled && slices.Contains(sub.Types, e.Type) && (sub.Integration == "" || sub.Integration == e.Integration)
}

func (s *Server) createSubscription(w http.ResponseWriter, r *http.Request, p *Principal) error {
	g, err := s.aead()
	if err != nil {
		return newProblem(http.StatusServiceUnavailable, probUnavailable, "subscriptions are disabled: the server has no master key (FERRY_MASTER_KEY) to keep their signing secrets encrypted")
	}
	var req subscriptionRequest
	if prob := s.decodeJSON(w, r, &req); prob != nil {
		return prob
	}
	now := s.now().UTC()
	rec := subscriptionRecord{Tenant: p.Tenant, Subscription: Subscription{CreatedAt: now, CreatedBy: p.KeyID, UpdatedAt: now, UpdatedBy: p.KeyID}}
	if prob := s.validateSubscription(p.Tenant, req, &rec.Subscription); prob != nil {
		return prob
	}
	keys, err := keysOf(r.Context(), s.events.subs, p.Tenant+".*")
	if err != nil {
		return err
	}
	if len(keys) >= maxSubscriptions {
		return newProblem(http.StatusConflict, probConflict, "the tenant has %d subscriptions, the most it may have; delete one, or subscribe one URL to more event types", len(keys))
	}
	secret := secretPrefix + randomBase62(32)
	for range 5 {
		rec.ID = subscriptionIDPrefix + randomBase62(subscriptionIDLen)
		rec.SecretNonce = make([]byte, g.NonceSize())
		if _, err := rand.Read(rec.SecretNonce); err != nil {
			return err
		}
		rec.SecretSealed = g.Seal(nil, rec.SecretNonce, []byte(secret), subscriptionAD(p.Tenant, rec.ID))
		b, _ := json.Marshal(rec)
		rev, err := s.events.subs.Create(r.Context(), subscriptionKey(p.Tenant, rec.ID), b)
		if isConflict(err) {
			continue
		}
		if err != nil {
			return err
		}
		s.events.subsCache.put(rec)
		s.audit(r.Context(), p.Tenant, p, "subscription.create", "subscriptions/"+rec.ID, 0, strings.Join(rec.Types, ","))
		w.Header().Set("Location", "/v1/subscriptions/"+rec.ID)
		w.Header().Set("ETag", kvETag(rev))
		writeJSON(w, r, http.StatusCreated, createdSubscription{Subscription: rec.Subscription, Secret: secret})
		return nil
	}
	return fmt.Errorf("could not find a free subscription id")
}

// subscriptionFor is the path's {id} in the caller's tenant; 404 otherwise.
func (s *Server) subscriptionFor(r *http.Request, p *Principal) (subscriptionRecord, uint64, error) {
	var rec subscriptionRecord
	id := r.PathValue("id")
	if !subscriptionIDRe.MatchString(id) {
		return rec, 0, notFound(fmt.Sprintf("subscription %q", id))
	}
	rev, found, err := getJSON(r.Context(), s.events.subs, subscriptionKey(p.Tenant, id), &rec)
	if err != nil {
		return rec, 0, err
	}
	if !found || rec.Tenant != p.Tenant {
		return rec, 0, notFound(fmt.Sprintf("subscription %q", id))
	}
	return rec, rev, nil
}

// subscriptionsOf reads a tenant's subscriptions.
func (s *Server) subscriptionsOf(ctx context.Context, tenant string) ([]subscriptionRecord, error) {
	keys, err := keysOf(ctx, s.events.subs, tenant+".*")
	if err != nil {
		return nil, err
	}
	out := make([]subscriptionRecord, 0, len(keys))
	for _, k := range keys {
		var rec subscriptionRecord
		if _, found, err := getJSON(ctx, s.events.subs, k, &rec); err != nil {
			return nil, err
		} else if found && rec.Tenant == tenant {
			out = append(out, rec)
		}
	}
	return out, nil
}

// subscriptionSecret decrypts a subscription's signing secret.
func (s *Server) subscriptionSecret(rec subscriptionRecord) (string, error) {
	g, err := s.aead()
	if err != nil {
		return "", fmt.Errorf("the server has no master key to decrypt the signing secret with")
	}
	plain, err := g.Open(nil, rec.SecretNonce, rec.SecretSealed, subscriptionAD(rec.Tenant, rec.ID))
	if err != nil {
		return "", fmt.Errorf("the signing secret does not decrypt with this server's master key")
	}
	return string(plain), nil
}

func (s *Server) getSubscription(w http.ResponseWriter, r *http.Request, p *Principal) error {
	rec, rev, err := s.subscriptionFor(r, p)
	if err != nil {
		return err
	}
	w.Header().Set("ETag", kvETag(rev))
	writeJSON(w, r, http.StatusOK, rec.Subscription)
	return nil
}

func (s *Server) listSubscriptions(w http.ResponseWriter, r *http.Request, p *Principal) error {
	q, prob := parseList(r, s.routeFor(r))
	if prob != nil {
		return prob
	}
	recs, err := s.subscriptionsOf(r.Context(), p.Tenant)
	if err != nil {
		return err
	}
	items := make([]Subscription, len(recs))
	for i, rec := range recs {
		items[i] = rec.Subscription
	}
	if len(q.Order) == 0 {
		q.Order = []listquery.Order{{Field: "createdAt"}, {Field: "id"}}
	}
	return writeList(w, r, items, q)
}

func (s *Server) putSubscription(w http.ResponseWriter, r *http.Request, p *Principal) error {
	rec, rev, err := s.subscriptionFor(r, p)
	if err != nil {
		return err
	}
	if prob := checkIfMatch(r, kvETag(rev), true); prob != nil {
		return prob
	}
	var req subscriptionRequest
	if prob := s.decodeJSON(w, r, &req); prob != nil {
		return prob
	}
	if prob := s.validateSubscription(p.Tenant, req, &rec.Subscription); prob != nil {
		return prob
	}
	rec.UpdatedAt, rec.UpdatedBy = s.now().UTC(), p.KeyID
	b, _ := json.Marshal(rec)
	nrev, err := s.events.subs.Update(r.Context(), subscriptionKey(p.Tenant, rec.ID), b, rev)
	if isConflict(err) {
		return newProblem(http.StatusPreconditionFailed, probPrecondition, "subscription %s changed meanwhile; read it again", rec.ID)
	}
	if err != nil {
		return err
	}
	s.events.subsCache.put(rec)
	s.audit(r.Context(), p.Tenant, p, "subscription.update", "subscriptions/"+rec.ID, 0, strings.Join(rec.Types, ","))
	w.Header().Set("ETag", kvETag(nrev))
	writeJSON(w, r, http.StatusOK, rec.Subscription)
	return nil
}

func (s *Server) deleteSubscription(w http.ResponseWriter, r *http.Request, p *Principal) error {
	rec, rev, err := s.subscriptionFor(r, p)
	if err != nil {
		return err
	}
	if prob := checkIfMatch(r, kvETag(rev), true); prob != nil {
		return prob
	}
	if err := s.events.subs.Purge(r.Context(), subscriptionKey(p.Tenant, rec.ID), jetstream.LastRevision(rev)); err != nil {
		if isConflict(err) {
			return newProblem(http.StatusPreconditionFailed, probPrecondition, "subscription %s changed meanwhile; read it again", rec.ID)
		}
		return err
	}
	s.events.subsCache.remove(p.Tenant, rec.ID)
	// Its history goes with it; queued deliveries find no record and are
	// dropped.
	ctx := context.WithoutCancel(r.Context())
	if keys, err := keysOf(ctx, s.events.deliveries, deliveryKey(p.Tenant, rec.ID, "*")); err == nil {
		for _, k := range keys {
			_ = s.events.deliveries.Purge(ctx, k)
		}
	}
	s.audit(r.Context(), p.Tenant, p, "subscription.delete", "subscriptions/"+rec.ID, 0, "")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// testSubscription sends a ferry.test event to the subscription now, once,
// whatever its types and enabled flag, records the delivery in its history
// and answers with it (200 whether the receiver accepted it or not).
func (s *Server) testSubscription(w http.ResponseWriter, r *http.Request, p *Principal) error {
	rec, _, err := s.subscriptionFor(r, p)
	if err != nil {
		return err
	}
	secret, err := s.subscriptionSecret(rec)
	if err != nil {
		return newProblem(http.StatusServiceUnavailable, probUnavailable, "%s", err)
	}
	now := s.now().UTC()
	data, _ := json.Marshal(map[string]string{"message": "a test event from ferry", "subscription": rec.ID})
	e := storedEvent{ID: newEventID(), Type: EventTest, Tenant: p.Tenant, Subject: "subscriptions/" + rec.ID, Time: now, Data: data}
	body, err := e.cloudEvent()
	if err != nil {
		return err
	}
	d := newDelivery(rec, e, now)
	d.Test = true
	a := s.attempt(r.Context(), rec.Tenant, rec.URL, secret, body, d.ID, 1)
	d.add(a, 1, s.now().UTC(), 0)
	b, _ := json.Marshal(d)
	if _, err := s.events.deliveries.Create(context.WithoutCancel(r.Context()), deliveryKey(p.Tenant, rec.ID, d.ID), b); err != nil {
		s.log.Warn("recording a test delivery", "subscription", rec.ID, "error", err)
	}
	writeJSON(w, r, http.StatusOK, d)
	return nil
}

func (s *Server) listDeliveries(w http.ResponseWriter, r *http.Request, p *Principal) error {
	rec, _, err := s.subscriptionFor(r, p)
	if err != nil {
		return err
	}
	q, prob := parseList(r, s.routeFor(r))
	if prob != nil {
		return prob
	}
	keys, err := keysOf(r.Context(), s.events.deliveries, deliveryKey(p.Tenant, rec.ID, "*"))
	if err != nil {
		return err
	}
	items := make([]EventDelivery, 0, len(keys))
	for _, k := range keys {
		var d EventDelivery
		if _, found, err := getJSON(r.Context(), s.events.deliveries, k, &d); err != nil {
			return err
		} else if found {
			items = append(items, d)
		}
	}
	if len(q.Order) == 0 {
		q.Order = []listquery.Order{{Field: "createdAt", Desc: true}, {Field: "id"}}
	}
	return writeList(w, r, items, q)
}
