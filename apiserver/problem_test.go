package apiserver

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestProblemJSONForBadBodies(t *testing.T) {
	e := newEnv(t)
	user := e.tenantWithKey("acme", RoleUser)
	big := `{"files":{"main.hcl":"` + strings.Repeat("x", 70<<10) + `"}}`
	for _, c := range []struct {
		name, body string
		status     int
		detail     string
	}{
		{"malformed", `{"files":`, 400, "malformed"},
		{"syntax", `{"files" "x"}`, 400, "malformed"},
		{"unknown field", `{"files":{},"bogus":1}`, 400, "unknown field"},
		{"wrong type", `{"files":"main.hcl"}`, 400, "files"},
		{"trailing", `{"files":{}} {}`, 400, "after"},
		{"empty", ``, 400, "empty"},
		{"oversized", big, 413, "limit"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := e.do("POST", "/v1/config/plan", user, []byte(c.body))
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.body)
			}
			if r.header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("content type %q", r.header.Get("Content-Type"))
			}
			p := r.json(t)
			for _, k := range []string{"type", "title", "status", "detail"} {
				if _, ok := p[k]; !ok {
					t.Errorf("no %s in %v", k, p)
				}
			}
			if !strings.Contains(strings.ToLower(p["detail"].(string)), c.detail) {
				t.Errorf("detail %q does not say %q", p["detail"], c.detail)
			}
		})
	}
	r := e.do("POST", "/v1/config/plan", user, `{}`, "Content-Type", "text/plain")
	if r.status != 415 {
		t.Errorf("text/plain: %d", r.status)
	}
	// Unknown route and method.
	r = e.expect(e.do("GET", "/v1/nope", user, nil), 404)
	if r.header.Get("Content-Type") != "application/problem+json" {
		t.Error("404 is not problem+json")
	}
	r = e.expect(e.do("DELETE", "/v1/config", user, nil), 405)
	if !strings.Contains(r.header.Get("Allow"), "PUT") {
		t.Errorf("Allow %q", r.header.Get("Allow"))
	}
}

func TestOpenAPIMatchesRoutes(t *testing.T) {
	e := newEnv(t)
	r := e.expect(e.do("GET", "/openapi.json", "", nil), 200)
	var doc struct {
		OpenAPI string                               `json:"openapi"`
		Paths   map[string]map[string]map[string]any `json:"paths"`
		Comps   struct {
			Schemas map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi %q", doc.OpenAPI)
	}
	want := map[string]bool{}
	for _, rt := range e.s.Routes() {
		want[strings.ToLower(rt.Method)+" "+rt.Pattern] = true
	}
	got := map[string]bool{}
	ids := map[string]bool{}
	for path, ops := range doc.Paths {
		for m, op := range ops {
			got[m+" "+path] = true
			id := op["operationId"].(string)
			if ids[id] {
				t.Errorf("duplicate operationId %s", id)
			}
			ids[id] = true
		}
	}
	for k := range want {
		if !got[k] {
			t.Errorf("route %s missing from the document", k)
		}
	}
	for k := range got {
		if !want[k] {
			t.Errorf("the document has %s, which is no route", k)
		}
	}
	// Every $ref resolves.
	for _, ref := range refRe.FindAllStringSubmatch(string(r.body), -1) {
		if _, ok := doc.Comps.Schemas[ref[1]]; !ok {
			t.Errorf("unresolved $ref %s", ref[1])
		}
	}
}

func TestDocsPageIsSelfContained(t *testing.T) {
	e := newEnv(t)
	r := e.expect(e.do("GET", "/docs", "", nil), 200)
	b := strings.ToLower(string(r.body))
	if !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") || !strings.Contains(b, "openapi.json") {
		t.Fatalf("docs: %s", r.header.Get("Content-Type"))
	}
	for _, bad := range []string{`src="http`, `src='http`, `href="http`, "//cdn", "@import", "url(http"} {
		if strings.Contains(b, bad) {
			t.Errorf("the docs page loads an external resource (%s)", bad)
		}
	}
}

func TestHealthAndMetrics(t *testing.T) {
	e := newEnv(t)
	e.expect(e.do("GET", "/healthz", "", nil), 200)
	e.expect(e.do("GET", "/readyz", "", nil), 200)
	user := e.tenantWithKey("acme", RoleUser)
	e.expect(e.do("GET", "/v1/config", user, nil), 200)
	e.expect(e.do("GET", "/v1/config", "", nil), 401)
	m := string(e.expect(e.do("GET", "/metrics", "", nil), 200).body)
	for _, want := range []string{
		`ferry_http_requests_total{code="200",method="GET",route="GET /v1/config"} 1`,
		`ferry_http_requests_total{code="401",method="GET",route="GET /v1/config"} 1`,
		`ferry_http_request_duration_seconds_bucket{code="200",method="GET",route="GET /v1/config"`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
