package shopify

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ferryhq/ferry/connectors"
)

// base_url may name any host: under a network policy (a tenant's
// connection on a ferry server) the connection dials through it, so a
// base_url on this server is refused, permanently, and reached once allowed.
func TestNetPolicyBaseURL(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		fmt.Fprint(w, `{"data":{"shop":{"name":"acme"}}}`)
	}))
	defer srv.Close()
	c, _ := connectors.Lookup("shopify")
	test := func(env connectors.Env) error {
		conn, err := c.Open(env, decodeHCL(t, c.Connection, `
store    = "acme.myshopify.com"
token    = "shpat_test"
base_url = "`+srv.URL+`"
`))
		if err != nil {
			t.Fatal(err)
		}
		return conn.(connectors.Tester).Test(context.Background())
	}
	err := test(connectors.Env{Net: connectors.NewNetPolicy(connectors.DefaultDeniedNetworks(), nil)})
	var de *connectors.DeniedAddressError
	if !errors.As(err, &de) || connectors.CategoryOf(err) != connectors.CategoryPermanent || !strings.Contains(err.Error(), "--allow-networks") {
		t.Errorf("base_url on loopback: %v, want a permanent refusal naming --allow-networks", err)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the refused server was reached %d times", n)
	}
	if err := test(connectors.Env{Net: connectors.NewNetPolicy(connectors.DefaultDeniedNetworks(), []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")})}); err != nil {
		t.Errorf("base_url on loopback, allowed: %v", err)
	}
}
