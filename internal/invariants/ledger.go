package invariants

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/bazaar-shop/bazaar/services/inventory/inventoryevents"
)

// AccountStockChanges makes the conservation rule account for admins' changes to a
// product's stock instead of skipping the product.
//
// A PATCH sets the stock to a number, and its product.updated event carries only that
// number, not how much it changed: between the admin's read and the PATCH, orders
// may have taken or given back stock. The change is recovered by replaying the
// product's events in inventory's outbox in order (seq): product.created sets the
// stock, stock.reserved takes each line's quantity, stock.released gives it back,
// and each product.updated sets it again, its change being the difference from the
// replayed stock just before it. Every change to a product's stock is written in the
// transaction that makes it, after the UPDATE that locks the product's row, so the
// events of one product are in the outbox in the order their changes were made.
//
// The baseline is then the initial stock plus every update's change, and the rule is
// "baseline = stock + held". The replay's own end must equal the stock: rule
// stock-ledger, which fails when a change to the stock was made without its event.
func AccountStockChanges() Option {
	return func(s *scope) { s.ledger = true }
}

// ledger is one product's stock replayed from its events.
type ledger struct {
	stock    int // the stock the events add up to
	baseline int // the initial stock plus every admin change
	changes  int // product.updated events that changed the stock
}

// ledgerTypes are the event types that set or move a product's stock: the ones
// readLedger replays. They are the contract's constants, so the query and the switch
// below name the very types inventory writes.
var ledgerTypes = []string{
	string(inventoryevents.TypeProductCreated), string(inventoryevents.TypeProductUpdated),
	string(inventoryevents.TypeStockReserved), string(inventoryevents.TypeStockReleased),
}

// readLedger replays inventory's outbox (in tx) into w.ledger, for every product that
// has its product.created event.
func readLedger(ctx context.Context, tx pgx.Tx, w *world) error {
	rows, err := tx.Query(ctx, `SELECT type, subject, data FROM outbox
		WHERE type = ANY($1) ORDER BY seq`, ledgerTypes)
	if err != nil {
		return err
	}
	var typ, subject string
	var data []byte
	_, err = pgx.ForEachRow(rows, []any{&typ, &subject, &data}, func() error {
		switch typ {
		case string(inventoryevents.TypeProductCreated), string(inventoryevents.TypeProductUpdated):
			// Not inventoryevents.ProductCreated: its Stock cannot tell a missing stock,
			// which this check must report, from a stock of 0.
			var p struct {
				Stock *int `json:"stock"`
			}
			if err := json.Unmarshal(data, &p); err != nil || p.Stock == nil {
				return fmt.Errorf("%s event of %s has no stock: %s", typ, subject, data)
			}
			l := w.ledger[subject]
			if typ == string(inventoryevents.TypeProductCreated) {
				w.ledger[subject] = &ledger{stock: *p.Stock, baseline: *p.Stock}
				return nil
			}
			if l == nil {
				return nil // created before the outbox's oldest row: no baseline
			}
			if d := *p.Stock - l.stock; d != 0 {
				l.baseline += d
				l.changes++
			}
			l.stock = *p.Stock
		case string(inventoryevents.TypeStockReserved), string(inventoryevents.TypeStockReleased):
			// stock.released has stock.reserved's data (inventoryevents.StockReleased).
			var s inventoryevents.StockReserved
			if err := json.Unmarshal(data, &s); err != nil {
				return fmt.Errorf("%s event of %s: %w", typ, subject, err)
			}
			for _, it := range s.Items {
				l := w.ledger[it.ProductID.String()]
				if l == nil {
					continue
				}
				if typ == string(inventoryevents.TypeStockReserved) {
					l.stock -= it.Quantity
				} else {
					l.stock += it.Quantity
				}
			}
		}
		return nil
	})
	return err
}
