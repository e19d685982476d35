package engine

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"

	"github.com/ferryhq/ferry/connectors"
	"github.com/ferryhq/ferry/lang"
)

// CheckConnectors runs each connector's Check (connectors.Connector.Check) on
// the connections of cfg and on the sources and targets that use them, with
// cfg.Dir and cfg.Root: a server calls it when it compiles a tenant's files,
// so that a file path leading out of the tenant's directory is refused at
// plan and apply time. Secrets are not known yet; the connector checks the
// values they hold when a run opens the connection.
func CheckConnectors(cfg *lang.Config) hcl.Diagnostics {
	env := cfg.Env()
	var diags hcl.Diagnostics
	bad := map[string]bool{} // connections already reported
	for _, name := range sortedKeys(cfg.Connections) {
		c := cfg.Connections[name]
		if c == nil {
			continue
		}
		ct, ok := connectors.Lookup(c.Type)
		if !ok || ct.Check == nil {
			continue
		}
		if err := ct.Check(env, knownBeforeRun(c.Config), cty.NilVal, cty.NilVal); err != nil {
			bad[name] = true
			r := c.DeclRange
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Not allowed on this server",
				Detail: fmt.Sprintf("Connection %q: %s.", name, err), Subject: &r})
		}
	}
	for _, name := range sortedKeys(cfg.Integrations) {
		in := cfg.Integrations[name]
		if in == nil {
			continue
		}
		check := func(role, conn string, v cty.Value, rng hcl.Range) {
			c := cfg.Connections[conn]
			if c == nil || bad[conn] {
				return
			}
			ct, ok := connectors.Lookup(c.Type)
			if !ok || ct.Check == nil {
				return
			}
			source, target := cty.NilVal, cty.NilVal
			if role == "source" {
				source = knownBeforeRun(v)
			} else {
				target = knownBeforeRun(v)
			}
			if err := ct.Check(env, knownBeforeRun(c.Config), source, target); err != nil {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Not allowed on this server",
					Detail: fmt.Sprintf("Integration %q %s: %s.", name, role, err), Subject: &rng})
			}
		}
		if s := in.Source; s != nil {
			check("source", s.Connection, s.Config, s.DeclRange)
		}
		if t := in.Target; t != nil {
			check("target", t.Connection, t.Config, t.DeclRange)
		}
	}
	return diags
}

// knownBeforeRun returns v unmarked, with the values that hold a secret
// (placeholders until a run resolves them) or are unknown null.
func knownBeforeRun(v cty.Value) cty.Value {
	if v == cty.NilVal || v.Type() == cty.NilType {
		return cty.EmptyObjectVal
	}
	out, err := cty.Transform(v, func(_ cty.Path, x cty.Value) (cty.Value, error) {
		if !x.IsKnown() {
			return cty.NullVal(x.Type()), nil
		}
		for m := range x.Marks() {
			if _, ok := m.(lang.SecretMark); ok {
				return cty.NullVal(x.Type()), nil
			}
		}
		return x, nil
	})
	if err != nil {
		return cty.EmptyObjectVal
	}
	out, _ = out.UnmarkDeep()
	return out
}
