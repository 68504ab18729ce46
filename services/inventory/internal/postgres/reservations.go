package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/bazaar-shop/bazaar/pkg/outbox"
	"github.com/bazaar-shop/bazaar/services/inventory/internal/product"
	"github.com/bazaar-shop/bazaar/services/inventory/internal/reservation"
	"github.com/bazaar-shop/bazaar/services/inventory/inventoryevents"
)

// statusRejected is the stored status of a reserve refused for want of stock. It is
// the store's own: callers see ErrOutOfStock on a repeat reserve, ErrNotFound on a read
// or commit, and a released reservation once it is released.
const statusRejected = "rejected"

// writeStockEvent writes order's stock.reserved or stock.released of lines, in the wire
// form inventoryevents publishes.
func writeStockEvent(ctx context.Context, tx pgx.Tx, typ inventoryevents.Type, order uuid.UUID, lines []reservation.Line, at time.Time) error {
	items := make([]inventoryevents.StockItem, len(lines))
	for i, l := range lines {
		items[i] = inventoryevents.StockItem{ProductID: l.ProductID, Quantity: int(l.Quantity)}
	}
	d := inventoryevents.StockReserved{OrderID: order, Items: items}
	var data any = d
	if typ == inventoryevents.TypeStockReleased {
		data = inventoryevents.StockReleased(d)
	}
	return outbox.Write(ctx, tx, outbox.Event{
		Stream:  inventoryevents.Stream,
		Type:    string(typ),
		Source:  inventoryevents.Source,
		Subject: order.String(),
		Time:    at,
		Data:    data,
	})
}

// Offers implements reservation.Store.
func (s *Store) Offers(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]reservation.Offer, error) {
	o, err := offers(ctx, s.pool, ids)
	return o, dbError(err, "offers")
}

func offers(ctx context.Context, q querier, ids []uuid.UUID) (map[uuid.UUID]reservation.Offer, error) {
	rows, err := q.Query(ctx, `SELECT id, price_cents, currency FROM products WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	found := make(map[uuid.UUID]reservation.Offer, len(ids))
	for rows.Next() {
		var id uuid.UUID
		var o reservation.Offer
		if err := rows.Scan(&id, &o.UnitPrice, &o.Currency); err != nil {
			return nil, err
		}
		found[id] = o
	}
	return found, rows.Err()
}

// Reserve implements reservation.Store.
//
// The reservation row goes in first: a concurrent reserve of the same order waits on
// its primary key until this transaction ends, then finds the row (or, after a
// rollback, takes its place). Then each line's stock is taken with
//
//	UPDATE products SET stock = stock - q WHERE id = $id AND stock >= q
//
// in product-id order. The row lock serialises concurrent decrements of one product
// and the condition is re-checked on the locked row, so stock cannot go below zero;
// the table's CHECK (stock >= 0) would refuse it anyway. The decrements run under a
// savepoint: when one finds too little stock they are all undone, and the reservation
// row is kept as rejected.
func (s *Store) Reserve(ctx context.Context, order uuid.UUID, b reservation.Basket, now, expiresAt time.Time) (reservation.Reservation, bool, error) {
	var res reservation.Reservation
	var created, refused bool
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx,
			`INSERT INTO reservations (order_id, status, currency, expires_at, created_at, updated_at)
			 VALUES ($1, 'reserved', '', $2, $3, $3)
			 ON CONFLICT (order_id) DO NOTHING`,
			order, expiresAt, now)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			var status string
			res, status, err = loadReservation(ctx, tx, order)
			refused = status == statusRejected
			return err
		}
		created = true
		found, err := offers(ctx, tx, b.ProductIDs())
		if err != nil {
			return err
		}
		quote, err := reservation.PriceBasket(b, found)
		if err != nil {
			return err // rolls the reservation row back too: nothing is left behind
		}
		lines, ok, err := takeStock(ctx, tx, quote.Lines)
		if err != nil {
			return err
		}
		if !ok {
			refused = true
			_, err := tx.Exec(ctx, `UPDATE reservations SET status = $2 WHERE order_id = $1`, order, statusRejected)
			return err
		}
		if err := insertLines(ctx, tx, order, lines); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE reservations SET currency = $2 WHERE order_id = $1`, order, quote.Currency); err != nil {
			return err
		}
		res = reservation.Reservation{
			OrderID: order, Status: reservation.StatusReserved, Lines: lines, Currency: quote.Currency,
			ExpiresAt: expiresAt, CreatedAt: now, UpdatedAt: now,
		}
		return writeStockEvent(ctx, tx, inventoryevents.TypeStockReserved, order, lines, now)
	})
	switch {
	case err != nil:
		return reservation.Reservation{}, false, dbError(err, "reserve")
	case refused:
		return reservation.Reservation{}, false, fmt.Errorf("order %s: %w", order, reservation.ErrOutOfStock)
	}
	return res, created, nil
}

// takeStock decrements the stock of each line, in product-id order, under a savepoint.
// It returns the lines (in their own order) with the prices read from the locked rows,
// or ok false, with every decrement undone, when some product has too little stock.
func takeStock(ctx context.Context, tx pgx.Tx, lines []reservation.Line) (_ []reservation.Line, ok bool, err error) {
	sp, err := tx.Begin(ctx) // a savepoint
	if err != nil {
		return nil, false, err
	}
	defer func() {
		if !ok {
			// Undoes the decrements and frees their row locks; the reservation row
			// (before the savepoint) stays locked.
			if rbErr := sp.Rollback(ctx); rbErr != nil && err == nil {
				err = rbErr
			}
		}
	}()
	sorted := reservation.ByProduct(lines)
	batch := &pgx.Batch{}
	for _, l := range sorted {
		batch.Queue(`UPDATE products SET stock = stock - $2 WHERE id = $1 AND stock >= $2 RETURNING price_cents`,
			l.ProductID, int(l.Quantity))
	}
	results := sp.SendBatch(ctx, batch)
	prices := make(map[uuid.UUID]product.Price, len(lines))
	short := false
	for _, l := range sorted {
		var price product.Price
		err := results.QueryRow().Scan(&price)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			short = true
		case err != nil:
			results.Close()
			return nil, false, err
		}
		prices[l.ProductID] = price
	}
	if err := results.Close(); err != nil {
		return nil, false, err
	}
	if short {
		return nil, false, nil
	}
	if err := sp.Commit(ctx); err != nil { // RELEASE SAVEPOINT
		return nil, false, err
	}
	// The price of the locked row: what the product costs at the moment its stock is
	// taken, even if the catalogue changed since the offers were read.
	out := make([]reservation.Line, len(lines))
	for i, l := range lines {
		l.UnitPrice = prices[l.ProductID]
		out[i] = l
	}
	return out, true, nil
}

func insertLines(ctx context.Context, tx pgx.Tx, order uuid.UUID, lines []reservation.Line) error {
	positions := make([]int16, len(lines))
	products := make([]uuid.UUID, len(lines))
	quantities := make([]int32, len(lines))
	prices := make([]int64, len(lines))
	for i, l := range lines {
		positions[i], products[i], quantities[i], prices[i] = int16(i), l.ProductID, int32(l.Quantity), int64(l.UnitPrice)
	}
	_, err := tx.Exec(ctx,
		`INSERT INTO reservation_lines (order_id, position, product_id, quantity, unit_price_cents)
		 SELECT $1, l.position, l.product_id, l.quantity, l.unit_price_cents
		 FROM unnest($2::smallint[], $3::uuid[], $4::integer[], $5::bigint[])
		      AS l(position, product_id, quantity, unit_price_cents)`,
		order, positions, products, quantities, prices)
	return err
}

// restock gives back the quantities, per product, in product-id order.
func restock(ctx context.Context, tx pgx.Tx, lines []reservation.Line) error {
	sorted := reservation.ByProduct(lines)
	batch := &pgx.Batch{}
	for _, l := range sorted {
		batch.Queue(`UPDATE products SET stock = stock + $2 WHERE id = $1`, l.ProductID, int(l.Quantity))
	}
	results := tx.SendBatch(ctx, batch)
	for _, l := range sorted {
		tag, err := results.Exec()
		if err != nil {
			results.Close()
			return err
		}
		if tag.RowsAffected() != 1 { // products are never deleted; a missing one is a bug
			results.Close()
			return fmt.Errorf("restock product %s: not found", l.ProductID)
		}
	}
	return results.Close()
}

// loadReservation reads the order's reservation and its stored status (which may be
// statusRejected); no row is reservation.ErrNotFound.
func loadReservation(ctx context.Context, q querier, order uuid.UUID) (reservation.Reservation, string, error) {
	r := reservation.Reservation{OrderID: order}
	var status string
	err := q.QueryRow(ctx,
		`SELECT status, currency, expires_at, created_at, updated_at FROM reservations WHERE order_id = $1`, order).
		Scan(&status, &r.Currency, &r.ExpiresAt, &r.CreatedAt, &r.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return reservation.Reservation{}, "", reservation.ErrNotFound
	}
	if err != nil {
		return reservation.Reservation{}, "", err
	}
	r.Status = reservation.Status(status)
	r.ExpiresAt, r.CreatedAt, r.UpdatedAt = r.ExpiresAt.UTC(), r.CreatedAt.UTC(), r.UpdatedAt.UTC()
	rows, err := q.Query(ctx,
		`SELECT product_id, quantity, unit_price_cents FROM reservation_lines WHERE order_id = $1 ORDER BY position`, order)
	if err != nil {
		return reservation.Reservation{}, "", err
	}
	r.Lines, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (reservation.Line, error) {
		var l reservation.Line
		err := row.Scan(&l.ProductID, &l.Quantity, &l.UnitPrice)
		return l, err
	})
	if err != nil {
		return reservation.Reservation{}, "", err
	}
	return r, status, nil
}

// Reservation implements reservation.Store.
func (s *Store) Reservation(ctx context.Context, order uuid.UUID) (reservation.Reservation, error) {
	var r reservation.Reservation
	var status string
	// One snapshot for the row and its lines.
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		var err error
		r, status, err = loadReservation(ctx, tx, order)
		return err
	})
	if err == nil && status == statusRejected {
		err = reservation.ErrNotFound // it holds nothing
	}
	if err != nil {
		return reservation.Reservation{}, dbError(err, "reservation")
	}
	return r, nil
}

// Commit implements reservation.Store. The conditional UPDATE waits for a concurrent
// release or expiry of the row, then finds it no longer reserved and changes nothing.
func (s *Store) Commit(ctx context.Context, order uuid.UUID, now time.Time) (reservation.Reservation, error) {
	var r reservation.Reservation
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx,
			`UPDATE reservations SET status = 'committed', updated_at = $2 WHERE order_id = $1 AND status = 'reserved'`,
			order, now)
		if err != nil {
			return err
		}
		var status string
		r, status, err = loadReservation(ctx, tx, order)
		switch {
		case err != nil:
			return err
		case status == statusRejected:
			return reservation.ErrNotFound
		case r.Status == reservation.StatusReleased:
			return reservation.ErrReleased
		}
		return nil
	})
	if err != nil {
		return reservation.Reservation{}, dbError(err, "commit reservation")
	}
	return r, nil
}

// Release implements reservation.Store. Concurrent releases of one order queue on its
// row lock; the first restocks, the others find it released.
func (s *Store) Release(ctx context.Context, order uuid.UUID, now time.Time) (reservation.Reservation, error) {
	var r reservation.Reservation
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// An order with no reservation gets an empty, released one. If a reserve of
		// the order is in flight, this waits for it and then releases what it made.
		tag, err := tx.Exec(ctx,
			`INSERT INTO reservations (order_id, status, currency, expires_at, created_at, updated_at)
			 VALUES ($1, 'released', '', $2, $2, $2)
			 ON CONFLICT (order_id) DO NOTHING`,
			order, now)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 1 {
			r = reservation.Reservation{OrderID: order, Status: reservation.StatusReleased, ExpiresAt: now, CreatedAt: now, UpdatedAt: now}
			return nil
		}
		var status string
		if err := tx.QueryRow(ctx, `SELECT status FROM reservations WHERE order_id = $1 FOR UPDATE`, order).Scan(&status); err != nil {
			return err
		}
		if status == string(reservation.StatusReleased) {
			r, _, err = loadReservation(ctx, tx, order)
			return err
		}
		if _, err := tx.Exec(ctx,
			`UPDATE reservations SET status = 'released', updated_at = $2 WHERE order_id = $1`, order, now); err != nil {
			return err
		}
		if r, _, err = loadReservation(ctx, tx, order); err != nil {
			return err
		}
		if status == statusRejected { // it held nothing: nothing to give back or tell
			return nil
		}
		if err := restock(ctx, tx, r.Lines); err != nil {
			return err
		}
		return writeStockEvent(ctx, tx, inventoryevents.TypeStockReleased, order, r.Lines, now)
	})
	if err != nil {
		return reservation.Reservation{}, dbError(err, "release reservation")
	}
	return r, nil
}

// ExpireDue implements reservation.Store. SKIP LOCKED leaves alone a reservation that
// is being committed or released right now, and lets two expiry runs share the work.
// The stock goes back per product, summed over the batch, in product-id order.
func (s *Store) ExpireDue(ctx context.Context, now time.Time, limit int) (int, error) {
	released := 0
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		released = 0
		rows, err := tx.Query(ctx,
			`SELECT order_id FROM reservations
			 WHERE status = 'reserved' AND expires_at <= $1
			 ORDER BY expires_at, order_id
			 LIMIT $2
			 FOR UPDATE SKIP LOCKED`, now, limit)
		if err != nil {
			return err
		}
		orders, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		if err != nil || len(orders) == 0 {
			return err
		}
		rows, err = tx.Query(ctx,
			`SELECT order_id, product_id, quantity FROM reservation_lines
			 WHERE order_id = ANY($1) ORDER BY order_id, position`, orders)
		if err != nil {
			return err
		}
		linesOf := make(map[uuid.UUID][]reservation.Line, len(orders))
		perProduct := map[uuid.UUID]reservation.Quantity{}
		var order uuid.UUID
		var l reservation.Line
		_, err = pgx.ForEachRow(rows, []any{&order, &l.ProductID, &l.Quantity}, func() error {
			linesOf[order] = append(linesOf[order], l)
			perProduct[l.ProductID] += l.Quantity
			return nil
		})
		if err != nil {
			return err
		}
		totals := make([]reservation.Line, 0, len(perProduct))
		for id, q := range perProduct {
			totals = append(totals, reservation.Line{ProductID: id, Quantity: q})
		}
		if err := restock(ctx, tx, totals); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx,
			`UPDATE reservations SET status = 'released', updated_at = $2 WHERE order_id = ANY($1)`, orders, now); err != nil {
			return err
		}
		for _, o := range orders {
			if err := writeStockEvent(ctx, tx, inventoryevents.TypeStockReleased, o, linesOf[o], now); err != nil {
				return err
			}
		}
		released = len(orders)
		return nil
	})
	if err != nil {
		return 0, dbError(err, "expire reservations")
	}
	return released, nil
}
