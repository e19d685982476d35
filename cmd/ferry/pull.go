package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"strings"

	"github.com/ferryhq/ferry/lang"
)

func init() {
	var sf serverFlags
	var dryRun bool
	register(&command{
		name:  "pull",
		usage: "pull [DIR] [-dry-run] [--server URL] [--api-key KEY]",
		summary: `Write the server's current configuration files into DIR.

Changes made through the REST API are stored as new revisions of the HCL files;
pull brings them back into git. Files of the revision are created or
overwritten; no file is deleted: configuration files in DIR that the revision
does not have are listed as a warning.`,
		examples: `  ferry pull                # into the current directory
  ferry pull -dry-run .     # only list what would change
  ferry pull && git diff`,
		flags: func(fs *flag.FlagSet) {
			sf.declare(fs)
			fs.BoolVar(&dryRun, "dry-run", false, "list what would change without writing")
		},
		run: func(c *ctx, args []string) int {
			dir, err := dirArg(args)
			if err != nil {
				return c.errorf("%v", err)
			}
			cl, err := sf.client()
			if err != nil {
				return c.errorf("%v", err)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			cur, err := cl.config(ctx)
			if err != nil {
				return c.errorf("%v", err)
			}
			if cur.Revision == 0 || len(cur.Files) == 0 {
				fmt.Fprintln(c.stdout, "The tenant has no configuration on the server yet: nothing to pull.")
				return 0
			}
			for _, name := range sortedKeys(cur.Files) {
				if name == "" || strings.Contains(name, `\`) || !filepath.IsLocal(filepath.FromSlash(name)) || path.Clean(name) != name {
					return c.errorf("the server's revision %d has a file named %q, which is not a relative path; nothing was written", cur.Revision, name)
				}
			}
			if !dryRun {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					return c.errorf("%v", err)
				}
			}
			verb := map[bool]string{false: "", true: " (dry run)"}[dryRun]
			var created, updated, same int
			for _, name := range sortedKeys(cur.Files) {
				p := filepath.Join(dir, filepath.FromSlash(name))
				content := cur.Files[name]
				old, err := os.ReadFile(p)
				switch {
				case err == nil && string(old) == content:
					same++
					continue
				case err == nil:
					updated++
					fmt.Fprintf(c.stdout, "  ~ %s\n", p)
				case os.IsNotExist(err):
					created++
					fmt.Fprintf(c.stdout, "  + %s\n", p)
				default:
					return c.errorf("%v", err)
				}
				if dryRun {
					continue
				}
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					return c.errorf("%v", err)
				}
				if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
					return c.errorf("%v", err)
				}
			}
			if entries, err := os.ReadDir(dir); err == nil {
				for _, e := range entries {
					if _, ok := cur.Files[e.Name()]; !ok && !e.IsDir() && lang.IsConfigFile(e.Name()) {
						fmt.Fprintf(c.stderr, "Warning: %s is not in revision %d on the server; it was left alone. Delete it to match the server, or ferry apply it.\n",
							filepath.Join(dir, e.Name()), cur.Revision)
					}
				}
			}
			if created+updated == 0 {
				fmt.Fprintf(c.stdout, "%s already matches revision %d (%s).\n", dir, cur.Revision, plural(int64(same), "file", "files"))
				return 0
			}
			fmt.Fprintf(c.stdout, "Pulled revision %d into %s%s: %d created, %d updated, %d unchanged.\n", cur.Revision, dir, verb, created, updated, same)
			return 0
		},
	})
}
