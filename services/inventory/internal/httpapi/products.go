package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/httpjson"
	"github.com/bazaar-shop/bazaar/pkg/page"
	"github.com/bazaar-shop/bazaar/pkg/problem"
	"github.com/bazaar-shop/bazaar/services/inventory/internal/product"
)

// productResponse is a product as clients see it.
type productResponse struct {
	ID          string    `json:"id"`
	SKU         string    `json:"sku"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	PriceCents  int64     `json:"price_cents"`
	Currency    string    `json:"currency"`
	Stock       int       `json:"stock"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

func toProductResponse(p product.Product) productResponse {
	return productResponse{
		ID:          p.ID.String(),
		SKU:         p.SKU.String(),
		Name:        p.Name.String(),
		Description: p.Description.String(),
		PriceCents:  int64(p.Price),
		Currency:    p.Currency.String(),
		Stock:       int(p.Stock),
		CreatedAt:   p.CreatedAt.UTC(),
		UpdatedAt:   p.UpdatedAt.UTC(),
	}
}

// productListResponse is a page of the catalogue.
type productListResponse struct {
	Items      []productResponse `json:"items"`
	NextCursor *string           `json:"next_cursor"`
}

func cursorOf(p product.Product) page.Cursor { return page.Cursor{Time: p.CreatedAt, ID: p.ID} }

// listProducts answers GET /api/v1/products?q=: a page of the catalogue, oldest
// first, narrowed to the products that contain every word of q when it is given
// (product.Search); 422 naming each bad parameter.
func listProducts(log *slog.Logger, products *product.Service) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		var f apperr.Fields
		search := apperr.Parse(&f, "q", q.Get("q"), product.ParseSearch)
		pr, err := page.Parse(q)
		var pageErr *apperr.Error
		if errors.As(err, &pageErr) {
			f = append(f, pageErr.Fields...)
		}
		if err := f.Err(); err != nil {
			problem.Write(w, r, log, err)
			return
		}
		found, err := products.List(r.Context(), search, pr)
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		items, next := page.Next(found, pr.Limit, cursorOf)
		resp := productListResponse{Items: make([]productResponse, len(items)), NextCursor: next}
		for i, p := range items {
			resp.Items[i] = toProductResponse(p)
		}
		httpjson.Write(w, http.StatusOK, resp)
	}
}

// getProduct answers GET /api/v1/products/{id}.
func getProduct(log *slog.Logger, products *product.Service) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := pathID(r.PathValue("id"), product.ErrNotFound)
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		p, err := products.Get(r.Context(), id)
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		httpjson.Write(w, http.StatusOK, toProductResponse(p))
	}
}

// createProductRequest is a new product. The numbers are pointers so that a missing
// one is "required" rather than a zero.
type createProductRequest struct {
	SKU         string `json:"sku"`
	Name        string `json:"name"`
	Description string `json:"description"`
	PriceCents  *int64 `json:"price_cents"`
	Currency    string `json:"currency"`
	Stock       *int   `json:"stock"`
}

// toNew parses the request into a new product, reporting every bad field.
func (req createProductRequest) toNew() (product.New, error) {
	var f apperr.Fields
	n := product.New{
		SKU:         apperr.Parse(&f, "sku", req.SKU, product.ParseSKU),
		Name:        apperr.Parse(&f, "name", req.Name, product.ParseName),
		Description: apperr.Parse(&f, "description", req.Description, product.ParseDescription),
		Currency:    apperr.Parse(&f, "currency", req.Currency, product.ParseCurrency),
	}
	if req.PriceCents == nil {
		f.Add("price_cents", "is required")
	} else {
		n.Price = apperr.Parse(&f, "price_cents", *req.PriceCents, product.ParsePrice)
	}
	if req.Stock == nil {
		f.Add("stock", "is required")
	} else {
		n.Stock = apperr.Parse(&f, "stock", *req.Stock, product.ParseStock)
	}
	return n, f.Err()
}

// createProduct answers POST /api/v1/products (admin): 201 with the product and its
// Location.
func createProduct(log *slog.Logger, products *product.Service) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req createProductRequest
		if err := httpjson.Decode(r, &req); err != nil {
			problem.Write(w, r, log, err)
			return
		}
		n, err := req.toNew()
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		p, err := products.Create(r.Context(), n)
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		log.InfoContext(r.Context(), "product created", "product_id", p.ID, "sku", p.SKU)
		w.Header().Set("Location", "/api/v1/products/"+p.ID.String())
		httpjson.Write(w, http.StatusCreated, toProductResponse(p))
	}
}

// field is a member of a merge-style patch: absent (Set false), null (Null), or a value.
// A plain pointer cannot tell absent from null; this can, because encoding/json calls
// UnmarshalJSON for a present member, null included, and never for an absent one.
type field[T any] struct {
	Set   bool
	Null  bool
	Value T
}

// UnmarshalJSON records that the member was present, and its value.
func (f *field[T]) UnmarshalJSON(b []byte) error {
	f.Set = true
	if bytes.Equal(b, []byte("null")) {
		f.Null = true
		return nil
	}
	return json.Unmarshal(b, &f.Value)
}

// patchProductRequest changes some of a product: members left out stay as they are.
// The currency cannot change; sending it (or any other unknown member) is a 400. A new
// SKU follows the create's rules: 422 when invalid, 409 when another product has it.
type patchProductRequest struct {
	SKU         field[string] `json:"sku"`
	Name        field[string] `json:"name"`
	Description field[string] `json:"description"`
	PriceCents  field[int64]  `json:"price_cents"`
	Stock       field[int]    `json:"stock"`
}

// toPatch parses the request, reporting every bad field; null is never a value here.
func (req patchProductRequest) toPatch() (product.Patch, error) {
	var f apperr.Fields
	var p product.Patch
	p.SKU = patchField(&f, "sku", req.SKU, product.ParseSKU)
	p.Name = patchField(&f, "name", req.Name, product.ParseName)
	p.Description = patchField(&f, "description", req.Description, product.ParseDescription)
	p.Price = patchField(&f, "price_cents", req.PriceCents, product.ParsePrice)
	p.Stock = patchField(&f, "stock", req.Stock, product.ParseStock)
	return p, f.Err()
}

// patchField parses a patch member: nil when absent, a field error when null or
// invalid.
func patchField[In, Out any](f *apperr.Fields, name string, v field[In], parser func(In) (Out, error)) *Out {
	switch {
	case !v.Set:
		return nil
	case v.Null:
		f.Add(name, "must not be null; leave it out to keep the current value")
		return nil
	}
	before := len(*f)
	out := apperr.Parse(f, name, v.Value, parser)
	if len(*f) > before {
		return nil
	}
	return &out
}

// updateProduct answers PATCH /api/v1/products/{id} (admin): 200 with the product as
// changed.
func updateProduct(log *slog.Logger, products *product.Service) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := pathID(r.PathValue("id"), product.ErrNotFound)
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		var req patchProductRequest
		if err := httpjson.Decode(r, &req); err != nil {
			problem.Write(w, r, log, err)
			return
		}
		patch, err := req.toPatch()
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		p, err := products.Update(r.Context(), id, patch)
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		log.InfoContext(r.Context(), "product updated", "product_id", p.ID, "sku", p.SKU)
		httpjson.Write(w, http.StatusOK, toProductResponse(p))
	}
}
