package httpapi

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// TrustedProxies are the peers whose X-Forwarded-For is believed (TRUSTED_PROXIES): the
// gateway, which replaces any X-Forwarded-For a client sends with the address it saw.
// Anyone else could write any address there, and so get a fresh allowance of log-in
// attempts with every request.
type TrustedProxies []netip.Prefix

// DefaultTrustedProxies is loopback: the gateway on the same machine (make run, e2e).
const DefaultTrustedProxies = "127.0.0.0/8,::1/128"

// ParseTrustedProxies reads a comma-separated list of CIDR prefixes or single
// addresses; empty trusts no one.
func ParseTrustedProxies(s string) (TrustedProxies, error) {
	var out TrustedProxies
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if p, err := netip.ParsePrefix(part); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(part)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a CIDR prefix nor an IP address", part)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

func (t TrustedProxies) trusts(a netip.Addr) bool {
	for _, p := range t {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ClientAddr is the address of the client that sent r. It is the TCP peer, unless the
// peer is a trusted proxy: then X-Forwarded-For is read from the right (each proxy
// appends the address it saw) past the trusted proxies, and the first address that is
// not one is the client. An entry that is not an address ends the walk at the proxy
// that passed it on: what is left of it cannot be believed. The zero Addr means the
// peer's address could not be read.
func (t TrustedProxies) ClientAddr(r *http.Request) netip.Addr {
	addr := parseAddr(r.RemoteAddr)
	if !addr.IsValid() || !t.trusts(addr) {
		return addr
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		hop := parseAddr(strings.TrimSpace(hops[i]))
		if !hop.IsValid() {
			return addr
		}
		addr = hop
		if !t.trusts(hop) {
			return hop
		}
	}
	return addr
}

// parseAddr reads an address with or without a port; the zero Addr when it is neither.
func parseAddr(s string) netip.Addr {
	if host, _, err := net.SplitHostPort(s); err == nil {
		s = host
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}
