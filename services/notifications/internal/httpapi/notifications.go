package httpapi

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/pkg/httpjson"
	"github.com/bazaar-shop/bazaar/pkg/page"
	"github.com/bazaar-shop/bazaar/pkg/problem"
	"github.com/bazaar-shop/bazaar/services/notifications/internal/notification"
)

// notificationResponse is a notification as its user sees it: not the address, the
// template data or the failure detail, which are for operators.
type notificationResponse struct {
	ID        string     `json:"id"`
	Kind      string     `json:"kind"`
	Subject   string     `json:"subject"`
	Status    string     `json:"status"`
	CreatedAt time.Time  `json:"created_at"`
	SentAt    *time.Time `json:"sent_at"`
}

type listResponse struct {
	Items      []notificationResponse `json:"items"`
	NextCursor *string                `json:"next_cursor"`
}

func toNotificationResponse(n notification.Notification) notificationResponse {
	r := notificationResponse{
		ID:        n.ID.String(),
		Kind:      string(n.Kind),
		Subject:   n.Subject,
		Status:    string(n.Status),
		CreatedAt: n.CreatedAt.UTC(),
	}
	if !n.SentAt.IsZero() {
		at := n.SentAt.UTC()
		r.SentAt = &at
	}
	return r
}

func cursorOf(n notification.Notification) page.Cursor {
	return page.Cursor{Time: n.CreatedAt, ID: n.ID}
}

// list answers GET /api/v1/notifications: the caller's notifications, newest first,
// a page at a time (?limit=1..100, default 20; ?cursor= from next_cursor).
func list(log *slog.Logger, notifications *notification.Service) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := auth.FromContext(r.Context())
		if !ok { // only reachable if the route lost its Require middleware
			problem.Write(w, r, log, apperr.E(apperr.Unauthorized, "a bearer access token is required"))
			return
		}
		pr, err := page.Parse(r.URL.Query())
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		found, err := notifications.List(r.Context(), p.UserID, pr)
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		items, next := page.Next(found, pr.Limit, cursorOf)
		resp := listResponse{Items: make([]notificationResponse, 0, len(items)), NextCursor: next}
		for _, n := range items {
			resp.Items = append(resp.Items, toNotificationResponse(n))
		}
		w.Header().Set("Cache-Control", "no-store")
		httpjson.Write(w, http.StatusOK, resp)
	}
}
