package apiserver

import (
	"maps"
	"slices"
	"strings"
	"testing"

	_ "github.com/ferryhq/ferry/connectors/file"
)

// TestTenantIsolation calls every route of the table with a key of another
// tenant. It is generated from Routes(), so a new route is covered by
// construction; a new path parameter needs a fixture below (the test fails
// until it has one).
//
//   - admin routes: 403 for a tenant key;
//   - tenant routes naming a resource ({id}, {n}, ...) of tenant A: 404, as for
//     a resource that does not exist; except PUT (create-or-replace), which acts
//     in the caller's own tenant;
//   - every answer is free of tenant A's data, and A's state is unchanged.
func TestTenantIsolation(t *testing.T) {
	e := newEnv(t)
	a := e.tenantWithKey("acme", RoleUser)
	b := e.tenantWithKey("beta", RoleUser)

	// Tenant A's resources, with markers that must never reach B.
	e.expect(e.apply(a, "acme", "alphamarker1", "0"), 200)
	// Revision 2 also has a connection, mapping, integration and schedule
	// named like the {name} fixture, so that B naming them must get 404.
	rev2 := config("acme", "alphamarker2")
	rev2["files"].(map[string]string)["resources.hcl"] = isolationResources
	e.expect(e.do("PUT", "/v1/config", a, rev2, "If-Match", "1"), 200)
	e.expect(e.do("PUT", "/v1/secrets/acme_only_secret", a, map[string]any{"value": "acme-secret-value"}), 201)
	ak := e.expect(e.do("POST", "/v1/api-keys", a, map[string]any{"name": "acme-key-marker", "role": "viewer"}), 201).json(t)
	aKeyID, aKey := ak["id"].(string), ak["key"].(string)
	// (A marker the request itself names, like a key id in the path, may be
	// echoed in the 404's detail.)
	asub := e.expect(e.do("POST", "/v1/subscriptions", a, map[string]any{"url": "http://alphamarker5.invalid/hook", "types": []string{"run.failed"}, "description": "acme-sub-marker"}), 201)
	aSubID, aSubETag := asub.json(t)["id"].(string), asub.header.Get("ETag")
	markers := []string{"alphamarker1", "alphamarker2", "alphamarker4", "alphamarker5", "nonexistent-acme", "acme_only_secret", "acme-secret-value", aKeyID, "acme-key-marker", aSubID, "acme-sub-marker"}
	auditBefore := len(mustAudit(t, e, "acme"))
	runID, entryID := isolationRunFixtures(t, e) // runs_isolation_test.go
	markers = append(markers, "acmerunmarker")

	fixtures := map[string]string{
		"id":     aKeyID,
		"n":      "2",
		"other":  "1",
		"name":   "acme_only_secret",
		"tenant": "acme",
		// runs, sync events, DLQ
		"run":           runID,
		"correlationId": runID,
		"entry":         entryID,
	}
	// Fixtures of routes whose parameter names mean another resource:
	// pattern prefix → parameter → value.
	routeFixtures := map[string]map[string]string{
		"/v1/subscriptions/": {"id": aSubID},
	}
	bodies := map[string]any{
		"POST /v1/api-keys":               map[string]any{"name": "x", "role": "viewer", "tenant": "acme"},
		"POST /v1/config/plan":            config("acme", "alphamarker3"),
		"PUT /v1/config":                  config("acme", "alphamarker3"),
		"PUT /v1/secrets/{name}":          map[string]any{"value": "beta-value"},
		"POST /v1/revisions/{n}/rollback": nil,
		"POST /v1/tenants":                map[string]any{"name": "gamma"},
		"PATCH /v1/tenants/{tenant}":      map[string]any{"settings": map[string]any{"restConfigWrites": false}},
		"PUT /v1/settings":                map[string]any{"restConfigWrites": true},
		"PUT /v1/subscriptions/{id}":      map[string]any{"url": "http://stolen.invalid/", "types": []string{"run.started"}},
		"POST /v1/sync-events":            map[string]any{"integration": "items"},
		"POST /v1/dlq/{entry}/replay":     map[string]any{"record": map[string]any{"id": 1}},
		"POST /v1/mappings/test":          map[string]any{"mapping": map[string]any{"fields": map[string]any{"x": "id"}}, "input": map[string]any{"id": 1}},
	}
	headers := map[string][]string{}
	for _, k := range resourceKinds {
		item := "/v1/" + k.plural + "/{name}"
		bodies["PUT "+item] = map[string]any{"type": "file"}
		bodies["PATCH "+item] = map[string]any{"workers": 2}
		headers["PATCH "+item] = []string{"Content-Type", mediaMergePatch}
		bodies["POST "+item+"/clone"] = map[string]any{"name": "stolen"}
	}
	bodies["POST /v1/mappings/{name}/test"] = map[string]any{"input": map[string]any{"id": 1}}
	// PUT (create-or-replace) runs last: it creates beta's own resources.
	routes := e.s.Routes()
	slices.SortStableFunc(routes, func(x, y Route) int {
		return boolInt(x.Method == "PUT") - boolInt(y.Method == "PUT")
	})
	for _, rt := range routes {
		if rt.Roles == nil {
			continue // public: no tenant data
		}
		params := pathParamRe.FindAllStringSubmatch(rt.Pattern, -1)
		for _, p := range params {
			if _, ok := fixtures[p[1]]; !ok {
				t.Fatalf("route %s %s: add a fixture for path parameter {%s} to this test", rt.Method, rt.Pattern, p[1])
			}
		}
		name := rt.Method + " " + rt.Pattern
		t.Run(name, func(t *testing.T) {
			fx := fixtures
			for prefix, o := range routeFixtures {
				if strings.HasPrefix(rt.Pattern, prefix) {
					fx = maps.Clone(fixtures)
					maps.Copy(fx, o)
				}
			}
			path := fillParams(rt.Pattern, fx)
			r := e.do(rt.Method, path, b, bodies[name], append([]string{"If-Match", "*"}, headers[name]...)...)
			adminOnly := !slices.Contains(rt.Roles, RoleUser)
			switch {
			case adminOnly:
				if r.status != 403 {
					t.Errorf("%s %s with a tenant key: %d, want 403", rt.Method, path, r.status)
				}
			case !rt.TenantScoped:
				t.Errorf("route %s takes tenant keys but is not TenantScoped", name)
			case len(params) > 0 && rt.Method != "PUT":
				if r.status != 404 {
					t.Errorf("%s %s with tenant beta's key: %d, want 404\n%s", rt.Method, path, r.status, r.body)
				}
			}
			for _, m := range markers {
				if strings.Contains(string(r.body), m) && !strings.Contains(path, m) {
					t.Errorf("%s %s shows tenant acme's data (%s): %s", rt.Method, path, m, r.body)
				}
			}
		})
	}

	// A's state is unchanged.
	g := e.expect(e.do("GET", "/v1/config", a, nil), 200)
	if g.header.Get("ETag") != `"2"` {
		t.Errorf("acme's configuration moved to %s", g.header.Get("ETag"))
	}
	if v, err := e.s.Secrets("acme")("acme_only_secret"); err != nil || v != "acme-secret-value" {
		t.Errorf("acme's secret: %q %v", v, err)
	}
	e.expect(e.do("GET", "/v1/config", aKey, nil), 200) // not rotated or revoked
	if st, err := e.s.settings(t.Context(), "acme"); err != nil || !st.RESTConfigWrites {
		t.Errorf("acme's settings: %+v %v", st, err)
	}
	if ok, err := e.s.IntegrationActive(t.Context(), "acme", "acme_only_secret"); err != nil || !ok {
		t.Errorf("acme's integration was deactivated: %v", err)
	}
	checkIsolationRunFixtures(t, e, runID, entryID)
	if g := e.expect(e.do("GET", "/v1/subscriptions/"+aSubID, a, nil), 200); g.header.Get("ETag") != aSubETag {
		t.Errorf("acme's subscription changed: ETag %s, was %s", g.header.Get("ETag"), aSubETag)
	}
	if n := len(mustAudit(t, e, "acme")); n != auditBefore {
		t.Errorf("acme's audit log grew from %d to %d entries", auditBefore, n)
	}
	// B's PUT of a secret with the same name is B's own.
	if v, err := e.s.Secrets("beta")("acme_only_secret"); err != nil || v != "beta-value" {
		t.Errorf("beta's secret: %q %v", v, err)
	}
}

const isolationResources = `connection "acme_only_secret" {
  type = "file"
  path = "/nonexistent-acme"
}

mapping "acme_only_secret" {
  fields = {
    alphamarker4 = "id"
  }
}

integration "acme_only_secret" {
  source {
    connection = connection.acme_only_secret
    path       = "in.json"
  }
  transform {
    mapping = mapping.acme_only_secret
  }
  target {
    connection = connection.acme_only_secret
    path       = "out.ndjson"
  }
}

schedule "acme_only_secret" {
  integration = integration.acme_only_secret
  cron        = "*/5 * * * *"
}
`

func mustAudit(t *testing.T, e *env, tenant string) []AuditEntry {
	t.Helper()
	es, err := e.s.auditEntries(t.Context(), tenant)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
