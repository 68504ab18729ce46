package httpapi

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/httpjson"
	"github.com/bazaar-shop/bazaar/pkg/problem"
	"github.com/bazaar-shop/bazaar/services/notifications/internal/notification"
)

// MaxEventIDs bounds the event ids one admin read asks about: an order's story has a
// handful of events; more is a mistake, or a scan, and is refused (422).
const MaxEventIDs = 50

// adminNotificationResponse is a notification as operators see it: besides what its
// user sees, the event it came from, whose it is and the address it went to (an
// operator chasing an e-mail needs both), how its delivery went, and the Message-ID
// the e-mail carries. Its email:send task's id is the notification's id.
type adminNotificationResponse struct {
	ID        string     `json:"id"`
	EventID   string     `json:"event_id"`
	Kind      string     `json:"kind"`
	UserID    string     `json:"user_id"`
	Recipient string     `json:"recipient"`
	Subject   string     `json:"subject"`
	Status    string     `json:"status"`
	Attempts  int        `json:"attempts"`
	Error     *string    `json:"error"`
	MessageID string     `json:"message_id"`
	CreatedAt time.Time  `json:"created_at"`
	SentAt    *time.Time `json:"sent_at"`
}

// inboxResponse is an event the consumer handled, and when.
type inboxResponse struct {
	EventID   string    `json:"event_id"`
	Stream    string    `json:"stream"`
	Type      string    `json:"type"`
	HandledAt time.Time `json:"handled_at"`
}

type adminNotificationsResponse struct {
	Notifications []adminNotificationResponse `json:"notifications"`
	Inbox         []inboxResponse             `json:"inbox"`
}

func toAdminNotificationResponse(n notification.Notification, messageID string) adminNotificationResponse {
	r := adminNotificationResponse{
		ID: n.ID.String(), EventID: n.EventID.String(), Kind: string(n.Kind), UserID: n.UserID.String(),
		Recipient: n.Recipient, Subject: n.Subject, Status: string(n.Status), Attempts: n.Attempts,
		MessageID: messageID, CreatedAt: n.CreatedAt.UTC(),
	}
	if n.Error != "" {
		r.Error = &n.Error
	}
	if !n.SentAt.IsZero() {
		at := n.SentAt.UTC()
		r.SentAt = &at
	}
	return r
}

// parseEventIDs reads the repeated event_id parameter: 1 to MaxEventIDs UUIDs, each
// kept once. It returns an apperr.Invalid error naming event_id.
func parseEventIDs(values []string) ([]uuid.UUID, error) {
	var f apperr.Fields
	switch {
	case len(values) == 0:
		f.Add("event_id", "is required: give one or more event ids")
	case len(values) > MaxEventIDs:
		f.Add("event_id", fmt.Sprintf("must be given at most %d times", MaxEventIDs))
	}
	if err := f.Err(); err != nil {
		return nil, err
	}
	ids := make([]uuid.UUID, 0, len(values))
	seen := make(map[uuid.UUID]bool, len(values))
	for _, v := range values {
		id, err := uuid.Parse(v)
		if err != nil || len(v) != 36 {
			f.Add("event_id", fmt.Sprintf("%q is not a UUID", v))
			continue
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids, f.Err()
}

// adminNotifications answers GET /api/v1/admin/notifications?event_id=…&event_id=…:
// the notifications made from those events (any user's), and the inbox entries of
// those the consumer handled, whether or not they made one. 422 with no event_id, a
// malformed one, or more than MaxEventIDs.
func adminNotifications(log *slog.Logger, notifications *notification.Service) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ids, err := parseEventIDs(r.URL.Query()["event_id"])
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		trail, err := notifications.Trail(r.Context(), ids)
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		resp := adminNotificationsResponse{
			Notifications: make([]adminNotificationResponse, len(trail.Notifications)),
			Inbox:         make([]inboxResponse, len(trail.Handled)),
		}
		for i, n := range trail.Notifications {
			resp.Notifications[i] = toAdminNotificationResponse(n, notifications.MessageID(n.ID))
		}
		for i, h := range trail.Handled {
			resp.Inbox[i] = inboxResponse{EventID: h.EventID.String(), Stream: h.Stream, Type: h.Type, HandledAt: h.HandledAt}
		}
		w.Header().Set("Cache-Control", "no-store")
		httpjson.Write(w, http.StatusOK, resp)
	}
}
