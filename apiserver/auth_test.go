package apiserver

import (
	"strings"
	"testing"
	"time"
)

func TestAuthMissingAndInvalid(t *testing.T) {
	e := newEnv(t)
	user := e.tenantWithKey("acme", RoleUser)

	r := e.expect(e.do("GET", "/v1/config", "", nil), 401)
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("content type %q", ct)
	}
	if r.header.Get("WWW-Authenticate") == "" {
		t.Error("no WWW-Authenticate")
	}
	e.expect(e.do("GET", "/v1/config", "fy_nope", nil), 401)
	// Right shape, wrong secret.
	forged := user[:len(user)-1] + string("0123456789"[strings.IndexByte("0123456789", user[len(user)-1])%9+1])
	if user[len(user)-1] < '0' || user[len(user)-1] > '9' {
		forged = user[:len(user)-1] + "0"
	}
	e.expect(e.do("GET", "/v1/config", forged, nil), 401)
	e.expect(e.do("GET", "/v1/config", "", nil, "Authorization", "Basic "+user), 401)

	// ApiKey and Bearer both work.
	e.expect(e.do("GET", "/v1/config", user, nil), 200)
	e.expect(e.do("GET", "/v1/config", "", nil, "Authorization", "Bearer "+user), 200)
	e.expect(e.do("GET", "/v1/config", "", nil, "Authorization", "bearer "+user), 200)
}

func TestKeyFormatAndStorage(t *testing.T) {
	e := newEnv(t)
	e.expect(e.do("POST", "/v1/tenants", testAdminKey, map[string]any{"name": "acme"}), 201)
	r := e.expect(e.do("POST", "/v1/api-keys", testAdminKey, map[string]any{"name": "ci", "role": "user", "tenant": "acme"}), 201).json(t)
	key := r["key"].(string)
	id := r["id"].(string)
	if _, ok := parseKeyID(key); !ok || !strings.HasPrefix(key, "fy_"+id+"_") || len(key) != 3+8+1+32 {
		t.Fatalf("key %q has not the format fy_<8>_<32>", key)
	}
	if r["prefix"] != "fy_"+id || r["role"] != "user" || r["tenant"] != "acme" {
		t.Errorf("answer %v", r)
	}
	if _, ok := r["expiresAt"]; !ok {
		t.Error("expiresAt missing")
	}
	// Stored: the hash, never the key.
	entry, err := e.s.st.keys.Get(t.Context(), "acme."+id)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(entry.Value()), key) || strings.Contains(string(entry.Value()), key[12:]) {
		t.Fatal("the key is stored in clear")
	}
	if !strings.Contains(string(entry.Value()), hashKey(key)) {
		t.Fatal("the key's hash is not stored")
	}
	// Listing and getting never show it.
	ukey := e.key("acme", RoleUser)
	for _, p := range []string{"/v1/api-keys", "/v1/api-keys/" + id} {
		b := string(e.expect(e.do("GET", p, ukey, nil), 200).body)
		if strings.Contains(b, key[12:]) || strings.Contains(b, hashKey(key)) || strings.Contains(b, `"hash"`) {
			t.Errorf("%s shows the secret or its hash: %s", p, b)
		}
	}
}

func TestKeyExpiry(t *testing.T) {
	e := newEnv(t)
	e.tenantWithKey("acme", RoleUser)
	exp := e.clock.Now().Add(time.Hour)
	r := e.expect(e.do("POST", "/v1/api-keys", testAdminKey, map[string]any{"name": "short", "role": "viewer", "tenant": "acme", "expiresAt": exp}), 201).json(t)
	key := r["key"].(string)
	e.expect(e.do("GET", "/v1/config", key, nil), 200)
	e.clock.Add(time.Hour)
	p := e.expect(e.do("GET", "/v1/config", key, nil), 401).json(t)
	if !strings.Contains(p["detail"].(string), "expired") {
		t.Errorf("detail %q", p["detail"])
	}
	// An expiry in the past is refused.
	e.expect(e.do("POST", "/v1/api-keys", testAdminKey, map[string]any{"name": "old", "role": "viewer", "tenant": "acme", "expiresAt": e.clock.Now().Add(-time.Minute)}), 422)
}

func TestKeyRotateAndRevoke(t *testing.T) {
	e := newEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	r := e.expect(e.do("POST", "/v1/api-keys", user, map[string]any{"name": "ci", "role": "user"}), 201).json(t)
	old, id := r["key"].(string), r["id"].(string)
	e.expect(e.do("GET", "/v1/config", old, nil), 200)

	rot := e.expect(e.do("POST", "/v1/api-keys/"+id+"/rotate", user, nil), 200).json(t)
	fresh := rot["key"].(string)
	if fresh == old || rot["id"] != id {
		t.Fatalf("rotate: %v", rot)
	}
	e.expect(e.do("GET", "/v1/config", old, nil), 401)
	e.expect(e.do("GET", "/v1/config", fresh, nil), 200)

	// Revoke needs If-Match.
	e.expect(e.do("DELETE", "/v1/api-keys/"+id, user, nil), 428)
	e.expect(e.do("DELETE", "/v1/api-keys/"+id, user, nil, "If-Match", `"1"`), 412)
	g := e.expect(e.do("GET", "/v1/api-keys/"+id, user, nil), 200)
	etag := g.header.Get("ETag")
	rv := e.expect(e.do("DELETE", "/v1/api-keys/"+id, user, nil, "If-Match", etag), 200).json(t)
	if rv["status"] != "revoked" {
		t.Errorf("status %v", rv["status"])
	}
	p := e.expect(e.do("GET", "/v1/config", fresh, nil), 401).json(t)
	if !strings.Contains(p["detail"].(string), "revoked") {
		t.Errorf("detail %v", p["detail"])
	}
	e.expect(e.do("POST", "/v1/api-keys/"+id+"/rotate", user, nil), 409)
	list := e.expect(e.do("GET", "/v1/api-keys?filter=status[eq]revoked", user, nil), 200).json(t)
	if list["total"].(float64) != 1 {
		t.Errorf("revoked keys: %v", list)
	}
}

func TestKeyIPRestriction(t *testing.T) {
	e := newEnv(t)
	e.tenantWithKey("acme", RoleUser)
	mk := func(cidr string) string {
		return e.expect(e.do("POST", "/v1/api-keys", testAdminKey, map[string]any{"name": "ip", "role": "viewer", "tenant": "acme", "allowedIps": []string{cidr}}), 201).json(t)["key"].(string)
	}
	e.expect(e.do("GET", "/v1/config", mk("10.0.0.0/8"), nil), 403) // the test client is 127.0.0.1
	e.expect(e.do("GET", "/v1/config", mk("127.0.0.0/8"), nil), 200)
	e.expect(e.do("GET", "/v1/config", mk("127.0.0.1"), nil), 200)
	e.expect(e.do("POST", "/v1/api-keys", testAdminKey, map[string]any{"name": "ip", "role": "viewer", "tenant": "acme", "allowedIps": []string{"nonsense"}}), 422)
}

func TestRoles(t *testing.T) {
	e := newEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	viewer := e.key("acme", RoleViewer)
	trigger := e.key("acme", RoleTrigger)

	e.expect(e.apply(user, "acme", "a", "0"), 200)
	// viewer: reads and plans, never writes.
	e.expect(e.do("GET", "/v1/config", viewer, nil), 200)
	e.expect(e.do("GET", "/v1/revisions", viewer, nil), 200)
	e.expect(e.do("POST", "/v1/config/plan", viewer, config("acme", "b")), 200)
	e.expect(e.apply(viewer, "acme", "b", "1"), 403)
	e.expect(e.do("POST", "/v1/revisions/1/rollback", viewer, nil), 403)
	e.expect(e.do("PUT", "/v1/secrets/x", viewer, map[string]any{"value": "v"}), 403)
	e.expect(e.do("POST", "/v1/api-keys", viewer, map[string]any{"name": "x", "role": "user"}), 403)
	// trigger: nothing of configuration, keys, secrets.
	for _, rt := range e.s.Routes() {
		if rt.Roles == nil || containsRole(rt.Roles, RoleTrigger) {
			continue
		}
		path := fillParams(rt.Pattern, map[string]string{"id": "AAAAAAAA", "n": "1", "other": "1", "name": "x", "tenant": "acme"})
		if r := e.do(rt.Method, path, trigger, nil); r.status != 403 {
			t.Errorf("trigger %s %s: %d, want 403", rt.Method, path, r.status)
		}
	}
	// user can't create admin keys nor keys of another tenant.
	e.expect(e.do("POST", "/v1/api-keys", user, map[string]any{"name": "x", "role": "admin"}), 422)
	e.tenantWithKey("other", RoleUser)
	e.expect(e.do("POST", "/v1/api-keys", user, map[string]any{"name": "x", "role": "user", "tenant": "other"}), 403)
	// admin routes: admin only.
	e.expect(e.do("GET", "/v1/tenants", user, nil), 403)
	e.expect(e.do("GET", "/v1/tenants", testAdminKey, nil), 200)
}

func containsRole(rs []Role, r Role) bool {
	for _, x := range rs {
		if x == r {
			return true
		}
	}
	return false
}

func fillParams(pattern string, values map[string]string) string {
	return pathParamRe.ReplaceAllStringFunc(pattern, func(m string) string {
		name := pathParamRe.FindStringSubmatch(m)[1]
		if v, ok := values[name]; ok {
			return v
		}
		return "x"
	})
}

func TestTenants(t *testing.T) {
	e := newEnv(t)
	r := e.expect(e.do("POST", "/v1/tenants", testAdminKey, map[string]any{"name": "acme"}), 201).json(t)
	if r["name"] != "acme" {
		t.Error(r)
	}
	e.expect(e.do("POST", "/v1/tenants", testAdminKey, map[string]any{"name": "acme"}), 409)
	e.expect(e.do("POST", "/v1/tenants", testAdminKey, map[string]any{"name": "Bad Name"}), 422)
	e.expect(e.do("POST", "/v1/tenants", testAdminKey, map[string]any{"name": "system"}), 422)
	e.expect(e.do("GET", "/v1/tenants/acme", testAdminKey, nil), 200)
	e.expect(e.do("GET", "/v1/tenants/nope", testAdminKey, nil), 404)
	e.expect(e.do("POST", "/v1/api-keys", testAdminKey, map[string]any{"name": "k", "role": "user", "tenant": "nope"}), 404)
	// Go API for --dev.
	if err := e.s.CreateTenant(t.Context(), "dev"); err != nil {
		t.Fatal(err)
	}
	if err := e.s.CreateTenant(t.Context(), "dev"); err != ErrTenantExists {
		t.Fatalf("second CreateTenant: %v", err)
	}
	k, err := e.s.CreateKey(t.Context(), "dev", "dev", "user")
	if err != nil {
		t.Fatal(err)
	}
	e.expect(e.do("GET", "/v1/config", k, nil), 200)
	list := e.expect(e.do("GET", "/v1/tenants?order=name[desc]", testAdminKey, nil), 200).json(t)
	items := list["items"].([]any)
	if len(items) != 2 || items[0].(map[string]any)["name"] != "dev" {
		t.Errorf("tenants %v", list)
	}
	// Admin-created admin key works as admin.
	ak := e.expect(e.do("POST", "/v1/api-keys", testAdminKey, map[string]any{"name": "ops", "role": "admin"}), 201).json(t)["key"].(string)
	e.expect(e.do("GET", "/v1/tenants", ak, nil), 200)
}
