package platform_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bazaar-shop/bazaar/internal/testkit/closedport"
	"github.com/bazaar-shop/bazaar/pkg/platform"
)

func TestProbingIsTheProbeFlagAlone(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		want bool
	}{
		{[]string{"users", "-probe"}, true},
		{[]string{"users"}, false},
		{[]string{"users", "-probe", "extra"}, false},
		{[]string{"users", "probe"}, false},
		{nil, false},
	} {
		if got := platform.Probing(c.args); got != c.want {
			t.Errorf("Probing(%q) = %v, want %v", c.args, got, c.want)
		}
	}
}

// The probe is a container's healthcheck: it must pass only on a 200 from /readyz,
// and ask a listener on every interface (":9090") on loopback.
func TestProbeAsksReadyzAndPassesOnlyOn200(t *testing.T) {
	t.Parallel()
	status := map[string]int{}
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked = append(asked, r.URL.Path)
		code := status[r.Host]
		w.WriteHeader(code)
		w.Write([]byte(`{"status":"unhealthy"}`))
	}))
	t.Cleanup(srv.Close)
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	status[net.JoinHostPort(host, port)] = http.StatusOK
	for _, addr := range []string{":" + port, "0.0.0.0:" + port, host + ":" + port} {
		if err := platform.Probe(context.Background(), addr); err != nil {
			t.Errorf("Probe(%q) of a ready listener: %v", addr, err)
		}
	}
	if len(asked) != 3 || asked[0] != "/readyz" {
		t.Errorf("asked %q, want /readyz three times", asked)
	}

	status[net.JoinHostPort(host, port)] = http.StatusServiceUnavailable
	err := platform.Probe(context.Background(), ":"+port)
	if err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "unhealthy") {
		t.Errorf("Probe of a listener answering 503 = %v, want an error naming 503 and the report", err)
	}
}

func TestProbeFailsWhenNothingListensOrTheAddressIsBad(t *testing.T) {
	t.Parallel()
	addr := closedport.Addr(t)
	if err := platform.Probe(context.Background(), addr); err == nil {
		t.Errorf("Probe(%s) with nothing listening passed", addr)
	}
	if err := platform.Probe(context.Background(), "no-port"); err == nil {
		t.Error("Probe of an address without a port passed")
	}
}
