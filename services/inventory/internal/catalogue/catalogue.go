// Package catalogue is the demo catalogue the local stack and the end-to-end tests
// start with: products with stock, priced in USD, kept in catalogue.json and embedded
// in the binary. The inventory service loads it at start when SEED_CATALOGUE is set.
package catalogue

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/bazaar-shop/bazaar/services/inventory/internal/product"
)

//go:embed catalogue.json
var data []byte

// entry is one product of catalogue.json.
type entry struct {
	SKU         string `json:"sku"`
	Name        string `json:"name"`
	Description string `json:"description"`
	PriceCents  int64  `json:"price_cents"`
	Currency    string `json:"currency"`
	Stock       int    `json:"stock"`
}

// Products is the catalogue, in file order, parsed with the same rules as the admin
// API's input. It fails only when catalogue.json is broken (which a test rules out).
func Products() ([]product.New, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var entries []entry
	if err := dec.Decode(&entries); err != nil {
		return nil, fmt.Errorf("catalogue.json: %w", err)
	}
	out := make([]product.New, len(entries))
	for i, e := range entries {
		var errs []error
		check := func(field string, err error) {
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", field, err))
			}
		}
		var n product.New
		var err error
		n.SKU, err = product.ParseSKU(e.SKU)
		check("sku", err)
		n.Name, err = product.ParseName(e.Name)
		check("name", err)
		n.Description, err = product.ParseDescription(e.Description)
		check("description", err)
		n.Price, err = product.ParsePrice(e.PriceCents)
		check("price_cents", err)
		n.Currency, err = product.ParseCurrency(e.Currency)
		check("currency", err)
		n.Stock, err = product.ParseStock(e.Stock)
		check("stock", err)
		if err := errors.Join(errs...); err != nil {
			return nil, fmt.Errorf("catalogue.json: product %d (%q): %w", i, e.SKU, err)
		}
		out[i] = n
	}
	return out, nil
}
