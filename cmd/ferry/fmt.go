package main

import (
	"bytes"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/ferryhq/ferry/lang"
	"github.com/hashicorp/hcl/v2"
	"github.com/rogpeppe/go-internal/diff"
)

func init() {
	var check, showDiff, recursive bool
	register(&command{
		name:    "fmt",
		usage:   "fmt [-check] [-diff] [-recursive] [DIR|FILE...]",
		summary: "Rewrite configuration files in the canonical format. Files with syntax errors are reported, never rewritten.",
		examples: `  ferry fmt                  # format *.hcl in the current directory
  ferry fmt -check -diff .   # in CI: list files that need formatting, show how, exit 3
  ferry fmt -recursive examples`,
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&check, "check", false, "don't write; list files that are not formatted and exit 3 if any")
			fs.BoolVar(&showDiff, "diff", false, "print the changes as a unified diff")
			fs.BoolVar(&recursive, "recursive", false, "also format files in subdirectories")
		},
		run: func(c *ctx, args []string) int {
			if len(args) == 0 {
				args = []string{"."}
			}
			files, err := fmtTargets(args, recursive)
			if err != nil {
				return c.errorf("%v", err)
			}
			bad, changed := false, 0
			for _, name := range files {
				src, err := os.ReadFile(name)
				if err != nil {
					c.errorf("%v", err)
					bad = true
					continue
				}
				out, diags := lang.Format(src, name)
				if diags.HasErrors() {
					lang.WriteDiagnostics(c.stderr, map[string]*hcl.File{name: {Bytes: src}}, diags, false)
					fmt.Fprintf(c.stderr, "%s: not formatted: fix the syntax errors above first.\n", name)
					bad = true
					continue
				}
				if bytes.Equal(src, out) {
					continue
				}
				changed++
				fmt.Fprintln(c.stdout, name)
				if showDiff {
					c.stdout.Write(diff.Diff("old/"+filepath.ToSlash(name), src, "new/"+filepath.ToSlash(name), out))
				}
				if !check {
					if err := os.WriteFile(name, out, 0o644); err != nil {
						c.errorf("%v", err)
						bad = true
					}
				}
			}
			switch {
			case bad:
				return 2
			case check && changed > 0:
				return 3
			}
			return 0
		},
	})
}

// fmtTargets expands the arguments into the configuration files to format.
func fmtTargets(args []string, recursive bool) ([]string, error) {
	var files []string
	for _, arg := range args {
		info, err := os.Stat(arg)
		if err != nil {
			return nil, fmt.Errorf("%s: no such file or directory", arg)
		}
		if !info.IsDir() {
			files = append(files, arg)
			continue
		}
		err = filepath.WalkDir(arg, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if path != arg && (!recursive || strings.HasPrefix(d.Name(), ".")) {
					return filepath.SkipDir
				}
				return nil
			}
			if strings.HasSuffix(path, ".hcl") {
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return files, nil
}
