package outbox_test

import (
	"context"
	"io/fs"
	"log/slog"
	"slices"
	"testing"
	"testing/fstest"

	"github.com/bazaar-shop/bazaar/internal/testkit/pgtest"
	"github.com/bazaar-shop/bazaar/pkg/outbox"
	"github.com/bazaar-shop/bazaar/pkg/pgdb"
)

// A service's migrations get the outbox table as their first, and goose applies
// both in order.
func TestWithTableMigratesTheOutboxFirstThenTheServicesOwn(t *testing.T) {
	t.Parallel()
	own := fstest.MapFS{"00002_things.sql": {Data: []byte(`-- +goose Up
CREATE TABLE things (id int PRIMARY KEY, outbox_seq bigint);
-- +goose Down
DROP TABLE things;
`)}}
	schema := outbox.WithTable(own)
	names, err := fs.Glob(schema, "*.sql")
	if err != nil {
		t.Fatalf("migrations: %v", err)
	}
	if want := []string{"00001_outbox.sql", "00002_things.sql"}; !slices.Equal(names, want) {
		t.Fatalf("migrations %v; want %v: the outbox's, then the service's", names, want)
	}
	pool := pgtest.New(t, schema)
	ctx := context.Background()
	for _, table := range []string{"outbox", "things"} {
		var ok bool
		if err := pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, table).Scan(&ok); err != nil {
			t.Errorf("table %s: %v", table, err)
		} else if !ok {
			t.Errorf("table %s missing, want it migrated", table)
		}
	}
}

// A service whose migrations start at 00001 (its own copy of the table's file, or
// another) is told so, rather than have goose meet version 1 twice.
func TestWithTableRefusesAServiceWithItsOwnVersion1(t *testing.T) {
	t.Parallel()
	own := fstest.MapFS{"00001_things.sql": {Data: []byte("-- +goose Up\n")}}
	pool, err := pgdb.Open(context.Background(), pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := pgdb.Migrate(context.Background(), pool, outbox.WithTable(own), slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("migrated a service whose migrations have their own version 1")
	}
}
