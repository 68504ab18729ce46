package main

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/internal/testkit/programtest"
	"github.com/bazaar-shop/bazaar/internal/testkit/smtptest"
	"github.com/bazaar-shop/bazaar/pkg/auth"
)

// adminNotificationsBody is GET /api/v1/admin/notifications's answer.
type adminNotificationsBody struct {
	// What its user sees, and what only an operator does.
	Notifications []struct {
		notificationBody
		EventID   string  `json:"event_id"`
		UserID    string  `json:"user_id"`
		Recipient string  `json:"recipient"`
		Attempts  int     `json:"attempts"`
		Error     *string `json:"error"`
		MessageID string  `json:"message_id"`
	} `json:"notifications"`
	Inbox []struct {
		EventID   string    `json:"event_id"`
		Stream    string    `json:"stream"`
		Type      string    `json:"type"`
		HandledAt time.Time `json:"handled_at"`
	} `json:"inbox"`
}

func TestAnAdminReadsWhatEventsLedTo(t *testing.T) {
	t.Parallel()
	s := startStack(t, nil)
	di := newUser("Di")
	registered := s.register(t, di)
	order := uuid.New()
	// order.created makes no e-mail, but the consumer handles it all the same.
	created := s.publish(t, "events.orders", "order.created", map[string]any{
		"order_id": order, "user_id": di.id, "total_cents": 1299, "currency": "USD",
		"items": []map[string]any{{"product_id": uuid.New(), "quantity": 1, "unit_price_cents": 1299}},
	})
	confirmed := s.publish(t, "events.orders", "order.confirmed", map[string]any{
		"order_id": order, "user_id": di.id, "total_cents": 1299, "currency": "USD",
		"items": []map[string]any{{"product_id": uuid.New(), "quantity": 1, "unit_price_cents": 1299}},
	})
	s.waitRow(t, confirmed.ID, "the order_confirmed e-mail sent", func(r row) bool { return r.status == "sent" })
	eventually(t, arrives, "order.created handled", func() bool {
		return s.count(t, `SELECT count(*) FROM inbox WHERE event_id = $1`, created.ID) == 1
	})

	admin := s.issuer.tokenAs(t, uuid.New(), auth.RoleAdmin)
	query := "?event_id=" + created.ID.String() + "&event_id=" + confirmed.ID.String() + "&event_id=" + confirmed.ID.String() +
		"&event_id=" + uuid.NewString()
	r := s.get(t, "/api/v1/admin/notifications"+query, admin)
	if r.Status != http.StatusOK {
		t.Fatalf("admin read: status %d, want 200; body %s", r.Status, r.Body)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("admin read: Cache-Control %q, want no-store", cc)
	}
	var got adminNotificationsBody
	r.JSON(t, &got)
	if len(got.Notifications) != 1 {
		t.Fatalf("notifications %+v; want the order_confirmed one alone (the welcome's event was not asked about)", got.Notifications)
	}
	n := got.Notifications[0]
	if err := uuid.Validate(n.ID); err != nil {
		t.Errorf("notification id %q: %v, want a UUID", n.ID, err)
	}
	if n.EventID != confirmed.ID.String() {
		t.Errorf("notification event_id %s, want the order.confirmed's %s", n.EventID, confirmed.ID)
	}
	if n.Kind != "order_confirmed" {
		t.Errorf("notification kind %q, want order_confirmed", n.Kind)
	}
	if n.UserID != di.id.String() {
		t.Errorf("notification user_id %s, want Di's %s", n.UserID, di.id)
	}
	if n.Recipient != di.email {
		t.Errorf("notification recipient %q, want Di's %q", n.Recipient, di.email)
	}
	if !strings.Contains(n.Subject, "is confirmed") {
		t.Errorf("notification subject %q, want it to say is confirmed", n.Subject)
	}
	if n.Status != "sent" {
		t.Errorf("notification status %q, want sent", n.Status)
	}
	if n.Attempts != 1 {
		t.Errorf("notification attempts %d, want 1", n.Attempts)
	}
	if n.Error != nil {
		t.Errorf("notification error %q, want null", *n.Error)
	}
	if n.SentAt == nil {
		t.Error("notification sent_at null, want a time")
	} else if n.SentAt.Before(n.CreatedAt) {
		t.Errorf("notification sent_at %v, want no earlier than created_at %v", *n.SentAt, n.CreatedAt)
	}
	if n.MessageID != "<"+n.ID+"@bazaar.local>" {
		t.Errorf("message_id %q; want the notification id at the sender's domain", n.MessageID)
	}
	// The welcome e-mail and this one, in whichever order their streams were read.
	msgs := s.waitMail(t, di.email, 2)
	if !slices.ContainsFunc(msgs, func(m smtptest.Message) bool { return m.Header.Get("Message-ID") == n.MessageID }) {
		t.Errorf("no e-mail to %s carries the Message-ID the admin read says, %q", di.email, n.MessageID)
	}
	handled := map[string]string{}
	for _, h := range got.Inbox {
		handled[h.EventID] = h.Type + " on " + h.Stream
		if h.HandledAt.IsZero() {
			t.Errorf("inbox entry %+v has no time", h)
		}
	}
	if len(handled) != 2 || handled[created.ID.String()] != "order.created on events.orders" ||
		handled[confirmed.ID.String()] != "order.confirmed on events.orders" {
		t.Errorf("inbox %+v; want order.created and order.confirmed, each once", got.Inbox)
	}

	t.Run("bounded, and for admins only", func(t *testing.T) {
		many := strings.Repeat("&event_id="+registered.ID.String(), 51)
		for _, q := range []string{"", "?event_id=nope", "?" + many[1:]} {
			d := s.get(t, "/api/v1/admin/notifications"+q, admin).Problem(t, http.StatusUnprocessableEntity)
			if len(d.Errors) != 1 {
				t.Errorf("%.40q: %d field errors %+v, want one", q, len(d.Errors), d.Errors)
			} else if d.Errors[0].Field != "event_id" {
				t.Errorf("%.40q: field %q named, want event_id", q, d.Errors[0].Field)
			}
		}
		s.get(t, "/api/v1/admin/notifications?event_id="+confirmed.ID.String(), s.issuer.token(t, di.id)).
			Problem(t, http.StatusForbidden)
		programtest.Call(t, http.MethodGet, s.url+"/api/v1/admin/notifications?event_id="+confirmed.ID.String(), "").
			Problem(t, http.StatusUnauthorized)
	})
}
