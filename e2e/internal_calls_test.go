package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/internal/testkit/testhttp"
	"github.com/bazaar-shop/bazaar/pkg/svcauth/svcauthtest"
)

// direct is a request sent round the gateway, straight to a service, the way an
// attacker on the services' network would.
func direct(t *testing.T, method, url, body, bearer string, header ...string) (int, problemDoc) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := (&http.Client{Transport: testhttp.Transport, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var p problemDoc
	if resp.StatusCode >= 400 {
		if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("%s %s: %d with Content-Type %q, want a problem: %s", method, url, resp.StatusCode, ct, b)
		}
		_ = json.NewDecoder(bytes.NewReader(b)).Decode(&p)
	}
	return resp.StatusCode, p
}

// serviceToken is a service token as a running service would mint it, with the stack's
// keys (devstack keeps them in URLs.KeysDir).
func serviceToken(t *testing.T, caller, callee string) string {
	t.Helper()
	return svcauthtest.Keys{Dir: stackURLs.KeysDir}.Token(t, caller, callee)
}

// Finding 1: with no token at all, anyone who reached a service could read and refund
// another user's charge, release a confirmed order's stock, hold stock for a made-up
// order and charge any user_id. Now every internal route wants the orders service's
// own credential, for that service: no credential, a shopper's token, orders'
// credential for the other service are 401; another service's credential is 403;
// the public ports and the gateway do not serve the routes at all; and nothing changed.
func TestSecurityInternalRoutesLetInOnlyTheOrdersService(t *testing.T) {
	setup(t)
	if stackURLs.KeysDir == "" {
		t.Skip("the stack is not this run's (E2E_BASE_URL): its service keys and internal listeners are unknown")
	}
	sh := sharedShop()
	p := sh.createProduct(t, 10, 700)
	victim := sh.newCustomer(t)
	o, r := sh.placeOrder(t, victim, visa, item{p.ID, 2})
	if r.StatusCode != http.StatusCreated {
		t.Fatalf("the victim's order: %d %s; want 201", r.StatusCode, r.Body)
	}
	if o.Status != "confirmed" {
		t.Fatalf("the victim's order: %s; want confirmed", o.Status)
	}
	sh.waitStock(t, p.ID, 8)

	inventory, payments := stackURLs.Internal["inventory"], stackURLs.Internal["payments"]
	madeUp := uuid.NewString()
	attacks := []struct {
		name, method, url, body string
		header                  []string
	}{
		{"read another user's charge", "GET", payments + "/internal/charges/" + o.ID, "", nil},
		{"refund another user's order", "POST", payments + "/internal/charges/" + o.ID + "/refund", "", nil},
		{"charge any user", "POST", payments + "/internal/charges",
			`{"order_id":"` + madeUp + `","user_id":"` + victim.ID + `","amount_cents":100,"currency":"USD","payment_method":"pm_card_visa"}`,
			[]string{"Idempotency-Key", madeUp}},
		{"release a confirmed order's stock", "POST", inventory + "/internal/reservations/" + o.ID + "/release", "", nil},
		{"hold stock for a made-up order", "POST", inventory + "/internal/reservations",
			`{"order_id":"` + madeUp + `","items":[{"product_id":"` + p.ID + `","quantity":8}]}`, nil},
	}
	callee := func(url string) string {
		if strings.HasPrefix(url, payments) {
			return "payments"
		}
		return "inventory"
	}
	other := map[string]string{"payments": "inventory", "inventory": "payments"}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			for _, c := range []struct {
				who    string
				bearer string
				status int
			}{
				{"no credential", "", http.StatusUnauthorized},
				{"the shopper's own access token", victim.Token, http.StatusUnauthorized},
				{"orders' credential for the other service", serviceToken(t, "orders", other[callee(a.url)]), http.StatusUnauthorized},
				{"another service's credential", serviceToken(t, "notifications", callee(a.url)), http.StatusForbidden},
			} {
				if status, pd := direct(t, a.method, a.url, a.body, c.bearer, a.header...); status != c.status || pd.Detail == "" {
					t.Errorf("with %s: %d %+v, want %d with a problem", c.who, status, pd, c.status)
				}
			}
			// Not served on the public port, nor through the gateway.
			public := strings.Replace(a.url, stackURLs.Internal[callee(a.url)], stackURLs.Programs[callee(a.url)], 1)
			if status, _ := direct(t, a.method, public, a.body, serviceToken(t, "orders", callee(a.url)), a.header...); status != http.StatusNotFound {
				t.Errorf("on the public port: %d, want 404", status)
			}
			viaGateway := strings.Replace(a.url, stackURLs.Internal[callee(a.url)], baseURL, 1)
			if status, _ := direct(t, a.method, viaGateway, a.body, victim.Token, a.header...); status != http.StatusNotFound {
				t.Errorf("through the gateway: %d, want 404", status)
			}
		})
	}

	// Nothing changed: the order is confirmed, its money taken, its stock sold.
	if got := sh.getOrder(t, victim.Token, o.ID); got.Status != "confirmed" {
		t.Errorf("the victim's order is %s, want confirmed", got.Status)
	}
	if pays := sh.payments(t, victim.Token, o.ID); len(pays) != 1 || pays[0].Status != "captured" {
		t.Errorf("the victim's payments: %+v, want one captured", pays)
	}
	if got, _ := sh.product(t, p.ID); got.Stock != 8 {
		t.Errorf("stock %d after the attacks, want 8", got.Stock)
	}
	sh.checkInvariants(t, p.ID)
}
