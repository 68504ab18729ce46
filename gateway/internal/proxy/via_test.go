package proxy_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bazaar-shop/bazaar/gateway/internal/proxy"
)

// Every forwarded request carries the gateway's Via token, after whatever the
// client's own Via said, on both paths.
func TestForwardedRequestsCarryTheGatewaysVia(t *testing.T) {
	t.Parallel()
	forBothPaths(t, func(t *testing.T, direct bool) {
		up, got := recordingUpstream(t)
		gw := serveGatewayOn(t, direct, up.URL, 5*time.Second)

		req, _ := http.NewRequest(http.MethodGet, gw.URL+"/api/v1/users/me", nil)
		do(t, req)
		if v := strings.Join(receive(t, got).header.Values("Via"), ", "); v != proxy.Via {
			t.Errorf("upstream got Via %q, want %q", v, proxy.Via)
		}

		req, _ = http.NewRequest(http.MethodGet, gw.URL+"/api/v1/users/me", nil)
		req.Header.Set("Via", "1.1 corporate-proxy")
		do(t, req)
		if v := strings.Join(receive(t, got).header.Values("Via"), ", "); v != "1.1 corporate-proxy, "+proxy.Via {
			t.Errorf("upstream got Via %q, want the client's, then the gateway's", v)
		}
	})
}

func TestLoopedTellsARequestThatWentThroughAGateway(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		via  []string
		want bool
	}{
		{nil, false},
		{[]string{"1.1 corporate-proxy"}, false},
		{[]string{proxy.Via}, true},
		{[]string{"1.1 corporate-proxy, " + proxy.Via}, true},
		{[]string{"1.1 corporate-proxy", proxy.Via}, true},
	} {
		r, _ := http.NewRequest(http.MethodGet, "http://gateway/", nil)
		for _, v := range tc.via {
			r.Header.Add("Via", v)
		}
		if got := proxy.Looped(r); got != tc.want {
			t.Errorf("Looped with Via %q = %t, want %t", tc.via, got, tc.want)
		}
	}
}
