// Package payments is the orders service's client of the payments service's internal
// API (docs/internal-api.md): charge (idempotent on the order id), refund, and the
// look-up that resolves a charge whose answer was lost. Calls go through one circuit
// breaker for the service and are retried only for transient failures (see package
// downstream); a declined card is an *apperr.Error with code PaymentRequired and the
// reason payment_declined or insufficient_funds.
package payments

import (
	"context"
	"net/http"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/services/orders/internal/downstream"
	"github.com/bazaar-shop/bazaar/services/orders/internal/order"
)

// The refusals of a charge.
var (
	// ErrDeclined: the card was declined.
	ErrDeclined = apperr.R(apperr.PaymentRequired, "payment_declined", "")
	// ErrInsufficientFunds: the card was declined for lack of funds.
	ErrInsufficientFunds = apperr.R(apperr.PaymentRequired, "insufficient_funds", "")
)

// Client calls the payments service.
type Client struct{ c *downstream.Client }

var _ order.Payments = (*Client)(nil)

// New is a client of the payments service cfg describes (cfg.Name defaults to
// "payments").
func New(cfg downstream.Config) (*Client, error) {
	if cfg.Name == "" {
		cfg.Name = "payments"
	}
	c, err := downstream.New(cfg)
	if err != nil {
		return nil, err
	}
	return &Client{c: c}, nil
}

// BreakerState is the state of the breaker in front of payments.
func (c *Client) BreakerState() string { return c.c.BreakerState() }

// Close stops the client's background work (downstream.Client.Close).
func (c *Client) Close() { c.c.Close() }

type chargeRequest struct {
	OrderID       uuid.UUID `json:"order_id"`
	UserID        uuid.UUID `json:"user_id"`
	AmountCents   int64     `json:"amount_cents"`
	Currency      string    `json:"currency"`
	PaymentMethod string    `json:"payment_method"`
}

type paymentJSON struct {
	ID          uuid.UUID `json:"id"`
	OrderID     uuid.UUID `json:"order_id"`
	Status      string    `json:"status"`
	DeclineCode string    `json:"decline_code"`
}

func (p paymentJSON) toPayment() order.Payment {
	return order.Payment{ID: p.ID, OrderID: p.OrderID, Status: order.PaymentStatus(p.Status), DeclineCode: p.DeclineCode}
}

// Charge implements order.Payments: POST /internal/charges with the order id as the
// Idempotency-Key, so that a retry (ours, or the saga's after a crash) never charges
// twice.
func (c *Client) Charge(ctx context.Context, r order.ChargeRequest) (order.Payment, error) {
	var p paymentJSON
	err := c.c.Do(ctx, downstream.Call{
		Method: http.MethodPost,
		Path:   "/internal/charges",
		Header: http.Header{"Idempotency-Key": {r.OrderID.String()}},
		Body: chargeRequest{OrderID: r.OrderID, UserID: r.UserID, AmountCents: r.AmountCents,
			Currency: r.Currency, PaymentMethod: string(r.PaymentMethod)},
	}, &p)
	if err != nil {
		return order.Payment{}, err
	}
	return p.toPayment(), nil
}

// Refund implements order.Payments: POST /internal/charges/{order_id}/refund.
func (c *Client) Refund(ctx context.Context, orderID uuid.UUID) (order.Payment, error) {
	var p paymentJSON
	err := c.c.Do(ctx, downstream.Call{Method: http.MethodPost, Path: "/internal/charges/" + orderID.String() + "/refund"}, &p)
	if err != nil {
		return order.Payment{}, err
	}
	return p.toPayment(), nil
}

// Lookup implements order.Payments: GET /internal/charges/{order_id}.
func (c *Client) Lookup(ctx context.Context, orderID uuid.UUID) (order.Payment, error) {
	var p paymentJSON
	err := c.c.Do(ctx, downstream.Call{Method: http.MethodGet, Path: "/internal/charges/" + orderID.String()}, &p)
	if err != nil {
		return order.Payment{}, err
	}
	return p.toPayment(), nil
}
