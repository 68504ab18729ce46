// Package inventory is the orders service's client of the inventory service's internal
// API (docs/internal-api.md): quotes, and the reserve, commit and release steps of the
// saga. Calls go through one circuit breaker for the service and are retried only for
// transient failures (see package downstream); answers come back as domain values, and
// refusals as *apperr.Error values with the service's reason (out_of_stock,
// reservation_released).
package inventory

import (
	"context"
	"fmt"
	"net/http"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/services/orders/internal/downstream"
	"github.com/bazaar-shop/bazaar/services/orders/internal/order"
)

// The reasons inventory gives for refusals the saga acts on.
var (
	// ErrOutOfStock: some line has not enough stock; nothing was reserved.
	ErrOutOfStock = apperr.R(apperr.Conflict, "out_of_stock", "")
	// ErrReservationReleased: the reservation expired and its stock went back.
	ErrReservationReleased = apperr.R(apperr.Conflict, "reservation_released", "")
)

// Client calls the inventory service.
type Client struct{ c *downstream.Client }

var _ order.Inventory = (*Client)(nil)

// New is a client of the inventory service cfg describes (cfg.Name defaults to
// "inventory").
func New(cfg downstream.Config) (*Client, error) {
	if cfg.Name == "" {
		cfg.Name = "inventory"
	}
	c, err := downstream.New(cfg)
	if err != nil {
		return nil, err
	}
	return &Client{c: c}, nil
}

// BreakerState is the state of the breaker in front of inventory.
func (c *Client) BreakerState() string { return c.c.BreakerState() }

// Close stops the client's background work (downstream.Client.Close).
func (c *Client) Close() { c.c.Close() }

type lineJSON struct {
	ProductID      uuid.UUID `json:"product_id"`
	Quantity       int       `json:"quantity"`
	UnitPriceCents *int64    `json:"unit_price_cents,omitempty"`
}

type quoteRequest struct {
	Items []lineJSON `json:"items"`
}

type quoteResponse struct {
	Items      []lineJSON `json:"items"`
	TotalCents int64      `json:"total_cents"`
	Currency   string     `json:"currency"`
}

type reservationRequest struct {
	OrderID uuid.UUID  `json:"order_id"`
	Items   []lineJSON `json:"items"`
}

func toJSON(lines []order.WantedLine) []lineJSON {
	items := make([]lineJSON, len(lines))
	for i, l := range lines {
		items[i] = lineJSON{ProductID: l.ProductID, Quantity: int(l.Quantity)}
	}
	return items
}

// Quote implements order.Inventory: POST /internal/quotes.
func (c *Client) Quote(ctx context.Context, lines []order.WantedLine) (order.Quote, error) {
	var resp quoteResponse
	err := c.c.Do(ctx, downstream.Call{Method: http.MethodPost, Path: "/internal/quotes", Body: quoteRequest{Items: toJSON(lines)}}, &resp)
	if err != nil {
		return order.Quote{}, err
	}
	q := order.Quote{TotalCents: resp.TotalCents, Currency: resp.Currency}
	if q.Lines, err = toLines(resp.Items, "quote"); err != nil {
		return order.Quote{}, err
	}
	return q, nil
}

// Reserve implements order.Inventory: POST /internal/reservations.
func (c *Client) Reserve(ctx context.Context, orderID uuid.UUID, lines []order.WantedLine) ([]order.Line, error) {
	var resp quoteResponse // a reservation carries its lines as a quote does
	err := c.c.Do(ctx, downstream.Call{Method: http.MethodPost, Path: "/internal/reservations",
		Body: reservationRequest{OrderID: orderID, Items: toJSON(lines)}}, &resp)
	if err != nil {
		return nil, err
	}
	return toLines(resp.Items, "reservation")
}

// toLines reads priced lines from an answer; what names the answer in errors.
func toLines(items []lineJSON, what string) ([]order.Line, error) {
	lines := make([]order.Line, 0, len(items))
	for i, it := range items {
		if it.UnitPriceCents == nil {
			return nil, apperr.Wrap(fmt.Errorf("%s line %d has no unit_price_cents", what, i),
				apperr.BadGateway, "the inventory service gave an answer that could not be read")
		}
		lines = append(lines, order.Line{ProductID: it.ProductID, Quantity: order.Quantity(it.Quantity), UnitPriceCents: *it.UnitPriceCents})
	}
	return lines, nil
}

// Commit implements order.Inventory: POST /internal/reservations/{order_id}/commit.
func (c *Client) Commit(ctx context.Context, orderID uuid.UUID) error {
	return c.c.Do(ctx, downstream.Call{Method: http.MethodPost, Path: "/internal/reservations/" + orderID.String() + "/commit"}, nil)
}

// Release implements order.Inventory: POST /internal/reservations/{order_id}/release.
func (c *Client) Release(ctx context.Context, orderID uuid.UUID) error {
	return c.c.Do(ctx, downstream.Call{Method: http.MethodPost, Path: "/internal/reservations/" + orderID.String() + "/release"}, nil)
}
