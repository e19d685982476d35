package httpconn

import (
	"context"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhq/ferry/connectors"
)

func TestAuthTypes(t *testing.T) {
	cases := []struct {
		name, auth string
		ok         func(r *http.Request) bool
	}{
		{"api_key header", `auth { 
  type = "api_key"
  header = "X-Key"
  value = "k1"
}`, func(r *http.Request) bool { return r.Header.Get("X-Key") == "k1" }},
		{"api_key default header", `auth { 
  type = "api_key"
  value = "k1"
}`, func(r *http.Request) bool { return r.Header.Get("X-API-Key") == "k1" }},
		{"api_key query", `auth { 
  type = "api_key"
  query = "api_key"
  value = "k1"
}`, func(r *http.Request) bool { return r.URL.Query().Get("api_key") == "k1" }},
		{"bearer", `auth { 
  type = "bearer"
  token = "t1"
}`, func(r *http.Request) bool { return r.Header.Get("Authorization") == "Bearer t1" }},
		{"basic", `auth { 
  type = "basic"
  username = "u"
  password = "p:w"
}`, func(r *http.Request) bool { u, p, ok := r.BasicAuth(); return ok && u == "u" && p == "p:w" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("X-Tenant") != "acme" || !tc.ok(r) {
					w.WriteHeader(http.StatusUnauthorized)
					fmt.Fprint(w, `{"error":"bad credentials"}`)
					return
				}
				fmt.Fprint(w, `[{"id":1}]`)
			}))
			defer srv.Close()
			conn := openConn(t, "", fmt.Sprintf("base_url = %q\nheaders = { X-Tenant = \"acme\" }\n%s", srv.URL, tc.auth))
			if err := conn.Test(context.Background()); err != nil {
				t.Fatalf("Test: %v", err)
			}
			recs, err := readAll(t, newSource(t, conn, `path = "/items"`), "")
			if err != nil || len(recs) != 1 {
				t.Fatalf("read: %v %v", recs, err)
			}
			// Wrong credentials: Test says so, permanently.
			bad := strings.NewReplacer(`"k1"`, `"x"`, `"t1"`, `"x"`, `"p:w"`, `"x"`).Replace(tc.auth)
			conn = openConn(t, "", fmt.Sprintf("base_url = %q\nheaders = { X-Tenant = \"acme\" }\n%s", srv.URL, bad))
			err = conn.Test(context.Background())
			if err == nil || connectors.CategoryOf(err) != connectors.CategoryPermanent || !strings.Contains(err.Error(), "rejected the credentials") {
				t.Fatalf("Test with bad credentials: %v", err)
			}
			if strings.Contains(err.Error(), "api_key=x") {
				t.Errorf("error shows the API key: %v", err)
			}
		})
	}
}

func TestAuthConfigErrors(t *testing.T) {
	c, _ := connectors.Lookup(Type)
	for src, want := range map[string]string{
		`base_url = "ftp://x"`: "not an http or https URL",
		"base_url = \"https://x\"\nauth {\n type = \"magic\"\n}":                      `unknown type "magic"`,
		"base_url = \"https://x\"\nauth {\n type = \"bearer\"\n}":                     "token is required",
		"base_url = \"https://x\"\nauth {\n type = \"oauth2\"\n client_id = \"a\"\n}": "token_url is required",
		"base_url = \"https://x\"\ntimeout = \"soon\"":                                "not a positive duration",
		"base_url = \"https://x\"\nrate_limit = 0":                                    "rate_limit must be a positive",
	} {
		_, err := c.Open(connectors.Env{}, decodeHCL(t, c.Connection, src))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", src, err, want)
		}
	}
}

// oauthServer issues expiring tokens and serves an API that accepts only the current one.
type oauthServer struct {
	*httptest.Server
	tokenRequests atomic.Int32
	current       atomic.Value // string
	expiresIn     int
}

func newOAuthServer(t *testing.T, expiresIn int) *oauthServer {
	o := &oauthServer{expiresIn: expiresIn}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		id, secret, ok := r.BasicAuth()
		if err := r.ParseForm(); err != nil || !ok || id != "cid" || secret != "csecret" || r.PostForm.Get("grant_type") != "client_credentials" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"invalid_client"}`)
			return
		}
		if r.PostForm.Get("scope") != "read write" {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":"invalid_scope"}`)
			return
		}
		n := o.tokenRequests.Add(1)
		tok := fmt.Sprintf("tok-%d", n)
		o.current.Store(tok)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":%d}`, tok, o.expiresIn)
	})
	mux.HandleFunc("GET /items", func(w http.ResponseWriter, r *http.Request) {
		cur, _ := o.current.Load().(string)
		if cur == "" || r.Header.Get("Authorization") != "Bearer "+cur {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, `[{"id":1}]`)
	})
	o.Server = httptest.NewServer(mux)
	t.Cleanup(o.Close)
	return o
}

func oauthConn(t *testing.T, o *oauthServer, secret string) *Connection {
	return openConn(t, "", fmt.Sprintf(`base_url = %q
auth {
  type          = "oauth2"
  token_url     = "%s/token"
  client_id     = "cid"
  client_secret = %q
  scopes        = ["read", "write"]
}`, o.URL, o.URL, secret))
}

func TestOAuth2CachesAndRefreshesBeforeExpiry(t *testing.T) {
	o := newOAuthServer(t, 100)
	conn := oauthConn(t, o, "csecret")
	clock := useFakeClock(conn)
	src := newSource(t, conn, `path = "/items"`)
	for range 5 {
		if _, err := readAll(t, src, ""); err != nil {
			t.Fatal(err)
		}
	}
	if n := o.tokenRequests.Load(); n != 1 {
		t.Fatalf("token requests after 5 reads = %d, want 1 (cached)", n)
	}
	// 100s tokens are replaced 10s before expiry: at 89s still cached, at 91s renewed.
	clock.advance(89 * time.Second)
	readAll(t, src, "")
	if n := o.tokenRequests.Load(); n != 1 {
		t.Fatalf("token requests at 89s = %d, want 1", n)
	}
	clock.advance(2 * time.Second)
	if _, err := readAll(t, src, ""); err != nil {
		t.Fatal(err)
	}
	if n := o.tokenRequests.Load(); n != 2 {
		t.Fatalf("token requests at 91s = %d, want 2 (refreshed before expiry)", n)
	}
	// The server revokes the token early: a 401 drops it and fetches a new one once.
	o.current.Store("revoked")
	if _, err := readAll(t, src, ""); err != nil {
		t.Fatalf("read after revocation: %v", err)
	}
	if n := o.tokenRequests.Load(); n != 3 {
		t.Fatalf("token requests after 401 = %d, want 3", n)
	}
}

func TestOAuth2BadClientIsPermanent(t *testing.T) {
	o := newOAuthServer(t, 100)
	conn := oauthConn(t, o, "wrong")
	err := conn.Test(context.Background())
	if err == nil || connectors.CategoryOf(err) != connectors.CategoryPermanent || !strings.Contains(err.Error(), "invalid_client") {
		t.Fatalf("got %v", err)
	}
}

func TestTLSWithCAFile(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"data":[{"id":7}]}`)
	}))
	defer srv.Close()
	dir := t.TempDir()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), ca, 0o600); err != nil {
		t.Fatal(err)
	}
	// Without the CA the certificate is unknown: a connection error.
	plain := openConn(t, dir, fmt.Sprintf("base_url = %q", srv.URL))
	if err := plain.Test(context.Background()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without ca_file: %v", err)
	}
	conn := openConn(t, dir, fmt.Sprintf("base_url = %q\ntls {\n ca_file = \"ca.pem\"\n}", srv.URL))
	recs, err := readAll(t, newSource(t, conn, `
path = "/x"
records = "data"`), "")
	if err != nil || len(recs) != 1 || recs[0].Data["id"] != int64(7) {
		t.Fatalf("read over TLS: %v %v", recs, err)
	}
	insecure := openConn(t, dir, fmt.Sprintf("base_url = %q\ntls {\n insecure_skip_verify = true\n}", srv.URL))
	if err := insecure.Test(context.Background()); err != nil {
		t.Fatalf("insecure_skip_verify: %v", err)
	}
	c, _ := connectors.Lookup(Type)
	_, err = c.Open(connectors.Env{Dir: dir}, decodeHCL(t, c.Connection, fmt.Sprintf("base_url = %q\ntls {\n cert_file = \"c.pem\"\n}", srv.URL)))
	if err == nil || !strings.Contains(err.Error(), "cert_file and key_file go together") {
		t.Fatalf("cert without key: %v", err)
	}
}
