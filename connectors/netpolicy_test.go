package connectors

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
)

func prefixes(t *testing.T, ss ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// The default policy refuses the server itself and the metadata service,
// in every spelling of their addresses, and lets private and public
// networks through.
func TestNetPolicyDefault(t *testing.T) {
	p := NewNetPolicy(DefaultDeniedNetworks(), nil)
	for _, tt := range []struct{ addr, want string }{
		{"127.0.0.1:80", "loopback"},
		{"127.1.2.3:80", "loopback"},
		{"[::1]:80", "loopback"},
		{"[::ffff:127.0.0.1]:80", "loopback"},
		{"169.254.169.254:80", "cloud metadata service (169.254.169.254)"},
		{"[::ffff:169.254.169.254]:80", "cloud metadata service"},
		{"169.254.1.1:80", "link-local"},
		{"[fe80::1%eth0]:80", "link-local"},
		{"0.0.0.0:80", "unspecified"},
		{"[::]:80", "unspecified"},
		{"[::ffff:0.0.0.0]:80", "unspecified"},
		{"[fd00:ec2::254]:80", "cloud metadata service (fd00:ec2::254)"},
	} {
		err := p.Check(netip.MustParseAddrPort(tt.addr))
		var de *DeniedAddressError
		if !errors.As(err, &de) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "ferry serve --allow-networks ") {
			t.Errorf("%s: %v, want it refused as %q, naming the flag", tt.addr, err, tt.want)
		}
	}
	for _, a := range []string{"10.0.0.1:5432", "172.16.0.1:80", "192.168.1.1:443", "[fc00::1]:80", "[fd00:ec2::253]:80", "8.8.8.8:53", "[2001:db8::1]:443"} {
		if err := p.Check(netip.MustParseAddrPort(a)); err != nil {
			t.Errorf("%s: %v, want it allowed", a, err)
		}
	}
	if err := (*NetPolicy)(nil).Check(netip.MustParseAddrPort("127.0.0.1:80")); err != nil {
		t.Errorf("a nil policy refused: %v", err)
	}
}

// Allowed prefixes are exceptions, as narrow as given, IPv4-mapped or not;
// allowing all of the denied networks leaves no policy.
func TestNetPolicyAllow(t *testing.T) {
	p := NewNetPolicy(DefaultDeniedNetworks(), prefixes(t, "127.0.0.1/32", "::ffff:169.254.1.0/120"))
	for a, allowed := range map[string]bool{
		"127.0.0.1:5432":             true,
		"[::ffff:127.0.0.1]:5432":    true,
		"127.0.0.2:5432":             false,
		"169.254.1.7:80":             true,
		"169.254.169.254:80":         false,
		"[::1]:5432":                 false,
		"[fd00:ec2::254]:80":         false,
		"[::ffff:169.254.1.200]:443": true,
	} {
		if err := p.Check(netip.MustParseAddrPort(a)); (err == nil) != allowed {
			t.Errorf("%s: %v, want allowed %v", a, err, allowed)
		}
	}
	if p := NewNetPolicy(DefaultDeniedNetworks(), prefixes(t, "0.0.0.0/0", "::/0")); p != nil {
		t.Errorf("allowing everything left a policy: %+v", p)
	}
	if p := NewNetPolicy(DefaultDeniedNetworks(), prefixes(t, "0.0.0.0/0")); p == nil || p.Check(netip.MustParseAddrPort("[::1]:1")) == nil {
		t.Errorf("allowing IPv4 lifted the IPv6 part of the policy")
	}
}

// The dialer refuses after resolution: "localhost" is refused as 127.0.0.1
// is, with a permanent error that says where, why and what to do; a Unix
// socket counts as loopback.
func TestNetPolicyDialer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	deny := NewNetPolicy(DefaultDeniedNetworks(), nil)
	for _, host := range []string{"127.0.0.1", "localhost"} {
		c, err := deny.Dialer(nil).DialContext(context.Background(), "tcp", net.JoinHostPort(host, port))
		if err == nil {
			c.Close()
			t.Fatalf("%s: dialled through the policy", host)
		}
		var de *DeniedAddressError
		if !errors.As(err, &de) || CategoryOf(err) != CategoryPermanent ||
			!strings.Contains(err.Error(), "is not allowed on this server") || !strings.Contains(err.Error(), "loopback") ||
			!strings.Contains(err.Error(), "--allow-networks") {
			t.Errorf("%s: %v, want a permanent refusal naming loopback and --allow-networks", host, err)
		}
	}
	allow := NewNetPolicy(DefaultDeniedNetworks(), prefixes(t, "127.0.0.1/32"))
	c, err := allow.Dialer(&net.Dialer{}).DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("allowed 127.0.0.1: %v", err)
	}
	c.Close()

	if err := deny.Control("unix", "/var/run/postgresql/.s.PGSQL.5432", nil); err == nil || !strings.Contains(err.Error(), "Unix socket") {
		t.Errorf("unix socket: %v", err)
	}
	if err := allow.Control("unix", "/var/run/postgresql/.s.PGSQL.5432", nil); err != nil {
		t.Errorf("unix socket with loopback allowed: %v", err)
	}
	if err := deny.Control("tcp", "not-an-address:80", nil); err == nil {
		t.Error("an address Control cannot parse got through")
	}
}

// An IPv6 address that carries an IPv4 one (NAT64's 64:ff9b::/96, 6to4's
// 2002::/16) is judged as that IPv4 address too: a NAT64 gateway would
// take 64:ff9b::7f00:1 to 127.0.0.1.
func TestNetPolicyEmbeddedIPv4(t *testing.T) {
	p := NewNetPolicy(DefaultDeniedNetworks(), nil)
	for _, tt := range []struct{ addr, want string }{
		{"[64:ff9b::7f00:1]:80", "loopback address, this server itself (ferry's own API, other local services) (64:ff9b::7f00:1 carries it)"},
		{"[64:ff9b::a9fe:a9fe]:80", "cloud metadata service (169.254.169.254)"},
		{"[2002:7f00:1::1]:80", "loopback"},
		{"[2002:a9fe:a9fe::]:80", "cloud metadata service (169.254.169.254)"},
	} {
		err := p.Check(netip.MustParseAddrPort(tt.addr))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want it refused as %q", tt.addr, err, tt.want)
		}
	}
	for _, a := range []string{"[64:ff9b::808:808]:53", "[2002:808:808::1]:80", "[64:ff9b::a00:1]:5432"} {
		if err := p.Check(netip.MustParseAddrPort(a)); err != nil {
			t.Errorf("%s: %v, want it allowed (public or private IPv4 inside)", a, err)
		}
	}
	// Allowing the IPv4 address (as the error suggests) allows it inside too.
	allow := NewNetPolicy(DefaultDeniedNetworks(), prefixes(t, "127.0.0.1/32"))
	if err := allow.Check(netip.MustParseAddrPort("[64:ff9b::7f00:1]:80")); err != nil {
		t.Errorf("allowed 127.0.0.1 inside NAT64: %v", err)
	}
	if err := p.Check(netip.MustParseAddrPort("[64:ff9b::7f00:1]:80")); err == nil || !strings.Contains(err.Error(), "--allow-networks 127.0.0.1/32") {
		t.Errorf("the error should suggest allowing the IPv4 address: %v", err)
	}
}
