package admin

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"regexp"
	"strings"
	"testing"

	"gatehouse/adminauth"
)

var update = flag.Bool("update", false, "rewrite openapi.json from the route table")

// queryParams are the routes' query parameters, for the document.
var queryParams = map[string][][2]string{
	"GET /services/{name}/logs": {{"lines", "integer: how many of the last lines (default 200)"}, {"follow", "1: stream the feed as server-sent events; 'all' as the name follows every service"}},
	"POST /config/apply":        {{"confirm_within", "duration such as 120s (default); 0s: no rollback"}},
	"POST /fetch/poll":          {{"account", "one account's name; none: all"}},
	"PUT /update":               {{"reboot", "1: reboot into the trial at once"}, {"allow_downgrade", "1: install a bundle older than the running firmware"}},
}

// openAPI builds the document from the route table.
func openAPI() map[string]any {
	errResp := func(d string) map[string]any {
		return map[string]any{"description": d, "content": map[string]any{"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/Error"}}}}
	}
	ref := func(name string) map[string]any { return map[string]any{"$ref": "#/components/responses/" + name} }
	errors := map[string]any{
		"BadRequest":   errResp("bad request or invalid config (problems lists every one)"),
		"Unauthorized": errResp("no, unknown or revoked credentials"),
		"Forbidden":    errResp("the caller's role is read"),
		"NotFound":     errResp("not found"),
		"Conflict":     errResp("refused by the appliance"),
		"Unavailable":  errResp("the service that answers this is not running"),
	}
	pathsDoc := map[string]any{}
	str := map[string]any{"type": "string"}
	strs := map[string]any{"type": "array", "items": str}
	wild := regexp.MustCompile(`\{([a-z]+)\}`)
	for _, rt := range routeTable() {
		op := map[string]any{
			"summary":          rt.Summary,
			"operationId":      strings.ToLower(rt.Method) + strings.NewReplacer("/", "_", "{", "", "}", "", ".", "_").Replace(rt.Path),
			"x-gatehouse-role": rt.Role,
			"security":         []any{map[string]any{"bearer": []any{}}, map[string]any{"session": []any{}}, map[string]any{"clientCertificate": []any{}}},
		}
		var params []any
		for _, m := range wild.FindAllStringSubmatch(rt.Path, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		for _, q := range queryParams[rt.Method+" "+rt.Path] {
			params = append(params, map[string]any{"name": q[0], "in": "query", "required": false, "description": q[1], "schema": map[string]any{"type": "string"}})
		}
		if params != nil {
			op["parameters"] = params
		}
		if rt.Path == "/setup" {
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{"schema": map[string]any{
				"type": "object", "additionalProperties": false, "properties": map[string]any{
					"hostname": str, "interface": str, "dhcp": map[string]any{"type": "boolean"}, "address": str, "gateway": str,
					"dns": strs, "ntp": strs, "domains": strs, "internal_server": str, "trusted_networks": strs, "admin_allow": strs, "ssh_key": str}}}}}
		}
		if rt.Path == "/update" {
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{"application/octet-stream": map[string]any{"schema": map[string]any{"type": "string", "format": "binary"}}}}
		} else if rt.Method == "PUT" || rt.Path == "/config/validate" {
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{"application/yaml": map[string]any{"schema": map[string]any{"type": "string"}}}}
		}
		ok := map[string]any{"description": "OK", "content": map[string]any{"application/json": map[string]any{"schema": map[string]any{"type": "object"}}}}
		if strings.HasSuffix(rt.Path, "/logs") {
			ok["content"].(map[string]any)["text/event-stream"] = map[string]any{"schema": map[string]any{"type": "string"}}
		}
		resp := map[string]any{"200": ok, "400": ref("BadRequest"), "401": ref("Unauthorized"), "404": ref("NotFound"),
			"409": ref("Conflict"), "503": ref("Unavailable")}
		if rt.Role == adminauth.RoleAdmin {
			resp["403"] = ref("Forbidden")
		}
		op["responses"] = resp
		p, _ := pathsDoc[Prefix+rt.Path].(map[string]any)
		if p == nil {
			p = map[string]any{}
			pathsDoc[Prefix+rt.Path] = p
		}
		p[strings.ToLower(rt.Method)] = op
	}
	pathsDoc[Prefix+"/session"].(map[string]any)["post"] = map[string]any{
		"summary": "log in to the web console (its port only): a password for admin, or an API token; sets the session cookie", "operationId": "post_session",
		"x-gatehouse-role": "none", "security": []any{},
		"requestBody": map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{"schema": map[string]any{
			"type": "object", "additionalProperties": false,
			"properties": map[string]any{"user": map[string]any{"type": "string"}, "password": map[string]any{"type": "string"}, "token": map[string]any{"type": "string"}}}}}},
		"responses": map[string]any{"200": map[string]any{"description": "logged in: name, role, csrf"}, "400": ref("BadRequest"), "401": ref("Unauthorized")},
	}
	return map[string]any{
		"openapi": "3.0.3",
		"info":    map[string]any{"title": "Gatehouse administration API", "version": "1"},
		"paths":   pathsDoc,
		"components": map[string]any{
			"responses": errors,
			"securitySchemes": map[string]any{
				"bearer":            map[string]any{"type": "http", "scheme": "bearer", "description": "gatehouse api token create NAME --role read|admin"},
				"session":           map[string]any{"type": "apiKey", "in": "cookie", "name": sessionCookie, "description": "the web console's session; send X-CSRF-Token on every request but GET"},
				"clientCertificate": map[string]any{"type": "mutualTLS", "description": "a certificate admin.client_ca signed (OpenAPI 3.1's scheme, named here for clients that read it)"},
			},
			"schemas": map[string]any{"Error": map[string]any{"type": "object", "required": []any{"error"}, "properties": map[string]any{
				"error": map[string]any{"type": "string"},
				"problems": map[string]any{"type": "array", "items": map[string]any{"type": "object", "properties": map[string]any{
					"file": map[string]any{"type": "string"}, "line": map[string]any{"type": "integer"}, "column": map[string]any{"type": "integer"},
					"field": map[string]any{"type": "string"}, "message": map[string]any{"type": "string"}}}}}}},
		},
	}
}

// The document in the repository is the route table's: every route is in
// it with its role, and it lists nothing the server does not serve.
func TestOpenAPIDocument(t *testing.T) {
	want, err := json.MarshalIndent(openAPI(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, '\n')
	if *update {
		if err := os.WriteFile("openapi.json", want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(openAPIDoc, want) {
		t.Fatal("openapi.json is not the route table's: run go test ./services/admin -run OpenAPI -update and review the diff")
	}
	var doc struct {
		Paths map[string]map[string]struct {
			Role string `json:"x-gatehouse-role"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatal(err)
	}
	n := 0
	for p, ops := range doc.Paths {
		for m, op := range ops {
			n++
			if m == "post" && p == Prefix+"/session" {
				continue
			}
			found := false
			for _, rt := range routeTable() {
				if Prefix+rt.Path == p && strings.ToLower(rt.Method) == m {
					found = rt.Role == op.Role
				}
			}
			if !found {
				t.Errorf("%s %s: documented, but not served with role %q", m, p, op.Role)
			}
		}
	}
	if n != len(routeTable())+1 {
		t.Errorf("%d operations documented, %d routes and the login", n, len(routeTable()))
	}
}
