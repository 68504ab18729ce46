package storefront

import (
	"fmt"
	"time"
)

// The API's JSON, as the pages read it (docs/openapi.yaml has every field).

type product struct {
	ID          string    `json:"id"`
	SKU         string    `json:"sku"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	PriceCents  int64     `json:"price_cents"`
	Currency    string    `json:"currency"`
	Stock       int       `json:"stock"`
	UpdatedAt   time.Time `json:"updated_at"`
}

type productList struct {
	Items      []product `json:"items"`
	NextCursor *string   `json:"next_cursor"`
}

type orderLine struct {
	ProductID      string `json:"product_id"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

type order struct {
	ID            string      `json:"id"`
	Status        string      `json:"status"`
	Items         []orderLine `json:"items"`
	TotalCents    int64       `json:"total_cents"`
	Currency      string      `json:"currency"`
	PaymentMethod string      `json:"payment_method"`
	CancelReason  *string     `json:"cancel_reason"`
	CreatedAt     time.Time   `json:"created_at"`
	UpdatedAt     time.Time   `json:"updated_at"`
}

type orderList struct {
	Items      []order `json:"items"`
	NextCursor *string `json:"next_cursor"`
}

type notification struct {
	ID        string     `json:"id"`
	Kind      string     `json:"kind"`
	Subject   string     `json:"subject"`
	Status    string     `json:"status"`
	CreatedAt time.Time  `json:"created_at"`
	SentAt    *time.Time `json:"sent_at"`
}

type notificationList struct {
	Items      []notification `json:"items"`
	NextCursor *string        `json:"next_cursor"`
}

type payment struct {
	ID          string `json:"id"`
	AmountCents int64  `json:"amount_cents"`
	Currency    string `json:"currency"`
	Status      string `json:"status"`
}

type paymentList struct {
	Items []payment `json:"items"`
}

type me struct {
	ID    string `json:"id"`
	Email string `json:"email"`
	Name  string `json:"name"`
	Role  string `json:"role"`
}

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	ExpiresIn    int    `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
}

func (t tokenResponse) tokens() Tokens {
	return Tokens{
		Access:       t.AccessToken,
		Refresh:      t.RefreshToken,
		AccessExpiry: time.Now().Add(time.Duration(t.ExpiresIn) * time.Second),
	}
}

// money shows an amount in minor units: "12.50 EUR".
func money(cents int64, currency string) string {
	sign := ""
	if cents < 0 {
		sign, cents = "-", -cents
	}
	return fmt.Sprintf("%s%d.%02d %s", sign, cents/100, cents%100, currency)
}

// The test payment methods, as the checkout lists them: the payments service's fake
// processor answers each as a card of that kind would (docs/contract.md).
type paymentMethod struct {
	ID, Label, Outcome string
}

var paymentMethods = []paymentMethod{
	{"pm_card_visa", "Visa ending 4242", "approved"},
	{"pm_card_chargeDeclined", "Card that is declined", "declined: the order is cancelled"},
	{"pm_card_chargeDeclinedInsufficientFunds", "Card without enough funds", "declined for insufficient funds: the order is cancelled"},
}

func knownPaymentMethod(id string) bool {
	for _, m := range paymentMethods {
		if m.ID == id {
			return true
		}
	}
	return false
}

// statusWords and reasonWords say an order's status and why it was cancelled in words
// (docs/openapi.yaml: OrderStatus, CancelReason); shop.js has the same table.
var statusWords = map[string]string{
	"pending":    "Pending: checking stock and payment",
	"reserved":   "Pending: stock reserved, taking payment",
	"paid":       "Pending: paid, confirming",
	"confirmed":  "Confirmed",
	"cancelling": "Being cancelled",
	"cancelled":  "Cancelled",
}

var reasonWords = map[string]string{
	"out_of_stock":       "some items were out of stock",
	"payment_declined":   "the card was declined",
	"insufficient_funds": "the card was declined for insufficient funds",
	"customer_request":   "you asked to cancel it; the money was refunded",
	"timeout":            "it could not be completed in time",
	"price_changed":      "a price changed while it was placed",
}

// statusText is an order's status in words, with the reason when it was cancelled.
func statusText(status string, reason *string) string {
	w, ok := statusWords[status]
	if !ok {
		w = status
	}
	if reason != nil && *reason != "" {
		r, ok := reasonWords[*reason]
		if !ok {
			r = *reason
		}
		w += ": " + r
	}
	return w
}
