package loadgen

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// restockEvery is how often a run with Config.Restock looks for products running low.
const restockEvery = 5 * time.Second

// restocker tops the catalogue's stock up as the admin, so that long or repeated runs
// do not end every order out_of_stock.
type restocker struct {
	r     *runner
	admin *account
}

func newRestocker(r *runner) *restocker {
	a := &account{email: r.cfg.AdminEmail, password: r.cfg.AdminPassword, lock: make(chan struct{}, 1), noSignUp: true, known: true}
	a.key = r.cfg.BaseURL + " " + a.email
	if t, ok := r.cache.get(a.key); ok {
		a.tok = t
	}
	return &restocker{r: r, admin: a}
}

// pass reads the whole catalogue and sets the stock of each product below low to
// Config.Restock. It returns how many products it restocked.
func (s *restocker) pass(ctx context.Context, low int) (int, error) {
	r := s.r
	var products []product
	cursor := ""
	for {
		path := "/api/v1/products?limit=100"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		if err := r.anon.wait(ctx); err != nil {
			return 0, err
		}
		page, err := r.productPage(ctx, path)
		if err != nil {
			return 0, err
		}
		products = append(products, page.Items...)
		if page.NextCursor == nil {
			break
		}
		cursor = *page.NextCursor
	}
	n := 0
	for _, p := range products {
		if p.Stock >= low {
			continue
		}
		c := call{endpoint: "restock", method: http.MethodPatch, path: "/api/v1/products/" + url.PathEscape(p.ID),
			body: map[string]int{"stock": r.cfg.Restock}}
		ans, err := r.authDo(ctx, s.admin, c)
		if err != nil {
			return n, err
		}
		if ans.status != http.StatusOK {
			return n, ans.unexpected(r.stats, c)
		}
		var updated product
		if err := ans.decode(c, &updated); err != nil {
			r.stats.error(ErrProtocol)
			return n, err
		}
		r.cat.update(updated)
		n++
	}
	return n, nil
}

// run restocks every product below Config.Restock now, then every restockEvery those
// below half of it, until ctx ends. A failure is counted and tried again next time.
func (s *restocker) run(ctx context.Context, first chan<- error) {
	_, err := s.pass(ctx, s.r.cfg.Restock)
	first <- err
	for s.r.clock.Sleep(ctx, restockEvery) == nil {
		_, _ = s.pass(ctx, max(1, s.r.cfg.Restock/2))
	}
}

// errAdmin explains an admin sign-in that failed.
func errAdmin(email string, err error) error {
	return fmt.Errorf("restocking needs the admin %s to sign in: %w", email, err)
}
