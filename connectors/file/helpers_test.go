package file

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/ferryhq/ferry/connectors"
)

// decodeHCL decodes src against spec the way the lang package does.
func decodeHCL(t testing.TB, spec hcldec.Spec, src string) cty.Value {
	t.Helper()
	f, diags := hclsyntax.ParseConfig([]byte(src), "test.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("parse %q: %s", src, diags)
	}
	v, diags := hcldec.Decode(f.Body, spec, nil)
	if diags.HasErrors() {
		t.Fatalf("decode %q: %s", src, diags)
	}
	return v
}

// openConn opens a file connection in dir with the given connection attributes.
func openConn(t testing.TB, dir, src string) connectors.Connection {
	t.Helper()
	c, ok := connectors.Lookup("file")
	if !ok {
		t.Fatal(`connector "file" is not registered`)
	}
	conn, err := c.Open(connectors.Env{Dir: dir}, decodeHCL(t, c.Connection, src))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return conn
}

func newSource(t testing.TB, conn connectors.Connection, src string) connectors.Source {
	t.Helper()
	s, err := conn.Source(decodeHCL(t, SourceSpec, src))
	if err != nil {
		t.Fatalf("source %q: %v", src, err)
	}
	return s
}

func newSink(t testing.TB, conn connectors.Connection, src string) connectors.Sink {
	t.Helper()
	s, err := conn.Sink(decodeHCL(t, TargetSpec, src))
	if err != nil {
		t.Fatalf("sink %q: %v", src, err)
	}
	return s
}

// readAll reads every record of a source.
func readAll(t testing.TB, s connectors.Source) ([]connectors.Record, error) {
	t.Helper()
	var recs []connectors.Record
	err := s.Read(context.Background(), connectors.ReadRequest{}, func(r connectors.Record) error {
		recs = append(recs, r)
		return nil
	})
	return recs, err
}

func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func readFileString(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// compact returns raw compacted, or raw itself when it is not valid JSON.
func compact(raw []byte) string {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}

func writeAll(t testing.TB, s connectors.Sink, recs ...map[string]any) {
	t.Helper()
	ws := make([]connectors.Write, len(recs))
	for i, r := range recs {
		ws[i] = connectors.Write{Operation: connectors.OpUpsert, Record: r}
	}
	if errs := s.Write(context.Background(), ws); errs != nil {
		t.Fatalf("write: %v", errs)
	}
}
