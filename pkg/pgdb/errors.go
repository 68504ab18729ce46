package pgdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
)

// Error is how a store reports a database error: nil stays nil, an *apperr.Error (a
// domain error the store chose) passes through, a server that cannot be reached becomes
// apperr.Unavailable naming the database ("the orders database is unavailable": a 503,
// the same story readiness tells), and anything else is an unexpected error (a 500),
// wrapped with op.
func Error(err error, database, op string) error {
	var ae *apperr.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ae):
		return err
	case Unreachable(err):
		return apperr.Wrap(fmt.Errorf("%s: %w", op, err), apperr.Unavailable, "the "+database+" database is unavailable")
	}
	return fmt.Errorf("%s: %w", op, err)
}

// Unreachable reports whether err means the server could not be talked to, as opposed
// to the server answering with an error.
func Unreachable(err error) bool {
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

// IsUniqueViolation reports whether err is a unique violation (23505) of constraint.
func IsUniqueViolation(err error, constraint string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == constraint
}
