package engine

import (
	"strings"
	"testing"

	_ "github.com/ferryhq/ferry/connectors/file"
	"github.com/ferryhq/ferry/lang"
)

func TestCheckConnectors(t *testing.T) {
	root := t.TempDir()
	src := `
connection "up" {
  type = "file"
  path = "../elsewhere"
}

connection "ok" {
  type = "file"
  path = "data"
}

connection "vault" {
  type = "file"
  # ("a/b" is inside; the placeholder of the secret would seem to lead out)
  path = "${secret("dir")}/../../in"
}

integration "reads_out" {
  source {
    connection = connection.ok
    path       = "../../etc/*.conf"
  }
  target {
    connection = connection.ok
    path       = "out.ndjson"
  }
}

integration "writes_out" {
  source {
    connection = connection.vault
    path       = "in.json"
  }
  target {
    connection = connection.up
    path       = "out.ndjson"
  }
}
`
	cfg, diags := lang.LoadSources(root, map[string][]byte{"main.hcl": []byte(src)}, lang.LoadOptions{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	// Unconfined (ferry run): nothing to say.
	if d := CheckConnectors(cfg); len(d) != 0 {
		t.Fatalf("unconfined: %v", d)
	}
	cfg.Root = root
	d := CheckConnectors(cfg)
	var got []string
	for _, x := range d {
		got = append(got, x.Subject.Filename+": "+x.Detail)
	}
	// connection.up once (not again for the target using it); the source
	// of reads_out; the secret in vault's path is left to the run.
	want := []string{
		`main.hcl: Connection "up": file connection: path "../elsewhere" leads out of the tenant's files directory; on this server paths must be relative to the tenant's files directory and stay inside it.`,
		`main.hcl: Integration "reads_out" source: file source: path "../../etc/*.conf" leads out of the tenant's files directory; on this server paths must be relative to the tenant's files directory and stay inside it.`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
