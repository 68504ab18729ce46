package storefront

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
)

// orders answers GET /orders: the shopper's orders, newest first.
func (s *Shop) orders(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.signedIn(w, r)
	if !ok {
		return
	}
	params := url.Values{"limit": {"20"}}
	cursor := r.URL.Query().Get("cursor")
	if cursor != "" {
		params.Set("cursor", cursor)
	}
	var list orderList
	if err := s.api.do(r, call{Method: http.MethodGet, Path: "/api/v1/orders?" + params.Encode(), Token: sess.Tokens.Access}, &list); err != nil {
		s.failed(w, r, "Your orders", err)
		return
	}
	v := s.view(w, r, "Your orders")
	v.Session, v.Nav = sess, "orders"
	type data struct {
		Orders []order
		Next   string
		Paged  bool
	}
	d := data{Orders: list.Items, Paged: cursor != ""}
	if list.NextCursor != nil {
		d.Next = "/orders?" + url.Values{"cursor": {*list.NextCursor}}.Encode()
	}
	v.Data = d
	s.render(w, r, http.StatusOK, "orders", v)
}

// orderItem is an order line with its product's name.
type orderItem struct {
	orderLine
	Name string
}

// orderData is the order page's data.
type orderData struct {
	Order    order
	Items    []orderItem
	Payments []payment
	Live     bool // the status may still change: the page listens for it
}

// order answers GET /orders/{id}: the order, its status in words, and, while the
// status may still change, a stream of its changes for the script to show.
func (s *Shop) order(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.signedIn(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	o, err := s.getOrder(r, sess, id)
	if err != nil {
		s.failed(w, r, "Order", err)
		return
	}
	d := orderData{Order: o, Live: o.Status != "cancelled"}
	for _, l := range o.Items {
		name := "A product no longer in the catalogue"
		if p, err := s.getProduct(r, l.ProductID); err == nil {
			name = p.Name
		}
		d.Items = append(d.Items, orderItem{l, name})
	}
	var pays paymentList
	if err := s.api.do(r, call{Method: http.MethodGet, Path: "/api/v1/payments?order_id=" + url.QueryEscape(o.ID), Token: sess.Tokens.Access}, &pays); err == nil {
		d.Payments = pays.Items
	}
	v := s.view(w, r, "Order "+orderRef(o.ID))
	v.Session, v.Nav, v.Data = sess, "orders", d
	s.render(w, r, http.StatusOK, "order", v)
}

// orderRef is how an order is called to its shopper: the last eight characters of
// its id, in capitals, as the e-mails about it call it (notifications' short).
func orderRef(id string) string {
	if len(id) < 8 {
		return strings.ToUpper(id)
	}
	return strings.ToUpper(id[len(id)-8:])
}

// getOrder reads one of the shopper's orders.
func (s *Shop) getOrder(r *http.Request, sess *Session, id string) (order, error) {
	if _, err := uuid.Parse(id); err != nil {
		return order{}, apperr.E(apperr.NotFound, "no such order")
	}
	var o order
	err := s.api.do(r, call{Method: http.MethodGet, Path: "/api/v1/orders/" + id, Token: sess.Tokens.Access}, &o)
	return o, err
}

// orderLive answers GET /orders/{id}/live: the API's status stream of the order
// (server-sent events), for the order page's script. The browser cannot send the
// bearer token an EventSource has no way to set, so the shop adds it from the
// session and passes the stream through as the API writes it.
func (s *Shop) orderLive(w http.ResponseWriter, r *http.Request) {
	sess, err := s.session(r)
	if err != nil {
		status, msg := explain(err)
		if apperr.CodeOf(err) == apperr.Unauthorized {
			status, msg = http.StatusUnauthorized, "sign in first"
		}
		http.Error(w, msg, status)
		return
	}
	id := r.PathValue("id")
	if _, err := uuid.Parse(id); err != nil {
		http.NotFound(w, r)
		return
	}
	// The page's policy is for pages; the stream is not one.
	w.Header().Del("Content-Security-Policy")
	s.api.stream(w, r, call{Method: http.MethodGet, Path: "/api/v1/orders/" + id + "/events", Token: sess.Tokens.Access,
		Header: http.Header{"Accept": {"text/event-stream"}}})
}

// cancelOrder answers POST /orders/{id}/cancel.
func (s *Shop) cancelOrder(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.signedIn(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	if _, err := uuid.Parse(id); err != nil {
		s.failed(w, r, "Order", apperr.E(apperr.NotFound, "no such order"))
		return
	}
	err := s.api.do(r, call{Method: http.MethodPost, Path: "/api/v1/orders/" + id + "/cancel", Token: sess.Tokens.Access}, nil)
	if apperr.CodeOf(err) == apperr.Conflict {
		err = apperr.E(apperr.Conflict, "this order can no longer be cancelled")
	}
	if err != nil {
		s.failed(w, r, "Order", err)
		return
	}
	http.Redirect(w, r, "/orders/"+id+"?m=cancelling", http.StatusSeeOther)
}

// inbox answers GET /inbox: the shopper's notifications, newest first.
func (s *Shop) inbox(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.signedIn(w, r)
	if !ok {
		return
	}
	var list notificationList
	if err := s.api.do(r, call{Method: http.MethodGet, Path: "/api/v1/notifications?limit=50", Token: sess.Tokens.Access}, &list); err != nil {
		s.failed(w, r, "Inbox", err)
		return
	}
	v := s.view(w, r, "Inbox")
	v.Session, v.Nav, v.Data = sess, "inbox", list.Items
	s.render(w, r, http.StatusOK, "inbox", v)
}
