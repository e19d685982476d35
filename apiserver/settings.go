package apiserver

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// TenantSettings are a tenant's settings, kept in its tenant record.
type TenantSettings struct {
	// RESTConfigWrites allows changing the configuration through the REST
	// resources (/v1/connections, /v1/mappings, ...). A tenant that keeps its
	// HCL in git as the only source of truth turns it off: every REST config
	// write is then 409 and points to git. PUT /v1/config (ferry apply) is not
	// affected.
	RESTConfigWrites bool `json:"restConfigWrites"`
}

// DefaultSettings are the settings of a tenant that never changed them.
func DefaultSettings() TenantSettings { return TenantSettings{RESTConfigWrites: true} }

// settingsPatch is the body of PUT /v1/settings and of the settings of
// PATCH /v1/tenants/{tenant}: absent fields keep their value.
type settingsPatch struct {
	RESTConfigWrites *bool `json:"restConfigWrites,omitempty"`
}

type tenantPatch struct {
	Settings *settingsPatch `json:"settings,omitempty"`
}

func (t Tenant) withDefaults() Tenant {
	if t.Settings == nil {
		d := DefaultSettings()
		t.Settings = &d
	}
	return t
}

// settings reads a tenant's settings (the defaults when it has none).
func (s *Server) settings(ctx context.Context, tenant string) (TenantSettings, error) {
	t, found, err := s.tenant(ctx, tenant)
	if err != nil || !found || t.Settings == nil {
		return DefaultSettings(), err
	}
	return *t.Settings, nil
}

// updateSettings applies patch to the settings of tenant with CAS on its record.
func (s *Server) updateSettings(ctx context.Context, p *Principal, tenant string, patch settingsPatch) (Tenant, error) {
	for range 5 {
		var t Tenant
		if !tenantNameRe.MatchString(tenant) {
			return t, notFound(fmt.Sprintf("tenant %q", tenant))
		}
		kvrev, found, err := getJSON(ctx, s.st.tenants, tenant, &t)
		if err != nil {
			return t, err
		}
		if !found {
			return t, notFound(fmt.Sprintf("tenant %q", tenant))
		}
		t = t.withDefaults()
		before := *t.Settings
		if patch.RESTConfigWrites != nil {
			t.Settings.RESTConfigWrites = *patch.RESTConfigWrites
		}
		if *t.Settings == before {
			return t, nil
		}
		b, _ := json.Marshal(t)
		if _, err := s.st.tenants.Update(ctx, tenant, b, kvrev); isConflict(err) {
			continue
		} else if err != nil {
			return t, err
		}
		detail, _ := json.Marshal(t.Settings)
		s.audit(ctx, tenant, p, "settings.update", "settings", 0, string(detail))
		return t, nil
	}
	return Tenant{}, newProblem(http.StatusConflict, probConflict, "the settings of tenant %q changed concurrently; retry", tenant)
}

func (s *Server) patchTenant(w http.ResponseWriter, r *http.Request, p *Principal) error {
	var req tenantPatch
	if prob := s.decodeJSON(w, r, &req); prob != nil {
		return prob
	}
	name := r.PathValue("tenant")
	if name == SystemTenant {
		return newProblem(http.StatusUnprocessableEntity, probBadRequest, "the system tenant has no settings")
	}
	if req.Settings == nil {
		req.Settings = &settingsPatch{}
	}
	t, err := s.updateSettings(r.Context(), p, name, *req.Settings)
	if err != nil {
		return err
	}
	writeJSON(w, r, http.StatusOK, t)
	return nil
}

func (s *Server) getSettings(w http.ResponseWriter, r *http.Request, p *Principal) error {
	st, err := s.settings(r.Context(), p.Tenant)
	if err != nil {
		return err
	}
	writeJSON(w, r, http.StatusOK, st)
	return nil
}

func (s *Server) putSettings(w http.ResponseWriter, r *http.Request, p *Principal) error {
	var req settingsPatch
	if prob := s.decodeJSON(w, r, &req); prob != nil {
		return prob
	}
	t, err := s.updateSettings(r.Context(), p, p.Tenant, req)
	if err != nil {
		return err
	}
	writeJSON(w, r, http.StatusOK, *t.Settings)
	return nil
}

// restWritesAllowed is nil when the tenant allows REST config writes, else
// the 409 that points to git.
func (s *Server) restWritesAllowed(ctx context.Context, tenant string) error {
	st, err := s.settings(ctx, tenant)
	if err != nil {
		return err
	}
	if !st.RESTConfigWrites {
		return newProblem(http.StatusConflict, probRESTWritesDisabled, "REST configuration writes are disabled for this tenant: change the HCL in git and run ferry apply")
	}
	return nil
}

// activation is the server-side on/off switch of an integration. It is not
// part of the HCL (the grammar has no such attribute on integrations), so
// neither plan nor apply touch it; an integration without a record is active.
// Triggers (schedules, webhooks, sync events) must check IntegrationActive
// before starting a run.
type activation struct {
	Active    bool      `json:"active"`
	UpdatedAt time.Time `json:"updatedAt"`
	UpdatedBy string    `json:"updatedBy"`
}

func activationKey(tenant, integration string) string {
	return tenant + ".integration." + base64.RawURLEncoding.EncodeToString([]byte(integration))
}

// IntegrationActive reports whether an integration of tenant is active
// (POST /v1/integrations/{name}/activate|deactivate; default active).
// Schedules, webhooks and sync events must not start runs of an inactive
// integration.
func (s *Server) IntegrationActive(ctx context.Context, tenant, integration string) (bool, error) {
	var a activation
	_, found, err := getJSON(ctx, s.st.state, activationKey(tenant, integration), &a)
	if err != nil || !found {
		return true, err
	}
	return a.Active, nil
}

func (s *Server) setActive(ctx context.Context, p *Principal, integration string, active bool) error {
	b, _ := json.Marshal(activation{Active: active, UpdatedAt: s.now().UTC(), UpdatedBy: p.KeyID})
	_, err := s.st.state.Put(ctx, activationKey(p.Tenant, integration), b)
	return err
}

func (s *Server) forgetActive(ctx context.Context, tenant, integration string) {
	if err := s.st.state.Purge(ctx, activationKey(tenant, integration)); err != nil && !isNotFound(err) {
		s.log.Error("removing the activation of a deleted integration", "tenant", tenant, "integration", integration, "error", err)
	}
}
