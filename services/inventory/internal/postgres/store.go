// Package postgres is the inventory service's storage: products, reservations and the
// outbox, in Postgres through pgx. It translates database errors into the domain's (a
// unique violation on the SKU is product.ErrSKUTaken, no rows is a not-found error, an
// unreachable server is apperr.Unavailable), so nothing above it knows SQL.
//
// Every transaction that touches several products' stock changes them in product-id
// order, after locking its reservation rows, so two transactions never wait on each
// other in a cycle (no deadlocks under any mix of reserves, releases and expiry).
package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/bazaar-shop/bazaar/pkg/pgdb"
	"github.com/bazaar-shop/bazaar/services/inventory/internal/product"
	"github.com/bazaar-shop/bazaar/services/inventory/internal/reservation"
)

// Store implements product.Store and reservation.Store on a pool.
type Store struct{ pool *pgxpool.Pool }

var (
	_ product.Store     = (*Store)(nil)
	_ reservation.Store = (*Store)(nil)
)

// NewStore stores in pool's database, which must have this package's migrations.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// querier is what reads need: a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// dbError reports a database error as pkg/pgdb classifies it: a domain error passes
// through, an unreachable server is a 503 naming this database, the rest a 500.
func dbError(err error, op string) error { return pgdb.Error(err, "inventory", op) }
