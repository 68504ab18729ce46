package storefront

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/pkg/auth"
)

// sessionReads counts the HGETALLs that read a session.
type sessionReads struct{ n atomic.Int64 }

func (h *sessionReads) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *sessionReads) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "hgetall" {
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (h *sessionReads) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// A page that needs the session asks for it twice (signedIn, then view): within a
// page request Redis is asked once; outside one, each call reads.
func TestAPageRequestReadsItsSessionOnce(t *testing.T) {
	rdb := redis.NewClient(mustParse(t, redistest.New(t)))
	t.Cleanup(func() { _ = rdb.Close() })
	reads := &sessionReads{}
	rdb.AddHook(reads)
	store := NewSessions(rdb, time.Hour)
	sess, err := store.Create(t.Context(), Session{UserID: uuid.New(), Role: auth.RoleCustomer, Name: "Ada", Email: "ada@example.com",
		Tokens: Tokens{Access: "a", Refresh: "r", AccessExpiry: time.Now().Add(time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	shop := &Shop{log: slog.New(slog.DiscardHandler), sessions: store}

	for _, tc := range []struct {
		name      string
		wrap      func(http.Handler) http.Handler
		wantReads int64
	}{
		{"a page request", rememberSession, 1},
		{"no memo", func(h http.Handler) http.Handler { return h }, 2},
	} {
		var got int64
		h := tc.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			before := reads.n.Load()
			for range 2 {
				s, err := shop.session(r)
				if err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				if s.ID != sess.ID {
					t.Errorf("%s: session %q, want %q", tc.name, s.ID, sess.ID)
				}
			}
			got = reads.n.Load() - before
		}))
		req := httptest.NewRequest(http.MethodGet, "/orders", nil)
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: sess.ID})
		h.ServeHTTP(httptest.NewRecorder(), req)
		if got != tc.wantReads {
			t.Errorf("%s: the session was read from Redis %d times, want %d", tc.name, got, tc.wantReads)
		}
	}
}
