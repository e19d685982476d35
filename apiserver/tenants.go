package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/ferryhq/ferry/apiserver/listquery"
	"github.com/nats-io/nats.go/jetstream"
)

// Tenant is a tenant (account, workspace).
type Tenant struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"createdAt"`
	CreatedBy string    `json:"createdBy"`
	// Settings are the tenant's settings; nil in a stored record means the
	// defaults (DefaultSettings). Answers always carry them.
	Settings *TenantSettings `json:"settings,omitempty"`
}

type createTenantRequest struct {
	Name string `json:"name"`
}

func isNotFound(err error) bool { return errors.Is(err, jetstream.ErrKeyNotFound) }

func (s *Server) tenant(ctx context.Context, name string) (Tenant, bool, error) {
	var t Tenant
	if !tenantNameRe.MatchString(name) {
		return t, false, nil
	}
	_, found, err := getJSON(ctx, s.st.tenants, name, &t)
	return t, found, err
}

func (s *Server) newTenant(ctx context.Context, name, actor string) (Tenant, error) {
	if !tenantNameRe.MatchString(name) || name == SystemTenant {
		return Tenant{}, fmt.Errorf("%w: tenant name %q: use 1 to 63 of a-z, 0-9, '_' and '-', starting with a letter or digit (%q is reserved)", ErrInvalid, name, SystemTenant)
	}
	t := Tenant{Name: name, CreatedAt: s.now().UTC(), CreatedBy: actor}
	b, _ := json.Marshal(t)
	if _, err := s.st.tenants.Create(ctx, name, b); err != nil {
		if isConflict(err) {
			return t, ErrTenantExists
		}
		return t, err
	}
	return t, nil
}

// CreateTenant creates a tenant (`ferry serve --dev`). It returns
// ErrTenantExists if the tenant exists.
func (s *Server) CreateTenant(ctx context.Context, name string) error {
	if _, err := s.newTenant(ctx, name, bootstrapKeyID); err != nil {
		return err
	}
	s.audit(ctx, SystemTenant, &Principal{Tenant: SystemTenant, KeyID: bootstrapKeyID, Role: RoleAdmin}, "tenant.create", "tenants/"+name, 0, "")
	return nil
}

func (s *Server) createTenant(w http.ResponseWriter, r *http.Request, p *Principal) error {
	var req createTenantRequest
	if prob := s.decodeJSON(w, r, &req); prob != nil {
		return prob
	}
	t, err := s.newTenant(r.Context(), req.Name, p.KeyID)
	switch {
	case errors.Is(err, ErrInvalid):
		return newProblem(http.StatusUnprocessableEntity, probBadRequest, "%s", err.Error()[len("invalid: "):])
	case errors.Is(err, ErrTenantExists):
		return newProblem(http.StatusConflict, probConflict, "tenant %q already exists", req.Name)
	case err != nil:
		return err
	}
	s.audit(r.Context(), SystemTenant, p, "tenant.create", "tenants/"+t.Name, 0, "")
	w.Header().Set("Location", "/v1/tenants/"+t.Name)
	writeJSON(w, r, http.StatusCreated, t)
	return nil
}

func (s *Server) listTenants(w http.ResponseWriter, r *http.Request, p *Principal) error {
	q, prob := parseList(r, s.routeFor(r))
	if prob != nil {
		return prob
	}
	names, err := keysOf(r.Context(), s.st.tenants, ">")
	if err != nil {
		return err
	}
	items := make([]Tenant, 0, len(names))
	for _, n := range names {
		var t Tenant
		if _, found, err := getJSON(r.Context(), s.st.tenants, n, &t); err != nil {
			return err
		} else if found {
			items = append(items, t.withDefaults())
		}
	}
	if len(q.Order) == 0 {
		q.Order = []listquery.Order{{Field: "name"}}
	}
	return writeList(w, r, items, q)
}

func (s *Server) getTenant(w http.ResponseWriter, r *http.Request, p *Principal) error {
	name := r.PathValue("tenant")
	t, found, err := s.tenant(r.Context(), name)
	if err != nil {
		return err
	}
	if !found {
		return notFound(fmt.Sprintf("tenant %q", name))
	}
	writeJSON(w, r, http.StatusOK, t.withDefaults())
	return nil
}

// routeFor is the table entry of a request being served.
func (s *Server) routeFor(r *http.Request) Route {
	for _, rt := range s.routes {
		if rt.Method+" "+rt.Pattern == r.Pattern {
			return rt
		}
	}
	return Route{}
}

func parseList(r *http.Request, rt Route) (listquery.Query, *Problem) {
	q, err := listquery.Parse(r.URL.Query(), rt.ListFields)
	if err != nil {
		return q, newProblem(http.StatusBadRequest, probBadRequest, "%s", err.Error())
	}
	return q, nil
}

func writeList[T any](w http.ResponseWriter, r *http.Request, items []T, q listquery.Query) error {
	page, total, err := listquery.Apply(items, q)
	if err != nil {
		return err
	}
	writeJSON(w, r, http.StatusOK, listOf[T]{Items: page, Page: q.Page, PageSize: q.PageSize, Total: total})
	return nil
}
