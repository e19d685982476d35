package httpconn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ferryhq/ferry/connectors"
)

// serveOn starts an httptest server on addr ("127.0.0.2:0"), skipping the
// test where that address cannot be listened on.
func serveOn(t *testing.T, addr string, h http.Handler) *httptest.Server {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: h}}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

func openWith(t *testing.T, env connectors.Env, src string) *Connection {
	t.Helper()
	c, _ := connectors.Lookup(Type)
	conn, err := c.Open(env, decodeHCL(t, c.Connection, src))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return conn.(*Connection)
}

func wantDenied(t *testing.T, what string, err error, addr string) {
	t.Helper()
	var de *connectors.DeniedAddressError
	if !errors.As(err, &de) || connectors.CategoryOf(err) != connectors.CategoryPermanent ||
		!strings.Contains(err.Error(), "connecting to "+addr+" is not allowed on this server") || !strings.Contains(err.Error(), "--allow-networks") {
		t.Errorf("%s: %v\nwant a permanent refusal of %s naming --allow-networks", what, err, addr)
	}
}

// Under a network policy (a tenant's connection on a ferry server) the http
// connector cannot reach a denied address: not by IP, not by a name that
// resolves to it, not through a redirect from an allowed server, not for an
// OAuth2 token; and no proxy of the environment carries it elsewhere.
func TestNetPolicyRefusesDenied(t *testing.T) {
	var hits atomic.Int32
	denied := serveOn(t, "127.0.0.2:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/token" {
			fmt.Fprint(w, `{"access_token":"t","token_type":"bearer"}`)
			return
		}
		fmt.Fprint(w, `[{"id":2}]`)
	}))
	deniedAddr := denied.Listener.Addr().String()
	allowed := serveOn(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, denied.URL+"/secret", http.StatusFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `[{"id":1}]`)
	}))
	_, port, _ := net.SplitHostPort(allowed.Listener.Addr().String())
	ctx := context.Background()

	deny := connectors.Env{Net: connectors.NewNetPolicy(connectors.DefaultDeniedNetworks(), nil)}
	for _, base := range []string{allowed.URL, "http://localhost:" + port} {
		err := openWith(t, deny, fmt.Sprintf("base_url = %q", base)).Test(ctx)
		wantDenied(t, base, err, "127.0.0.1:"+port)
	}
	conn := openWith(t, deny, fmt.Sprintf("base_url = %q", allowed.URL))
	if tr := conn.client.Transport.(*http.Transport); tr.Proxy != nil {
		t.Error("under a network policy the transport uses the environment's proxy, which would dial where the policy cannot look")
	}

	// 127.0.0.1 allowed, 127.0.0.2 still denied.
	one := connectors.Env{Net: connectors.NewNetPolicy(connectors.DefaultDeniedNetworks(), []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")})}
	conn = openWith(t, one, fmt.Sprintf("base_url = %q", allowed.URL))
	recs, err := readAll(t, newSource(t, conn, `path = "/items"`), "")
	if err != nil || len(recs) != 1 {
		t.Fatalf("allowed server: %v %v", recs, err)
	}
	_, err = readAll(t, newSource(t, conn, `path = "/redirect"`), "")
	wantDenied(t, "redirect", err, deniedAddr)
	if err != nil && !strings.Contains(err.Error(), "redirected to "+denied.URL+"/secret") {
		t.Errorf("redirect: %v\nwant it to name where the redirect led", err)
	}
	oauth := openWith(t, one, fmt.Sprintf("base_url = %q\nauth {\n type = \"oauth2\"\n token_url = %q\n client_id = \"c\"\n client_secret = \"s\"\n}", allowed.URL, denied.URL+"/token"))
	_, err = readAll(t, newSource(t, oauth, `path = "/items"`), "")
	wantDenied(t, "oauth2 token", err, deniedAddr)
	if n := hits.Load(); n != 0 {
		t.Errorf("the denied server was reached %d times", n)
	}

	// Without a policy (ferry run), or with the address allowed, all is reached.
	for i, env := range []connectors.Env{{}, {Net: connectors.NewNetPolicy(connectors.DefaultDeniedNetworks(), []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")})}} {
		conn := openWith(t, env, fmt.Sprintf("base_url = %q", allowed.URL))
		if _, err := readAll(t, newSource(t, conn, `path = "/redirect"`), ""); err != nil {
			t.Errorf("env %d: redirect: %v", i, err)
		}
	}
	if n := hits.Load(); n != 2 {
		t.Errorf("the redirect target was reached %d times, want 2", n)
	}
}
