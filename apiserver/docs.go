package apiserver

import (
	_ "embed"
	"net/http"
)

// docsHTML is the interactive API reference: one self-contained page (no
// external scripts, styles or fonts) that renders /openapi.json and can send
// requests with a key typed into it.
//
//go:embed docs/index.html
var docsHTML []byte

func (s *Server) docs(w http.ResponseWriter, r *http.Request, _ *Principal) error {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, err := w.Write(docsHTML)
	return err
}
