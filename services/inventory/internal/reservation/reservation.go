// Package reservation is the inventory side of the create-order saga: pricing a basket
// (a quote), and holding its stock for an order (a reservation) until the order is
// confirmed (commit) or given up (release, or expiry after a TTL).
//
// A reservation is all or nothing and keyed by the order id, so the saga can retry
// every call:
//
//	reserve ──▶ reserved ──commit──▶ committed
//	               │                     │
//	               └──release/expiry──▶ released ◀──release── (customer cancellation)
//
// Reserving takes each line's stock with a conditional decrement, in product-id order,
// in one transaction; a line short of stock undoes the others and the order is refused
// with ErrOutOfStock (and is refused again if asked again). Releasing puts the stock
// back exactly once however often it is called. A release that arrives before its
// reserve (the saga gave up on a slow call) leaves a released reservation behind, so
// the late reserve finds it and holds nothing.
package reservation

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/services/inventory/internal/product"
)

// The errors of the domain. Each is an *apperr.Error, so it renders as the right
// problem response and callers match it with errors.Is.
var (
	// ErrNotFound means the order has no reservation.
	ErrNotFound = apperr.E(apperr.NotFound, "there is no reservation for this order")
	// ErrOutOfStock means some line of the order had too little stock; nothing was
	// reserved. Its problem code is out_of_stock.
	ErrOutOfStock = apperr.R(apperr.Conflict, "out_of_stock", "there is not enough stock for every item of the order; nothing was reserved")
	// ErrReleased means the reservation was released (it expired, or the order was
	// cancelled) and cannot be committed. Its problem code is reservation_released.
	ErrReleased = apperr.R(apperr.Conflict, "reservation_released", "the reservation was released (it expired or was cancelled) and cannot be committed")
	// ErrMixedCurrencies means the basket's products are priced in different
	// currencies, so it has no total.
	ErrMixedCurrencies = &apperr.Error{
		Code:    apperr.Invalid,
		Message: "the request has invalid fields",
		Fields:  []apperr.FieldError{{Field: "items", Message: "the products are priced in different currencies"}},
	}
)

// Limits of a basket, the same as an order's (docs/contract.md).
const (
	MaxQuantity = 100
	MaxItems    = 50
)

// Status is where a reservation is in its life.
type Status string

// The statuses callers see.
const (
	StatusReserved  Status = "reserved"
	StatusCommitted Status = "committed"
	StatusReleased  Status = "released"
)

// Quantity is how many units of a product a line wants: 1 to MaxQuantity.
type Quantity int

// ParseQuantity reads a quantity. It returns an apperr.Invalid error.
func ParseQuantity(n int) (Quantity, error) {
	if n < 1 || n > MaxQuantity {
		return 0, apperr.E(apperr.Invalid, "must be from 1 to %d", MaxQuantity)
	}
	return Quantity(n), nil
}

// Item is one line of a basket: a product and how many of it.
type Item struct {
	ProductID uuid.UUID
	Quantity  Quantity
}

// Basket is what a quote prices or a reservation holds: 1 to MaxItems items, each
// product at most once. Make one with NewBasket.
type Basket struct{ items []Item }

// NewBasket checks items. It returns an apperr.Invalid error whose fields are named
// as in the request (items, items[i].product_id).
func NewBasket(items []Item) (Basket, error) {
	var f apperr.Fields
	switch {
	case len(items) == 0:
		f.Add("items", "must have at least one item")
	case len(items) > MaxItems:
		f.Add("items", fmt.Sprintf("must have at most %d items", MaxItems))
	}
	first := make(map[uuid.UUID]int, len(items))
	for i, it := range items {
		if j, ok := first[it.ProductID]; ok {
			f.Add(fmt.Sprintf("items[%d].product_id", i), fmt.Sprintf("is already in items[%d]; give each product once", j))
			continue
		}
		first[it.ProductID] = i
	}
	if err := f.Err(); err != nil {
		return Basket{}, err
	}
	return Basket{items: slices.Clone(items)}, nil
}

// Items are the basket's items in the order given.
func (b Basket) Items() []Item { return slices.Clone(b.items) }

// ProductIDs are the products of the basket, in the order given.
func (b Basket) ProductIDs() []uuid.UUID {
	ids := make([]uuid.UUID, len(b.items))
	for i, it := range b.items {
		ids[i] = it.ProductID
	}
	return ids
}

// Offer is what a product sells for now.
type Offer struct {
	UnitPrice product.Price
	Currency  product.Currency
}

// Line is an item with its unit price.
type Line struct {
	ProductID uuid.UUID
	Quantity  Quantity
	UnitPrice product.Price
}

// Quote is a priced basket.
type Quote struct {
	Lines    []Line
	Currency product.Currency
}

// Total is the sum of the lines, in minor units of the currency.
func (q Quote) Total() int64 { return total(q.Lines) }

// PriceBasket prices b with the current offers of its products. A product with no
// offer is unknown: an apperr.Invalid error naming each such items[i].product_id.
// Products in different currencies are ErrMixedCurrencies.
func PriceBasket(b Basket, offers map[uuid.UUID]Offer) (Quote, error) {
	var f apperr.Fields
	q := Quote{Lines: make([]Line, 0, len(b.items))}
	for i, it := range b.items {
		o, ok := offers[it.ProductID]
		if !ok {
			f.Add(fmt.Sprintf("items[%d].product_id", i), "no such product")
			continue
		}
		q.Lines = append(q.Lines, Line{ProductID: it.ProductID, Quantity: it.Quantity, UnitPrice: o.UnitPrice})
		switch {
		case q.Currency == "":
			q.Currency = o.Currency
		case q.Currency != o.Currency:
			return Quote{}, ErrMixedCurrencies
		}
	}
	if err := f.Err(); err != nil {
		return Quote{}, err
	}
	return q, nil
}

// ByProduct returns lines sorted by product id (byte-wise, as Postgres sorts uuids): the order in which every transaction
// locks product rows, so that two of them never wait on each other in a cycle.
func ByProduct(lines []Line) []Line {
	sorted := slices.Clone(lines)
	slices.SortFunc(sorted, func(a, b Line) int { return bytes.Compare(a.ProductID[:], b.ProductID[:]) })
	return sorted
}

// Reservation is the stock held for an order.
type Reservation struct {
	OrderID uuid.UUID
	Status  Status
	// Lines are empty for a reservation that never held anything (released before it
	// was made).
	Lines []Line
	// Currency is "" when there are no lines.
	Currency product.Currency
	// ExpiresAt is when a reservation still reserved is released by expiry.
	ExpiresAt time.Time
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Total is the sum of the lines, in minor units of the currency.
func (r Reservation) Total() int64 { return total(r.Lines) }

func total(lines []Line) int64 {
	var sum int64
	for _, l := range lines {
		sum += int64(l.Quantity) * int64(l.UnitPrice)
	}
	return sum
}

// Store keeps reservations and the stock they hold. Implementations translate their
// own errors into the domain's: the ones named below, or an apperr.Unavailable error
// when the storage cannot be reached.
type Store interface {
	// Offers returns the current offer of each of the products that exists; unknown
	// ids are simply absent.
	Offers(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]Offer, error)
	// Reserve holds b's stock for the order, priced with PriceBasket, until expiresAt,
	// and writes stock.reserved, all in one transaction, and reports whether it made
	// the reservation. If the order has a reservation already, it returns that one
	// unchanged (created false), whatever its status. It never takes a product's stock
	// below zero, whatever runs concurrently: when any line is short it reserves
	// nothing, remembers the refusal and returns ErrOutOfStock, as it does for every
	// later call for the order. Unknown products and mixed currencies are
	// PriceBasket's errors, and leave nothing behind.
	Reserve(ctx context.Context, order uuid.UUID, b Basket, now, expiresAt time.Time) (Reservation, bool, error)
	// Commit marks the order's reservation committed (at now) and returns it; committing
	// again changes nothing. A released reservation is ErrReleased; no reservation (or a
	// refused one) is ErrNotFound.
	Commit(ctx context.Context, order uuid.UUID, now time.Time) (Reservation, error)
	// Release puts back the stock of the order's reservation, reserved or committed,
	// marks it released (at now) and writes stock.released, in one transaction, and
	// returns it. Releasing again changes nothing, however many calls run at once. An
	// order with no reservation gets an empty released one, so that a reserve arriving
	// later holds nothing.
	Release(ctx context.Context, order uuid.UUID, now time.Time) (Reservation, error)
	// Reservation returns the order's reservation, or ErrNotFound (also for a refused
	// one: it holds nothing).
	Reservation(ctx context.Context, order uuid.UUID) (Reservation, error)
	// ExpireDue releases, as Release does, up to limit reservations still reserved whose
	// ExpiresAt is not after now, in one transaction, skipping any that another
	// transaction is changing; it returns how many it released.
	ExpireDue(ctx context.Context, now time.Time, limit int) (int, error)
}

// ExpireBatch is how many reservations one expiry transaction releases.
const ExpireBatch = 100

// Service quotes baskets and reserves, commits and releases their stock.
type Service struct {
	store Store
	ttl   time.Duration
	now   func() time.Time
}

// NewService makes the service: reservations not committed within ttl are released by
// ExpireDue; now tells the time (nil is time.Now; tests pass their own).
func NewService(store Store, ttl time.Duration, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{store: store, ttl: ttl, now: now}
}

// Quote prices b with the current prices; it changes nothing. Errors are
// PriceBasket's.
func (s *Service) Quote(ctx context.Context, b Basket) (Quote, error) {
	offers, err := s.store.Offers(ctx, b.ProductIDs())
	if err != nil {
		return Quote{}, err
	}
	return PriceBasket(b, offers)
}

// Reserve holds b's stock for the order (see Store.Reserve) and reports whether this
// call made the reservation. It returns ErrOutOfStock when some line is short, and
// PriceBasket's errors.
func (s *Service) Reserve(ctx context.Context, order uuid.UUID, b Basket) (Reservation, bool, error) {
	now := s.timestamp()
	return s.store.Reserve(ctx, order, b, now, now.Add(s.ttl))
}

// Commit makes the order's reservation final: its stock stays taken. It returns
// ErrReleased or ErrNotFound.
func (s *Service) Commit(ctx context.Context, order uuid.UUID) (Reservation, error) {
	return s.store.Commit(ctx, order, s.timestamp())
}

// Release puts the order's stock back; it always succeeds for a reachable store.
func (s *Service) Release(ctx context.Context, order uuid.UUID) (Reservation, error) {
	return s.store.Release(ctx, order, s.timestamp())
}

// Get returns the order's reservation, or ErrNotFound.
func (s *Service) Get(ctx context.Context, order uuid.UUID) (Reservation, error) {
	return s.store.Reservation(ctx, order)
}

// ExpireDue releases every reservation not committed within the TTL, ExpireBatch at a
// time, and returns how many it released; those released before an error stay so.
func (s *Service) ExpireDue(ctx context.Context) (int, error) {
	now := s.timestamp()
	released := 0
	for {
		n, err := s.store.ExpireDue(ctx, now, ExpireBatch)
		released += n
		if err != nil || n < ExpireBatch {
			return released, err
		}
	}
}

// timestamp is now at the database's precision, so that what a call returns equals
// what a later read returns.
func (s *Service) timestamp() time.Time { return s.now().UTC().Truncate(time.Microsecond) }
