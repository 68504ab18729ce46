// Package outbox writes domain events into a service's transactional outbox: the
// event row commits or rolls back with the change it describes, so no event is ever
// lost or invented. A Relay later copies unpublished rows to the
// service's Redis Stream.
//
// Every service that publishes has the outbox table (migrations/00001_outbox.sql): its
// migrations are WithTable(own), which puts the table's first. Its relay and the daily
// Cleanup of published rows are one call of pkg/platform (RelayOutbox).
package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/bazaar-shop/bazaar/pkg/telemetry"
)

// Event is one domain event, named with CloudEvents attributes.
type Event struct {
	ID      uuid.UUID
	Stream  string
	Type    string
	Source  string
	Subject string
	Time    time.Time
	Data    any // marshalled to JSON
}

// Write inserts e into the outbox inside tx; it commits only if tx does. A zero ID or
// Time is filled in. The trace context of ctx travels with the event as traceparent.
func Write(ctx context.Context, tx pgx.Tx, e Event) error {
	if e.ID == uuid.Nil {
		e.ID = uuid.New()
	}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	data, err := json.Marshal(e.Data)
	if err != nil {
		return fmt.Errorf("outbox: marshal %s: %w", e.Type, err)
	}
	// One round trip for the row and the relay's wake-up, which is sent when (and
	// only if) the transaction commits. The notification is a hint: Postgres folds
	// identical ones within a transaction and drops them while no one listens, so the
	// relay also polls.
	_, err = tx.Exec(ctx,
		`WITH row AS (
			INSERT INTO outbox (id, stream, type, source, subject, time, data, traceparent)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8))
		 SELECT pg_notify($9, $2)`,
		e.ID, e.Stream, e.Type, e.Source, e.Subject, e.Time, data, telemetry.TraceParent(ctx), NotifyChannel)
	if err != nil {
		return fmt.Errorf("outbox: insert %s: %w", e.Type, err)
	}
	return nil
}

// NotifyChannel is the Postgres channel Write notifies and the relay listens on.
const NotifyChannel = "outbox"
