//go:build unix

package runtime

import (
	"errors"
	"testing"
)

// Two processes must not open one embedded store: the second is told it is busy.
func TestLockDataDir(t *testing.T) {
	dir := t.TempDir()
	release, err := lockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockDataDir(dir); !errors.Is(err, ErrDataDirBusy) {
		t.Fatalf("second lock: got %v, want ErrDataDirBusy", err)
	}
	release()
	release, err = lockDataDir(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	release()
}
