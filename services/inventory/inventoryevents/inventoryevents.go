// Package inventoryevents is the inventory service's published event contract: the
// stream it writes, the event types on it and each type's data, exactly as they travel
// in an envelope's data field. The inventory service writes these types; any other
// service may import this package to read them, instead of declaring the shapes again.
//
// Evolving a payload (docs/events.md, "Evolving a payload"): a payload only ever gains
// fields, which consumers ignore until they need them; no field is removed, renamed or
// retyped. Any other change is a new event type, named "<type>.v<N>" (stock.reserved.v2)
// with its own payload struct and version, published alongside the old one until
// every consumer reads the new. The version is not on the wire: the type name says it.
//
// Two rules hold for every type, present and future, because consumers rely on them
// without knowing the type (the gateway's product cache): a product.* event's subject
// is the product's id, and a stock.* event's data lists the products it moved in items.
package inventoryevents

import "github.com/google/uuid"

// Stream is the Redis stream the inventory service publishes to, and Source the
// envelope's source on its events.
const (
	Stream = "events.inventory"
	Source = "inventory"
)

// Type is an event type on Stream: an envelope's type.
type Type string

// The event types on Stream.
const (
	// TypeProductCreated is a new product; the subject is its id.
	TypeProductCreated Type = "product.created"
	// TypeProductUpdated is a changed product (an admin's patch); the subject is its id.
	TypeProductUpdated Type = "product.updated"
	// TypeStockReserved is stock taken for an order; the subject is the order's id.
	TypeStockReserved Type = "stock.reserved"
	// TypeStockReleased is an order's reserved stock given back (a cancelled or expired
	// reservation); the subject is the order's id.
	TypeStockReleased Type = "stock.released"
)

// The versions of the payloads: 1 for each, the bare type names. A breaking change
// would be a new type such as product.updated.v2, with a payload of its own.
const (
	ProductCreatedVersion = 1
	ProductUpdatedVersion = 1
	StockReservedVersion  = 1
	StockReleasedVersion  = 1
)

// ProductCreated is the data of product.created: the product as consumers see it.
type ProductCreated struct {
	ID          uuid.UUID `json:"id"`
	SKU         string    `json:"sku"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	PriceCents  int64     `json:"price_cents"`
	Currency    string    `json:"currency"`
	Stock       int       `json:"stock"`
}

// ProductUpdated is the data of product.updated: the whole product after the change.
// It has product.created's fields today, but is its own type so that a consumer says
// which event it reads and each can gain fields on its own.
type ProductUpdated ProductCreated

// StockReserved is the data of stock.reserved: the order and what it took.
type StockReserved struct {
	OrderID uuid.UUID   `json:"order_id"`
	Items   []StockItem `json:"items"`
}

// StockReleased is the data of stock.released: the order and what it gave back. It has
// stock.reserved's fields today (see ProductUpdated for why it is a type of its own).
type StockReleased StockReserved

// StockItem is one product's quantity in a stock event.
type StockItem struct {
	ProductID uuid.UUID `json:"product_id"`
	Quantity  int       `json:"quantity"`
}
