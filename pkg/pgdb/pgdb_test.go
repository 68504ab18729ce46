package pgdb_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/bazaar-shop/bazaar/internal/testkit/pgtest"
	"github.com/bazaar-shop/bazaar/pkg/pgdb"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func migrations(n int) fstest.MapFS {
	all := fstest.MapFS{
		"00001_widgets.sql": {Data: []byte("-- +goose Up\nCREATE TABLE widgets (id int PRIMARY KEY);\n-- +goose Down\nDROP TABLE widgets;\n")},
		"00002_gadgets.sql": {Data: []byte("-- +goose Up\nCREATE TABLE gadgets (id int PRIMARY KEY);\n-- +goose Down\nDROP TABLE gadgets;\n")},
	}
	if n == 1 {
		delete(all, "00002_gadgets.sql")
	}
	return all
}

func TestMigrateConcurrentlyAndCheck(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := pgdb.Open(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	// Two replicas starting together: the advisory lock lets both succeed.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = pgdb.Migrate(ctx, pool, migrations(1), quiet) }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	// A binary with a newer migration sees the database as behind until it migrates.
	m, err := pgdb.NewMigrator(pool, migrations(2), quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Check(ctx); !errors.Is(err, pgdb.ErrPending) {
		t.Fatalf("Check = %v, want ErrPending", err)
	}
	v, err := m.Up(ctx)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	if v != 2 {
		t.Fatalf("Up = %d, want 2", v)
	}
	if err := m.Check(ctx); err != nil {
		t.Fatalf("Check after Up = %v", err)
	}
	if _, err := pool.Exec(ctx, "INSERT INTO gadgets VALUES (1)"); err != nil {
		t.Fatal(err)
	}
}
