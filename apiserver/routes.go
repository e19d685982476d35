package apiserver

import (
	"net/http"
)

// Role is what an API key may do.
type Role string

// Roles, least privilege:
const (
	// RoleAdmin belongs to the system tenant: tenants and their keys.
	RoleAdmin Role = "admin"
	// RoleUser is a tenant's full read-write.
	RoleUser Role = "user"
	// RoleViewer is read-only (config, revisions, runs, DLQ, metrics): dashboards.
	RoleViewer Role = "viewer"
	// RoleTrigger may only send sync events and read their status: upstream systems.
	RoleTrigger Role = "trigger"
)

// AllRoles in order of privilege.
var AllRoles = []Role{RoleAdmin, RoleUser, RoleViewer, RoleTrigger}

// HandlerFunc handles an authenticated request. p is nil on public routes.
// A returned *Problem is written as problem+json; any other error is a 500.
type HandlerFunc func(w http.ResponseWriter, r *http.Request, p *Principal) error

// Route is one entry of the route table.
type Route struct {
	Method  string
	Pattern string // net/http ServeMux pattern without the method: /v1/api-keys/{id}
	// Roles may call the route; nil means public (no key needed).
	Roles []Role
	// TenantScoped routes act on the caller's tenant's data only; a key of
	// another tenant must never see or change it (404 for a resource of
	// another tenant, exactly as for one that does not exist).
	TenantScoped bool
	Summary      string
	Tag          string
	// Request and Response are zero values of the JSON bodies, for the OpenAPI
	// document (nil: none; a string: that media type, e.g. "text/html").
	Request any
	// RequestTypes are the request body's media types when not just
	// application/json (e.g. JSON Patch and merge patch on PATCH).
	RequestTypes []string
	Response     any
	// Status is the success status (default 200).
	Status int
	// List routes take page, pageSize, filter and order on ListFields.
	List       bool
	ListFields []string
	// IfMatch: the route requires If-Match (428 when missing, 412 when stale).
	IfMatch bool
	// Query documents extra query parameters (name → description).
	Query  map[string]string
	Handle HandlerFunc
}

var (
	tenantRead  = []Role{RoleUser, RoleViewer}
	tenantWrite = []Role{RoleUser}
	adminOnly   = []Role{RoleAdmin}
	keyManagers = []Role{RoleAdmin, RoleUser}
)

// routeTable is the single list of routes.
func (s *Server) routeTable() []Route {
	routes := append(s.baseRoutes(), s.resourceRoutes()...)
	routes = append(routes, s.runRoutes()...)
	routes = append(routes, s.subscriptionRoutes()...)
	routes = append(routes, s.webhookRoutes()...)
	routes = append(routes, s.scheduleRoutes()...)
	return routes
}

func (s *Server) baseRoutes() []Route {
	return []Route{
		// Health, metrics, documentation: public.
		{Method: "GET", Pattern: "/healthz", Summary: "Liveness: the process serves HTTP", Tag: "system", Response: statusBody{}, Handle: s.healthz},
		{Method: "GET", Pattern: "/readyz", Summary: "Readiness: JetStream is reachable", Tag: "system", Response: statusBody{}, Handle: s.readyz},
		{Method: "GET", Pattern: "/metrics", Summary: "Prometheus metrics", Tag: "system", Response: "text/plain", Handle: s.metrics},
		{Method: "GET", Pattern: "/openapi.json", Summary: "This API as an OpenAPI 3.1 document", Tag: "system", Response: "application/json", Handle: s.openapi},
		{Method: "GET", Pattern: "/docs", Summary: "Interactive API reference", Tag: "system", Response: "text/html", Handle: s.docs},

		// Tenants: admin.
		{Method: "POST", Pattern: "/v1/tenants", Roles: adminOnly, Summary: "Create a tenant", Tag: "tenants", Request: createTenantRequest{}, Response: Tenant{}, Status: 201, Handle: s.createTenant},
		{Method: "GET", Pattern: "/v1/tenants", Roles: adminOnly, Summary: "List tenants", Tag: "tenants", Response: listOf[Tenant]{}, List: true, ListFields: []string{"name", "createdAt"}, Handle: s.listTenants},
		{Method: "GET", Pattern: "/v1/tenants/{tenant}", Roles: adminOnly, Summary: "Get a tenant with its settings", Tag: "tenants", Response: Tenant{}, Handle: s.getTenant},
		{Method: "PATCH", Pattern: "/v1/tenants/{tenant}", Roles: adminOnly, Summary: "Change a tenant's settings (absent fields are kept)", Tag: "tenants", Request: tenantPatch{}, RequestTypes: []string{"application/json", mediaMergePatch}, Response: Tenant{}, Handle: s.patchTenant},

		// The caller's tenant's settings.
		{Method: "GET", Pattern: "/v1/settings", Roles: tenantRead, TenantScoped: true, Summary: "The tenant's settings (restConfigWrites: whether REST resources may change the configuration)", Tag: "settings", Response: TenantSettings{}, Handle: s.getSettings},
		{Method: "PUT", Pattern: "/v1/settings", Roles: tenantWrite, TenantScoped: true, Summary: "Change the tenant's settings (absent fields are kept)", Tag: "settings", Request: settingsPatch{}, Response: TenantSettings{}, Handle: s.putSettings},

		// Connector types and inline mapping tests: no tenant data of their own.
		{Method: "GET", Pattern: "/v1/connector-types", Roles: tenantRead, TenantScoped: true, Summary: "Every connector type with its attributes as JSON Schema", Tag: "connections", Response: []connectorType{}, Handle: s.connectorTypes},
		{Method: "POST", Pattern: "/v1/mappings/test", Roles: tenantRead, TenantScoped: true, Summary: "Compile an inline mapping (with the tenant's tables and mappings) and map one input record", Tag: "mappings", Request: inlineMappingTestRequest{}, Response: mappingTestResponse{}, Handle: s.testInlineMapping},

		// API keys: a tenant's user manages its keys; admin any tenant's.
		{Method: "POST", Pattern: "/v1/api-keys", Roles: keyManagers, TenantScoped: true, Summary: "Create an API key (the key is shown once)", Tag: "api-keys", Request: createKeyRequest{}, Response: createdKey{}, Status: 201, Handle: s.createKey},
		{Method: "GET", Pattern: "/v1/api-keys", Roles: keyManagers, TenantScoped: true, Summary: "List API keys (never their secrets)", Tag: "api-keys", Response: listOf[APIKey]{}, List: true, ListFields: []string{"id", "name", "role", "createdAt", "expiresAt", "revokedAt", "status"}, Query: map[string]string{"tenant": "admin only: the tenant whose keys to list"}, Handle: s.listKeys},
		{Method: "GET", Pattern: "/v1/api-keys/{id}", Roles: keyManagers, TenantScoped: true, Summary: "Get an API key (never its secret)", Tag: "api-keys", Response: APIKey{}, Handle: s.getKey},
		{Method: "POST", Pattern: "/v1/api-keys/{id}/rotate", Roles: keyManagers, TenantScoped: true, Summary: "Rotate an API key: a new secret, the old one stops working", Tag: "api-keys", Response: createdKey{}, Handle: s.rotateKey},
		{Method: "DELETE", Pattern: "/v1/api-keys/{id}", Roles: keyManagers, TenantScoped: true, IfMatch: true, Summary: "Revoke an API key", Tag: "api-keys", Response: APIKey{}, Handle: s.revokeKey},

		// Configuration and its revisions.
		{Method: "GET", Pattern: "/v1/config", Roles: tenantRead, TenantScoped: true, Summary: "The current configuration: its files; ETag is its revision", Tag: "config", Response: Revision{}, Handle: s.getConfig},
		{Method: "POST", Pattern: "/v1/config/plan", Roles: tenantRead, TenantScoped: true, Summary: "Plan files against the current revision", Tag: "config", Request: planRequest{}, Response: planResponse{}, Handle: s.planConfig},
		{Method: "PUT", Pattern: "/v1/config", Roles: tenantWrite, TenantScoped: true, IfMatch: true, Summary: "Apply files as a new revision (If-Match: the planned revision)", Tag: "config", Request: applyRequest{}, Response: applyResponse{}, Handle: s.applyConfig},
		{Method: "GET", Pattern: "/v1/revisions", Roles: tenantRead, TenantScoped: true, Summary: "List revisions", Tag: "config", Response: listOf[RevisionSummary]{}, List: true, ListFields: []string{"revision", "appliedBy", "appliedAt", "message", "rollbackOf"}, Handle: s.listRevisions},
		{Method: "GET", Pattern: "/v1/revisions/{n}", Roles: tenantRead, TenantScoped: true, Summary: "Get a revision with its files", Tag: "config", Response: Revision{}, Handle: s.getRevision},
		{Method: "GET", Pattern: "/v1/revisions/{n}/diff/{other}", Roles: tenantRead, TenantScoped: true, Summary: "Unified diff of the files from revision n to revision other", Tag: "config", Response: diffResponse{}, Handle: s.diffRevisions},
		{Method: "POST", Pattern: "/v1/revisions/{n}/rollback", Roles: tenantWrite, TenantScoped: true, Summary: "Apply revision n's files again as a new revision (optional If-Match)", Tag: "config", Request: rollbackRequest{}, Response: applyResponse{}, Handle: s.rollback},

		// Secrets: write-only.
		{Method: "GET", Pattern: "/v1/secrets", Roles: tenantWrite, TenantScoped: true, Summary: "List secret names with update times (never values)", Tag: "secrets", Response: listOf[SecretInfo]{}, List: true, ListFields: []string{"name", "updatedAt", "updatedBy"}, Handle: s.listSecrets},
		{Method: "PUT", Pattern: "/v1/secrets/{name}", Roles: tenantWrite, TenantScoped: true, Summary: "Create or replace a secret (replacing needs If-Match: its version, or *)", Tag: "secrets", Request: putSecretRequest{}, Response: SecretInfo{}, Handle: s.putSecret},
		{Method: "DELETE", Pattern: "/v1/secrets/{name}", Roles: tenantWrite, TenantScoped: true, IfMatch: true, Summary: "Delete a secret", Tag: "secrets", Status: 204, Handle: s.deleteSecret},

		// Audit.
		{Method: "GET", Pattern: "/v1/audit", Roles: []Role{RoleAdmin, RoleUser}, TenantScoped: true, Summary: "The audit log: every change to configuration, keys, secrets", Tag: "audit", Response: listOf[AuditEntry]{}, List: true, ListFields: []string{"seq", "time", "actor", "role", "sourceIp", "action", "resource", "revision"}, Query: map[string]string{"tenant": "admin only: the tenant whose log to read (default: the system tenant)"}, Handle: s.listAudit},
	}
}

// listOf is the envelope of list responses.
type listOf[T any] struct {
	Items    []T `json:"items"`
	Page     int `json:"page"`
	PageSize int `json:"pageSize"`
	Total    int `json:"total"`
}

type statusBody struct {
	Status string `json:"status"`
	Detail string `json:"detail,omitempty"`
}
