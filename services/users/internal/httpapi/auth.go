package httpapi

import (
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/httpjson"
	"github.com/bazaar-shop/bazaar/pkg/problem"
	"github.com/bazaar-shop/bazaar/services/users/internal/user"
)

type registerRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
	Name     string `json:"name"`
}

// toRegistration parses the request into domain values, reporting every bad field.
func (req registerRequest) toRegistration() (user.Registration, error) {
	var f apperr.Fields
	reg := user.Registration{
		Email:    apperr.Parse(&f, "email", req.Email, user.ParseEmail),
		Password: apperr.Parse(&f, "password", req.Password, user.ParsePassword),
		Name:     apperr.Parse(&f, "name", req.Name, user.ParseName),
	}
	return reg, f.Err()
}

type loginRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

type refreshRequest struct {
	RefreshToken string `json:"refresh_token"`
}

// tokenResponse is an OAuth 2.0-style token response (RFC 6749 §5.1).
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"` // seconds
	RefreshToken string `json:"refresh_token"`
}

func toTokenResponse(t user.Tokens) tokenResponse {
	return tokenResponse{
		AccessToken:  t.AccessToken,
		TokenType:    "Bearer",
		ExpiresIn:    int64(t.ExpiresIn.Seconds()),
		RefreshToken: t.RefreshToken,
	}
}

// register answers POST /api/v1/auth/register: 201 with the new user.
func register(log *slog.Logger, users *user.Service) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req registerRequest
		if err := httpjson.Decode(r, &req); err != nil {
			problem.Write(w, r, log, err)
			return
		}
		reg, err := req.toRegistration()
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		u, err := users.Register(r.Context(), reg)
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		log.InfoContext(r.Context(), "user registered", "user_id", u.ID)
		w.Header().Set("Location", "/api/v1/users/me")
		httpjson.Write(w, http.StatusCreated, toUserResponse(u))
	}
}

// login answers POST /api/v1/auth/login: 200 with a token pair, one 401 for every
// wrong e-mail or password, or a 429 with Retry-After for an attempt too soon after
// failed ones (from the client address proxies say).
func login(log *slog.Logger, users *user.Service, proxies TrustedProxies) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req loginRequest
		if err := httpjson.Decode(r, &req); err != nil {
			problem.Write(w, r, log, err)
			return
		}
		// Only absence is a field error; whether a present value is right is the
		// credentials check's business, so that it has a single answer.
		var f apperr.Fields
		required(&f, "email", req.Email)
		required(&f, "password", req.Password)
		if err := f.Err(); err != nil {
			problem.Write(w, r, log, err)
			return
		}
		t, err := users.Login(r.Context(), req.Email, req.Password, proxies.ClientAddr(r))
		var tooSoon *user.TooManyAttemptsError
		if errors.As(err, &tooSoon) {
			// Whole seconds, rounded up: an early retry would only be refused again.
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(tooSoon.RetryAfter.Seconds()))))
		}
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		writeTokens(w, t)
	}
}

// refresh answers POST /api/v1/auth/refresh: 200 with a new token pair; the token sent
// stops working.
func refresh(log *slog.Logger, users *user.Service) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req refreshRequest
		if err := httpjson.Decode(r, &req); err != nil {
			problem.Write(w, r, log, err)
			return
		}
		var f apperr.Fields
		required(&f, "refresh_token", req.RefreshToken)
		if err := f.Err(); err != nil {
			problem.Write(w, r, log, err)
			return
		}
		t, err := users.Refresh(r.Context(), req.RefreshToken)
		if err != nil {
			if errors.Is(err, user.ErrRefreshTokenReused) {
				// Worth an operator's attention: a token may have been stolen. The
				// error says too if the session's access tokens could not be revoked.
				log.WarnContext(r.Context(), "refresh token reused; its family is revoked", "err", err)
			}
			problem.Write(w, r, log, err)
			return
		}
		writeTokens(w, t)
	}
}

// logout answers POST /api/v1/auth/logout: 204 once the session of the refresh token
// sent has ended (its refresh tokens at once, its access tokens within seconds). A
// token that is not one of ours, or of a session already ended, is a 204 too: the
// answer says nothing about tokens (RFC 7009 §2.2).
func logout(log *slog.Logger, users *user.Service) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req refreshRequest
		if err := httpjson.Decode(r, &req); err != nil {
			problem.Write(w, r, log, err)
			return
		}
		var f apperr.Fields
		required(&f, "refresh_token", req.RefreshToken)
		if err := f.Err(); err != nil {
			problem.Write(w, r, log, err)
			return
		}
		if err := users.Logout(r.Context(), req.RefreshToken); err != nil {
			problem.Write(w, r, log, err)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNoContent)
	}
}

func writeTokens(w http.ResponseWriter, t user.Tokens) {
	// Tokens must not sit in any cache (RFC 6749 §5.1).
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	httpjson.Write(w, http.StatusOK, toTokenResponse(t))
}

func required(f *apperr.Fields, field, value string) {
	if value == "" {
		f.Add(field, "is required")
	}
}
