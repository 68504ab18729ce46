package postgres

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/bazaar-shop/bazaar/pkg/outbox"
	"github.com/bazaar-shop/bazaar/pkg/pgdb"
	"github.com/bazaar-shop/bazaar/services/orders/internal/report"
	"github.com/bazaar-shop/bazaar/services/orders/orderevents"
)

var _ report.Store = (*Store)(nil)

// SalesReport implements report.Store.
func (s *Store) SalesReport(ctx context.Context, r report.Range) (report.Sales, error) {
	sales := report.Sales{Range: r, Revenue: []report.Money{}, TopProducts: []report.ProductSales{}}
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		// One snapshot, so that the counts, the revenue and the products agree.
		if err := tx.QueryRow(ctx,
			`SELECT count(*), count(*) FILTER (WHERE status = 'confirmed'), count(*) FILTER (WHERE status = 'cancelled')
			 FROM orders WHERE created_at >= $1 AND created_at < $2`, r.From, r.To).
			Scan(&sales.Orders, &sales.Confirmed, &sales.Cancelled); err != nil {
			return err
		}
		rows, err := tx.Query(ctx,
			`SELECT currency, sum(total_cents)::bigint FROM orders
			 WHERE created_at >= $1 AND created_at < $2 AND status = 'confirmed'
			 GROUP BY currency ORDER BY currency`, r.From, r.To)
		if err != nil {
			return err
		}
		revenue, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (report.Money, error) {
			var m report.Money
			return m, row.Scan(&m.Currency, &m.AmountCents)
		})
		if err != nil {
			return err
		}
		sales.Revenue = append(sales.Revenue, revenue...)
		rows, err = tx.Query(ctx,
			`SELECT l.product_id, sum(l.quantity)::bigint, sum(l.quantity * l.unit_price_cents)::bigint, o.currency
			 FROM order_lines l JOIN orders o ON o.id = l.order_id
			 WHERE o.created_at >= $1 AND o.created_at < $2 AND o.status = 'confirmed'
			 GROUP BY l.product_id, o.currency
			 ORDER BY sum(l.quantity) DESC, sum(l.quantity * l.unit_price_cents) DESC, l.product_id
			 LIMIT $3`, r.From, r.To, report.TopN)
		if err != nil {
			return err
		}
		top, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (report.ProductSales, error) {
			var p report.ProductSales
			return p, row.Scan(&p.ProductID, &p.Quantity, &p.RevenueCents, &p.Currency)
		})
		sales.TopProducts = append(sales.TopProducts, top...)
		return err
	})
	if err != nil {
		return report.Sales{}, dbError(err, "sales report")
	}
	return sales, nil
}

// ToReportJSON is the wire form of s: the data of report.daily_sales (with the day)
// and the report:sales task's result.
func ToReportJSON(s report.Sales) orderevents.Report {
	r := orderevents.Report{From: s.Range.From.UTC(), To: s.Range.To.UTC(), Orders: s.Orders, Confirmed: s.Confirmed, Cancelled: s.Cancelled,
		Revenue: []orderevents.Money{}, TopProducts: []orderevents.ProductSales{}}
	for _, m := range s.Revenue {
		r.Revenue = append(r.Revenue, orderevents.Money(m))
	}
	for _, p := range s.TopProducts {
		r.TopProducts = append(r.TopProducts, orderevents.ProductSales(p))
	}
	return r
}

// dailySalesNamespace makes the daily report's event id from its day, so that a task
// run twice writes one event.
var dailySalesNamespace = uuid.MustParse("0b7c1d0e-3f55-4b8e-8a51-6c0f4f1b2d9a")

// WriteDailySales implements report.Store.
func (s *Store) WriteDailySales(ctx context.Context, sales report.Sales) error {
	day := sales.Range.From.UTC().Format(time.DateOnly)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return outbox.Write(ctx, tx, outbox.Event{
			ID:      uuid.NewSHA1(dailySalesNamespace, []byte(day)),
			Stream:  orderevents.Stream,
			Type:    string(orderevents.TypeDailySales),
			Source:  orderevents.Source,
			Subject: day,
			Data:    orderevents.DailySales{Day: day, Report: ToReportJSON(sales)},
		})
	})
	if pgdb.IsUniqueViolation(err, "outbox_pkey") {
		return nil // written by an earlier run
	}
	return dbError(err, "write daily sales")
}
