package pgdb

import (
	"context"

	"github.com/jackc/pgx/v5/pgconn"
)

// Execer runs a statement: a pool, a connection or a transaction.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// DeleteInBatches runs query, a DELETE that removes one bounded batch (a LIMIT in a
// subquery), again and again until a run deletes nothing, and returns how many rows it
// deleted in all. Retention jobs delete this way so that no statement holds its locks
// or builds WAL for long while the service is writing. A batch that fails leaves the
// earlier ones deleted, so a retry resumes where it stopped; the error is returned
// with the count so far.
func DeleteInBatches(ctx context.Context, db Execer, query string, args ...any) (int64, error) {
	var total int64
	for {
		tag, err := db.Exec(ctx, query, args...)
		if err != nil {
			return total, err
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() == 0 {
			return total, nil
		}
	}
}
