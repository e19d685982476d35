package connectors

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// NetPolicy is the outbound network policy of a confined connector
// (Env.Net): the addresses it must not connect to, checked on the address
// actually dialled, after DNS resolution, so that a host name resolving (or
// rebinding) to a refused address gets nowhere. A server sets it for its
// tenants, so that a tenant's http connection or database url cannot reach
// the server itself (its API, other local services) or the cloud metadata
// service; private networks stay reachable, integrations live there.
//
// Connectors apply it with Control as the net.Dialer's Control of every
// connection they open. A nil *NetPolicy refuses nothing.
type NetPolicy struct {
	deny  []netip.Prefix
	allow []netip.Prefix
}

// metadataV6 is the AWS instance metadata service's IPv6 address: in
// fd00::/8, a private network, which stays allowed otherwise.
var metadataV6 = netip.MustParsePrefix("fd00:ec2::254/128")

// DefaultDeniedNetworks are the networks a server's tenants may not reach
// unless the operator allows them: loopback, link-local (169.254.169.254,
// the cloud metadata service, is one), the unspecified address (which
// reaches the host itself) and AWS's IPv6 metadata address. IPv4-mapped
// IPv6 forms of the IPv4 ones are refused too: Check unmaps first.
func DefaultDeniedNetworks() []netip.Prefix {
	return []netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"),
		netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("169.254.0.0/16"),
		netip.MustParsePrefix("fe80::/10"),
		netip.MustParsePrefix("0.0.0.0/8"),
		netip.MustParsePrefix("::/128"),
		metadataV6,
	}
}

// NewNetPolicy returns the policy refusing the addresses in deny but those
// in allow. It returns nil, a policy refusing nothing, when allow covers
// all of deny. IPv4-mapped IPv6 prefixes count as the IPv4 ones.
func NewNetPolicy(deny, allow []netip.Prefix) *NetPolicy {
	p := &NetPolicy{}
	for _, a := range allow {
		if a = normalPrefix(a); a.IsValid() {
			p.allow = append(p.allow, a)
		}
	}
	for _, d := range deny {
		d = normalPrefix(d)
		if !d.IsValid() || p.covered(d) {
			continue
		}
		p.deny = append(p.deny, d)
	}
	if len(p.deny) == 0 {
		return nil
	}
	return p
}

// normalPrefix is p masked, with an IPv4-mapped prefix as the IPv4 one.
func normalPrefix(p netip.Prefix) netip.Prefix {
	if !p.IsValid() {
		return p
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked()
}

// covered says whether an allowed prefix holds all of d.
func (p *NetPolicy) covered(d netip.Prefix) bool {
	for _, a := range p.allow {
		if a.Bits() <= d.Bits() && a.Contains(d.Addr()) {
			return true
		}
	}
	return false
}

// Check returns a *DeniedAddressError when the policy refuses addr, else nil.
func (p *NetPolicy) Check(addr netip.AddrPort) error {
	if de := p.check(addr); de != nil {
		return de
	}
	return nil
}

func (p *NetPolicy) check(addr netip.AddrPort) *DeniedAddressError {
	if p == nil {
		return nil
	}
	ip := addr.Addr().Unmap().WithZone("")
	if p.allowed(ip) {
		return nil
	}
	// An IPv6 address that carries an IPv4 one (NAT64, 6to4) reaches that
	// IPv4 address through a gateway: it is judged as that address too.
	for _, target := range []netip.Addr{ip, embeddedIPv4(ip)} {
		if !target.IsValid() || (target != ip && p.allowed(target)) {
			continue
		}
		for _, d := range p.deny {
			if d.Contains(target) {
				why := reason(target, d)
				if target != ip {
					why = fmt.Sprintf("%s (%s carries it)", why, ip)
				}
				return &DeniedAddressError{Address: netip.AddrPortFrom(ip, addr.Port()).String(), IP: target, Reason: why}
			}
		}
	}
	return nil
}

func (p *NetPolicy) allowed(ip netip.Addr) bool {
	for _, a := range p.allow {
		if a.Contains(ip) {
			return true
		}
	}
	return false
}

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96") // RFC 6052: the IPv4 address in the last 32 bits
	sixToFour = netip.MustParsePrefix("2002::/16")    // RFC 3056: the IPv4 address in bits 16-47
)

// embeddedIPv4 is the IPv4 address an IPv6 address carries (NAT64's
// well-known prefix, 6to4); invalid for any other address.
func embeddedIPv4(ip netip.Addr) netip.Addr {
	b := ip.As16()
	switch {
	case !ip.Is6():
		return netip.Addr{}
	case nat64.Contains(ip):
		return netip.AddrFrom4([4]byte(b[12:16]))
	case sixToFour.Contains(ip):
		return netip.AddrFrom4([4]byte(b[2:6]))
	}
	return netip.Addr{}
}

// Control is for net.Dialer.Control: it refuses a connection to an address
// the policy denies, after resolution and before the connection is made. A
// Unix socket is a service of this machine, like loopback: it is refused
// unless the policy allows 127.0.0.1. The error is a permanent
// *DeniedAddressError: trying again cannot help.
func (p *NetPolicy) Control(network, address string, _ syscall.RawConn) error {
	if p == nil {
		return nil
	}
	if strings.HasPrefix(network, "unix") {
		if de := p.check(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 0)); de != nil {
			return Permanent(&DeniedAddressError{Address: address, Reason: "a Unix socket, a service of this server itself like a loopback address"})
		}
		return nil
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		// net always hands Control a numeric address; anything else is
		// refused rather than let through unchecked.
		return Permanent(&DeniedAddressError{Address: address, Reason: "not a numeric IP address the network policy can check"})
	}
	if de := p.check(ap); de != nil {
		return Permanent(de)
	}
	return nil
}

// Dialer returns a copy of d (nil: a zero net.Dialer) that refuses the
// addresses the policy denies, before any Control of d runs. With a nil
// policy it returns d as is.
func (p *NetPolicy) Dialer(d *net.Dialer) *net.Dialer {
	if d == nil {
		d = &net.Dialer{}
	}
	if p == nil {
		return d
	}
	c := *d
	prev, prevCtx := d.Control, d.ControlContext
	c.Control = nil // ignored anyway when ControlContext is set
	c.ControlContext = func(ctx context.Context, network, address string, rc syscall.RawConn) error {
		if err := p.Control(network, address, rc); err != nil {
			return err
		}
		switch {
		case prevCtx != nil:
			return prevCtx(ctx, network, address, rc)
		case prev != nil:
			return prev(network, address, rc)
		}
		return nil
	}
	return &c
}

// Transport puts tr under the policy: every connection it makes (a
// redirect's too) is dialled with d (nil: 30 s timeouts) through Dialer, and
// no proxy of the environment (HTTP_PROXY) is used, since a proxy dials the
// destination itself, where the policy cannot look. A nil policy leaves tr
// as it is.
func (p *NetPolicy) Transport(tr *http.Transport, d *net.Dialer) {
	if p == nil {
		return
	}
	if d == nil {
		d = &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	}
	tr.DialContext = p.Dialer(d).DialContext
	tr.Proxy = nil
}

// DeniedAddressError is a connection the network policy refused.
type DeniedAddressError struct {
	// Address is what was dialled: "ip:port", or a Unix socket's path.
	Address string
	// IP is the address's IP (invalid for a Unix socket).
	IP netip.Addr
	// Reason says what the address is ("a loopback address: ...").
	Reason string
}

func (e *DeniedAddressError) Error() string {
	allow := "127.0.0.1/32"
	if e.IP.IsValid() {
		allow = netip.PrefixFrom(e.IP, e.IP.BitLen()).String()
	}
	return fmt.Sprintf("connecting to %s is not allowed on this server: it is %s. Tenants' connections may not reach the server itself, "+
		"link-local addresses or the cloud metadata service; if this service is meant to be reachable, the server's operator can allow it with "+
		"ferry serve --allow-networks %s", e.Address, e.Reason, allow)
}

// reason says what ip, refused by the deny prefix d, is.
func reason(ip netip.Addr, d netip.Prefix) string {
	switch {
	case ip.IsLoopback():
		return "a loopback address, this server itself (ferry's own API, other local services)"
	case ip.IsUnspecified() || (ip.Is4() && ip.As4()[0] == 0):
		return "the unspecified address, which reaches this server itself"
	case metadataV6.Contains(ip):
		return "the cloud metadata service (fd00:ec2::254), which hands out the server's credentials"
	case ip == netip.AddrFrom4([4]byte{169, 254, 169, 254}):
		return "the cloud metadata service (169.254.169.254), which hands out the server's credentials"
	case ip.IsLinkLocalUnicast():
		return "a link-local address (where cloud metadata services answer)"
	}
	return fmt.Sprintf("in %s, a network this server's tenants may not reach", d)
}
