package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"

	"github.com/ferryhq/ferry/connectors"
	"github.com/ferryhq/ferry/connectors/secretscrub"
)

// "leaky" does what careless connectors do: it puts its token in its
// errors, as written, escaped in a URL, quoted, and in a Basic auth header.
// Its sink refuses the record with id 1; fail_open fails at open, fail_read
// fails the read.
type leakyConn struct{ token string }

func (c leakyConn) echo() string {
	return fmt.Sprintf("GET https://erp.invalid/items?token=%s: 401; token %q; Authorization: Basic %s", url.QueryEscape(c.token), c.token,
		base64.StdEncoding.EncodeToString([]byte("api:"+c.token)))
}

func (c leakyConn) Source(cfg cty.Value) (connectors.Source, error) {
	v := cfg.GetAttr("fail_read")
	return leakySource{c: c, fail: !v.IsNull() && v.True()}, nil
}
func (c leakyConn) Sink(cty.Value) (connectors.Sink, error) { return leakySink{c}, nil }

type leakySource struct {
	c    leakyConn
	fail bool
}

func (s leakySource) Read(_ context.Context, _ connectors.ReadRequest, emit func(connectors.Record) error) error {
	if s.fail {
		return fmt.Errorf("leaky read failed: %s", s.c.echo())
	}
	for i := 1; i <= 2; i++ {
		if err := emit(connectors.Record{Data: map[string]any{"id": i}, Position: fmt.Sprint("item ", i)}); err != nil {
			return err
		}
	}
	return nil
}

type leakySink struct{ c leakyConn }

func (s leakySink) Write(_ context.Context, ws []connectors.Write) []error {
	errs := make([]error, len(ws))
	for i, w := range ws {
		if w.Key == "1" {
			errs[i] = connectors.Permanent(fmt.Errorf("leaky refused %s: %s", w.Key, s.c.echo()))
		}
	}
	return errs
}

func (s leakySink) Close(context.Context) error { return nil }

func init() {
	connectors.Register(&connectors.Connector{
		Type:        "leaky",
		Description: "test connector that puts its token in its errors",
		Connection: hcldec.ObjectSpec{
			"token":     &hcldec.AttrSpec{Name: "token", Type: cty.String, Required: true},
			"fail_open": &hcldec.AttrSpec{Name: "fail_open", Type: cty.Bool},
		},
		Source: hcldec.ObjectSpec{"fail_read": &hcldec.AttrSpec{Name: "fail_read", Type: cty.Bool}},
		Target: hcldec.ObjectSpec{},
		Open: func(_ connectors.Env, cfg cty.Value) (connectors.Connection, error) {
			c := leakyConn{cfg.GetAttr("token").AsString()}
			if v := cfg.GetAttr("fail_open"); !v.IsNull() && v.True() {
				return nil, fmt.Errorf("leaky cannot connect: %s", c.echo())
			}
			return c, nil
		},
	})
}

const leakyConfig = `ferry {
  tenant = "acme"
}

connection "erp" {
  type  = "leaky"
  token = secret("erp_token")
}

connection "erp_down" {
  type      = "leaky"
  token     = secret("erp_token")
  fail_open = true
}

mapping "m" {
  key = "string(id)"
  fields = {
    id = "id"
  }
}

integration "push" {
  source {
    connection = connection.erp
  }
  transform {
    mapping = mapping.m
  }
  target {
    connection = connection.erp
  }
}

integration "readfail" {
  source {
    connection = connection.erp
    fail_read  = true
  }
  transform {
    mapping = mapping.m
  }
  target {
    connection = connection.erp
  }
}

integration "down" {
  source {
    connection = connection.erp
  }
  transform {
    mapping = mapping.m
  }
  target {
    connection = connection.erp_down
  }
}
`

// TestLocalRunsScrubSecrets: ferry run (in memory and durable) and ferry dlq
// replay, with a connector that puts its secret in every error, print the
// errors with the secret scrubbed, and the durable store holds it nowhere.
func TestLocalRunsScrubSecrets(t *testing.T) {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	core := hex.EncodeToString(b)
	// Characters URLs, Go and JSON quote differently: each escaped form
	// still holds core, which is what the search looks for.
	secret := `s3cr3t/+"q"&` + core
	t.Setenv("FERRY_SECRET_ERP_TOKEN", secret)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(leakyConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	// Basic auth puts the secret at an offset of 4 bytes in base64: its
	// middle, in that alignment, must not show either.
	basic := base64.StdEncoding.EncodeToString([]byte("api:" + secret))
	basicCore := basic[8 : len(basic)-8]

	ferry := func(wantCode int, args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		code := run(args, &out, &errb)
		all := out.String() + errb.String()
		if code != wantCode {
			t.Fatalf("ferry %s: exit %d, want %d\n%s", strings.Join(args, " "), code, wantCode, all)
		}
		for _, leaked := range []string{core, basicCore} {
			if strings.Contains(all, leaked) {
				t.Errorf("ferry %s shows the secret in clear:\n%s", strings.Join(args, " "), all)
			}
		}
		return all
	}
	scrubbed := func(what, out string) {
		t.Helper()
		if !strings.Contains(out, secretscrub.Mask) {
			t.Errorf("%s shows no scrubbed error: the test proves nothing there\n%s", what, out)
		}
	}

	// In memory: a failed record, a failed read, a target that does not open.
	scrubbed("run --in-memory push", ferry(1, "run", "--in-memory", "--integration", "push", dir))
	scrubbed("run --in-memory push --json", ferry(1, "run", "--in-memory", "--integration", "push", "--json", dir))
	scrubbed("run --in-memory readfail", ferry(1, "run", "--in-memory", "--integration", "readfail", dir))
	scrubbed("run --in-memory down", ferry(1, "run", "--in-memory", "--integration", "down", dir))

	// Durable: the same, then what the store keeps: runs, their errors, the
	// DLQ, and a replay that fails again.
	ferry(1, "run", "--integration", "push", "--run-id", "p1", dir) // its failed record is in the DLQ
	scrubbed("run readfail", ferry(1, "run", "--integration", "readfail", "--run-id", "r1", dir))
	out := ferry(1, "run", "--integration", "down", "--run-id", "d1", dir)
	scrubbed("run down", out)
	scrubbed("runs show p1", ferry(0, "runs", "show", "p1", "--config", dir))
	scrubbed("runs show r1", ferry(0, "runs", "show", "r1", "--config", dir))
	scrubbed("runs ls", ferry(0, "runs", "--json", "--config", dir))
	dlq := ferry(0, "dlq", "--run", "p1", "--json", "--config", dir)
	scrubbed("dlq ls", dlq)
	var list struct {
		Entries []struct {
			ID string `json:"id"`
		} `json:"entries"`
	}
	if err := json.Unmarshal([]byte(dlq), &list); err != nil || len(list.Entries) != 1 {
		t.Fatalf("dlq ls: %v\n%s", err, dlq)
	}
	scrubbed("dlq show", ferry(0, "dlq", "show", list.Entries[0].ID, "--config", dir))
	scrubbed("dlq replay", ferry(1, "dlq", "replay", list.Entries[0].ID, "--config", dir, "--json"))

	// The store itself (JetStream files, not compressed): nothing in clear.
	found := false
	err := filepath.WalkDir(filepath.Join(dir, ".ferry"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(core)) {
			t.Errorf("%s holds the secret in clear", path)
		}
		found = found || bytes.Contains(b, []byte(secretscrub.Mask))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !found {
		t.Error("no scrubbed error in the store: the search proves nothing")
	}
}
