package postgres_test

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/internal/eventcontract"
	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/services/users/internal/user"
	"github.com/bazaar-shop/bazaar/services/users/userevents"
)

// The store is the only writer of users' events, so its outbox rows are what every
// consumer reads: they must be userevents' examples, which consumers are tested with.
func TestTheEventsWrittenAreTheContractExamples(t *testing.T) {
	t.Parallel()
	store, pool := newStore(t)
	ctx := context.Background()
	email, err := user.ParseEmail("ann@example.com")
	if err != nil {
		t.Fatal(err)
	}
	u := user.User{ID: uuid.MustParse("0a000000-0000-4000-8000-000000000001"), Email: email, Name: "Ann Lee",
		Role: auth.RoleCustomer, PasswordHash: "$argon2id$x", CreatedAt: created}
	if err := store.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	var stream, typ, source string
	var data []byte
	if err := pool.QueryRow(ctx, `SELECT stream, type, source, data FROM outbox`).Scan(&stream, &typ, &source, &data); err != nil {
		t.Fatal(err)
	}
	if stream != userevents.Stream {
		t.Errorf("outbox row stream %s, want %s", stream, userevents.Stream)
	}
	if typ != string(userevents.TypeRegistered) {
		t.Errorf("outbox row type %s, want %s", typ, userevents.TypeRegistered)
	}
	if source != userevents.Source {
		t.Errorf("outbox row source %s, want %s", source, userevents.Source)
	}
	eventcontract.SameJSON(t, typ, data, eventcontract.Example(t, typ))
}
