package apiserver

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/ferryhq/ferry/apiserver/listquery"
	"github.com/ferryhq/ferry/lang"
)

func contextWithTimeout(r *http.Request, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), d)
}

var pathParamRe = regexp.MustCompile(`\{([A-Za-z_][A-Za-z0-9_]*)(\.\.\.)?\}`)

// OpenAPI builds the OpenAPI 3.1 document of the route table.
func (s *Server) OpenAPI() map[string]any {
	g := &schemaGen{components: map[string]any{}}
	paths := map[string]map[string]any{}
	for _, rt := range s.routes {
		path := pathParamRe.ReplaceAllString(rt.Pattern, "{$1}")
		op := map[string]any{
			"operationId": operationID(rt),
			"summary":     rt.Summary,
			"tags":        []string{rt.Tag},
		}
		var params []any
		for _, m := range pathParamRe.FindAllStringSubmatch(rt.Pattern, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		if rt.List {
			params = append(params,
				map[string]any{"name": "page", "in": "query", "schema": map[string]any{"type": "integer", "minimum": 1, "default": 1}},
				map[string]any{"name": "pageSize", "in": "query", "schema": map[string]any{"type": "integer", "minimum": 1, "maximum": listquery.MaxPageSize, "default": listquery.DefaultPageSize}},
				map[string]any{"name": "filter", "in": "query", "description": "field[op]value, repeatable; ops: " + strings.Join(listquery.Ops, ", ") + "; fields: " + strings.Join(rt.ListFields, ", "),
					"schema": map[string]any{"type": "array", "items": map[string]any{"type": "string"}}, "style": "form", "explode": true},
				map[string]any{"name": "order", "in": "query", "description": "field or field[desc]; fields: " + strings.Join(rt.ListFields, ", "), "schema": map[string]any{"type": "string"}},
			)
		}
		qnames := make([]string, 0, len(rt.Query))
		for n := range rt.Query {
			qnames = append(qnames, n)
		}
		sort.Strings(qnames)
		for _, n := range qnames {
			params = append(params, map[string]any{"name": n, "in": "query", "description": rt.Query[n], "schema": map[string]any{"type": "string"}})
		}
		if rt.IfMatch || rt.Method == "PUT" || rt.Method == "DELETE" {
			params = append(params, map[string]any{"name": "If-Match", "in": "header", "required": rt.IfMatch, "schema": map[string]any{"type": "string"},
				"description": "the ETag read before (412 when stale, 428 when missing)"})
		}
		if params != nil {
			op["parameters"] = params
		}
		if rt.Request != nil {
			content := map[string]any{}
			types := rt.RequestTypes
			if len(types) == 0 {
				types = []string{"application/json"}
			}
			for _, mt := range types {
				sch := g.schema(reflect.TypeOf(rt.Request))
				if mt == mediaJSONPatch {
					sch = jsonPatchSchema
				}
				content[mt] = map[string]any{"schema": sch}
			}
			op["requestBody"] = map[string]any{"required": true, "content": content}
		}
		status := rt.Status
		if status == 0 {
			status = 200
		}
		resp := map[string]any{"description": http.StatusText(status)}
		switch v := rt.Response.(type) {
		case nil:
		case string:
			resp["content"] = map[string]any{v: map[string]any{}}
		default:
			resp["content"] = map[string]any{"application/json": map[string]any{"schema": g.schema(reflect.TypeOf(v))}}
		}
		responses := map[string]any{itoa(status): resp, "default": map[string]any{"$ref": "#/components/responses/Problem"}}
		op["responses"] = responses
		if len(rt.Roles) > 0 {
			op["security"] = []any{map[string]any{"ApiKey": []string{}}, map[string]any{"Bearer": []string{}}}
			roles := make([]string, len(rt.Roles))
			for i, r := range rt.Roles {
				roles[i] = string(r)
			}
			op["x-ferry-roles"] = roles
			op["description"] = "Roles: " + strings.Join(roles, ", ") + "."
		} else {
			op["security"] = []any{}
		}
		if paths[path] == nil {
			paths[path] = map[string]any{}
		}
		paths[path][strings.ToLower(rt.Method)] = op
	}
	g.components["Problem"] = g.schema(reflect.TypeOf(Problem{}))
	return map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{
			"title":       "ferry API",
			"version":     lang.Version,
			"description": "Configuration as revisions of HCL files, and as REST resources derived from them (every write is a new revision), API keys, secrets, audit. Authenticate with `Authorization: ApiKey <key>` (or `Bearer <key>`). Errors are application/problem+json.",
		},
		"paths": paths,
		"components": map[string]any{
			"schemas": g.components,
			"securitySchemes": map[string]any{
				"ApiKey": map[string]any{"type": "apiKey", "in": "header", "name": "Authorization", "description": "ApiKey <key>"},
				"Bearer": map[string]any{"type": "http", "scheme": "bearer"},
			},
			"responses": map[string]any{
				"Problem": map[string]any{"description": "An error (RFC 9457)", "content": map[string]any{"application/problem+json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/Problem"}}}},
			},
		},
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func operationID(rt Route) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(rt.Method))
	for _, part := range strings.FieldsFunc(rt.Pattern, func(r rune) bool { return r == '/' || r == '-' || r == '.' || r == '{' || r == '}' }) {
		if part == "v1" {
			continue
		}
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}

// jsonPatchSchema is an RFC 6902 JSON Patch document.
var jsonPatchSchema = map[string]any{"type": "array", "items": map[string]any{
	"type":     "object",
	"required": []string{"op", "path"},
	"properties": map[string]any{
		"op":    map[string]any{"enum": []string{"add", "remove", "replace", "move", "copy", "test"}},
		"path":  map[string]any{"type": "string"},
		"from":  map[string]any{"type": "string"},
		"value": map[string]any{},
	},
}}

type schemaGen struct{ components map[string]any }

var timeType = reflect.TypeOf(time.Time{})

func (g *schemaGen) schema(t reflect.Type) map[string]any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case t == reflect.TypeOf(json.RawMessage{}):
		return map[string]any{}
	}
	switch t.Kind() {
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string", "contentEncoding": "base64"}
		}
		return map[string]any{"type": "array", "items": g.schema(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": g.schema(t.Elem())}
	case reflect.Interface:
		return map[string]any{}
	case reflect.Struct:
		name := componentName(t)
		if _, done := g.components[name]; !done {
			g.components[name] = map[string]any{} // cycles
			props := map[string]any{}
			var required []string
			g.fields(t, props, &required)
			sch := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
			if len(required) > 0 {
				sort.Strings(required)
				sch["required"] = required
			}
			g.components[name] = sch
		}
		return map[string]any{"$ref": "#/components/schemas/" + name}
	}
	return map[string]any{}
}

func (g *schemaGen) fields(t reflect.Type, props map[string]any, required *[]string) {
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			g.fields(f.Type, props, required)
			continue
		}
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		props[name] = g.schema(f.Type)
		if !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero") && f.Type.Kind() != reflect.Pointer {
			*required = append(*required, name)
		}
	}
}

// componentName: exported names as they are; generic list envelopes and
// unexported request types get readable names.
func componentName(t reflect.Type) string {
	n := t.Name()
	if i := strings.IndexByte(n, '['); i >= 0 {
		elem := n[i+1 : len(n)-1]
		elem = elem[strings.LastIndexByte(elem, '.')+1:]
		return elem + "List"
	}
	return strings.ToUpper(n[:1]) + n[1:]
}

func (s *Server) openapi(w http.ResponseWriter, r *http.Request, _ *Principal) error {
	w.Header().Set("Access-Control-Allow-Origin", "*")
	writeJSON(w, r, http.StatusOK, s.OpenAPI())
	return nil
}
