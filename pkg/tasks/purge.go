package tasks

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/bazaar-shop/bazaar/pkg/pgdb"
)

// Purge is the work of a retention task: delete the rows of Table whose Column is
// older than Age (rows where it is NULL stay), Batch at a time (pgdb.DeleteInBatches;
// DefaultPurgeBatch when zero). The outbox and inbox cleanups are Purges.
type Purge struct {
	Name   string // what is purged, for the log and errors ("outbox")
	Table  string
	Key    string // the column that names a row
	Column string // the time a row is aged by
	Age    time.Duration
	Batch  int
}

// DefaultPurgeBatch bounds the rows one DELETE removes, so that no statement holds
// locks or builds WAL for long while the service is writing.
const DefaultPurgeBatch = 10_000

// Run deletes the rows p names and returns how many went.
func (p Purge) Run(ctx context.Context, db pgdb.Execer) (int64, error) {
	batch := p.Batch
	if batch <= 0 {
		batch = DefaultPurgeBatch
	}
	table, key, column := pgx.Identifier{p.Table}.Sanitize(), pgx.Identifier{p.Key}.Sanitize(), pgx.Identifier{p.Column}.Sanitize()
	n, err := pgdb.DeleteInBatches(ctx, db, fmt.Sprintf(
		`DELETE FROM %s WHERE %s IN (SELECT %s FROM %s WHERE %s < now() - make_interval(secs => $1) LIMIT $2)`,
		table, key, key, table, column), p.Age.Seconds(), batch)
	if err != nil {
		return n, fmt.Errorf("%s cleanup: delete: %w", p.Name, err)
	}
	return n, nil
}

// Handler is p as a task's handler, which logs how many rows went. A batch that fails
// leaves the earlier ones deleted, so a retry resumes where it stopped.
func (p Purge) Handler(pool *pgxpool.Pool, log *slog.Logger) HandlerFunc {
	return func(ctx context.Context, _ []byte) error {
		n, err := p.Run(ctx, pool)
		if err != nil {
			return err
		}
		log.Info(p.Name+" cleaned", "deleted", n, "older_than", p.Age.String())
		return nil
	}
}
