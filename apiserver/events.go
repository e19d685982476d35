package apiserver

// Outbound events: what happened in a tenant (a run started, completed or
// failed, a record went to the DLQ, a configuration was applied), delivered
// to the URLs the tenant subscribed (subscriptions.go).
//
// # Flow
//
//	Emit ─▶ stream FERRY_EVENTS_V1, subject ferry.v1.events.<tenant>.<type>,
//	        Nats-Msg-Id = event id (a re-emit within 2 minutes is dropped;
//	        later, the delivery record's Create is what keeps it single),
//	        unless no subscription asks for the event (subsCache)
//	     ─▶ durable consumer ferry_v1_events_fanout, shared by every server
//	        node (each event is fanned out by one node): one EventDelivery per
//	        matching subscription, created in KV ferry_v1_deliveries (Create:
//	        at most once per event and subscription), and its CloudEvent queued
//	        on stream FERRY_DELIVERIES_V1, subject
//	        ferry.v1.deliveries.<tenant>.<subscription id>.<delivery id>
//	     ─▶ durable consumer ferry_v1_deliveries, shared too: POST, record the
//	        attempt, ack on 2xx or after the last attempt, otherwise
//	        NakWithDelay(backoff) — the retry survives a restart and may be
//	        made by another node.
//
// Delivery is at least once: a node dying between the receiver's 2xx and the
// record of it sends the event again, with the same CloudEvent id. Receivers
// deduplicate on id.
//
// # What a receiver gets
//
// A POST with Content-Type application/cloudevents+json; charset=utf-8 and a
// CloudEvents 1.0 event in structured mode:
//
//	{
//	  "specversion": "1.0",
//	  "id": "evt_3f1c…",                   // unique per event; the same on every attempt
//	  "source": "/ferry/acme",             // /ferry/<tenant>
//	  "type": "dev.ferry.run.completed",   // "dev.ferry." + the subscription's event type
//	  "subject": "runs/01J…",              // what it is about
//	  "time": "2026-03-01T12:00:00Z",
//	  "datacontenttype": "application/json",
//	  "ferryintegration": "orders",        // extension attribute, when the event concerns an integration
//	  "data": { … }
//	}
//
// Types are the subscription's names behind the reverse-DNS prefix
// "dev.ferry." that CloudEvents recommends (dev.ferry.run.started,
// dev.ferry.run.completed, dev.ferry.run.failed, dev.ferry.dlq.added,
// dev.ferry.config.applied; the test event ferry.test is dev.ferry.test).
//
// Headers: Ferry-Signature (below), Ferry-Delivery (the delivery id, as in
// GET /v1/subscriptions/{id}/deliveries), Ferry-Attempt (1, 2, …).
//
// # Verifying the signature
//
//	Ferry-Signature: t=1772366400,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd
//
// t is the Unix time of the attempt, v1 the hex HMAC-SHA256 of "<t>.<body>"
// (t, a dot, the raw request body) keyed with the subscription's secret (the
// whole "whsec_…" string, as bytes). A receiver recomputes it over the body
// exactly as received, compares in constant time, and rejects a t more than a
// few minutes from its clock (a replay). VerifySignature does this in Go; in
// any language it is one HMAC. Several v1= entries may appear (room for
// rotating the secret later); one matching is enough.
//
// # Retries
//
// A network error, a timeout (Options.Events.Timeout, 10 s) or any non-2xx
// answer (redirects are not followed) is a failed attempt. Attempts go on with
// waits growing geometrically from InitialBackoff (1 s) to MaxBackoff (1 h)
// with ±20 % jitter, up to MaxAttempts (10: 1 s, 3 s, 8 s, 21 s, 1 min, 3 min,
// 8 min, 21 min, 1 h); then the delivery is failed. Every attempt is in the
// subscription's delivery history (kept Options.Events.History, 30 days).

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ferryhq/ferry/connectors"
	"github.com/ferryhq/ferry/lang"
	"github.com/ferryhq/ferry/runtime"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Event types a subscription can ask for.
const (
	EventRunStarted    = "run.started"
	EventRunCompleted  = "run.completed"
	EventRunFailed     = "run.failed"
	EventDLQAdded      = "dlq.added"
	EventConfigApplied = "config.applied"
	// EventTest is sent by POST /v1/subscriptions/{id}/test only.
	EventTest = "ferry.test"
)

// EventTypes are the types a subscription may list.
var EventTypes = []string{EventRunStarted, EventRunCompleted, EventRunFailed, EventDLQAdded, EventConfigApplied}

// CloudEventType is the CloudEvents type attribute of an event type:
// run.completed → dev.ferry.run.completed, ferry.test → dev.ferry.test.
func CloudEventType(eventType string) string {
	return "dev.ferry." + strings.TrimPrefix(eventType, "ferry.")
}

// Layout of events (see store.go for the rest).
const (
	EventsStream        = "FERRY_EVENTS_V1"
	eventsSubject       = "ferry.v1.events."
	DeliveriesStream    = "FERRY_DELIVERIES_V1"
	deliveriesSubject   = "ferry.v1.deliveries."
	BucketSubscriptions = "ferry_v1_subscriptions" // <tenant>.<subscription id> → subscriptionRecord
	BucketDeliveries    = "ferry_v1_deliveries"    // <tenant>.<subscription id>.<delivery id> → EventDelivery
	fanoutConsumer      = "ferry_v1_events_fanout"
	deliveryConsumer    = "ferry_v1_deliveries"
	// eventsDedupWindow: re-emits come from a run resumed after its
	// node died (lease, 30 s). nats-server holds every id of the window in
	// memory: an hour at the mixed load's ~110 events/s is ~400,000 ids.
	eventsDedupWindow = 2 * time.Minute
)

// Event is something that happened in a tenant, for Emit.
type Event struct {
	// ID identifies the event: the CloudEvent id and the JetStream message
	// id. Empty: derived from Tenant, Type, Integration and Subject, so
	// emitting the same fact twice (a retried emit, a resumed run) is one
	// event. Set it when one Subject can have the same Type more than once.
	ID string
	// Type is one of EventTypes.
	Type        string
	Tenant      string
	Integration string // empty when the event concerns no integration
	// Subject is what the event is about, e.g. "runs/<run id>",
	// "dlq/<entry id>", "revisions/3".
	Subject string
	// Data is the CloudEvent's data, encoded as JSON.
	Data any
	// Time the event happened (default: now).
	Time time.Time
}

// storedEvent is an event as kept in FERRY_EVENTS_V1.
type storedEvent struct {
	ID          string          `json:"id"`
	Type        string          `json:"type"`
	Tenant      string          `json:"tenant"`
	Integration string          `json:"integration,omitempty"`
	Subject     string          `json:"subject,omitempty"`
	Time        time.Time       `json:"time"`
	Data        json.RawMessage `json:"data,omitempty"`
}

// cloudEvent is the structured-mode CloudEvents 1.0 JSON body.
type cloudEvent struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject,omitempty"`
	Time            string          `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	Integration     string          `json:"ferryintegration,omitempty"`
	Data            json.RawMessage `json:"data,omitempty"`
}

func (e storedEvent) cloudEvent() ([]byte, error) {
	return json.Marshal(cloudEvent{SpecVersion: "1.0", ID: e.ID, Source: "/ferry/" + e.Tenant, Type: CloudEventType(e.Type),
		Subject: e.Subject, Time: e.Time.UTC().Format(time.RFC3339Nano), DataContentType: "application/json",
		Integration: e.Integration, Data: e.Data})
}

var (
	eventIntegrationRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)
	eventIDRe          = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)
)

// Emit records an event durably; the dispatcher delivers it to the tenant's
// matching subscriptions. It returns once JetStream stored the event (or
// found it a duplicate of one stored within the last hour).
func (s *Server) Emit(ctx context.Context, e Event) error {
	se, err := s.storedEvent(e)
	if err != nil {
		return err
	}
	if subs, known := s.events.subsCache.matching(se); known && len(subs) == 0 {
		return nil // no subscription asks for it
	}
	b, err := json.Marshal(se)
	if err != nil {
		return err
	}
	if _, err := s.js.Publish(ctx, eventsSubject+se.Tenant+"."+se.Type, b, jetstream.WithMsgID(se.ID)); err != nil {
		return fmt.Errorf("apiserver: recording event %s %s of tenant %s: %w", se.Type, se.ID, se.Tenant, err)
	}
	return nil
}

func (s *Server) storedEvent(e Event) (storedEvent, error) {
	if !slices.Contains(EventTypes, e.Type) {
		return storedEvent{}, fmt.Errorf("%w: event type %q is not one of %s", ErrInvalid, e.Type, strings.Join(EventTypes, ", "))
	}
	if !tenantNameRe.MatchString(e.Tenant) {
		return storedEvent{}, fmt.Errorf("%w: event tenant %q", ErrInvalid, e.Tenant)
	}
	if e.Integration != "" && !eventIntegrationRe.MatchString(e.Integration) {
		return storedEvent{}, fmt.Errorf("%w: event integration %q", ErrInvalid, e.Integration)
	}
	if e.ID == "" {
		e.ID = deriveEventID(e.Tenant, e.Type, e.Integration, e.Subject)
	} else if !eventIDRe.MatchString(e.ID) {
		return storedEvent{}, fmt.Errorf("%w: event id %q: 1 to 128 letters, digits, '_', '.', ':' or '-'", ErrInvalid, e.ID)
	}
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	se := storedEvent{ID: e.ID, Type: e.Type, Tenant: e.Tenant, Integration: e.Integration, Subject: e.Subject, Time: e.Time.UTC()}
	if e.Data != nil {
		b, err := json.Marshal(e.Data)
		if err != nil {
			return storedEvent{}, fmt.Errorf("apiserver: encoding the data of event %s: %w", e.Type, err)
		}
		if len(b) > maxEventData {
			return storedEvent{}, fmt.Errorf("%w: the data of event %s is %d bytes, more than %d: send ids and counts, and let the receiver read the rest from the API", ErrInvalid, e.Type, len(b), maxEventData)
		}
		se.Data = b
	}
	return se, nil
}

// maxEventData bounds an event's data (the NATS message limit is 1 MiB).
const maxEventData = 256 << 10

// deriveEventID is a stable id for the same fact: "evt_" and 128 bits of a
// SHA-256 over the parts.
func deriveEventID(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return "evt_" + hex.EncodeToString(sum[:16])
}

func newEventID() string { return "evt_" + randomBase62(24) }

// configApplied is the data of config.applied.
type configApplied struct {
	Revision   int       `json:"revision"`
	AppliedBy  string    `json:"appliedBy"`
	AppliedAt  time.Time `json:"appliedAt"`
	Message    string    `json:"message,omitempty"`
	RollbackOf int       `json:"rollbackOf,omitempty"`
	// Action is config.apply, config.rollback or the REST write that made
	// the revision (e.g. connection.update); Resource what it changed.
	Action   string `json:"action"`
	Resource string `json:"resource"`
}

// emitConfigApplied emits config.applied for a stored revision. Like the
// audit entry, it runs after the change was stored; a failure is logged.
func (s *Server) emitConfigApplied(ctx context.Context, tenant string, rev Revision, action, resource string) {
	err := s.Emit(context.WithoutCancel(ctx), Event{
		ID:      deriveEventID(tenant, EventConfigApplied, strconv.Itoa(rev.Revision), rev.AppliedAt.Format(time.RFC3339Nano)),
		Type:    EventConfigApplied,
		Tenant:  tenant,
		Subject: "revisions/" + strconv.Itoa(rev.Revision),
		Time:    rev.AppliedAt,
		Data: configApplied{Revision: rev.Revision, AppliedBy: rev.AppliedBy, AppliedAt: rev.AppliedAt, Message: rev.Message,
			RollbackOf: rev.RollbackOf, Action: action, Resource: resource},
	})
	if err != nil {
		s.log.Error("EVENT LOST", "tenant", tenant, "type", EventConfigApplied, "revision", rev.Revision, "error", err)
	}
}

// ---- signatures ----

// SignatureHeader carries the signature of a delivery.
const SignatureHeader = "Ferry-Signature"

// Sign is the Ferry-Signature value of body sent at unix time t.
func Sign(secret string, t int64, body []byte) string {
	return "t=" + strconv.FormatInt(t, 10) + ",v1=" + signatureV1(secret, t, body)
}

func signatureV1(secret string, t int64, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(strconv.FormatInt(t, 10)))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// ErrSignature is returned by VerifySignature.
var ErrSignature = errors.New("invalid event signature")

// VerifySignature checks a Ferry-Signature header against the raw body: one
// v1 entry must be the HMAC of "<t>.<body>" with secret, and t within
// tolerance of now (rejecting replays of an old request; 5 minutes is usual).
func VerifySignature(secret, header string, body []byte, tolerance time.Duration, now time.Time) error {
	var (
		t     int64
		haveT bool
		sigs  []string
	)
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch k {
		case "t":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return fmt.Errorf("%w: t=%q is not a Unix time", ErrSignature, v)
			}
			t, haveT = n, true
		case "v1":
			sigs = append(sigs, v)
		}
	}
	if !haveT || len(sigs) == 0 {
		return fmt.Errorf("%w: the header needs t=<unix time> and v1=<hex HMAC-SHA256>", ErrSignature)
	}
	if d := now.Sub(time.Unix(t, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: the timestamp is %s away from now (tolerance %s): a replay, or a clock off", ErrSignature, d.Abs().Truncate(time.Second), tolerance)
	}
	want := []byte(signatureV1(secret, t, body))
	for _, sig := range sigs {
		if hmac.Equal([]byte(sig), want) {
			return nil
		}
	}
	return fmt.Errorf("%w: no v1 signature matches the body and the secret", ErrSignature)
}

// ---- options ----

// EventOptions configure outbound event deliveries. Zero values take the
// defaults.
type EventOptions struct {
	// MaxAttempts per delivery (default 10).
	MaxAttempts int
	// InitialBackoff is the wait after the first failed attempt, MaxBackoff
	// the wait before the last; the waits between grow geometrically, with
	// ±20% jitter (defaults 1s and 1h).
	InitialBackoff, MaxBackoff time.Duration
	// Timeout of one attempt, connecting to reading the answer's status
	// (default 10s).
	Timeout time.Duration
	// Workers are the deliveries this node makes at once (default 8).
	Workers int
	// History is how long delivery history is kept (default 30 days).
	History time.Duration
	// DenyPrivateTargets refuses to deliver to loopback, private (RFC 1918,
	// fc00::/7), link-local (169.254.0.0/16: cloud metadata services),
	// CGNAT, multicast and unspecified addresses. Off by default, so that
	// receivers on the server's private networks work; turn it on where
	// tenants are not trusted with them (SSRF). Loopback and link-local
	// are refused anyway, by the tenants' network policy
	// (Options.AllowNetworks), but for --dev tenants. It is checked on the address
	// actually dialed, so a DNS name resolving to such an address (or
	// re-resolving to one later) does not get around it. With an HTTP proxy
	// from the environment, the proxy's address is what is checked.
	DenyPrivateTargets bool
	// NoDispatch: this node records events and serves the API but delivers
	// nothing (other nodes do).
	NoDispatch bool
}

func (o EventOptions) withDefaults() EventOptions {
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 10
	}
	if o.InitialBackoff <= 0 {
		o.InitialBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = time.Hour
	}
	if o.MaxBackoff < o.InitialBackoff {
		o.MaxBackoff = o.InitialBackoff
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.History <= 0 {
		o.History = 30 * 24 * time.Hour
	}
	return o
}

// backoff is the wait after failed attempt n (1-based) of MaxAttempts:
// InitialBackoff·(MaxBackoff/InitialBackoff)^((n-1)/(MaxAttempts-2)), ±20%.
func (o EventOptions) backoff(n int) time.Duration {
	d := float64(o.InitialBackoff)
	if o.MaxAttempts > 2 {
		f := float64(min(max(n-1, 0), o.MaxAttempts-2)) / float64(o.MaxAttempts-2)
		d *= math.Pow(float64(o.MaxBackoff)/float64(o.InitialBackoff), f)
	}
	d *= 0.8 + 0.4*rand.Float64()
	return time.Duration(d)
}

// ---- the dispatcher ----

type eventState struct {
	opts       EventOptions
	subs       jetstream.KeyValue
	subsCache  *subsCache // the subscriptions of every tenant (watched)
	deliveries jetstream.KeyValue
	// client delivers tenants' events under the tenants' network policy
	// (Options.AllowNetworks); devClient those of --dev tenants, which are
	// not under it.
	client, devClient *http.Client

	cancel context.CancelFunc
	wg     sync.WaitGroup

	results *prometheus.CounterVec
}

// openEvents creates the buckets, streams and consumers of events
// (idempotently; every node creates the same).
func (s *Server) openEvents(ctx context.Context) error {
	o := s.opts.Events.withDefaults()
	ev := &eventState{opts: o, client: newDeliveryClient(o, s.netPolicy), devClient: newDeliveryClient(o, nil)}
	for _, b := range []struct {
		name string
		ttl  time.Duration
		kv   *jetstream.KeyValue
	}{
		{BucketSubscriptions, 0, &ev.subs},
		{BucketDeliveries, o.History, &ev.deliveries},
	} {
		kv, err := runtime.KeyValue(ctx, s.js, jetstream.KeyValueConfig{
			Bucket: b.name, History: 1, TTL: b.ttl, Storage: jetstream.FileStorage, Replicas: s.opts.Replicas,
		})
		if err != nil {
			return fmt.Errorf("apiserver: creating bucket %s: %w", b.name, err)
		}
		*b.kv = kv
	}
	for _, sc := range []jetstream.StreamConfig{
		{Name: EventsStream, Description: "ferry events: run.*, dlq.added, config.applied, per tenant",
			Subjects: []string{eventsSubject + ">"}, Retention: jetstream.LimitsPolicy, MaxAge: 7 * 24 * time.Hour},
		{Name: DeliveriesStream, Description: "ferry event deliveries waiting for their (next) attempt",
			Subjects: []string{deliveriesSubject + ">"}, Retention: jetstream.WorkQueuePolicy, MaxAge: 7 * 24 * time.Hour},
	} {
		sc.Storage, sc.Replicas, sc.Duplicates = jetstream.FileStorage, s.opts.Replicas, eventsDedupWindow
		if _, err := s.js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("apiserver: creating stream %s: %w", sc.Name, err)
		}
	}
	c, err := watchSubscriptions(ev.subs)
	if err != nil {
		return fmt.Errorf("apiserver: watching bucket %s: %w", BucketSubscriptions, err)
	}
	c.waitReady(10 * time.Second)
	ev.subsCache = c
	s.events = ev
	return nil
}

// startEvents starts this node's dispatcher (unless NoDispatch): the shared
// durable consumers, so each event and each attempt is handled by one node.
func (s *Server) startEvents(ctx context.Context) error {
	ev := s.events
	ev.results = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_event_delivery_attempts_total",
		Help: "Attempts to deliver events to subscriptions, by result: delivered, retry (failed, will retry), failed (failed, last attempt).",
	}, []string{"result"})
	s.met.reg.MustRegister(ev.results)
	if ev.opts.NoDispatch {
		return nil
	}
	fan, err := s.js.CreateOrUpdateConsumer(ctx, EventsStream, jetstream.ConsumerConfig{
		Durable: fanoutConsumer, Description: "ferry: matches events to subscriptions",
		FilterSubject: eventsSubject + ">", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute,
		MaxDeliver: -1, DeliverPolicy: jetstream.DeliverAllPolicy, Replicas: s.opts.Replicas,
	})
	if err != nil {
		return fmt.Errorf("apiserver: consumer %s: %w", fanoutConsumer, err)
	}
	del, err := s.js.CreateOrUpdateConsumer(ctx, DeliveriesStream, jetstream.ConsumerConfig{
		Durable: deliveryConsumer, Description: "ferry: delivers events to subscriptions",
		FilterSubject: deliveriesSubject + ">", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute,
		MaxDeliver: -1, MaxAckPending: 1000, Replicas: s.opts.Replicas,
	})
	if err != nil {
		return fmt.Errorf("apiserver: consumer %s: %w", deliveryConsumer, err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	ev.cancel = cancel
	if err := s.pull(runCtx, fan, 1, s.fanout); err != nil {
		cancel()
		return err
	}
	if err := s.pull(runCtx, del, ev.opts.Workers, s.deliver); err != nil {
		cancel()
		return err
	}
	return nil
}

// stopEvents stops this node's dispatcher and waits for attempts in flight.
func (s *Server) stopEvents() {
	if s.events == nil {
		return
	}
	if s.events.cancel != nil {
		s.events.cancel()
		s.events.wg.Wait()
	}
	if c := s.events.subsCache; c != nil {
		c.close()
	}
}

// pull hands cons's messages to workers goroutines until ctx ends or the
// connection closes.
func (s *Server) pull(ctx context.Context, cons jetstream.Consumer, workers int, handle func(context.Context, jetstream.Msg)) error {
	it, err := cons.Messages(jetstream.PullMaxMessages(max(2*workers, 2)))
	if err != nil {
		return fmt.Errorf("apiserver: pulling events: %w", err)
	}
	ev := s.events
	msgs := make(chan jetstream.Msg)
	ev.wg.Add(1)
	go func() {
		defer ev.wg.Done()
		defer close(msgs)
		stopped := make(chan struct{})
		defer close(stopped)
		go func() {
			select {
			case <-ctx.Done():
				it.Stop()
			case <-stopped:
			}
		}()
		for {
			m, err := it.Next()
			if err != nil {
				if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) || errors.Is(err, nats.ErrConnectionClosed) || s.js.Conn().IsClosed() {
					it.Stop()
					return
				}
				s.log.Debug("pulling events", "error", err)
				select {
				case <-ctx.Done():
				case <-time.After(250 * time.Millisecond):
				}
				continue
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	for range workers {
		ev.wg.Add(1)
		go func() {
			defer ev.wg.Done()
			for m := range msgs {
				handle(ctx, m)
			}
		}()
	}
	return nil
}

// fanout turns one event into a delivery per matching subscription.
func (s *Server) fanout(ctx context.Context, m jetstream.Msg) {
	var e storedEvent
	if err := json.Unmarshal(m.Data(), &e); err != nil || e.ID == "" || !tenantNameRe.MatchString(e.Tenant) {
		s.log.Error("dropping a malformed event", "subject", m.Subject(), "error", err)
		_ = m.Term()
		return
	}
	// The cache, unless it knows of no subscription for the event: then
	// the event was emitted on a node that knew one this node has not
	// seen yet (or the cache is not ready), and the bucket says.
	subs, _ := s.events.subsCache.matching(e)
	var err error
	if len(subs) == 0 {
		subs, err = s.subscriptionsOf(ctx, e.Tenant)
	}
	if err != nil {
		s.log.Warn("reading subscriptions; the event is retried", "tenant", e.Tenant, "event", e.ID, "error", err)
		_ = m.NakWithDelay(time.Second)
		return
	}
	for _, sub := range subs {
		if !sub.matches(e) {
			continue
		}
		if err := s.enqueueDelivery(ctx, sub, e); err != nil {
			s.log.Warn("queueing a delivery; the event is retried", "tenant", e.Tenant, "event", e.ID, "subscription", sub.ID, "error", err)
			_ = m.NakWithDelay(time.Second)
			return
		}
	}
	_ = m.Ack()
}

func deliveryKey(tenant, subID, deliveryID string) string {
	return tenant + "." + subID + "." + deliveryID
}

func deliveryID(eventID, subID string) string {
	sum := sha256.Sum256([]byte(eventID + "\x00" + subID))
	return "dlv_" + hex.EncodeToString(sum[:16])
}

func newDelivery(sub subscriptionRecord, e storedEvent, now time.Time) EventDelivery {
	return EventDelivery{ID: deliveryID(e.ID, sub.ID), SubscriptionID: sub.ID, EventID: e.ID, EventType: e.Type,
		Subject: e.Subject, Integration: e.Integration, Status: DeliveryPending, Attempts: []EventDeliveryAttempt{},
		CreatedAt: now, UpdatedAt: now}
}

// enqueueDelivery records a pending delivery (once per event and
// subscription) and queues its CloudEvent. A delivery already recorded is
// queued again unless settled (its first queueing may have been lost); the
// message id drops the copy when it was not.
func (s *Server) enqueueDelivery(ctx context.Context, sub subscriptionRecord, e storedEvent) error {
	body, err := e.cloudEvent()
	if err != nil {
		return err
	}
	d := newDelivery(sub, e, s.now().UTC())
	key := deliveryKey(sub.Tenant, sub.ID, d.ID)
	b, _ := json.Marshal(d)
	if _, err := s.events.deliveries.Create(ctx, key, b); isConflict(err) {
		var old EventDelivery
		if _, found, err := getJSON(ctx, s.events.deliveries, key, &old); err != nil {
			return err
		} else if found && old.settled() {
			return nil
		}
	} else if err != nil {
		return err
	}
	_, err = s.js.Publish(ctx, deliveriesSubject+key, body, jetstream.WithMsgID(d.ID))
	return err
}

// deliver makes one attempt of a queued delivery.
func (s *Server) deliver(ctx context.Context, m jetstream.Msg) {
	ev := s.events
	parts := strings.Split(strings.TrimPrefix(m.Subject(), deliveriesSubject), ".")
	if len(parts) != 3 {
		s.log.Error("dropping a malformed delivery", "subject", m.Subject())
		_ = m.Term()
		return
	}
	tenant, subID, id := parts[0], parts[1], parts[2]
	key := deliveryKey(tenant, subID, id)
	var d EventDelivery
	_, found, err := getJSON(ctx, ev.deliveries, key, &d)
	if err != nil {
		_ = m.NakWithDelay(time.Second)
		return
	}
	if !found || d.settled() {
		_ = m.Ack() // the subscription was deleted, or a copy of a settled delivery
		return
	}
	var sub subscriptionRecord
	_, found, err = getJSON(ctx, ev.subs, subscriptionKey(tenant, subID), &sub)
	if err != nil {
		_ = m.NakWithDelay(time.Second)
		return
	}
	if !found {
		_ = ev.deliveries.Purge(ctx, key)
		_ = m.Ack()
		return
	}
	// Keep the message ours through a slow receiver.
	working := make(chan struct{})
	defer close(working)
	go func() {
		t := time.NewTicker(20 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-working:
				return
			case <-t.C:
				_ = m.InProgress()
			}
		}
	}()
	n := len(d.Attempts) + 1
	var a EventDeliveryAttempt
	if secret, err := s.subscriptionSecret(sub); err != nil {
		a = EventDeliveryAttempt{Attempt: n, Time: s.now().UTC(), Error: "not sent: " + err.Error()}
	} else {
		a = s.attempt(ctx, sub.Tenant, sub.URL, secret, m.Data(), d.ID, n)
	}
	if ctx.Err() != nil && a.StatusCode == 0 {
		return // shutting down: not an attempt; redelivered after the ack wait
	}
	d, wait, err := s.recordAttempt(ctx, key, a)
	if err != nil {
		s.log.Warn("recording a delivery attempt", "delivery", id, "error", err)
		if a.ok() {
			_ = m.Ack() // delivered; only its record is behind
		} else {
			_ = m.NakWithDelay(ev.opts.backoff(n))
		}
		return
	}
	switch d.Status {
	case DeliveryDelivered:
		ev.results.WithLabelValues("delivered").Inc()
		_ = m.Ack()
	case DeliveryFailed:
		ev.results.WithLabelValues("failed").Inc()
		s.log.Warn("event delivery failed after the last attempt", "tenant", tenant, "subscription", subID, "delivery", id, "event", d.EventID, "error", a.Error)
		_ = m.Ack()
	default:
		ev.results.WithLabelValues("retry").Inc()
		_ = m.NakWithDelay(wait)
	}
}

// recordAttempt appends a to the delivery at key (CAS; retried on a
// conflict) and settles it when a succeeded or was the last attempt;
// otherwise wait is the backoff before the next attempt.
func (s *Server) recordAttempt(ctx context.Context, key string, a EventDeliveryAttempt) (d EventDelivery, wait time.Duration, err error) {
	ev := s.events
	ctx = context.WithoutCancel(ctx)
	for range 5 {
		d = EventDelivery{}
		rev, found, err := getJSON(ctx, ev.deliveries, key, &d)
		if err != nil {
			return d, 0, err
		}
		if !found {
			return d, 0, errors.New("the delivery record is gone")
		}
		if d.settled() {
			return d, 0, nil
		}
		a.Attempt = len(d.Attempts) + 1
		wait = ev.opts.backoff(a.Attempt)
		d.add(a, ev.opts.MaxAttempts, s.now().UTC(), wait)
		b, _ := json.Marshal(d)
		if _, err := ev.deliveries.Update(ctx, key, b, rev); err == nil {
			return d, wait, nil
		} else if !isConflict(err) {
			return d, 0, err
		}
	}
	return d, 0, errors.New("the delivery record keeps changing")
}

// deliveryClient is the client of tenant's deliveries.
func (s *Server) deliveryClient(tenant string) *http.Client {
	if s.netPolicyOf(tenant) == nil {
		return s.events.devClient
	}
	return s.events.client
}

// attempt POSTs body once, for tenant.
func (s *Server) attempt(ctx context.Context, tenant, target, secret string, body []byte, deliveryID string, n int) EventDeliveryAttempt {
	ctx, cancel := context.WithTimeout(ctx, s.events.opts.Timeout)
	defer cancel()
	now := s.now()
	a := EventDeliveryAttempt{Attempt: n, Time: now.UTC()}
	start := time.Now()
	defer func() { a.DurationMs = time.Since(start).Milliseconds() }()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		a.Error = err.Error()
		return a
	}
	req.Header.Set("Content-Type", "application/cloudevents+json; charset=utf-8")
	req.Header.Set("User-Agent", "ferry/"+lang.Version)
	req.Header.Set(SignatureHeader, Sign(secret, now.Unix(), body))
	req.Header.Set("Ferry-Delivery", deliveryID)
	req.Header.Set("Ferry-Attempt", strconv.Itoa(n))
	res, err := s.deliveryClient(tenant).Do(req)
	if err != nil {
		a.Error = attemptError(err, s.events.opts.Timeout)
		a.DurationMs = time.Since(start).Milliseconds()
		return a
	}
	defer res.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(res.Body, maxResponseSnippet))
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10)) // so the connection can be reused
	a.StatusCode = res.StatusCode
	a.DurationMs = time.Since(start).Milliseconds()
	if !a.ok() {
		a.Error = "the receiver answered " + res.Status
		if res.StatusCode >= 300 && res.StatusCode < 400 {
			a.Error += " (redirects are not followed: subscribe the final URL)"
		}
		a.Response = strings.ToValidUTF8(string(snippet), "?")
	}
	return a
}

const maxResponseSnippet = 512

func attemptError(err error, timeout time.Duration) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("no answer within %s (timeout)", timeout)
	}
	if errors.Is(err, errPrivateTarget) {
		return errPrivateTarget.Error()
	}
	var denied *connectors.DeniedAddressError
	if errors.As(err, &denied) {
		return denied.Error()
	}
	return err.Error()
}

var errPrivateTarget = errors.New("the target's address is loopback, private, link-local or otherwise internal, and this server denies those (Options.Events.DenyPrivateTargets)")

// newDeliveryClient is the client of deliveries under policy (nil: none).
func newDeliveryClient(o EventOptions, policy *connectors.NetPolicy) *http.Client {
	dialer := &net.Dialer{Timeout: o.Timeout, KeepAlive: 30 * time.Second}
	if o.DenyPrivateTargets {
		dialer.Control = func(_, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return err
			}
			ip, err := netip.ParseAddr(host)
			if err != nil {
				return err
			}
			if internalAddr(ip) {
				return errPrivateTarget
			}
			return nil
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = dialer.DialContext
	policy.Transport(tr, dialer)
	tr.MaxIdleConnsPerHost = 4
	tr.ResponseHeaderTimeout = o.Timeout
	return &http.Client{
		Transport: tr,
		// A redirect is an answer (3xx: a failed attempt), never followed:
		// following could lead the POST anywhere, past DenyPrivateTargets' intent.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// internalAddr: addresses a tenant's receiver should not be when the server
// denies private targets.
func internalAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() || cgnat.Contains(ip)
}
