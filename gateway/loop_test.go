package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/tcpproxy"
)

// A gateway whose upstream URL points back at itself (a misconfigured INVENTORY_URL)
// answers 508 at the second lap, naming the mistake, instead of forwarding each
// request round and round until a limit stops it. CI once met the forwarding kind:
// a gateway whose users service was itself recursed into its own sign-in limit.
func TestAnUpstreamURLPointingAtTheGatewayIsRefusedAsALoop(t *testing.T) {
	t.Parallel()
	// The gateway's address is known only once it runs: the proxy is pointed at it then.
	self, err := tcpproxy.New("127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { self.Close() })
	gw := startGateway(t, map[string]string{"INVENTORY_URL": "http://" + self.Addr()})
	self.SetTarget(strings.TrimPrefix(gw.URL, "http://"))

	path := "/api/v1/products/" + uuid.NewString()
	resp, body := get(t, gw.URL+path, nil)
	if resp.StatusCode != http.StatusLoopDetected {
		t.Fatalf("GET %s: %d, want 508:\n%s", path, resp.StatusCode, body)
	}
	d := decodeProblem(t, resp, body)
	if d.Type != "urn:bazaar:problem:loop_detected" {
		t.Errorf("problem type %q, want urn:bazaar:problem:loop_detected", d.Type)
	}
	if !strings.Contains(d.Detail, "points at the gateway itself") {
		t.Errorf("detail %q does not name the mistake", d.Detail)
	}
	// Two laps, no more: the request and the one that came back.
	laps := 0
	for _, line := range strings.Split(gw.Logs(), "\n") {
		if strings.Contains(line, `"msg":"request"`) && strings.Contains(line, `"path":"`+path+`"`) {
			laps++
		}
	}
	if laps != 2 {
		t.Errorf("the product read was served %d times, want 2 (the request and its return):\n%s", laps, gw.Logs())
	}
	if !strings.Contains(gw.Logs(), "an upstream URL points at the gateway") {
		t.Errorf("no warning for the operator:\n%s", gw.Logs())
	}
}
