package jobs_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bazaar-shop/bazaar/internal/testkit/syncbuf"
	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/services/payments/internal/jobs"
)

// failingSettler fails every sweep, as with the processor down, and counts them.
type failingSettler struct {
	mu    sync.Mutex
	calls int
	ages  []time.Duration
}

func (f *failingSettler) SettlePending(_ context.Context, age time.Duration) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.ages = append(f.ages, age)
	return 2, apperr.E(apperr.Unavailable, "the payment processor is unavailable")
}

// The first sweep runs at start, not a minute later; a failed one is logged (the
// next one retries) and does not stop the loop, which returns nil when stopped.
func TestRunSweepSweepsAtStartAndSurvivesFailures(t *testing.T) {
	t.Parallel()
	var logs syncbuf.Buffer
	s := &failingSettler{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- jobs.RunSweep(ctx, s, slog.New(slog.NewJSONHandler(&logs, nil))) }()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), "pending payments sweep failed"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("no failed sweep logged within 10s; logs:\n%s", logs.String())
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("RunSweep returned %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("RunSweep did not return after its context ended")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.calls != 1 || s.ages[0] != jobs.SweepAge {
		t.Errorf("%d sweeps with ages %v; want one, at start, for payments older than %s", s.calls, s.ages, jobs.SweepAge)
	}
	if !strings.Contains(logs.String(), `"settled":2`) {
		t.Errorf("the failed sweep's log does not say how far it got (\"settled\":2):\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "unavailable") {
		t.Errorf("the failed sweep's log does not say why (unavailable):\n%s", logs.String())
	}
}

type brokenForgetter struct{}

func (brokenForgetter) ForgetVoids(context.Context, time.Duration) (int64, error) {
	return 3, errors.New("connection reset")
}

// A failed cleanup fails its task (so asynq retries it) and says how far it got.
func TestVoidsCleanupHandlerFailsTheTaskOnError(t *testing.T) {
	t.Parallel()
	err := jobs.VoidsCleanupHandler(brokenForgetter{}, time.Hour, slog.New(slog.DiscardHandler))(context.Background(), nil)
	if err == nil {
		t.Fatal("handler error nil, want the failure")
	}
	if !strings.Contains(err.Error(), "deleted 3 old voids") {
		t.Errorf("handler error %q does not say how far it got (deleted 3 old voids)", err)
	}
	if !strings.Contains(err.Error(), "connection reset") {
		t.Errorf("handler error %q does not say why (connection reset)", err)
	}
}
