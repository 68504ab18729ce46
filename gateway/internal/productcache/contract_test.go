package productcache_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/gateway/internal/productcache"
	"github.com/bazaar-shop/bazaar/internal/eventcontract"
	"github.com/bazaar-shop/bazaar/pkg/events"
)

// Inventory's store test shows its outbox rows are inventoryevents' examples; this
// one hands every example to the invalidator, so that a change to the stock events'
// items, or a new type the gateway would misread, fails here. The products expected
// are read from the example as plain JSON, not through inventoryevents.
func TestEveryInventoryEventDropsTheProductsItIsAbout(t *testing.T) {
	t.Parallel()
	for typ, raw := range eventcontract.ExamplesOn(t, productcache.Stream) {
		var m struct {
			ID    string `json:"id"`
			Items []struct {
				ProductID string `json:"product_id"`
			} `json:"items"`
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		// As inventory writes them: a product event is about the product, a stock
		// event about the order.
		e := events.Envelope{ID: uuid.New(), Type: typ, Source: "inventory", Time: time.Now(), Data: raw}
		var want []uuid.UUID
		switch {
		case strings.HasPrefix(typ, "product."):
			e.Subject = m.ID
			want = []uuid.UUID{uuid.MustParse(m.ID)}
		case strings.HasPrefix(typ, "stock."):
			e.Subject = uuid.NewString()
			for _, it := range m.Items {
				want = append(want, uuid.MustParse(it.ProductID))
			}
		default:
			t.Errorf("%s: a type the gateway does not know is in inventory's contract; does it make products stale?", typ)
			continue
		}
		got, err := productcache.Affected(e)
		if err != nil || len(want) == 0 || !slices.Equal(got, want) {
			t.Errorf("%s: Affected = %v, %v; want %v", typ, got, err, want)
		}
	}
}
