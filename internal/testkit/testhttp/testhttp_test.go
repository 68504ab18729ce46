package testhttp

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// Closing an httptest server leaves Client's idle connection to another server alone,
// while it closes http.DefaultTransport's.
func TestAServerClosingLeavesClientsConnectionsAlone(t *testing.T) {
	var fresh atomic.Int64 // connections opened to srv
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			fresh.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	get := func(c *http.Client) {
		t.Helper()
		resp, err := c.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	get(Client)
	get(http.DefaultClient)
	httptest.NewServer(http.NotFoundHandler()).Close() // closes DefaultTransport's idle connections
	before := fresh.Load()
	get(Client)
	if n := fresh.Load() - before; n != 0 {
		t.Errorf("Client opened %d new connections after another server closed; want its idle one reused", n)
	}
	get(http.DefaultClient)
	if n := fresh.Load() - before; n != 1 {
		t.Errorf("http.DefaultClient opened %d new connections; want 1, its idle one having been closed (else this test shows nothing)", n)
	}
}
