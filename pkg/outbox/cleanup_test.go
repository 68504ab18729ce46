package outbox

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/internal/testkit/pgtest"
)

func TestCleanupDeletesOnlyOldPublishedRows(t *testing.T) {
	t.Parallel()
	pool := pgtest.New(t, WithTable(fstest.MapFS{}))
	ctx := t.Context()
	insert := func(n int, published string) {
		t.Helper()
		for range n {
			_, err := pool.Exec(ctx, `INSERT INTO outbox (id, stream, type, source, subject, time, data, published_at)
				VALUES ($1, 'events.test', 'thing.done', 'test', 'x', now() - interval '30 days', '{}', `+published+`)`, uuid.New())
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	insert(5, "now() - interval '8 days'")
	insert(1, "now() - interval '7 days' + interval '1 hour'") // not yet 7 days old
	insert(1, "NULL")                                          // never published: the relay still owes it

	// Batches of 2 take three statements for the five old rows.
	n, err := published(2).Run(ctx, pool)
	if err != nil || n != 5 {
		t.Fatalf("deleted %d (%v), want 5", n, err)
	}
	var kept, unpublished int
	if err := pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE published_at IS NULL) FROM outbox`).Scan(&kept, &unpublished); err != nil {
		t.Fatal(err)
	}
	if kept != 2 || unpublished != 1 {
		t.Errorf("kept %d rows (%d unpublished), want 2 (1)", kept, unpublished)
	}

	// The task's handler does the same and says how much it removed.
	insert(3, "now() - interval '10 days'")
	var log bytes.Buffer
	if err := Clean(pool, slog.New(slog.NewJSONHandler(&log, nil)))(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), `"deleted":3`) {
		t.Errorf("cleanup log %q does not report 3 deleted", log.String())
	}

	pool.Close()
	if _, err := published(2).Run(ctx, pool); err == nil || !strings.Contains(err.Error(), "outbox cleanup") {
		t.Errorf("cleanup on a closed pool: %v, want a named error", err)
	}
}
