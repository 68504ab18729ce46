package outbox

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Record is an outbox row as an operator reads it back: which event it was, where it
// went and when. The event's data stays out: the story of an order names events, the
// services' contracts say what they carry.
//
// Record is also the wire form of those rows: the admin answers of orders, inventory
// and payments carry Records as they are (docs/openapi.yaml, OutboxEvent). The tags
// are here, not on a response type in each service, because a Record holds nothing
// an operator may not see and needs no converting (About gives the times in UTC, the
// id marshals as its text), so a response type would repeat these fields and a
// converter in every service that answers with them. Renaming a tag changes those
// answers: TestRecordsWireForm pins it.
type Record struct {
	ID      uuid.UUID `json:"id"`
	Stream  string    `json:"stream"`
	Type    string    `json:"type"`
	Subject string    `json:"subject"`
	// Time is when the event happened (the change's transaction wrote it).
	Time time.Time `json:"time"`
	// PublishedAt is when the relay last published it to Stream; nil (null) while it
	// waits in the outbox.
	PublishedAt *time.Time `json:"published_at"`
	// TraceParent is the W3C trace context of the request that caused it; "" when it
	// had none.
	TraceParent string `json:"traceparent"`
}

// Querier is what About reads with: a pool, a connection or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// MaxSubjects is the most subjects one About call asks for, and MaxRecords the most
// rows it returns (the oldest). An order's story asks for a handful of subjects with
// a few events each; the bounds keep a mistaken call from reading the outbox whole
// into memory.
const (
	MaxSubjects = 100
	MaxRecords  = 1000
)

// About returns the outbox rows whose subject is one of subjects, oldest first (by
// time, then by the order they were written in): the events the service wrote about
// those entities and still keeps, published or not (published rows are deleted after
// Retention). More than MaxSubjects subjects is an error; past MaxRecords rows the
// rest are left out. Without an error the slice is never nil: an answer that lists
// no rows says [], not null. Database errors are returned wrapped, for the store to
// classify (pgdb.Error).
//
// There is deliberately no index on subject: every event write would pay for it, on
// the path issue 10 measures per indexed write (docs/benchmarks.md), to speed up a
// read that only an operator's story of one order makes. So About scans the retained
// outbox (Retention's worth of published events, and any not yet published):
// acceptable for a rare admin read, not for anything on a request's hot path.
func About(ctx context.Context, q Querier, subjects []string) ([]Record, error) {
	if len(subjects) == 0 {
		return []Record{}, nil
	}
	if len(subjects) > MaxSubjects {
		return nil, fmt.Errorf("outbox: events about %d subjects, at most %d at once", len(subjects), MaxSubjects)
	}
	rows, err := q.Query(ctx,
		`SELECT id, stream, type, subject, time, published_at, traceparent FROM outbox
		 WHERE subject = ANY($1) ORDER BY time, seq LIMIT $2`, subjects, MaxRecords)
	if err != nil {
		return nil, fmt.Errorf("outbox: events about: %w", err)
	}
	// Appended to an empty slice, not collected, so that no rows is [] (see above).
	records, err := pgx.AppendRows([]Record{}, rows, func(row pgx.CollectableRow) (Record, error) {
		var r Record
		err := row.Scan(&r.ID, &r.Stream, &r.Type, &r.Subject, &r.Time, &r.PublishedAt, &r.TraceParent)
		r.Time = r.Time.UTC()
		if r.PublishedAt != nil {
			at := r.PublishedAt.UTC()
			r.PublishedAt = &at
		}
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("outbox: events about: %w", err)
	}
	return records, nil
}
