package apiserver

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/runtime"
)

// Options.AuditRetention is the audit stream's age limit, set again by
// every server that opens it; 0 keeps the log for good.
func TestAuditRetention(t *testing.T) {
	rt, err := runtime.Open(context.Background(), runtime.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	open := func(d time.Duration) error {
		s, err := New(rt, Options{AdminKey: testAdminKey, MasterKey: bytes.Repeat([]byte{7}, 32), AuditRetention: d})
		if err == nil {
			s.Close(context.Background())
		}
		return err
	}
	maxAge := func() time.Duration {
		st, err := rt.JetStream().Stream(t.Context(), AuditStream)
		if err != nil {
			t.Fatal(err)
		}
		return st.CachedInfo().Config.MaxAge
	}
	for _, d := range []time.Duration{400 * 24 * time.Hour, 0, time.Hour} {
		if err := open(d); err != nil {
			t.Fatalf("audit retention %s: %v", d, err)
		}
		if got := maxAge(); got != d {
			t.Errorf("audit retention %s: the stream's age limit is %s", d, got)
		}
	}
	if err := open(time.Second); err == nil || !strings.Contains(err.Error(), "at least") {
		t.Errorf("audit retention 1s: %v", err)
	}
}
