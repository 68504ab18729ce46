package intake_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/events"
	"github.com/bazaar-shop/bazaar/services/notifications/internal/intake"
	"github.com/bazaar-shop/bazaar/services/notifications/internal/notification"
)

// fakeStore is the consumer's transaction in memory.
type fakeStore struct {
	recipients map[uuid.UUID]notification.Recipient
	added      []notification.Notification
}

var _ intake.Store = (*fakeStore)(nil)

func newFakeStore() *fakeStore { return &fakeStore{recipients: map[uuid.UUID]notification.Recipient{}} }

func (s *fakeStore) SaveRecipient(_ context.Context, r notification.Recipient) error {
	s.recipients[r.UserID] = r
	return nil
}

func (s *fakeStore) Recipient(_ context.Context, user uuid.UUID) (notification.Recipient, error) {
	r, ok := s.recipients[user]
	if !ok {
		return r, fmt.Errorf("user %s: %w", user, notification.ErrUnknownRecipient)
	}
	return r, nil
}

func (s *fakeStore) Add(_ context.Context, n notification.Notification) (bool, error) {
	s.added = append(s.added, n)
	return true, nil
}

var at = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func event(typ, data string) events.Envelope {
	return events.Envelope{ID: uuid.New(), Type: typ, Source: "test", Subject: "x", Time: at, Data: []byte(data)}
}

func TestEventsBecomeNotifications(t *testing.T) {
	t.Parallel()
	s := newFakeStore()
	ctx := context.Background()
	user := uuid.New()
	order := uuid.New()
	reg := event(intake.TypeUserRegistered, fmt.Sprintf(`{"user_id":%q,"email":"ann@example.com","name":"Ann","extra":"ignored"}`, user))
	if err := intake.Apply(ctx, s, reg, at); err != nil {
		t.Fatal(err)
	}
	if s.recipients[user].Email != "ann@example.com" || s.recipients[user].Name != "Ann" {
		t.Errorf("recipient %+v", s.recipients[user])
	}
	for _, e := range []events.Envelope{
		event(intake.TypeOrderConfirmed, fmt.Sprintf(`{"order_id":%q,"user_id":%q,"total_cents":2598,"currency":"USD",
			"items":[{"product_id":%q,"quantity":2,"unit_price_cents":1299}]}`, order, user, uuid.New())),
		event(intake.TypeOrderCancelled, fmt.Sprintf(`{"order_id":%q,"user_id":%q,"reason":"out_of_stock","total_cents":2598,"currency":"USD"}`, order, user)),
		event(intake.TypePaymentRefunded, fmt.Sprintf(`{"payment_id":%q,"order_id":%q,"user_id":%q,"amount_cents":2598,"currency":"USD"}`, uuid.New(), order, user)),
	} {
		if err := intake.Apply(ctx, s, e, at); err != nil {
			t.Fatalf("%s: %v", e.Type, err)
		}
	}
	if len(s.added) != 4 {
		t.Fatalf("%d notifications, want 4", len(s.added))
	}
	wantKinds := []notification.Kind{notification.KindWelcome, notification.KindOrderConfirmed, notification.KindOrderCancelled, notification.KindPaymentRefunded}
	for i, n := range s.added {
		if n.Kind != wantKinds[i] || n.UserID != user || n.Recipient != "ann@example.com" || n.Details.Name != "Ann" ||
			n.Status != notification.StatusQueued || !n.CreatedAt.Equal(at) {
			t.Errorf("notification %d: %+v", i, n)
		}
	}
	if d := s.added[1].Details; d.OrderID != order || d.Total.String() != "$25.98" || len(d.Items) != 1 || d.Items[0].Total().String() != "$25.98" {
		t.Errorf("order_confirmed details %+v", d)
	}
	if d := s.added[2].Details; d.Reason != notification.ReasonOutOfStock {
		t.Errorf("order_cancelled details %+v", d)
	}
	if d := s.added[3].Details; d.Refunded.String() != "$25.98" || d.PaymentID == uuid.Nil {
		t.Errorf("payment_refunded details %+v", d)
	}
	if s.added[0].EventID != reg.ID {
		t.Errorf("event id %s, want %s", s.added[0].EventID, reg.ID)
	}
}

func TestOtherTypesAreIgnored(t *testing.T) {
	t.Parallel()
	s := newFakeStore()
	for _, typ := range []string{"order.created", "payment.captured", "stock.reserved"} {
		if err := intake.Apply(context.Background(), s, event(typ, `{"whatever":1}`), at); err != nil {
			t.Errorf("%s: %v", typ, err)
		}
	}
	if len(s.added) != 0 {
		t.Errorf("%d notifications from ignored events", len(s.added))
	}
}

func TestUnknownRecipientIsRetryable(t *testing.T) {
	t.Parallel()
	e := event(intake.TypeOrderConfirmed, fmt.Sprintf(`{"order_id":%q,"user_id":%q,"total_cents":1,"currency":"USD","items":[]}`, uuid.New(), uuid.New()))
	err := intake.Apply(context.Background(), newFakeStore(), e, at)
	if !errors.Is(err, notification.ErrUnknownRecipient) || errors.Is(err, events.ErrMalformed) {
		t.Errorf("Apply = %v; want ErrUnknownRecipient, not malformed (so it is retried)", err)
	}
}

func TestDataThatDoesNotFitIsMalformed(t *testing.T) {
	t.Parallel()
	user, order := uuid.New(), uuid.New()
	for name, e := range map[string]events.Envelope{
		"registered not JSON object": event(intake.TypeUserRegistered, `[1,2]`),
		"registered bad user id":     event(intake.TypeUserRegistered, `{"user_id":"nope","email":"a@example.com","name":"A"}`),
		"registered no user id":      event(intake.TypeUserRegistered, `{"email":"a@example.com","name":"A"}`),
		"registered bad email":       event(intake.TypeUserRegistered, fmt.Sprintf(`{"user_id":%q,"email":"nope","name":"A"}`, user)),
		"confirmed cents as string":  event(intake.TypeOrderConfirmed, fmt.Sprintf(`{"order_id":%q,"user_id":%q,"total_cents":"12","currency":"USD"}`, order, user)),
		"confirmed no currency":      event(intake.TypeOrderConfirmed, fmt.Sprintf(`{"order_id":%q,"user_id":%q,"total_cents":12}`, order, user)),
		"confirmed no order":         event(intake.TypeOrderConfirmed, fmt.Sprintf(`{"user_id":%q,"total_cents":12,"currency":"USD"}`, user)),
		"confirmed bad item":         event(intake.TypeOrderConfirmed, fmt.Sprintf(`{"order_id":%q,"user_id":%q,"total_cents":12,"currency":"USD","items":[{"quantity":0}]}`, order, user)),
		"cancelled negative":         event(intake.TypeOrderCancelled, fmt.Sprintf(`{"order_id":%q,"user_id":%q,"reason":"timeout","total_cents":-1,"currency":"USD"}`, order, user)),
		"refunded no payment":        event(intake.TypePaymentRefunded, fmt.Sprintf(`{"order_id":%q,"user_id":%q,"amount_cents":1,"currency":"USD"}`, order, user)),
		"refunded no user":           event(intake.TypePaymentRefunded, fmt.Sprintf(`{"payment_id":%q,"order_id":%q,"amount_cents":1,"currency":"USD"}`, uuid.New(), order)),
	} {
		s := newFakeStore()
		s.recipients[user] = notification.Recipient{UserID: user, Email: "a@example.com"}
		if err := intake.Apply(context.Background(), s, e, at); !errors.Is(err, events.ErrMalformed) {
			t.Errorf("%s: Apply = %v, want ErrMalformed", name, err)
		}
		if len(s.added) != 0 {
			t.Errorf("%s: a notification was added", name)
		}
	}
}
