// Package product is the inventory service's catalogue: products with a unique SKU, a
// price in integer minor units of one currency, and a stock count that never goes below
// zero. Input is parsed into typed values (SKU, Name, Price, ...) before it reaches the
// Service, so an invalid value cannot get in.
package product

import (
	"context"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/page"
)

// The errors of the domain. Each is an *apperr.Error, so it renders as the right
// problem response and callers match it with errors.Is.
var (
	// ErrNotFound means there is no such product.
	ErrNotFound = apperr.E(apperr.NotFound, "no such product")
	// ErrSKUTaken means another product has the SKU.
	ErrSKUTaken = apperr.E(apperr.Conflict, "a product with this sku already exists")
)

// Limits on input.
const (
	MaxSKULen         = 64
	MaxNameLen        = 200
	MaxDescriptionLen = 2000
	MaxSearchLen      = 100
	// MaxPrice (one million in major units) keeps every total of an order far from
	// int64's limit and from the 2^53 that JSON numbers hold exactly.
	MaxPrice Price = 100_000_000
	// MaxStock leaves headroom below the database's 32-bit integer for restocks.
	MaxStock Stock = 1_000_000_000
)

// SKU is a product's stock-keeping unit: trimmed, 1 to MaxSKULen of A-Z, a-z, 0-9, '-'
// and '_'. It is unique, and compared exactly (letter case counts).
type SKU string

var skuChars = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// ParseSKU reads a SKU. It returns an apperr.Invalid error saying what is wrong.
func ParseSKU(s string) (SKU, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return "", invalid("is required")
	case len(s) > MaxSKULen:
		return "", invalid("must be at most %d characters", MaxSKULen)
	case !skuChars.MatchString(s):
		return "", invalid("may contain only letters A-Z and a-z, digits, '-' and '_'")
	}
	return SKU(s), nil
}

func (s SKU) String() string { return string(s) }

// Name is a product's display name: trimmed, 1 to MaxNameLen characters, no control
// characters.
type Name string

// ParseName reads a name. It returns an apperr.Invalid error.
func ParseName(s string) (Name, error) {
	s = strings.TrimSpace(s)
	n := utf8.RuneCountInString(s)
	switch {
	case n == 0:
		return "", invalid("is required")
	case n > MaxNameLen:
		return "", invalid("must be at most %d characters", MaxNameLen)
	case !utf8.ValidString(s):
		return "", invalid("must be valid UTF-8")
	case strings.ContainsFunc(s, unicode.IsControl):
		return "", invalid("must not contain control characters")
	}
	return Name(s), nil
}

func (n Name) String() string { return string(n) }

// Description is a product's longer text: trimmed, at most MaxDescriptionLen
// characters, possibly empty. Line breaks and tabs are allowed; other control
// characters are not.
type Description string

// ParseDescription reads a description. It returns an apperr.Invalid error.
func ParseDescription(s string) (Description, error) {
	s = strings.TrimSpace(s)
	switch {
	case utf8.RuneCountInString(s) > MaxDescriptionLen:
		return "", invalid("must be at most %d characters", MaxDescriptionLen)
	case !utf8.ValidString(s):
		return "", invalid("must be valid UTF-8")
	case strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\r' && r != '\t' }):
		return "", invalid("must not contain control characters other than line breaks and tabs")
	}
	return Description(s), nil
}

func (d Description) String() string { return string(d) }

// Price is an amount in the minor units of a currency (cents): 1 to MaxPrice.
type Price int64

// ParsePrice reads a price in minor units. It returns an apperr.Invalid error.
func ParsePrice(cents int64) (Price, error) {
	switch {
	case cents <= 0:
		return 0, invalid("must be greater than 0 (an amount in cents)")
	case Price(cents) > MaxPrice:
		return 0, invalid("must be at most %d", MaxPrice)
	}
	return Price(cents), nil
}

// Currency is an ISO 4217 code: three upper-case letters, such as USD.
type Currency string

// ParseCurrency reads a currency code. It returns an apperr.Invalid error.
func ParseCurrency(s string) (Currency, error) {
	if len(s) != 3 || strings.ContainsFunc(s, func(r rune) bool { return r < 'A' || r > 'Z' }) {
		return "", invalid("must be an ISO 4217 code of three upper-case letters, such as USD")
	}
	return Currency(s), nil
}

func (c Currency) String() string { return string(c) }

// Stock is how many units are on hand and not reserved: 0 to MaxStock.
type Stock int

// ParseStock reads a stock count. It returns an apperr.Invalid error.
func ParseStock(n int) (Stock, error) {
	switch {
	case n < 0:
		return 0, invalid("must not be negative")
	case Stock(n) > MaxStock:
		return 0, invalid("must be at most %d", MaxStock)
	}
	return Stock(n), nil
}

// Search narrows a list of the catalogue to the products that contain each of its
// words (runs of text between white space): each word must occur, letter case
// ignored, in the product's name, SKU or description, not necessarily all in the same
// one nor in order, so "blue mug" finds "Mug, blue" and "mug-0" the SKU "MUG-001". A
// word matches as the text it is: '%', '_' and '\' are not wildcards. The zero Search
// has no words and matches every product.
type Search string

// ParseSearch reads a search: trimmed, at most MaxSearchLen characters, valid UTF-8
// without control characters; empty (or only white space) is no search. It returns
// an apperr.Invalid error.
func ParseSearch(s string) (Search, error) {
	s = strings.TrimSpace(s)
	switch {
	case !utf8.ValidString(s):
		return "", invalid("must be valid UTF-8")
	case utf8.RuneCountInString(s) > MaxSearchLen:
		return "", invalid("must be at most %d characters", MaxSearchLen)
	case strings.ContainsFunc(s, unicode.IsControl):
		// Postgres refuses a NUL in text, which would be a 500 instead of a 422;
		// a tab or line break has no business in a search box either.
		return "", invalid("must not contain control characters")
	}
	return Search(s), nil
}

// Words are the words each product found must contain; none for the zero Search.
func (s Search) Words() []string { return strings.Fields(string(s)) }

func (s Search) String() string { return string(s) }

// New is a valid new product: what Create and Seed take.
type New struct {
	SKU         SKU
	Name        Name
	Description Description
	Price       Price
	Currency    Currency
	Stock       Stock
}

// Product is a product in the catalogue.
type Product struct {
	ID          uuid.UUID
	SKU         SKU
	Name        Name
	Description Description
	Price       Price
	Currency    Currency
	Stock       Stock
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// Patch is a change to a product: each field that is not nil replaces the product's.
// The SKU may change (to correct a typo, say): orders and reservations refer to a
// product by its id, never its SKU, and a new SKU is unique like a created one. The
// currency never changes: reservations and orders priced in it would no longer add up.
type Patch struct {
	SKU         *SKU
	Name        *Name
	Description *Description
	Price       *Price
	Stock       *Stock
}

// IsEmpty reports whether the patch changes nothing.
func (p Patch) IsEmpty() bool {
	return p.SKU == nil && p.Name == nil && p.Description == nil && p.Price == nil && p.Stock == nil
}

// Apply returns pr with the patch's fields replaced (UpdatedAt is left alone).
func (p Patch) Apply(pr Product) Product {
	if p.SKU != nil {
		pr.SKU = *p.SKU
	}
	if p.Name != nil {
		pr.Name = *p.Name
	}
	if p.Description != nil {
		pr.Description = *p.Description
	}
	if p.Price != nil {
		pr.Price = *p.Price
	}
	if p.Stock != nil {
		pr.Stock = *p.Stock
	}
	return pr
}

// Store keeps products. Implementations translate their own errors into the domain's:
// the ones named below, or an apperr.Unavailable error when the storage cannot be
// reached.
type Store interface {
	// CreateProduct stores p and, in the same transaction, its product.created event.
	// It returns ErrSKUTaken when another product has p's SKU.
	CreateProduct(ctx context.Context, p Product) error
	// UpdateProduct applies patch to the product with the id, setting its UpdatedAt to
	// now, and in the same transaction writes its product.updated event; it returns
	// the product as changed, ErrNotFound, or ErrSKUTaken (and changes nothing) when
	// the patch's SKU is another product's. A concurrent reservation's stock change
	// is never lost unless the patch itself sets the stock.
	UpdateProduct(ctx context.Context, id uuid.UUID, patch Patch, now time.Time) (Product, error)
	// Product returns the product, or ErrNotFound.
	Product(ctx context.Context, id uuid.UUID) (Product, error)
	// Products lists the products that match search (every product for the zero
	// Search) oldest first (by CreatedAt, then ID), after pr.After, up to pr.Limit+1
	// of them (one more than a page, so that page.Next can tell whether another
	// follows).
	Products(ctx context.Context, search Search, pr page.Request) ([]Product, error)
	// SeedProducts stores each of ps whose SKU no product has yet, each with its
	// product.created event, and leaves the others alone; it is safe to call from
	// several processes at once. It returns how many it stored.
	SeedProducts(ctx context.Context, ps []Product) (int, error)
}

// Service runs the catalogue.
type Service struct {
	store Store
	now   func() time.Time
}

// NewService makes the service; now tells the time (nil is time.Now; tests pass their
// own).
func NewService(store Store, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{store: store, now: now}
}

// Create adds a product. It returns ErrSKUTaken when the SKU is in use.
func (s *Service) Create(ctx context.Context, n New) (Product, error) {
	p := s.newProduct(n, s.timestamp())
	if err := s.store.CreateProduct(ctx, p); err != nil {
		return Product{}, err
	}
	return p, nil
}

// Update changes a product and returns it as changed, ErrNotFound, or ErrSKUTaken when
// the patch's SKU is in use by another product. An empty patch changes nothing (and
// publishes nothing): it returns the product as it is.
func (s *Service) Update(ctx context.Context, id uuid.UUID, patch Patch) (Product, error) {
	if patch.IsEmpty() {
		return s.store.Product(ctx, id)
	}
	return s.store.UpdateProduct(ctx, id, patch, s.timestamp())
}

// Get returns the product, or ErrNotFound.
func (s *Service) Get(ctx context.Context, id uuid.UUID) (Product, error) {
	return s.store.Product(ctx, id)
}

// List returns a page of the products that match search (of the whole catalogue for
// the zero Search), oldest first, with one product more than pr.Limit when another
// page follows (for page.Next). The cursor is a position in that order, so the
// next_cursor of a page of a search, asked with the same search, continues it.
func (s *Service) List(ctx context.Context, search Search, pr page.Request) ([]Product, error) {
	return s.store.Products(ctx, search, pr)
}

// Seed adds each product of ns whose SKU is not in the catalogue yet and returns how
// many it added; running it again adds nothing. The products are listed in the order
// given.
func (s *Service) Seed(ctx context.Context, ns []New) (int, error) {
	now := s.timestamp()
	ps := make([]Product, len(ns))
	for i, n := range ns {
		// A microsecond apart, so that the catalogue lists them in the order given.
		ps[i] = s.newProduct(n, now.Add(time.Duration(i)*time.Microsecond))
	}
	return s.store.SeedProducts(ctx, ps)
}

func (s *Service) newProduct(n New, at time.Time) Product {
	return Product{
		ID: newID(), SKU: n.SKU, Name: n.Name, Description: n.Description,
		Price: n.Price, Currency: n.Currency, Stock: n.Stock,
		CreatedAt: at, UpdatedAt: at,
	}
}

// timestamp is now at the database's precision, so that what a call returns equals
// what a later read returns.
func (s *Service) timestamp() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

// newID is a time-ordered UUID (v7), which keeps index inserts local.
func newID() uuid.UUID {
	// NewV7 fails only when crypto/rand does, which since Go 1.24 crashes instead.
	return uuid.Must(uuid.NewV7())
}

func invalid(format string, args ...any) error { return apperr.E(apperr.Invalid, format, args...) }
