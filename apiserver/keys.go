package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhq/ferry/apiserver/listquery"
)

// APIKey is a key as listed: never its secret nor its hash.
type APIKey struct {
	ID         string     `json:"id"`
	Prefix     string     `json:"prefix"`
	Tenant     string     `json:"tenant"`
	Name       string     `json:"name"`
	Role       Role       `json:"role"`
	Status     string     `json:"status"` // active, expired, revoked
	CreatedAt  time.Time  `json:"createdAt"`
	CreatedBy  string     `json:"createdBy"`
	ExpiresAt  *time.Time `json:"expiresAt"`
	AllowedIPs []string   `json:"allowedIps,omitempty"`
	RotatedAt  *time.Time `json:"rotatedAt,omitempty"`
	RevokedAt  *time.Time `json:"revokedAt,omitempty"`
}

// apiKeyRecord is the stored key.
type apiKeyRecord struct {
	APIKey
	Hash string `json:"hash"` // hex sha256 of the whole key
}

type createKeyRequest struct {
	Name string `json:"name"`
	Role Role   `json:"role"`
	// Tenant: admin keys only; the tenant to create the key for.
	Tenant    string     `json:"tenant,omitempty"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	// AllowedIPs are CIDR ranges (or addresses) the key may be used from.
	AllowedIPs []string `json:"allowedIps,omitempty"`
}

// createdKey is the only answer that ever holds a key.
type createdKey struct {
	ID        string     `json:"id"`
	Key       string     `json:"key"`
	Prefix    string     `json:"prefix"`
	Tenant    string     `json:"tenant"`
	Name      string     `json:"name"`
	Role      Role       `json:"role"`
	ExpiresAt *time.Time `json:"expiresAt"`
}

// ErrTenantNotFound, ErrTenantExists and ErrInvalid are returned by the Go API
// (CreateTenant, CreateKey).
var (
	ErrTenantNotFound = errors.New("tenant not found")
	ErrTenantExists   = errors.New("tenant already exists")
	ErrInvalid        = errors.New("invalid")
)

func (s *Server) lookupKey(ctx context.Context, id string) (rec apiKeyRecord, rev uint64, found bool, err error) {
	if !isKeyID(id) {
		return rec, 0, false, nil
	}
	e, err := s.st.keys.Get(ctx, "_byid."+id)
	if err != nil {
		if isNotFound(err) {
			return rec, 0, false, nil
		}
		return rec, 0, false, err
	}
	tenant := string(e.Value())
	rev, found, err = getJSON(ctx, s.st.keys, tenant+"."+id, &rec)
	return rec, rev, found, err
}

func (s *Server) keyStatus(rec *apiKeyRecord) {
	switch {
	case rec.RevokedAt != nil:
		rec.Status = "revoked"
	case rec.ExpiresAt != nil && !s.now().Before(*rec.ExpiresAt):
		rec.Status = "expired"
	default:
		rec.Status = "active"
	}
}

// newKeyRecord validates and creates a key; it returns the key (shown once).
func (s *Server) newKeyRecord(ctx context.Context, tenant, name string, role Role, expires *time.Time, ips []string, actor string) (apiKeyRecord, string, error) {
	var rec apiKeyRecord
	if name = strings.TrimSpace(name); name == "" || len(name) > 100 {
		return rec, "", fmt.Errorf("%w: a key needs a name of 1 to 100 characters", ErrInvalid)
	}
	if tenant == SystemTenant {
		if role != RoleAdmin {
			return rec, "", fmt.Errorf("%w: keys of the system tenant have role admin", ErrInvalid)
		}
	} else if !slices.Contains([]Role{RoleUser, RoleViewer, RoleTrigger}, role) {
		return rec, "", fmt.Errorf("%w: role %q: a tenant key's role is user, viewer or trigger", ErrInvalid, role)
	}
	if expires != nil && !expires.After(s.now()) {
		return rec, "", fmt.Errorf("%w: expiresAt %s is not in the future", ErrInvalid, expires.Format(time.RFC3339))
	}
	var cidrs []string
	for _, c := range ips {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			a, aerr := netip.ParseAddr(c)
			if aerr != nil {
				return rec, "", fmt.Errorf("%w: allowedIps: %q is neither a CIDR range nor an address", ErrInvalid, c)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		cidrs = append(cidrs, p.Masked().String())
	}
	if tenant != SystemTenant {
		if _, found, err := s.tenant(ctx, tenant); err != nil {
			return rec, "", err
		} else if !found {
			return rec, "", ErrTenantNotFound
		}
	}
	for range 5 {
		id := newKeyID()
		key := newKey(id)
		now := s.now().UTC()
		rec = apiKeyRecord{APIKey: APIKey{ID: id, Prefix: keyPrefix + id, Tenant: tenant, Name: name, Role: role,
			CreatedAt: now, CreatedBy: actor, ExpiresAt: expires, AllowedIPs: cidrs}, Hash: hashKey(key)}
		// The index entry is the id's claim: Create fails if the id is taken.
		if _, err := s.st.keys.Create(ctx, "_byid."+id, []byte(tenant)); err != nil {
			if isConflict(err) {
				continue
			}
			return rec, "", err
		}
		b, _ := json.Marshal(rec)
		if _, err := s.st.keys.Create(ctx, tenant+"."+id, b); err != nil {
			return rec, "", err
		}
		s.keyStatus(&rec)
		return rec, key, nil
	}
	return rec, "", errors.New("could not find a free key id")
}

// CreateKey creates an API key for a tenant (`ferry serve --dev`) and returns
// it; it is not stored anywhere in clear.
func (s *Server) CreateKey(ctx context.Context, tenant, name, role string) (string, error) {
	rec, key, err := s.newKeyRecord(ctx, tenant, name, Role(role), nil, nil, bootstrapKeyID)
	if err != nil {
		return "", err
	}
	s.audit(ctx, tenant, &Principal{Tenant: SystemTenant, KeyID: bootstrapKeyID, Role: RoleAdmin}, "apikey.create", "api-keys/"+rec.ID, 0, "")
	return key, nil
}

func (s *Server) createKey(w http.ResponseWriter, r *http.Request, p *Principal) error {
	var req createKeyRequest
	if prob := s.decodeJSON(w, r, &req); prob != nil {
		return prob
	}
	tenant := p.Tenant
	if req.Tenant != "" {
		if p.Role != RoleAdmin {
			if req.Tenant != p.Tenant {
				return newProblem(http.StatusForbidden, probForbidden, "only admin keys may create keys for another tenant")
			}
		} else {
			tenant = req.Tenant
		}
	}
	rec, key, err := s.newKeyRecord(r.Context(), tenant, req.Name, req.Role, req.ExpiresAt, req.AllowedIPs, p.KeyID)
	switch {
	case errors.Is(err, ErrInvalid):
		return newProblem(http.StatusUnprocessableEntity, probBadRequest, "%s", strings.TrimPrefix(err.Error(), "invalid: "))
	case errors.Is(err, ErrTenantNotFound):
		return notFound(fmt.Sprintf("tenant %q", tenant))
	case err != nil:
		return err
	}
	s.audit(r.Context(), tenant, p, "apikey.create", "api-keys/"+rec.ID, 0, "role "+string(rec.Role))
	w.Header().Set("Location", "/v1/api-keys/"+rec.ID)
	writeJSON(w, r, http.StatusCreated, createdKey{ID: rec.ID, Key: key, Prefix: rec.Prefix, Tenant: rec.Tenant, Name: rec.Name, Role: rec.Role, ExpiresAt: rec.ExpiresAt})
	return nil
}

// scopeTenant is the tenant a key-management or audit request acts on: the
// caller's own, or for an admin the ?tenant= one (default system).
func scopeTenant(r *http.Request, p *Principal) (string, *Problem) {
	t := r.URL.Query().Get("tenant")
	if t == "" || t == p.Tenant {
		return p.Tenant, nil
	}
	if p.Role != RoleAdmin {
		return "", newProblem(http.StatusForbidden, probForbidden, "only admin keys may name a tenant")
	}
	return t, nil
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request, p *Principal) error {
	tenant, prob := scopeTenant(r, p)
	if prob != nil {
		return prob
	}
	q, prob := parseList(r, s.routeFor(r))
	if prob != nil {
		return prob
	}
	if !tenantNameRe.MatchString(tenant) {
		return notFound(fmt.Sprintf("tenant %q", tenant))
	}
	ids, err := keysOf(r.Context(), s.st.keys, tenant+".*")
	if err != nil {
		return err
	}
	items := make([]APIKey, 0, len(ids))
	for _, k := range ids {
		var rec apiKeyRecord
		if _, found, err := getJSON(r.Context(), s.st.keys, k, &rec); err != nil {
			return err
		} else if found {
			s.keyStatus(&rec)
			items = append(items, rec.APIKey)
		}
	}
	if len(q.Order) == 0 {
		q.Order = []listquery.Order{{Field: "createdAt"}}
	}
	return writeList(w, r, items, q)
}

// keyFor finds the key of a path {id} the caller may manage: its own
// tenant's, or any for an admin. Anything else is 404.
func (s *Server) keyFor(r *http.Request, p *Principal) (apiKeyRecord, uint64, error) {
	id := r.PathValue("id")
	rec, rev, found, err := s.lookupKey(r.Context(), id)
	if err != nil {
		return rec, 0, err
	}
	if !found || (p.Role != RoleAdmin && rec.Tenant != p.Tenant) {
		return rec, 0, notFound(fmt.Sprintf("API key %q", id))
	}
	s.keyStatus(&rec)
	return rec, rev, nil
}

func (s *Server) getKey(w http.ResponseWriter, r *http.Request, p *Principal) error {
	rec, rev, err := s.keyFor(r, p)
	if err != nil {
		return err
	}
	w.Header().Set("ETag", kvETag(rev))
	writeJSON(w, r, http.StatusOK, rec.APIKey)
	return nil
}

func (s *Server) rotateKey(w http.ResponseWriter, r *http.Request, p *Principal) error {
	rec, rev, err := s.keyFor(r, p)
	if err != nil {
		return err
	}
	if prob := checkIfMatch(r, kvETag(rev), false); prob != nil {
		return prob
	}
	if rec.RevokedAt != nil {
		return newProblem(http.StatusConflict, probConflict, "API key %s is revoked; create a new one", rec.ID)
	}
	key := newKey(rec.ID)
	now := s.now().UTC()
	rec.Hash, rec.RotatedAt = hashKey(key), &now
	b, _ := json.Marshal(rec)
	if _, err := s.st.keys.Update(r.Context(), rec.Tenant+"."+rec.ID, b, rev); err != nil {
		if isConflict(err) {
			return newProblem(http.StatusPreconditionFailed, probPrecondition, "API key %s changed meanwhile; retry", rec.ID)
		}
		return err
	}
	s.audit(r.Context(), rec.Tenant, p, "apikey.rotate", "api-keys/"+rec.ID, 0, "")
	writeJSON(w, r, http.StatusOK, createdKey{ID: rec.ID, Key: key, Prefix: rec.Prefix, Tenant: rec.Tenant, Name: rec.Name, Role: rec.Role, ExpiresAt: rec.ExpiresAt})
	return nil
}

func (s *Server) revokeKey(w http.ResponseWriter, r *http.Request, p *Principal) error {
	rec, rev, err := s.keyFor(r, p)
	if err != nil {
		return err
	}
	if prob := checkIfMatch(r, kvETag(rev), true); prob != nil {
		return prob
	}
	if rec.RevokedAt == nil {
		now := s.now().UTC()
		rec.RevokedAt = &now
		b, _ := json.Marshal(rec)
		if _, err := s.st.keys.Update(r.Context(), rec.Tenant+"."+rec.ID, b, rev); err != nil {
			if isConflict(err) {
				return newProblem(http.StatusPreconditionFailed, probPrecondition, "API key %s changed meanwhile; retry", rec.ID)
			}
			return err
		}
		s.audit(r.Context(), rec.Tenant, p, "apikey.revoke", "api-keys/"+rec.ID, 0, "")
	}
	s.keyStatus(&rec)
	writeJSON(w, r, http.StatusOK, rec.APIKey)
	return nil
}

func kvETag(rev uint64) string { return `"` + strconv.FormatUint(rev, 10) + `"` }

// checkIfMatch enforces If-Match against the current ETag: 428 when required
// and missing, 412 when stale. "*" matches any existing version.
func checkIfMatch(r *http.Request, etag string, required bool) *Problem {
	im := r.Header.Get("If-Match")
	if im == "" {
		if required {
			return newProblem(http.StatusPreconditionRequired, probPrecondRequired, "send If-Match with the ETag you read (%s), or * to overwrite any version", etag)
		}
		return nil
	}
	if etagListContains(im, etag) || etagListContains(im, strings.Trim(etag, `"`)) || etagListContains(`"`+strings.Trim(im, `" `)+`"`, etag) {
		return nil
	}
	return newProblem(http.StatusPreconditionFailed, probPrecondition, "If-Match %s is stale: the current version is %s; read it again", im, etag)
}
