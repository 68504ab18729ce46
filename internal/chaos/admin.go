package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// admin changes the catalogue through the gateway, as an admin would while shoppers
// order: restocks and price changes. Every change is a PATCH, whose product.updated
// event the checker accounts for.
type admin struct {
	base            string
	email, password string
	client          *http.Client

	mu       sync.Mutex
	rng      *rand.Rand
	token    string
	restocks int   // PATCHes of stock that succeeded
	added    int   // units they meant to add (the checker learns the real change)
	reprices int   // PATCHes of price_cents that succeeded
	failures int   // PATCHes or reads that failed (a fault in the way)
	lastErr  error // the last failure
}

type product struct {
	ID         string `json:"id"`
	PriceCents int64  `json:"price_cents"`
	Stock      int    `json:"stock"`
}

func newAdmin(base, email, password string, seed uint64) *admin {
	// Its own transport: an httptest server closing in the same process (a test's)
	// closes http.DefaultTransport's idle connections under requests (see
	// internal/testkit/testhttp).
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	return &admin{base: base, email: email, password: password, client: client,
		rng: rand.New(rand.NewPCG(seed, 0xad))}
}

// call sends a request as the admin (logging in first, and again on a 401) and
// decodes a 2xx answer into out.
func (a *admin) call(ctx context.Context, method, path string, body, out any) error {
	for try := 0; ; try++ {
		a.mu.Lock()
		token := a.token
		a.mu.Unlock()
		if token == "" {
			var tok struct {
				AccessToken string `json:"access_token"`
			}
			if err := a.do(ctx, http.MethodPost, "/api/v1/auth/login", "", map[string]string{"email": a.email, "password": a.password}, &tok); err != nil {
				return fmt.Errorf("admin log-in: %w", err)
			}
			a.mu.Lock()
			a.token, token = tok.AccessToken, tok.AccessToken
			a.mu.Unlock()
		}
		err := a.do(ctx, method, path, token, body, out)
		if se, ok := err.(statusError); ok && se.status == http.StatusUnauthorized && try == 0 {
			a.mu.Lock()
			a.token = ""
			a.mu.Unlock()
			continue
		}
		return err
	}
}

type statusError struct {
	status int
	body   string
}

func (e statusError) Error() string { return fmt.Sprintf("%d %s", e.status, e.body) }

func (a *admin) do(ctx context.Context, method, path, token string, body, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, r)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return statusError{resp.StatusCode, string(bytes.TrimSpace(b))}
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// products lists the catalogue.
func (a *admin) products(ctx context.Context) ([]product, error) {
	var all []product
	cursor := ""
	for {
		path := "/api/v1/products?limit=100"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		var page struct {
			Items      []product `json:"items"`
			NextCursor *string   `json:"next_cursor"`
		}
		if err := a.do(ctx, http.MethodGet, path, "", nil, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Items...)
		if page.NextCursor == nil {
			return all, nil
		}
		cursor = *page.NextCursor
	}
}

// restock sets the stock of every product with fewer than low units to its stock
// as read plus add. The read may be a moment old (the gateway caches it), and orders
// keep taking stock between the read and the PATCH: the change a PATCH makes is
// not exactly add, which is why the checker replays the events to learn it.
func (a *admin) restock(ctx context.Context, low, add int) error {
	ps, err := a.products(ctx)
	if err != nil {
		return a.failed(fmt.Errorf("restock: list products: %w", err))
	}
	for _, p := range ps {
		if p.Stock >= low {
			continue
		}
		if err := a.call(ctx, http.MethodPatch, "/api/v1/products/"+p.ID, map[string]int{"stock": p.Stock + add}, nil); err != nil {
			return a.failed(fmt.Errorf("restock %s: %w", p.ID, err))
		}
		a.mu.Lock()
		a.restocks++
		a.added += add
		a.mu.Unlock()
	}
	return nil
}

// reprice moves one product's price (chosen at random) up or down by a cent or two.
func (a *admin) reprice(ctx context.Context) (string, error) {
	ps, err := a.products(ctx)
	if err != nil || len(ps) == 0 {
		return "", a.failed(fmt.Errorf("reprice: list products: %v (%d)", err, len(ps)))
	}
	a.mu.Lock()
	p := ps[a.rng.IntN(len(ps))]
	change := int64(1 + a.rng.IntN(2))
	if a.rng.IntN(2) == 0 && p.PriceCents > change {
		change = -change
	}
	a.mu.Unlock()
	price := p.PriceCents + change
	if err := a.call(ctx, http.MethodPatch, "/api/v1/products/"+p.ID, map[string]int64{"price_cents": price}, nil); err != nil {
		return "", a.failed(fmt.Errorf("reprice %s: %w", p.ID, err))
	}
	a.mu.Lock()
	a.reprices++
	a.mu.Unlock()
	return fmt.Sprintf("product %s: %d → %d cents", p.ID, p.PriceCents, price), nil
}

func (a *admin) failed(err error) error {
	a.mu.Lock()
	a.failures++
	a.lastErr = err
	a.mu.Unlock()
	return err
}

// AdminChanges is what the admin did during a run.
type AdminChanges struct {
	Restocks int // PATCHes of stock
	Added    int // units they meant to add
	Reprices int // PATCHes of price
	Failures int // reads and PATCHes that failed (a fault was in the way); retried later
	LastErr  string
}

func (a *admin) changes() AdminChanges {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := AdminChanges{Restocks: a.restocks, Added: a.added, Reprices: a.reprices, Failures: a.failures}
	if a.lastErr != nil {
		c.LastErr = a.lastErr.Error()
	}
	return c
}
