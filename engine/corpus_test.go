package engine_test

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"

	_ "github.com/ferryhq/ferry/connectors/file"
	"github.com/ferryhq/ferry/engine"
	"github.com/ferryhq/ferry/lang"
)

// wantLine is one line of a corpus case's want file: <file>:<line>: <summary>.
type wantLine struct {
	File    string
	Line    int
	Summary string
}

func readWant(path string) ([]wantLine, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []wantLine
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		loc, summary, ok := strings.Cut(line, ": ")
		file, lineNo, ok2 := strings.Cut(loc, ":")
		num, err := strconv.Atoi(lineNo)
		if !ok || !ok2 || err != nil {
			return nil, fmt.Errorf("%s:%d: want lines are <file>:<line>: <summary>", path, n)
		}
		out = append(out, wantLine{File: file, Line: num, Summary: summary})
	}
	return out, sc.Err()
}

func diagString(cfg *lang.Config, diags hcl.Diagnostics) string {
	var sb strings.Builder
	_ = lang.WriteDiagnostics(&sb, cfg.Files, diags, false)
	return sb.String()
}

// TestBadCorpus validates (lang.Load, then engine.Compile) every testdata/bad/<case>
// directory with the real connectors, and checks that each diagnostic its want
// file lists is reported, at that file and line.
func TestBadCorpus(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join("..", "testdata", "bad", "*"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, dir := range dirs {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			continue
		}
		n++
		t.Run(filepath.Base(dir), func(t *testing.T) {
			wants, err := readWant(filepath.Join(dir, "want"))
			if err != nil {
				t.Fatal(err)
			}
			if len(wants) == 0 {
				t.Fatal("want file lists no diagnostics")
			}
			var cfg *lang.Config
			var diags hcl.Diagnostics
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("validation panicked: %v", r)
					}
				}()
				cfg, diags = lang.Load(dir, lang.LoadOptions{})
				// Compile even a config with errors, as validate does, so
				// expression problems are reported in the same pass.
				_, cdiags := engine.Compile(cfg)
				diags = append(diags, cdiags...)
			}()
			if cfg == nil {
				t.Fatal("Load returned a nil config")
			}
			got := map[wantLine]bool{}
			for _, d := range diags {
				if d.Subject == nil {
					continue
				}
				rel, err := filepath.Rel(dir, d.Subject.Filename)
				if err != nil {
					rel = d.Subject.Filename
				}
				got[wantLine{File: filepath.ToSlash(rel), Line: d.Subject.Start.Line, Summary: d.Summary}] = true
			}
			for _, w := range wants {
				if !got[w] {
					t.Errorf("missing diagnostic %s:%d: %s; got:\n%s", w.File, w.Line, w.Summary, diagString(cfg, diags))
				}
			}
			// Rendering must work for every case, snippets included.
			if s := diagString(cfg, diags); !strings.Contains(s, "Error: ") {
				t.Errorf("rendered diagnostics lack an error:\n%s", s)
			}
		})
	}
	if n < 25 {
		t.Errorf("corpus has %d cases, want at least 25", n)
	}
}
