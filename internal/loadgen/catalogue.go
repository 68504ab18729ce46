package loadgen

import (
	"math/rand/v2"
	"sync"
)

// product is what a shopper knows of a product.
type product struct {
	ID         string `json:"id"`
	PriceCents int64  `json:"price_cents"`
	Currency   string `json:"currency"`
	Stock      int    `json:"stock"`
}

// productPage is GET /api/v1/products's answer.
type productPage struct {
	Items      []product `json:"items"`
	NextCursor *string   `json:"next_cursor"`
}

// catalogue is the products the shoppers have seen, with their stock as last seen.
type catalogue struct {
	mu       sync.Mutex
	products []product
	index    map[string]int
}

func newCatalogue() *catalogue { return &catalogue{index: map[string]int{}} }

// update records products as just seen.
func (c *catalogue) update(ps ...product) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range ps {
		if p.ID == "" {
			continue
		}
		if i, ok := c.index[p.ID]; ok {
			c.products[i] = p
			continue
		}
		c.index[p.ID] = len(c.products)
		c.products = append(c.products, p)
	}
}

func (c *catalogue) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.products)
}

// line is one line of an order as the API takes it.
type line struct {
	ProductID string `json:"product_id"`
	Quantity  int    `json:"quantity"`
}

// pick chooses 1..maxLines distinct products in one currency, each of 1..maxQty units
// (one unit more often than not), from those seen in stock; when none is, from all
// (the order is then cancelled out_of_stock, which is a shopper's experience too).
func (c *catalogue) pick(rng *rand.Rand, maxLines, maxQty int) []line {
	c.mu.Lock()
	defer c.mu.Unlock()
	var pool []product
	for _, p := range c.products {
		if p.Stock > 0 {
			pool = append(pool, p)
		}
	}
	if len(pool) == 0 {
		pool = append(pool, c.products...)
	}
	if len(pool) == 0 {
		return nil
	}
	first := pool[rng.IntN(len(pool))]
	same := pool[:0:0]
	for _, p := range pool {
		if p.Currency == first.Currency && p.ID != first.ID {
			same = append(same, p)
		}
	}
	n := 1 + rng.IntN(maxLines)
	chosen := []product{first}
	for _, i := range rng.Perm(len(same)) {
		if len(chosen) == n {
			break
		}
		chosen = append(chosen, same[i])
	}
	lines := make([]line, len(chosen))
	for i, p := range chosen {
		q := 1
		if maxQty > 1 && rng.IntN(3) == 0 {
			q = 2 + rng.IntN(maxQty-1)
		}
		lines[i] = line{ProductID: p.ID, Quantity: q}
	}
	return lines
}
