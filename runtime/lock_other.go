//go:build !unix

package runtime

import "os"

// lockDataDir is a no-op where flock is not available: do not run two ferry
// processes on one data directory there.
func lockDataDir(dir string) (release func(), err error) {
	return func() {}, os.MkdirAll(dir, 0o750)
}
