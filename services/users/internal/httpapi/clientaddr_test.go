package httpapi

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestClientAddrTrustsForwardedForOnlyFromTrustedProxies(t *testing.T) {
	t.Parallel()
	trusted := TrustedProxies{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("10.0.0.0/8")}
	for _, c := range []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"direct client", "198.51.100.7:5000", nil, "198.51.100.7"},
		{"direct client posing as forwarded", "198.51.100.7:5000", []string{"203.0.113.9"}, "198.51.100.7"},
		{"through the gateway", "127.0.0.1:5000", []string{"203.0.113.9"}, "203.0.113.9"},
		{"gateway over IPv6 loopback", "[::1]:5000", []string{"2001:db8::1"}, "2001:db8::1"},
		{"through two trusted proxies", "127.0.0.1:5000", []string{"203.0.113.9, 10.1.2.3"}, "203.0.113.9"},
		{"a client's own header before ours", "127.0.0.1:5000", []string{"192.0.2.66, 203.0.113.9"}, "203.0.113.9"},
		{"split over header lines", "127.0.0.1:5000", []string{"192.0.2.66", "203.0.113.9"}, "203.0.113.9"},
		{"the proxy sent none", "127.0.0.1:5000", nil, "127.0.0.1"},
		{"garbage from the proxy", "127.0.0.1:5000", []string{"not-an-ip"}, "127.0.0.1"},
		{"garbage before the client", "127.0.0.1:5000", []string{"junk, 203.0.113.9"}, "203.0.113.9"},
		{"only proxies", "127.0.0.1:5000", []string{"10.0.0.1, 10.0.0.2"}, "10.0.0.1"},
		{"IPv4-mapped", "127.0.0.1:5000", []string{"::ffff:203.0.113.9"}, "203.0.113.9"},
		{"with a port", "127.0.0.1:5000", []string{"203.0.113.9:4711"}, "203.0.113.9"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/api/v1/auth/login", nil)
			r.RemoteAddr = c.peer
			for _, v := range c.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := trusted.ClientAddr(r); got != netip.MustParseAddr(c.want) {
				t.Errorf("ClientAddr = %v, want %s", got, c.want)
			}
		})
	}
}

func TestParseTrustedProxies(t *testing.T) {
	t.Parallel()
	got, err := ParseTrustedProxies(" 127.0.0.0/8, ::1 ,172.16.0.0/12")
	if err != nil {
		t.Fatalf("ParseTrustedProxies: %v, want no error", err)
	}
	if len(got) != 3 {
		t.Fatalf("ParseTrustedProxies = %v, want 3 prefixes", got)
	}
	if want := netip.MustParsePrefix("::1/128"); got[1] != want {
		t.Errorf("ParseTrustedProxies: second prefix %v, want %v", got[1], want)
	}
	if none, err := ParseTrustedProxies(""); err != nil {
		t.Errorf("empty: %v, want no error", err)
	} else if len(none) != 0 {
		t.Errorf("empty: %v, want none", none)
	}
	for _, bad := range []string{"10.0.0.0/33", "localhost", "10.0.0.0/8,,"} {
		if _, err := ParseTrustedProxies(bad); err == nil {
			t.Errorf("ParseTrustedProxies(%q) accepted it", bad)
		}
	}
}
