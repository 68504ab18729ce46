package storefront

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
)

// systemHealth is GET /health's report (docs/openapi.yaml, SystemHealth).
type systemHealth struct {
	Status    string                   `json:"status"`
	Services  map[string]serviceHealth `json:"services"`
	Upstreams map[string]struct {
		Breaker   string `json:"breaker"`
		Instances []struct {
			Instance  int               `json:"instance"`
			Status    string            `json:"status"`
			Checks    map[string]string `json:"checks"`
			InService bool              `json:"in_service"`
			Failures  int               `json:"failures"`
		} `json:"instances"`
	} `json:"upstreams"`
}

type serviceHealth struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
}

// adminHome answers GET /admin: every service and instance as GET /health sees them,
// and the way to the other operations pages.
func (s *Shop) adminHome(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.adminOnly(w, r)
	if !ok {
		return
	}
	var h systemHealth
	err := s.api.do(r, call{Method: http.MethodGet, Path: "/health", AnyStatus: true}, &h)
	v := s.view(w, r, "Administration")
	v.Session, v.Nav = sess, "admin"
	if err != nil || h.Status == "" {
		status, msg := explain(err)
		if err == nil {
			status, msg = http.StatusBadGateway, "The health report could not be read."
		}
		_ = status
		v.Error = "The system's health could not be read: " + msg
	}
	type data struct {
		Health   systemHealth
		Names    []string
		Links    Links
		Sagas    string
		Products string
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range h.Services {
			if !yield(n) {
				return
			}
		}
	})
	v.Data = data{Health: h, Names: names, Links: s.links}
	s.render(w, r, http.StatusOK, "admin_home", v)
}

// productForm is the product form's fields as posted.
type productForm struct {
	SKU, Name, Description, Price, Currency, Stock string
}

func readProductForm(r *http.Request) productForm {
	f := func(k string) string { return strings.TrimSpace(r.PostFormValue(k)) }
	return productForm{SKU: f("sku"), Name: f("name"), Description: f("description"), Price: f("price"), Currency: f("currency"), Stock: f("stock")}
}

// body is the form as the API's JSON, with the numbers parsed; bad numbers are field
// errors named as the form names them.
func (p productForm) body(creating bool) (map[string]any, error) {
	var f apperr.Fields
	b := map[string]any{"name": p.Name, "description": p.Description, "sku": p.SKU}
	if cents, ok := parseMoney(p.Price); ok {
		b["price_cents"] = cents
	} else {
		f.Add("price", "must be an amount such as 12.50")
	}
	if n, err := strconv.Atoi(p.Stock); err == nil {
		b["stock"] = n
	} else {
		f.Add("stock", "must be a whole number")
	}
	if creating {
		b["currency"] = p.Currency
	}
	return b, f.Err()
}

// parseMoney reads "12", "12.5" or "12.50" as cents.
func parseMoney(s string) (int64, bool) {
	whole, frac, _ := strings.Cut(s, ".")
	if len(frac) > 2 || whole == "" {
		return 0, false
	}
	for len(frac) < 2 {
		frac += "0"
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	c, cerr := strconv.ParseInt(frac, 10, 64)
	if err != nil || cerr != nil || w < 0 || w > 1e12 {
		return 0, false
	}
	return w*100 + c, true
}

// formOf is the form showing product p.
func formOf(p product) productForm {
	return productForm{SKU: p.SKU, Name: p.Name, Description: p.Description,
		Price: strings.TrimSuffix(money(p.PriceCents, ""), " "), Currency: p.Currency, Stock: strconv.Itoa(p.Stock)}
}

// adminProducts answers GET /admin/products: the catalogue, to edit, and a form for a
// new product.
func (s *Shop) adminProducts(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.adminOnly(w, r)
	if !ok {
		return
	}
	s.renderProducts(w, r, sess, http.StatusOK, productForm{Currency: "EUR", Stock: "0"}, nil)
}

func (s *Shop) renderProducts(w http.ResponseWriter, r *http.Request, sess *Session, status int, form productForm, failure error) {
	params := url.Values{"limit": {"100"}}
	if c := r.URL.Query().Get("cursor"); c != "" {
		params.Set("cursor", c)
	}
	var list productList
	if err := s.api.do(r, call{Method: http.MethodGet, Path: "/api/v1/products?" + params.Encode()}, &list); err != nil {
		s.failed(w, r, "Products", err)
		return
	}
	v := s.view(w, r, "Products")
	v.Session, v.Nav = sess, "admin"
	if failure != nil {
		status = v.fail(failure)
	}
	type data struct {
		Products []product
		Next     string
		Form     productForm
	}
	d := data{Products: list.Items, Form: form}
	if list.NextCursor != nil {
		d.Next = "/admin/products?" + url.Values{"cursor": {*list.NextCursor}}.Encode()
	}
	v.Data = d
	s.render(w, r, status, "admin_products", v)
}

// adminCreateProduct answers POST /admin/products.
func (s *Shop) adminCreateProduct(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.adminOnly(w, r)
	if !ok {
		return
	}
	form := readProductForm(r)
	body, err := form.body(true)
	var p product
	if err == nil {
		err = s.api.do(r, call{Method: http.MethodPost, Path: "/api/v1/products", Token: sess.Tokens.Access, Body: body}, &p)
	}
	if err != nil {
		s.renderProducts(w, r, sess, http.StatusUnprocessableEntity, form, formFields(err))
		return
	}
	http.Redirect(w, r, "/admin/products/"+p.ID+"?m=created", http.StatusSeeOther)
}

// formFields names the API's field errors as the form does (price_cents is price).
func formFields(err error) error {
	var ae *apperr.Error
	if !errors.As(err, &ae) {
		return err
	}
	out := *ae
	out.Fields = nil
	for _, f := range ae.Fields {
		if f.Field == "price_cents" {
			f.Field = "price"
		}
		out.Fields = append(out.Fields, f)
	}
	return &out
}

// adminProduct answers GET /admin/products/{id}: the product's form.
func (s *Shop) adminProduct(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.adminOnly(w, r)
	if !ok {
		return
	}
	p, err := s.getProduct(r, r.PathValue("id"))
	if err != nil {
		s.failed(w, r, "Product", err)
		return
	}
	s.renderProduct(w, r, sess, http.StatusOK, p, formOf(p), nil)
}

func (s *Shop) renderProduct(w http.ResponseWriter, r *http.Request, sess *Session, status int, p product, form productForm, failure error) {
	v := s.view(w, r, "Edit "+p.Name)
	v.Session, v.Nav = sess, "admin"
	if failure != nil {
		status = v.fail(failure)
	}
	type data struct {
		Product product
		Form    productForm
	}
	v.Data = data{p, form}
	s.render(w, r, status, "admin_product", v)
}

// adminUpdateProduct answers POST /admin/products/{id}: a PATCH of what the form
// holds.
func (s *Shop) adminUpdateProduct(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.adminOnly(w, r)
	if !ok {
		return
	}
	p, err := s.getProduct(r, r.PathValue("id"))
	if err != nil {
		s.failed(w, r, "Product", err)
		return
	}
	form := readProductForm(r)
	form.Currency = p.Currency
	body, err := form.body(false)
	if err == nil {
		err = s.api.do(r, call{Method: http.MethodPatch, Path: "/api/v1/products/" + p.ID, Token: sess.Tokens.Access, Body: body}, &p)
	}
	if err != nil {
		s.renderProduct(w, r, sess, http.StatusUnprocessableEntity, p, form, formFields(err))
		return
	}
	http.Redirect(w, r, "/admin/products/"+p.ID+"?m=saved", http.StatusSeeOther)
}

// sagaStates are the states the saga list offers, those wanting an operator first.
var sagaStates = []string{"stuck", "compensation_failed", "running", "compensating", "done"}

// adminSagas answers GET /admin/sagas?state=: the sagas in a state, by default the
// unfinished ones.
func (s *Shop) adminSagas(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.adminOnly(w, r)
	if !ok {
		return
	}
	state := r.URL.Query().Get("state")
	params := url.Values{"limit": {"50"}}
	if state != "" {
		params.Set("state", state)
	}
	var list struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := s.api.do(r, call{Method: http.MethodGet, Path: "/api/v1/admin/sagas?" + params.Encode(), Token: sess.Tokens.Access}, &list); err != nil {
		s.failed(w, r, "Sagas", err)
		return
	}
	type step struct {
		Step    string `json:"step"`
		Attempt int    `json:"attempt"`
		Outcome string `json:"outcome"`
		Error   string `json:"error"`
		At      string `json:"at"`
	}
	type saga struct {
		OrderID     string `json:"order_id"`
		OrderStatus string `json:"order_status"`
		State       string `json:"state"`
		NextStep    string `json:"next_step"`
		Attempts    int    `json:"attempts"`
		LastError   string `json:"last_error"`
		UpdatedAt   string `json:"updated_at"`
		Steps       []step `json:"steps"`
	}
	var sagas []saga
	for _, raw := range list.Items {
		var sg saga
		if err := json.Unmarshal(raw, &sg); err == nil {
			sagas = append(sagas, sg)
		}
	}
	v := s.view(w, r, "Sagas")
	v.Session, v.Nav = sess, "admin"
	type data struct {
		States []string
		State  string
		Sagas  []saga
	}
	v.Data = data{States: sagaStates, State: state, Sagas: sagas}
	s.render(w, r, http.StatusOK, "admin_sagas", v)
}
