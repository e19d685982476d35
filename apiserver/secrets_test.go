package apiserver

import (
	"strings"
	"testing"
)

func TestSecretsWriteOnlyAndEncrypted(t *testing.T) {
	e := newEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	const value = "s3cr3t-value-xyzzy"
	r := e.expect(e.do("PUT", "/v1/secrets/erp_token", user, map[string]any{"value": value}), 201)
	if strings.Contains(string(r.body), value) {
		t.Fatal("PUT echoes the value")
	}
	etag := r.header.Get("ETag")
	// Replacing needs If-Match (428), a stale one 412, * or the version works.
	e.expect(e.do("PUT", "/v1/secrets/erp_token", user, map[string]any{"value": "v2"}), 428)
	e.expect(e.do("PUT", "/v1/secrets/erp_token", user, map[string]any{"value": "v2"}, "If-Match", `"999"`), 412)
	r = e.expect(e.do("PUT", "/v1/secrets/erp_token", user, map[string]any{"value": value}, "If-Match", etag), 200)
	e.expect(e.do("PUT", "/v1/secrets/erp_token", user, map[string]any{"value": value}, "If-Match", "*"), 200)

	l := e.expect(e.do("GET", "/v1/secrets", user, nil), 200)
	if strings.Contains(string(l.body), value) || !strings.Contains(string(l.body), `"erp_token"`) || !strings.Contains(string(l.body), "updatedAt") {
		t.Fatalf("list: %s", l.body)
	}
	// No route returns the value.
	for _, rt := range e.s.Routes() {
		if rt.Method != "GET" {
			continue
		}
		b := e.do("GET", fillParams(rt.Pattern, map[string]string{"name": "erp_token"}), user, nil).body
		if strings.Contains(string(b), value) {
			t.Errorf("GET %s shows the secret", rt.Pattern)
		}
	}
	// Encrypted at rest.
	ent, err := e.s.st.secrets.Get(t.Context(), secretKey("acme", "erp_token"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(ent.Value()), value) {
		t.Fatal("the secret is stored in clear")
	}
	// The run resolver decrypts; another tenant's resolver does not see it.
	got, err := e.s.Secrets("acme")("erp_token")
	if err != nil || got != value {
		t.Fatalf("resolver: %q %v", got, err)
	}
	if _, err := e.s.Secrets("other")("erp_token"); err == nil {
		t.Fatal("another tenant resolves acme's secret")
	}
	// A ciphertext copied to another tenant does not decrypt (AD binds it).
	if _, err := e.s.st.secrets.Put(t.Context(), secretKey("other", "erp_token"), ent.Value()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Secrets("other")("erp_token"); err == nil {
		t.Fatal("a copied ciphertext decrypts for another tenant")
	}
	// Delete: If-Match required.
	e.expect(e.do("DELETE", "/v1/secrets/erp_token", user, nil), 428)
	e.expect(e.do("DELETE", "/v1/secrets/erp_token", user, nil, "If-Match", "*"), 204)
	e.expect(e.do("DELETE", "/v1/secrets/erp_token", user, nil, "If-Match", "*"), 404)
	if _, err := e.s.Secrets("acme")("erp_token"); err == nil {
		t.Fatal("deleted secret still resolves")
	}
	e.expect(e.do("PUT", "/v1/secrets/bad%20name", user, map[string]any{"value": "x"}), 404)
}

func TestSecretsDisabledWithoutMasterKey(t *testing.T) {
	e := newEnv(t)
	e.s.opts.MasterKey = nil
	user := e.tenantWithKey("acme", RoleUser)
	e.expect(e.do("PUT", "/v1/secrets/x", user, map[string]any{"value": "v"}), 503)
}

func TestAuditEntries(t *testing.T) {
	e := newEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	e.expect(e.apply(user, "acme", "a", "0"), 200)
	e.expect(e.do("POST", "/v1/revisions/1/rollback", user, nil), 200) // unchanged: no entry
	e.expect(e.apply(user, "acme", "b", "1"), 200)
	e.expect(e.do("POST", "/v1/revisions/1/rollback", user, nil), 200)
	e.expect(e.do("PUT", "/v1/secrets/tok", user, map[string]any{"value": "v"}), 201)
	e.expect(e.do("DELETE", "/v1/secrets/tok", user, nil, "If-Match", "*"), 204)
	k := e.expect(e.do("POST", "/v1/api-keys", user, map[string]any{"name": "x", "role": "viewer"}), 201).json(t)
	e.expect(e.do("POST", "/v1/api-keys/"+k["id"].(string)+"/rotate", user, nil), 200)
	e.expect(e.do("DELETE", "/v1/api-keys/"+k["id"].(string), user, nil, "If-Match", "*"), 200)

	l := e.expect(e.do("GET", "/v1/audit?pageSize=500&order=seq", user, nil), 200).json(t)
	var actions []string
	for _, it := range l["items"].([]any) {
		m := it.(map[string]any)
		actions = append(actions, m["action"].(string))
		if m["actor"] == "" || m["sourceIp"] != "127.0.0.1" || m["resource"] == "" || m["time"] == "" {
			t.Errorf("incomplete entry %v", m)
		}
	}
	want := "apikey.create config.apply config.apply config.rollback secret.create secret.delete apikey.create apikey.rotate apikey.revoke"
	if strings.Join(actions, " ") != want {
		t.Errorf("actions\n got %s\nwant %s", strings.Join(actions, " "), want)
	}
	f := e.expect(e.do("GET", "/v1/audit?filter=action[like]config.%25&filter=revision[gte]2", user, nil), 200).json(t)
	if f["total"].(float64) != 2 {
		t.Errorf("filtered: %s", mustJSON(f))
	}
	// System tenant log for admin: the tenant creation.
	s := e.expect(e.do("GET", "/v1/audit", testAdminKey, nil), 200).json(t)
	if s["total"].(float64) != 1 || s["items"].([]any)[0].(map[string]any)["action"] != "tenant.create" {
		t.Errorf("system log: %s", mustJSON(s))
	}
	e.expect(e.do("GET", "/v1/audit?tenant=acme", testAdminKey, nil), 200)
	e.expect(e.do("GET", "/v1/audit?tenant=other", user, nil), 403)
}
