package httpapi

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/gateway/internal/inproc"
	"github.com/bazaar-shop/bazaar/gateway/internal/orderstory"
	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/pkg/httpjson"
	"github.com/bazaar-shop/bazaar/pkg/problem"
)

// OrderStories tells orders' stories (an *orderstory.Builder).
type OrderStories interface {
	Build(ctx context.Context, orderID uuid.UUID, bearerToken string) (orderstory.Story, error)
}

// orderStory answers GET /api/v1/admin/orders/{id}/story: the order's whole story,
// told by the gateway from the services' admin endpoints (asked through this same
// router, as the admin) and the streams and task queues in Redis. A part that could
// not be read is listed in unavailable and the rest is told; an unknown or malformed
// id is 404.
func orderStory(log *slog.Logger, stories OrderStories) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := uuid.Parse(r.PathValue("id"))
		if err != nil {
			problem.Write(w, r, log, orderstory.ErrNotFound)
			return
		}
		story, err := stories.Build(inproc.WithCaller(r.Context(), r), id, auth.BearerToken(r))
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		httpjson.Write(w, http.StatusOK, story)
	}
}
