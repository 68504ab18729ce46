package httpapi

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/pkg/httpjson"
	"github.com/bazaar-shop/bazaar/pkg/problem"
	"github.com/bazaar-shop/bazaar/services/users/internal/user"
)

// userResponse is a user as clients see it: never the password hash.
type userResponse struct {
	ID        string    `json:"id"`
	Email     string    `json:"email"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"created_at"`
}

func toUserResponse(u user.User) userResponse {
	return userResponse{
		ID:        u.ID.String(),
		Email:     u.Email.String(),
		Name:      u.Name.String(),
		Role:      string(u.Role),
		CreatedAt: u.CreatedAt.UTC(),
	}
}

// me answers GET /api/v1/users/me: the caller, as named by their access token.
func me(log *slog.Logger, users *user.Service) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := auth.FromContext(r.Context())
		if !ok { // only reachable if the route lost its Require middleware
			problem.Write(w, r, log, apperr.E(apperr.Unauthorized, "a bearer access token is required"))
			return
		}
		u, err := users.Me(r.Context(), p.UserID)
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		httpjson.Write(w, http.StatusOK, toUserResponse(u))
	}
}
