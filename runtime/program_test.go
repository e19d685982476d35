package runtime

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/ferryhq/ferry/connectors/file"
	"github.com/ferryhq/ferry/engine"
	"github.com/ferryhq/ferry/lang"
)

const programHCL = `
ferry {
  tenant = "acme"
}

connection "files" {
  type = "file"
  path = "."
}

mapping "item" {
  key    = "string(id)"
  filter = "status != 'archived'"
  fields = {
    sku   = "'SKU-' + string(id)"
    name  = "upper(name)"
    cents = "int(float(price) * 100)"
  }
}

integration "items" {
  source {
    connection = connection.files
    path       = "in.ndjson"
    format     = "ndjson"
  }
  transform {
    mapping = mapping.item
  }
  target {
    connection = connection.files
    path       = "out.ndjson"
    format     = "ndjson"
    operation  = "upsert"
  }
  retry {
    max_attempts = 3
    initial      = "10ms"
  }
}
`

// writeProgram writes the config and n input records; every 10th is archived.
func writeProgram(t testing.TB, n int) (*engine.Program, string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(programHCL), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "in.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	for i := range n {
		status := "active"
		if i%10 == 9 {
			status = "archived"
		}
		fmt.Fprintf(w, `{"id":%d,"name":"product %d","status":%q,"price":"%d.25","tags":"a, b"}`+"\n", i, i, status, i%100)
	}
	w.Flush()
	f.Close()
	cfg, diags := lang.Load(dir, lang.LoadOptions{})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	prog, diags := engine.Compile(cfg)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	return prog, dir
}

func TestProgramRun(t *testing.T) {
	prog, dir := writeProgram(t, 2000)
	rt := openTest(t, Options{})
	res, err := rt.Run(context.Background(), "", prog, "items", RunOptions{Trigger: "cli", Revision: "r7"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != engine.RunSucceeded || res.Counts != (engine.Counts{Total: 2000, Success: 1800, Skipped: 200}) {
		t.Fatalf("%s %+v %s", res.Status, res.Counts, res.Error)
	}
	b, err := os.ReadFile(filepath.Join(dir, "out.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 1800 || !strings.Contains(string(b), `"sku":"SKU-0"`) {
		t.Fatalf("%d lines: %.200s", len(lines), b)
	}
	if _, err := rt.Run(context.Background(), "other", prog, "items", RunOptions{}); err == nil {
		t.Fatal("ran another tenant's configuration")
	}
	if _, err := rt.Run(context.Background(), "", prog, "nope", RunOptions{}); err == nil {
		t.Fatal("ran an undeclared integration")
	}
}

func TestProgramReplayEditedRecord(t *testing.T) {
	prog, dir := writeProgram(t, 0)
	in := `{"id":1,"name":"ok","status":"active","price":"2.50"}
{"id":2,"name":"broken","status":"active","price":"two"}
`
	if err := os.WriteFile(filepath.Join(dir, "in.ndjson"), []byte(in), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rt := openTest(t, Options{})
	res, err := rt.Run(ctx, "", prog, "items", RunOptions{RunID: "pr1", Revision: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != engine.RunPartial || res.Counts.Failed != 1 || len(res.Failures) != 1 || res.Failures[0].Key != "2" {
		t.Fatalf("%s %+v %+v", res.Status, res.Counts, res.Failures)
	}
	page, _ := rt.DLQ().List(ctx, "acme", DLQFilter{RunID: "pr1"})
	if page.Total != 1 || page.Entries[0].Revision != "r1" || page.Entries[0].Stage == engine.StageExecute {
		t.Fatalf("%+v", page.Entries)
	}
	e, err := rt.DLQ().Replay(ctx, "acme", page.Entries[0].ID, ProgramJobs("acme", prog, nil, "r2"),
		ReplayOptions{Record: []byte(`{"id":2,"name":"fixed","status":"active","price":"2.00"}`)})
	if err != nil || e.Status != DLQReplayed || e.Events[0].Revision != "r2" {
		t.Fatalf("%+v %v", e, err)
	}
	run, _ := rt.Runs().Get(ctx, "acme", "pr1")
	if run.Status != engine.RunSucceeded || run.Counts != (engine.Counts{Total: 2, Success: 2}) {
		t.Fatalf("%s %+v", run.Status, run.Counts)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "out.ndjson"))
	if !strings.Contains(string(b), `"name":"FIXED"`) {
		t.Fatalf("replayed record not in the target: %s", b)
	}
}
