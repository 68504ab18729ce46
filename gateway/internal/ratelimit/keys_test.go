package ratelimit

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/pkg/auth"
)

func TestAppendUUIDIsTheUsualForm(t *testing.T) {
	t.Parallel()
	for range 20 {
		id := uuid.New()
		if got := string(appendUUID([]byte("user:"), id)); got != "user:"+id.String() {
			t.Fatalf("%s, want user:%s", got, id)
		}
	}
}

// BenchmarkPerCaller is a signed-in caller's request through the per-address and
// per-user limits as the gateway runs them (reconciled in the background): what the
// limits cost a request once the caller is known. Its allocations are the point.
func BenchmarkPerCaller(b *testing.B) {
	rdb, err := Open(redistest.New(b))
	if err != nil {
		b.Fatal(err)
	}
	defer rdb.Close()
	l := New(rdb, Limits{EdgeIP: 1e6, EdgeIPBurst: 1e6, User: 1e6, UserBurst: 1e6}, Options{Log: slog.New(slog.DiscardHandler)})
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = l.Run(ctx) }()
	defer func() { stop(); <-done }()
	for !l.shared.running.Load() {
		// Run has not started yet: nothing to wait for but the goroutine.
		runtime.Gosched()
	}

	h := l.PerAddress(l.PerCaller(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})))
	req := httptest.NewRequest(http.MethodGet, "/api/v1/orders", nil)
	req = req.WithContext(auth.WithPrincipal(req.Context(), auth.Principal{UserID: uuid.New(), Role: auth.RoleCustomer}))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req) // the first sight, in Redis
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, req)
	}
}
