package auth

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/internal/testkit/syncbuf"
	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/redisclient"
)

// fakeRevocations is a set of ended sessions, or a failure.
type fakeRevocations struct {
	mu      sync.Mutex
	revoked map[string]bool
	asked   []string
	err     error
}

var _ Revocations = (*fakeRevocations)(nil)

func (f *fakeRevocations) Revoked(_ context.Context, sid string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, sid)
	return f.revoked[sid], f.err
}

func TestRevokedSessionsAreRefused(t *testing.T) {
	t.Parallel()
	pub, priv := newKey(t)
	signer := NewSigner("k1", priv, time.Minute)
	sign := func(sid string) string {
		tok, err := signer.Sign(Principal{UserID: uuid.New(), Role: RoleCustomer, SessionID: sid})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	revs := &fakeRevocations{revoked: map[string]bool{"ended": true}}
	v := NewVerifier(StaticKeys{"k1": pub}).WithRevocations(revs)
	ctx := context.Background()

	if _, err := v.Verify(ctx, sign("ended")); apperr.CodeOf(err) != apperr.Unauthorized {
		t.Errorf("a revoked session's token: %v, want unauthorized", err)
	}
	p, err := v.Verify(ctx, sign("live"))
	if err != nil {
		t.Errorf("a live session's token: %v, want it accepted", err)
	} else if p.SessionID != "live" {
		t.Errorf("a live session's token: session %q, want live", p.SessionID)
	}
	// A verifier without revocations does not check; one given them, even with the
	// result of the call dropped, does.
	plain := NewVerifier(StaticKeys{"k1": pub})
	if _, err := plain.Verify(ctx, sign("ended")); err != nil {
		t.Errorf("the verifier without revocations: %v", err)
	}
	plain.WithRevocations(revs)
	if _, err := plain.Verify(ctx, sign("ended")); apperr.CodeOf(err) != apperr.Unauthorized {
		t.Errorf("after WithRevocations without using its result: %v, want unauthorized", err)
	}
	// A token without a session cannot have been revoked; it is not looked up.
	revs.asked = nil
	if _, err := v.Verify(ctx, sign("")); err != nil {
		t.Errorf("a token without sid: %v, want it accepted", err)
	}
	if len(revs.asked) != 0 {
		t.Errorf("a token without sid: looked up %v, want nothing looked up", revs.asked)
	}
	// A bad token is refused before anyone is asked about its session.
	if _, err := v.Verify(ctx, "junk"); apperr.CodeOf(err) != apperr.Unauthorized {
		t.Errorf("junk: %v, want unauthorized", err)
	}
	if len(revs.asked) != 0 {
		t.Errorf("junk: looked up %v, want nothing looked up", revs.asked)
	}
}

// When the revocation list cannot be read, tokens are let through on their signature
// and expiry (fail open for revocation only), and that is logged, not silent.
func TestRevocationFailureFailsOpenAndIsLogged(t *testing.T) {
	t.Parallel()
	pub, priv := newKey(t)
	tok, _ := NewSigner("k1", priv, time.Minute).Sign(Principal{UserID: uuid.New(), Role: RoleCustomer, SessionID: "s"})
	var logs syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	v := NewVerifier(StaticKeys{"k1": pub}).WithRevocations(&fakeRevocations{err: errors.New("redis: connection refused")}).WithLogger(log)
	for range 3 {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatalf("Verify = %v, want the token accepted while revocations cannot be read", err)
		}
	}
	got := logs.String()
	if !strings.Contains(got, "revocation") {
		t.Errorf("logs %q do not say that revocations could not be checked: no \"revocation\"", got)
	}
	if !strings.Contains(got, "connection refused") {
		t.Errorf("logs %q do not say why revocations could not be checked: no \"connection refused\"", got)
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Errorf("%d warnings for 3 failures in a row, want 1 (they are rate limited)", n)
	}
}

func TestRedisRevocations(t *testing.T) {
	t.Parallel()
	rdb, err := redisclient.Open(redistest.New(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	revs := RedisRevocations(rdb)
	ctx := context.Background()

	revoked, err := revs.Revoked(ctx, "s1")
	if err != nil {
		t.Fatalf("before revocation: %v", err)
	}
	if revoked {
		t.Fatal("before revocation: s1 revoked, want not")
	}
	if err := revs.Revoke(ctx, "s1", 16*time.Minute); err != nil {
		t.Fatal(err)
	}
	revoked, err = revs.Revoked(ctx, "s1")
	if err != nil {
		t.Fatalf("after revocation: %v", err)
	}
	if !revoked {
		t.Fatal("after revocation: s1 not revoked, want revoked")
	}
	if revoked, _ := revs.Revoked(ctx, "s2"); revoked {
		t.Error("another session is revoked too")
	}
	// The key others read is part of the contract (the gateway reads the same one),
	// and it goes once every token of the session has expired.
	val, err := rdb.Get(ctx, "auth:revoked:s1").Result()
	ttl := rdb.TTL(ctx, "auth:revoked:s1").Val()
	if err != nil {
		t.Errorf("auth:revoked:s1: %v", err)
	} else if val != "1" {
		t.Errorf("auth:revoked:s1 = %q, want 1", val)
	}
	if ttl <= 15*time.Minute || ttl > 16*time.Minute {
		t.Errorf("auth:revoked:s1 ttl %v, want within (15m, 16m]", ttl)
	}
	if err := revs.Revoke(ctx, "", time.Minute); err == nil {
		t.Error("revoked the empty session id")
	}
}

func TestRedisRevocationsDown(t *testing.T) {
	t.Parallel()
	rdb, err := redisclient.Open("redis://127.0.0.1:1/0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	if _, err := RedisRevocations(rdb).Revoked(context.Background(), "s1"); err == nil {
		t.Error("Revoked answered without Redis")
	}
}
