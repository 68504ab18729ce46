package pgdb_test

import (
	"context"
	"testing"

	"github.com/bazaar-shop/bazaar/internal/testkit/pgtest"
	"github.com/bazaar-shop/bazaar/pkg/pgdb"
)

func TestDeleteInBatchesDeletesEveryMatchingRowAndNoOther(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := pgdb.Open(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE TABLE rows (id int PRIMARY KEY); INSERT INTO rows SELECT generate_series(1, 1050)`); err != nil {
		t.Fatal(err)
	}
	n, err := pgdb.DeleteInBatches(ctx, pool,
		`DELETE FROM rows WHERE id IN (SELECT id FROM rows WHERE id > $1 LIMIT $2)`, 25, 100)
	if err != nil || n != 1025 {
		t.Fatalf("deleted %d, %v; want 1025", n, err)
	}
	var left int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM rows`).Scan(&left); err != nil || left != 25 {
		t.Errorf("%d rows left, %v; want 25", left, err)
	}
	if _, err := pgdb.DeleteInBatches(ctx, pool, `DELETE FROM nowhere`); err == nil {
		t.Error("a failing statement returned no error")
	}
}
