package pgdb_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/pgdb"
)

func TestErrorClassifies(t *testing.T) {
	t.Parallel()
	domain := apperr.E(apperr.Conflict, "taken")
	cases := []struct {
		name string
		err  error
		want apperr.Code
	}{
		{"domain error passes through", fmt.Errorf("x: %w", domain), apperr.Conflict},
		{"connection lost", io.ErrUnexpectedEOF, apperr.Unavailable},
		{"deadline", context.DeadlineExceeded, apperr.Unavailable},
		{"server shutting down", &pgconn.PgError{Code: "57P01"}, apperr.Unavailable},
		{"too many connections", &pgconn.PgError{Code: "53300"}, apperr.Unavailable},
		{"a bug", &pgconn.PgError{Code: "42703"}, apperr.Internal},
		{"anything else", errors.New("boom"), apperr.Internal},
	}
	for _, c := range cases {
		err := pgdb.Error(c.err, "orders", "load order")
		if got := apperr.CodeOf(err); got != c.want {
			t.Errorf("%s: code %s, want %s (%v)", c.name, got, c.want, err)
		}
		if c.want == apperr.Unavailable {
			var ae *apperr.Error
			if !errors.As(err, &ae) {
				t.Errorf("%s: %v, want an *apperr.Error", c.name, err)
			} else if ae.Message != "the orders database is unavailable" {
				t.Errorf("%s: message %q, want %q", c.name, ae.Message, "the orders database is unavailable")
			}
		}
	}
	if pgdb.Error(nil, "orders", "x") != nil {
		t.Error("nil is not nil")
	}
	if !pgdb.IsUniqueViolation(fmt.Errorf("w: %w", &pgconn.PgError{Code: "23505", ConstraintName: "users_email_key"}), "users_email_key") {
		t.Error("IsUniqueViolation of a wrapped 23505 on users_email_key = false, want true")
	}
	if pgdb.IsUniqueViolation(&pgconn.PgError{Code: "23505", ConstraintName: "other"}, "users_email_key") {
		t.Error("IsUniqueViolation of a 23505 on another constraint = true, want false")
	}
}
