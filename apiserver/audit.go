package apiserver

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/ferryhq/ferry/apiserver/listquery"
	"github.com/nats-io/nats.go/jetstream"
)

// AuditEntry is one change: who (key id and role, source IP), what (action,
// resource, configuration revision), when.
type AuditEntry struct {
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"time"`
	Tenant   string    `json:"tenant"`
	Actor    string    `json:"actor"`
	Role     Role      `json:"role"`
	SourceIP string    `json:"sourceIp,omitempty"`
	Action   string    `json:"action"`
	Resource string    `json:"resource"`
	Revision int       `json:"revision,omitempty"`
	Detail   string    `json:"detail,omitempty"`
}

// audit appends an entry to the tenant's log. It runs after the change was
// stored; a failure is logged loudly (the change is not undone).
func (s *Server) audit(ctx context.Context, tenant string, p *Principal, action, resource string, revision int, detail string) {
	e := AuditEntry{Time: s.now().UTC(), Tenant: tenant, Actor: p.KeyID, Role: p.Role, SourceIP: p.SourceIP,
		Action: action, Resource: resource, Revision: revision, Detail: detail}
	b, _ := json.Marshal(e)
	ctx = context.WithoutCancel(ctx)
	if _, err := s.js.Publish(ctx, auditSubject+tenant, b); err != nil {
		s.log.Error("AUDIT ENTRY LOST", "tenant", tenant, "actor", p.KeyID, "action", action, "resource", resource, "error", err)
	}
}

// auditEntries reads a tenant's whole log, oldest first.
func (s *Server) auditEntries(ctx context.Context, tenant string) ([]AuditEntry, error) {
	cons, err := s.js.OrderedConsumer(ctx, AuditStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{auditSubject + tenant},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, err
	}
	// The ephemeral consumer would outlive the request by its inactive
	// threshold (5 minutes): polling the log piled them up until JetStream's
	// consumer limit made every read fail (found by FuzzAPIQuery).
	defer func() {
		if ci := cons.CachedInfo(); ci != nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = s.js.DeleteConsumer(dctx, AuditStream, ci.Name)
		}
	}()
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, err
	}
	pending := int(info.NumPending)
	out := make([]AuditEntry, 0, pending)
	for len(out) < pending {
		batch, err := cons.Fetch(min(pending-len(out), 1000), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			var e AuditEntry
			if json.Unmarshal(m.Data(), &e) != nil {
				continue
			}
			if md, err := m.Metadata(); err == nil {
				e.Seq = md.Sequence.Stream
			}
			out = append(out, e)
		}
		if err := batch.Error(); err != nil {
			return nil, err
		}
		if n == 0 {
			break
		}
	}
	return out, nil
}

func (s *Server) listAudit(w http.ResponseWriter, r *http.Request, p *Principal) error {
	tenant, prob := scopeTenant(r, p)
	if prob != nil {
		return prob
	}
	q, prob := parseList(r, s.routeFor(r))
	if prob != nil {
		return prob
	}
	if !tenantNameRe.MatchString(tenant) {
		return notFound("tenant " + tenant)
	}
	items, err := s.auditEntries(r.Context(), tenant)
	if err != nil {
		return err
	}
	if len(q.Order) == 0 {
		q.Order = []listquery.Order{{Field: "seq", Desc: true}}
	}
	return writeList(w, r, items, q)
}
