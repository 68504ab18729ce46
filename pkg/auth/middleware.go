package auth

import (
	"context"
	"log/slog"
	"net/http"
	"strings"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/problem"
)

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return withPrincipal(ctx, &p)
}

// withPrincipal carries a pointer, so that a principal from the token cache goes
// into the context without a copy being allocated for each request. Nobody changes
// what it points to: FromContext hands out copies.
func withPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext is the verified caller put there by Require.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(*Principal)
	if !ok {
		return Principal{}, false
	}
	return *p, true
}

// BearerToken is the token of an "Authorization: Bearer <token>" header, or "".
func BearerToken(r *http.Request) string {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// Require lets a request through only with a valid bearer token, putting its principal
// in the context; otherwise it answers a 401 problem (503 when the keys cannot be had).
// A revocation list that cannot be read is logged to log (unless v has a logger).
func (v *Verifier) Require(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			token := BearerToken(r)
			if token == "" {
				w.Header().Set("WWW-Authenticate", `Bearer realm="bazaar"`)
				problem.Write(w, r, log, apperr.E(apperr.Unauthorized, "a bearer access token is required"))
				return
			}
			p, err := v.verify(r.Context(), token, log)
			if err != nil {
				if apperr.CodeOf(err) == apperr.Unauthorized {
					w.Header().Set("WWW-Authenticate", `Bearer realm="bazaar", error="invalid_token"`)
				}
				problem.Write(w, r, log, err)
				return
			}
			next.ServeHTTP(w, r.WithContext(withPrincipal(r.Context(), p)))
		})
	}
}

// RequireRole lets through only callers with role (after Require); others get a 403.
func RequireRole(log *slog.Logger, role Role) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, ok := FromContext(r.Context())
			if !ok {
				problem.Write(w, r, log, apperr.E(apperr.Unauthorized, "a bearer access token is required"))
				return
			}
			if p.Role != role {
				problem.Write(w, r, log, apperr.E(apperr.Forbidden, "this requires the %s role", role))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
