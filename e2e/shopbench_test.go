package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// BenchmarkShopPages measures how long the storefront takes to answer its pages,
// one request at a time, on the shared stack (its rate limits are off): the
// catalogue, a product, and a signed-in shopper's order page, each beside the API
// call it is mostly made of (GET /api/v1/products, /products/{id}, /orders/{id}), so
// that the ratio says what rendering a page adds to the API. Every page is checked to
// answer 200 with its content. Run with `-run '^$' -bench ShopPages`.
func BenchmarkShopPages(b *testing.B) {
	if baseURL == "" || sharedDBs.Orders == "" {
		b.Skip("needs the stack this run starts (not -short, not E2E_BASE_URL)")
	}
	email, password := "shopbench-"+randomHex(6)+"@e2e.bazaar.test", "correct horse battery"
	benchDo(b, request{Method: "POST", Path: "/api/v1/auth/register",
		Body: map[string]string{"email": email, "password": password, "name": "Bench"}}, http.StatusCreated, nil)
	token := benchLogin(b, email, password)
	var list struct {
		Items []productDoc `json:"items"`
	}
	benchDo(b, request{Method: "GET", Path: "/api/v1/products?limit=1"}, http.StatusOK, &list)
	if len(list.Items) == 0 {
		b.Fatal("the catalogue is empty")
	}
	product := list.Items[0]
	var order orderDoc
	benchDo(b, request{Method: "POST", Path: "/api/v1/orders", Token: token, Body: map[string]any{
		"items": []map[string]any{{"product_id": product.ID, "quantity": 1}}, "payment_method": "pm_card_visa"}}, http.StatusCreated, &order)
	cookies := shopSignIn(b, email, password)

	for _, c := range []struct {
		name, path, contains string
		token                string
		cookies              []*http.Cookie
	}{
		{"api-products", "/api/v1/products?limit=12", `"items"`, "", nil},
		{"page-catalogue", "/", product.Name, "", nil},
		{"api-product", "/api/v1/products/" + product.ID, product.ID, "", nil},
		{"page-product", "/products/" + product.ID, "Add to cart", "", nil},
		{"api-order", "/api/v1/orders/" + order.ID, order.ID, token, nil},
		{"page-order", "/orders/" + order.ID, "What you ordered", "", cookies},
	} {
		b.Run(c.name, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				body, status := benchGet(b, c.path, c.token, c.cookies)
				lat = append(lat, time.Since(t0))
				if status != http.StatusOK || !strings.Contains(body, c.contains) {
					b.Fatalf("GET %s → %d without %q", c.path, status, c.contains)
				}
			}
			b.StopTimer()
			slices.Sort(lat)
			q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
			b.ReportMetric(q(0.50), "p50-ms")
			b.ReportMetric(q(0.99), "p99-ms")
		})
	}
}

// shopSignIn signs in through the storefront's form and returns its cookies.
func shopSignIn(b *testing.B, email, password string) []*http.Cookie {
	b.Helper()
	resp, err := pageClient.Get(baseURL + "/login")
	if err != nil {
		b.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfInput.FindStringSubmatch(string(page))
	if m == nil {
		b.Fatal("the sign-in page has no CSRF token")
	}
	form := url.Values{"csrf_token": {m[1]}, "email": {email}, "password": {password}}
	req, _ := http.NewRequestWithContext(context.Background(), "POST", baseURL+"/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", baseURL)
	for _, c := range resp.Cookies() {
		req.AddCookie(c)
	}
	out, err := pageClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	out.Body.Close()
	if out.StatusCode != http.StatusSeeOther {
		b.Fatalf("POST /login → %d", out.StatusCode)
	}
	return out.Cookies()
}

// benchGet asks for path with a bearer token or cookies and returns the body and status.
func benchGet(b *testing.B, path, token string, cookies []*http.Cookie) (string, int) {
	req, err := http.NewRequestWithContext(context.Background(), "GET", baseURL+path, nil)
	if err != nil {
		b.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	resp, err := pageClient.Do(req)
	if err != nil {
		b.Fatal(fmt.Errorf("GET %s: %w", path, err))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body), resp.StatusCode
}
