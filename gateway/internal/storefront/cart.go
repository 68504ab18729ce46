package storefront

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/gateway/internal/opsauth"
)

// The cart lives in the browser, in a cookie: it is kept across reloads and
// restarts, works before sign-in, and costs the gateway nothing to keep. It holds
// product ids and quantities only; prices and stock are read from the catalogue
// whenever it is shown, and the order is priced by the orders service, so a cart
// edited by hand can change nothing but its owner's own wishes.
const (
	cartCookie = "bazaar_cart"
	// maxLines and maxQuantity are the API's own bounds on an order (docs/contract.md,
	// "Rules of POST /orders"), so a cart can always be ordered as it is.
	maxLines    = 50
	maxQuantity = 100
	cartMaxAge  = 30 * 24 * 60 * 60 // seconds: a month
)

// cartLine is one product in the cart.
type cartLine struct {
	ProductID uuid.UUID
	Quantity  int
}

// cart is the cart's lines, in the order they were added.
type cart []cartLine

// readCart is the request's cart; a cookie that does not parse is an empty cart, and
// lines that do not parse are dropped.
func readCart(r *http.Request) cart {
	c, err := r.Cookie(cartCookie)
	if err != nil {
		return nil
	}
	var out cart
	for _, part := range strings.Split(c.Value, "|") {
		id, qty, ok := strings.Cut(part, ":")
		if !ok {
			continue
		}
		pid, err := uuid.Parse(id)
		n, nerr := strconv.Atoi(qty)
		if err != nil || nerr != nil || n < 1 || n > maxQuantity || out.quantity(pid) > 0 || len(out) == maxLines {
			continue
		}
		out = append(out, cartLine{pid, n})
	}
	return out
}

// write sets the cart's cookie on w (deleting it when the cart is empty).
func (c cart) write(w http.ResponseWriter, r *http.Request) {
	parts := make([]string, len(c))
	for i, l := range c {
		parts[i] = l.ProductID.String() + ":" + strconv.Itoa(l.Quantity)
	}
	maxAge := cartMaxAge
	if len(c) == 0 {
		maxAge = -1
	}
	http.SetCookie(w, &http.Cookie{
		Name: cartCookie, Value: strings.Join(parts, "|"), Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: opsauth.OverTLS(r), SameSite: http.SameSiteLaxMode,
	})
}

// quantity is how many of product id the cart holds.
func (c cart) quantity(id uuid.UUID) int {
	for _, l := range c {
		if l.ProductID == id {
			return l.Quantity
		}
	}
	return 0
}

// set makes the cart hold n of product id (none when n is 0), keeping its place.
// It reports false when that would take the cart past maxLines.
func (c cart) set(id uuid.UUID, n int) (cart, bool) {
	for i, l := range c {
		if l.ProductID == id {
			if n == 0 {
				return append(c[:i:i], c[i+1:]...), true
			}
			out := append(cart(nil), c...)
			out[i].Quantity = n
			return out, true
		}
	}
	if n == 0 {
		return c, true
	}
	if len(c) >= maxLines {
		return c, false
	}
	return append(append(cart(nil), c...), cartLine{id, n}), true
}

// count is the number of items in the cart, for the header's badge.
func (c cart) count() int {
	n := 0
	for _, l := range c {
		n += l.Quantity
	}
	return n
}
