package storefront

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
)

// cataloguePage is how many products the catalogue shows at a time.
const cataloguePage = 12

// catalogue answers GET /: a page of products, or of those matching ?q=.
func (s *Shop) catalogue(w http.ResponseWriter, r *http.Request) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	cursor := r.URL.Query().Get("cursor")
	params := url.Values{"limit": {strconv.Itoa(cataloguePage)}}
	if q != "" {
		params.Set("q", q)
	}
	if cursor != "" {
		params.Set("cursor", cursor)
	}
	var list productList
	err := s.api.do(r, call{Method: http.MethodGet, Path: "/api/v1/products?" + params.Encode()}, &list)
	if err != nil {
		s.failed(w, r, "Catalogue", err)
		return
	}
	v := s.view(w, r, "Catalogue")
	v.Nav, v.Query = "shop", q
	type data struct {
		Products []product
		Next     string // the next page's URL, "" on the last
		Paged    bool   // not the first page
		Query    string
	}
	d := data{Products: list.Items, Paged: cursor != "", Query: q}
	if list.NextCursor != nil {
		next := url.Values{"cursor": {*list.NextCursor}}
		if q != "" {
			next.Set("q", q)
		}
		d.Next = "/?" + next.Encode()
	}
	if q != "" {
		v.Title = "Search: " + q
	}
	v.Data = d
	s.render(w, r, http.StatusOK, "catalogue", v)
}

// productData is the product page's data.
type productData struct {
	Product product
	InCart  int
	Wanted  int // the quantity the form shows
}

// getProduct reads the product with the path's id: apperr.NotFound for an id that is
// not one.
func (s *Shop) getProduct(r *http.Request, id string) (product, error) {
	if _, err := uuid.Parse(id); err != nil {
		return product{}, apperr.E(apperr.NotFound, "no such product")
	}
	var p product
	err := s.api.do(r, call{Method: http.MethodGet, Path: "/api/v1/products/" + id}, &p)
	return p, err
}

// product answers GET /products/{id}: the product, its stock, and a form to add it.
func (s *Shop) product(w http.ResponseWriter, r *http.Request) {
	p, err := s.getProduct(r, r.PathValue("id"))
	if err != nil {
		s.failed(w, r, "Product", err)
		return
	}
	v := s.view(w, r, p.Name)
	v.Nav = "shop"
	v.Data = productData{Product: p, InCart: readCart(r).quantity(uuid.MustParse(p.ID)), Wanted: 1}
	s.render(w, r, http.StatusOK, "product", v)
}

// addToCart answers POST /cart (product_id, quantity): adds to the cart and goes back
// to the product with a message, or shows the product page again with what is wrong.
func (s *Shop) addToCart(w http.ResponseWriter, r *http.Request) {
	p, err := s.getProduct(r, r.PostFormValue("product_id"))
	if err != nil {
		s.failed(w, r, "Product", err)
		return
	}
	c := readCart(r)
	pid := uuid.MustParse(p.ID)
	n, err := strconv.Atoi(strings.TrimSpace(r.PostFormValue("quantity")))
	msg := ""
	switch have := c.quantity(pid); {
	case err != nil || n < 1 || n > maxQuantity:
		msg = fmt.Sprintf("Enter a quantity from 1 to %d.", maxQuantity)
	case p.Stock == 0:
		msg = "Sorry, this product is out of stock."
	case have+n > p.Stock:
		msg = fmt.Sprintf("Sorry, there are only %d in stock", p.Stock)
		if have > 0 {
			msg += fmt.Sprintf(", and %d are in your cart already", have)
		}
		msg += "."
	case have+n > maxQuantity:
		msg = fmt.Sprintf("One order can hold at most %d of a product.", maxQuantity)
	}
	if msg == "" {
		var ok bool
		if c, ok = c.set(pid, c.quantity(pid)+n); !ok {
			msg = fmt.Sprintf("Your cart is full: one order can hold at most %d different products.", maxLines)
		}
	}
	if msg != "" {
		v := s.view(w, r, p.Name)
		v.Nav, v.Error = "shop", msg
		v.Fields = []apperr.FieldError{{Field: "quantity", Message: msg}}
		wanted := n
		if wanted < 1 {
			wanted = 1
		}
		v.Data = productData{Product: p, InCart: readCart(r).quantity(pid), Wanted: wanted}
		s.render(w, r, http.StatusUnprocessableEntity, "product", v)
		return
	}
	c.write(w, r)
	http.Redirect(w, r, "/products/"+p.ID+"?m=added", http.StatusSeeOther)
}

// cartItem is a cart line with its product as the catalogue has it now.
type cartItem struct {
	Product  product
	Quantity int
	Missing  bool   // the product is gone from the catalogue
	Short    string // why the stock does not cover it, "" when it does
}

// cartData is the cart's and the checkout's data.
type cartData struct {
	Items    []cartItem
	Total    string
	Short    bool // some line is more than the stock
	Methods  []paymentMethod
	Method   string // the payment method chosen
	OrderKey string // the checkout's Idempotency-Key
}

// cartItems reads the cart's products from the catalogue.
func (s *Shop) cartItems(r *http.Request, c cart) (cartData, error) {
	var d cartData
	var total int64
	currency := ""
	for _, l := range c {
		p, err := s.getProduct(r, l.ProductID.String())
		if apperr.CodeOf(err) == apperr.NotFound {
			d.Items = append(d.Items, cartItem{Product: product{ID: l.ProductID.String()}, Quantity: l.Quantity, Missing: true})
			d.Short = true
			continue
		}
		if err != nil {
			return cartData{}, err
		}
		it := cartItem{Product: p, Quantity: l.Quantity}
		switch {
		case p.Stock == 0:
			it.Short = "Out of stock."
		case l.Quantity > p.Stock:
			it.Short = fmt.Sprintf("Only %d in stock.", p.Stock)
		}
		d.Short = d.Short || it.Short != ""
		total += p.PriceCents * int64(l.Quantity)
		currency = p.Currency
		d.Items = append(d.Items, it)
	}
	d.Total = money(total, currency)
	return d, nil
}

// cartPage answers GET /cart.
func (s *Shop) cartPage(w http.ResponseWriter, r *http.Request) {
	d, err := s.cartItems(r, readCart(r))
	if err != nil {
		s.failed(w, r, "Your cart", err)
		return
	}
	v := s.view(w, r, "Your cart")
	v.Nav, v.Data = "cart", d
	s.render(w, r, http.StatusOK, "cart", v)
}

// updateCart answers POST /cart/update (product_id, quantity; 0 removes the line).
func (s *Shop) updateCart(w http.ResponseWriter, r *http.Request) {
	pid, err := uuid.Parse(r.PostFormValue("product_id"))
	n, nerr := strconv.Atoi(strings.TrimSpace(r.PostFormValue("quantity")))
	if err != nil || nerr != nil || n < 0 || n > maxQuantity {
		d, err := s.cartItems(r, readCart(r))
		if err != nil {
			s.failed(w, r, "Your cart", err)
			return
		}
		v := s.view(w, r, "Your cart")
		v.Nav, v.Data = "cart", d
		v.Error = fmt.Sprintf("Enter a quantity from 0 to %d (0 takes the product out).", maxQuantity)
		s.render(w, r, http.StatusUnprocessableEntity, "cart", v)
		return
	}
	c, _ := readCart(r).set(pid, n) // only an existing line changes: never past maxLines
	c.write(w, r)
	http.Redirect(w, r, "/cart?m=updated", http.StatusSeeOther)
}

// checkoutPage answers GET /checkout: the order to place and how to pay.
func (s *Shop) checkoutPage(w http.ResponseWriter, r *http.Request) {
	sess, c, ok := s.checkoutCart(w, r)
	if !ok {
		return
	}
	s.renderCheckout(w, r, sess, c, http.StatusOK, "", nil, paymentMethods[0].ID, uuid.NewString())
}

// checkoutCart is the signed-in shopper and their cart, for the checkout; without a
// session the browser is sent to sign in, with an empty cart to the cart. Either way
// it reports false and has answered.
func (s *Shop) checkoutCart(w http.ResponseWriter, r *http.Request) (*Session, cart, bool) {
	sess, ok := s.signedIn(w, r)
	if !ok {
		return nil, nil, false
	}
	c := readCart(r)
	if len(c) == 0 {
		http.Redirect(w, r, "/cart", http.StatusSeeOther)
		return nil, nil, false
	}
	return sess, c, true
}

// renderCheckout answers the checkout page for cart c with status, msg (the cart's
// own shortage when it has one and msg is ""), the payment method chosen and the
// order key (a fresh one when key is not one).
func (s *Shop) renderCheckout(w http.ResponseWriter, r *http.Request, sess *Session, c cart, status int, msg string, fields []apperr.FieldError, method, key string) {
	d, err := s.cartItems(r, c)
	if err != nil {
		s.failed(w, r, "Checkout", err)
		return
	}
	v := s.view(w, r, "Checkout")
	v.Session, v.Nav, v.Error, v.Fields = sess, "cart", msg, fields
	if msg == "" && d.Short {
		v.Error = outOfStockMessage
	}
	if _, err := uuid.Parse(key); err != nil {
		key = uuid.NewString()
	}
	d.Methods, d.Method, d.OrderKey = paymentMethods, method, key
	v.Data = d
	s.render(w, r, status, "checkout", v)
}

const outOfStockMessage = "Some products in your cart are out of stock, or not in the quantity you asked for. Change your cart, then check out."

// checkout answers POST /checkout (payment_method, order_key): it places the order
// and sends the browser to it. The order key, made when the checkout page was
// rendered, is the API's Idempotency-Key: a form posted twice (a double click, a
// reload of the answer) places one order.
func (s *Shop) checkout(w http.ResponseWriter, r *http.Request) {
	sess, c, ok := s.checkoutCart(w, r)
	if !ok {
		return
	}
	method := r.PostFormValue("payment_method")
	key := r.PostFormValue("order_key")
	again := func(status int, msg string, fields []apperr.FieldError) {
		s.renderCheckout(w, r, sess, c, status, msg, fields, method, key)
	}
	if !knownPaymentMethod(method) {
		again(http.StatusUnprocessableEntity, "Choose how to pay.", []apperr.FieldError{{Field: "payment_method", Message: "Choose how to pay."}})
		return
	}
	if _, err := uuid.Parse(key); err != nil {
		again(http.StatusUnprocessableEntity, "This form is out of date. Check your order and place it again.", nil)
		return
	}
	// The stock is checked here only to say so before the order is placed; the
	// saga's reservation is what decides, and the order page tells its answer.
	d, err := s.cartItems(r, c)
	if err != nil {
		s.failed(w, r, "Checkout", err)
		return
	}
	if d.Short {
		again(http.StatusConflict, outOfStockMessage, nil)
		return
	}
	type line struct {
		ProductID string `json:"product_id"`
		Quantity  int    `json:"quantity"`
	}
	body := struct {
		Items         []line `json:"items"`
		PaymentMethod string `json:"payment_method"`
	}{PaymentMethod: method}
	for _, l := range c {
		body.Items = append(body.Items, line{l.ProductID.String(), l.Quantity})
	}
	var o order
	err = s.api.do(r, call{Method: http.MethodPost, Path: "/api/v1/orders", Token: sess.Tokens.Access,
		Body: body, Header: http.Header{"Idempotency-Key": {key}}}, &o)
	if err != nil {
		status, msg := explain(err)
		again(status, msg, nil)
		return
	}
	cart(nil).write(w, r)
	http.Redirect(w, r, "/orders/"+o.ID, http.StatusSeeOther)
}
