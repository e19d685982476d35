package main

import (
	"context"
	"strings"
	"testing"
	"time"
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
