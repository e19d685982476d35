package apiserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/ferryhq/ferry/connectors"
	"github.com/ferryhq/ferry/engine"
)

// connectionTestTimeout bounds a connector's check.
const connectionTestTimeout = 15 * time.Second

// connectorType is one entry of GET /v1/connector-types.
type connectorType struct {
	Type        string `json:"type"`
	Description string `json:"description"`
	// Schemas are JSON Schemas of the connection block's attributes and of
	// the connector-specific attributes of an integration's source and
	// target blocks (absent when the connector cannot be used in that role).
	Schemas map[string]any `json:"schemas"`
}

type connectionTestResponse struct {
	OK         bool   `json:"ok"`
	Error      string `json:"error,omitempty"`
	DurationMs int64  `json:"durationMs"`
}

func (s *Server) connectorTypes(w http.ResponseWriter, r *http.Request, _ *Principal) error {
	out := []connectorType{}
	for _, t := range connectors.Types() {
		c, ok := connectors.Lookup(t)
		if !ok {
			continue
		}
		out = append(out, connectorType{Type: c.Type, Description: c.Description, Schemas: c.Schemas()})
	}
	writeJSON(w, r, http.StatusOK, out)
	return nil
}

// testConnection opens a connection of the current configuration with the
// tenant's secrets and runs the connector's check (connectors.Tester). The
// answer is 200 whether the check passed or not; 422 when the connector has
// no check.
func (s *Server) testConnection(w http.ResponseWriter, r *http.Request, p *Principal) error {
	_, cfg, _, err := s.lookupResource(r, p, resourceKinds[0])
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	c := cfg.Connections[name]
	if _, ok := connectors.Lookup(c.Type); !ok {
		return newProblem(http.StatusUnprocessableEntity, probBadRequest, "connection %q: this server has no connector of type %q", name, c.Type)
	}
	start := time.Now()
	sc := s.scrubbedSecrets(p.Tenant) // the check's errors may carry them
	conn, err := engine.OpenConnection(cfg, name, sc.Resolve)
	if err != nil {
		writeJSON(w, r, http.StatusOK, connectionTestResponse{Error: sc.Err(err).Error(), DurationMs: time.Since(start).Milliseconds()})
		return nil
	}
	if c, ok := conn.(io.Closer); ok {
		defer c.Close() // a postgres pool, say
	}
	tester, ok := conn.(connectors.Tester)
	if !ok {
		return newProblem(http.StatusUnprocessableEntity, probBadRequest, "connectors of type %q have no connection check; run an integration that uses connection %q to try it", c.Type, name)
	}
	ctx, cancel := context.WithTimeout(r.Context(), connectionTestTimeout)
	defer cancel()
	err = sc.Err(tester.Test(ctx))
	resp := connectionTestResponse{OK: err == nil, DurationMs: time.Since(start).Milliseconds()}
	if err != nil {
		resp.Error = err.Error()
		if errors.Is(err, context.DeadlineExceeded) {
			resp.Error = fmt.Sprintf("the check did not finish within %s: %s", connectionTestTimeout, err)
		}
	}
	writeJSON(w, r, http.StatusOK, resp)
	return nil
}
