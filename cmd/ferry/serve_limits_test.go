package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhq/ferry/apiserver"
)

// startTestServer is ferry serve on a random loopback port with its data in
// a temporary directory; it stops with the test.
func startTestServer(t *testing.T, o *serveOptions) *ferryServer {
	t.Helper()
	o.listen = "127.0.0.1:0"
	o.conn.dataDir = t.TempDir()
	out := &lockedBuffer{}
	s, err := startServer(context.Background(), &ctx{stdout: out, stderr: out}, o)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	s.serve()
	t.Cleanup(func() {
		if err := s.shutdown(); err != nil {
			t.Logf("shutdown: %v", err)
		}
	})
	return s
}

// TestServeHTTPLimits: the http.Server of ferry serve bounds header size and
// every phase of a request, and lets the longest legitimate answer (a sync
// event waiting for its run) finish.
func TestServeHTTPLimits(t *testing.T) {
	s := startTestServer(t, &serveOptions{})
	h := s.http
	if h.ReadHeaderTimeout <= 0 || h.ReadHeaderTimeout > 30*time.Second {
		t.Errorf("ReadHeaderTimeout %s", h.ReadHeaderTimeout)
	}
	if h.ReadTimeout <= 0 || h.IdleTimeout <= 0 || h.WriteTimeout <= 0 {
		t.Errorf("timeouts: read %s, write %s, idle %s", h.ReadTimeout, h.WriteTimeout, h.IdleTimeout)
	}
	if h.WriteTimeout <= apiserver.MaxSyncWait {
		t.Errorf("WriteTimeout %s cuts off a sync event waiting up to %s", h.WriteTimeout, apiserver.MaxSyncWait)
	}
	if h.MaxHeaderBytes <= 0 || h.MaxHeaderBytes > 1<<20 {
		t.Errorf("MaxHeaderBytes %d", h.MaxHeaderBytes)
	}

	// Headers over the limit: 431, from the real server.
	req, _ := http.NewRequest("GET", s.url+"/healthz", nil)
	req.Header.Set("X-Big", strings.Repeat("b", h.MaxHeaderBytes+4096))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("a %d-byte header: %d, want 431", h.MaxHeaderBytes+4096, res.StatusCode)
	}
	res, err = http.Get(s.url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Errorf("healthz: %d", res.StatusCode)
	}
}

// slowServer serves h with short limits on a loopback port.
func slowServer(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newHTTPServer(h, slog.New(slog.DiscardHandler), httpLimits{
		readHeader: 300 * time.Millisecond, read: time.Second, write: 2 * time.Second, idle: time.Second, maxHeaderBytes: 4096,
	})
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// drip writes s one byte every interval until it is written or the
// connection fails.
func drip(c net.Conn, s string, interval time.Duration) {
	for i := range len(s) {
		if _, err := c.Write([]byte{s[i]}); err != nil {
			return
		}
		time.Sleep(interval)
	}
}

// cutOff waits for the server to close c; it fails if the connection is
// still open after within.
func cutOff(t *testing.T, c net.Conn, within time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	_, err := io.Copy(io.Discard, c) // until EOF or reset
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the connection was still open after %s", within)
	}
}

// TestSlowClientsAreCutOff: a slowloris client (headers a byte at a time)
// and a client that sends its body slowly are disconnected after the read
// timeouts, whatever they still meant to send.
func TestSlowClientsAreCutOff(t *testing.T) {
	var served atomic.Int32
	var bodyErr atomic.Value
	addr := slowServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		if _, err := io.ReadAll(r.Body); err != nil {
			bodyErr.Store(err.Error())
			return
		}
		w.WriteHeader(204)
	}))

	t.Run("headers", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// 40 header bytes at 50 ms each would take 2 s; the server reads
		// headers for 300 ms.
		start := time.Now()
		go drip(c, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaa\r\n\r\n", 50*time.Millisecond)
		// Before ReadTimeout (1 s): ReadHeaderTimeout did it.
		cutOff(t, c, 900*time.Millisecond)
		if d := time.Since(start); d > 900*time.Millisecond {
			t.Errorf("cut off after %s", d)
		}
		if served.Load() != 0 {
			t.Error("the handler ran for a request whose headers never completed")
		}
	})

	t.Run("body", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		// 100 body bytes at 50 ms each would take 5 s; the server reads the
		// whole request for 1 s.
		go drip(c, strings.Repeat("b", 100), 50*time.Millisecond)
		cutOff(t, c, 3*time.Second)
		if bodyErr.Load() == nil {
			t.Error("the handler read the whole slow body")
		}
	})

	t.Run("header size", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("b", 8192)+"\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		status, _ := bufio.NewReader(c).ReadString('\n')
		if !strings.Contains(status, "431") {
			t.Errorf("status line %q, want 431", status)
		}
	})
}

// TestServeRateLimitFlagsAndEnv: the flags, or else FERRY_RATE_LIMIT and
// friends, reach the server; bad values are refused with what to write.
func TestServeRateLimitFlagsAndEnv(t *testing.T) {
	t.Setenv("FERRY_RATE_LIMIT", "5")
	t.Setenv("FERRY_RATE_BURST", "7")
	t.Setenv("FERRY_WEBHOOK_RATE_LIMIT", "-1")
	t.Setenv("FERRY_WEBHOOK_RATE_BURST", "")
	o := serveOptions{rateBurst: 3} // a flag wins over its variable
	if err := o.rateLimitsFromEnv(); err != nil {
		t.Fatal(err)
	}
	if o.rateLimit != 5 || o.rateBurst != 3 || o.webhookRateLimit != -1 || o.webhookRateBurst != 0 {
		t.Errorf("%+v", o)
	}
	for env, v := range map[string]string{"FERRY_RATE_LIMIT": "fast", "FERRY_RATE_BURST": "0", "FERRY_WEBHOOK_RATE_LIMIT": "NaN"} {
		t.Run(env, func(t *testing.T) {
			t.Setenv(env, v)
			o := serveOptions{}
			err := o.rateLimitsFromEnv()
			if err == nil || !strings.Contains(err.Error(), env) {
				t.Errorf("%s=%s: %v", env, v, err)
			}
		})
	}

	// A burst of 1 at a rate of one request a minute: the second is 429.
	t.Setenv("FERRY_RATE_LIMIT", "")
	t.Setenv("FERRY_WEBHOOK_RATE_LIMIT", "")
	t.Setenv("FERRY_ADMIN_KEY", "serve-limits-admin-key-0123456789")
	s := startTestServer(t, &serveOptions{rateLimit: 1.0 / 60, rateBurst: 1})
	get := func() *http.Response {
		req, _ := http.NewRequest("GET", s.url+"/v1/tenants", nil)
		req.Header.Set("Authorization", "ApiKey serve-limits-admin-key-0123456789")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	if r := get(); r.StatusCode != 200 {
		t.Fatalf("first request: %d", r.StatusCode)
	}
	r := get()
	if r.StatusCode != 429 || r.Header.Get("Retry-After") == "" {
		t.Errorf("second request: %d, Retry-After %q", r.StatusCode, r.Header.Get("Retry-After"))
	}
}
