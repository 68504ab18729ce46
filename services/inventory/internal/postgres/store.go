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
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/services/inventory/internal/product"
	"github.com/bazaar-shop/bazaar/services/inventory/internal/reservation"
)

// The events this service publishes, on its one stream.
const (
	Stream             = "events.inventory"
	Source             = "inventory"
	TypeProductCreated = "product.created"
	TypeProductUpdated = "product.updated"
	TypeStockReserved  = "stock.reserved"
	TypeStockReleased  = "stock.released"
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

func isUniqueViolation(err error, constraint string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == constraint
}

// dbError passes domain errors through and classifies the rest: a server that cannot
// be reached is apperr.Unavailable (503, naming the database, so readiness and clients
// see the same story); anything else is an unexpected error (500).
func dbError(err error, op string) error {
	var ae *apperr.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ae):
		return err
	case unreachable(err):
		return apperr.Wrap(fmt.Errorf("%s: %w", op, err), apperr.Unavailable, "the inventory database is unavailable")
	}
	return fmt.Errorf("%s: %w", op, err)
}

// unreachable reports whether err means the server could not be talked to, as opposed
// to the server answering with an error.
func unreachable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// Only the server's "I cannot serve you now" classes count: 08 connection
		// exception, 53 insufficient resources, 57P0x shutting down.
		return pgErr.Code[:2] == "08" || pgErr.Code[:2] == "53" || pgErr.Code[:4] == "57P0"
	}
	var connErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connErr) || errors.As(err, &netErr) || pgconn.Timeout(err) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, context.DeadlineExceeded)
}
