package postgres

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"

	"github.com/ferryhq/ferry/connectors"
)

// Under a network policy (a tenant's connection on a ferry server) the pool
// dials through it: a database url naming this server, by address, by a
// name resolving to it or by a Unix socket, is refused when the pool
// connects, permanently, before any byte is sent. No database is needed:
// the listener below only counts connections.
func TestNetPolicyRefusesDial(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	test := func(env connectors.Env, url string) error {
		conn, err := Open(env, cty.ObjectVal(map[string]cty.Value{"url": cty.StringVal(url), "max_connections": cty.NullVal(cty.Number)}))
		if err != nil {
			return err
		}
		defer conn.(*Connection).Close()
		return conn.(*Connection).Test(context.Background())
	}
	deny := connectors.Env{Net: connectors.NewNetPolicy(connectors.DefaultDeniedNetworks(), nil)}
	for _, tt := range []struct{ url, want string }{
		{"postgres://u@127.0.0.1:" + port + "/app?sslmode=disable&connect_timeout=5", "connecting to 127.0.0.1:" + port + " is not allowed"},
		{"postgres://u@localhost:" + port + "/app?sslmode=disable&connect_timeout=5", "is not allowed on this server"},
		{"postgres://u@169.254.169.254:5432/app?sslmode=disable&connect_timeout=5", "cloud metadata service"},
		{"host=" + t.TempDir() + " user=u dbname=app sslmode=disable connect_timeout=5", "Unix socket"},
	} {
		err := test(deny, tt.url)
		var de *connectors.DeniedAddressError
		if !errors.As(err, &de) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "--allow-networks") ||
			connectors.CategoryOf(err) != connectors.CategoryPermanent {
			t.Errorf("%s: %v\nwant a permanent refusal containing %q", tt.url, err, tt.want)
		}
	}
	select {
	case <-accepted:
		t.Error("a refused dial reached the listener")
	default:
	}

	// Allowed, the dial goes through (the listener is no database: the
	// connection then fails, transiently, but it was made).
	allow := connectors.Env{Net: connectors.NewNetPolicy(connectors.DefaultDeniedNetworks(), []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")})}
	err = test(allow, "postgres://u@127.0.0.1:"+port+"/app?sslmode=disable&connect_timeout=5")
	var de *connectors.DeniedAddressError
	if err == nil || errors.As(err, &de) {
		t.Fatalf("allowed address: %v, want a failure of the handshake, not of the policy", err)
	}
	<-accepted
}
