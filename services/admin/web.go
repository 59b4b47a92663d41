package admin

import (
	_ "embed"
	"net/http"
	"strings"
)

// webHandler serves the web console's files and, under Prefix, the API
// with the console's session cookie: the console is a client of the API,
// not a second implementation.
func (s *server) webHandler() http.Handler {
	api := s.apiHandler(false)
	var files http.Handler
	if s.o.Static != nil {
		files = http.FileServerFS(s.o.Static)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, Prefix+"/") {
			api.ServeHTTP(w, r)
			return
		}
		securityHeaders(w)
		w.Header().Set("Cache-Control", "no-cache")
		if files == nil || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
			http.NotFound(w, r)
			return
		}
		files.ServeHTTP(w, r)
	})
}

// openAPIDoc is the API's OpenAPI 3 document, kept in the repository
// (openapi.json); a test holds it to the route table.
//
//go:embed openapi.json
var openAPIDoc []byte

func (s *server) openAPI(w http.ResponseWriter, r *http.Request, c caller) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openAPIDoc)
}
