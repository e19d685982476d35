package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/apiserver"
)

// --idempotency-ttl out of range is refused before anything starts, naming
// the flag and the range; one in range serves.
func TestServeIdempotencyTTL(t *testing.T) {
	for _, ttl := range []time.Duration{500 * time.Millisecond, -time.Hour, 73 * time.Hour} {
		o := &serveOptions{listen: "127.0.0.1:0", idempotencyTTL: ttl}
		o.conn.dataDir = t.TempDir()
		out := &lockedBuffer{}
		s, err := startServer(context.Background(), &ctx{stdout: out, stderr: out}, o)
		if err == nil {
			s.shutdown()
			t.Errorf("--idempotency-ttl %s was accepted", ttl)
			continue
		}
		if !strings.Contains(err.Error(), "--idempotency-ttl") || !strings.Contains(err.Error(), "1s to 72h") {
			t.Errorf("--idempotency-ttl %s: %v", ttl, err)
		}
	}
	startTestServer(t, &serveOptions{idempotencyTTL: 2 * time.Hour})
}

// --audit-retention (or FERRY_AUDIT_RETENTION) takes days or a duration;
// one under the minimum, or unparsable, is refused before anything starts.
func TestServeAuditRetention(t *testing.T) {
	for _, tc := range []struct{ flag, env, want string }{
		{"1s", "", "--audit-retention 1s: must be at least"},
		{"", "soon", `FERRY_AUDIT_RETENTION="soon"`},
	} {
		t.Setenv("FERRY_AUDIT_RETENTION", tc.env)
		o := &serveOptions{listen: "127.0.0.1:0"}
		if tc.flag != "" {
			if err := o.auditRetention.Set(tc.flag); err != nil {
				t.Fatal(err)
			}
		}
		o.conn.dataDir = t.TempDir()
		out := &lockedBuffer{}
		s, err := startServer(context.Background(), &ctx{stdout: out, stderr: out}, o)
		if err == nil {
			s.shutdown()
			t.Errorf("flag %q env %q was accepted", tc.flag, tc.env)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("flag %q env %q: %v, want %q", tc.flag, tc.env, err, tc.want)
		}
	}
	t.Setenv("FERRY_AUDIT_RETENTION", "400d")
	s := startTestServer(t, &serveOptions{})
	st, err := s.rt.JetStream().Stream(t.Context(), apiserver.AuditStream)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.MaxAge; got != 400*24*time.Hour {
		t.Errorf("the audit stream's age limit is %s, want 400d", got)
	}
}
