package opsauth_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/gateway/internal/opsauth"
	"github.com/bazaar-shop/bazaar/internal/testkit/closedport"
	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/pkg/redisclient"
)

func TestSessionsLiveForTheirTTLUnderAHashedKey(t *testing.T) {
	t.Parallel()
	rdb, err := redisclient.Open(redistest.New(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	sessions := opsauth.NewSessions(rdb, 90*time.Minute)

	want := opsauth.Session{UserID: uuid.New(), Role: auth.RoleAdmin}
	id, err := sessions.Create(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	other, err := sessions.Create(ctx, opsauth.Session{UserID: uuid.New(), Role: auth.RoleAdmin})
	if err != nil || other == id {
		t.Fatalf("a second session: %q, %v; want a different id", other, err)
	}
	got, err := sessions.Get(ctx, id)
	if err != nil || got != want {
		t.Fatalf("Get = %+v, %v; want %+v", got, err, want)
	}

	sum := sha256.Sum256([]byte(id))
	key := "gateway:session:" + hex.EncodeToString(sum[:])
	if ttl := rdb.TTL(ctx, key).Val(); ttl <= 89*time.Minute || ttl > 90*time.Minute {
		t.Errorf("TTL of %s is %s, want 90m", key, ttl)
	}
	keys, _ := rdb.Keys(ctx, "*").Result()
	for _, k := range keys {
		if strings.Contains(k, id) {
			t.Errorf("the id is stored in the clear, in key %s", k)
		}
	}

	if err := sessions.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := sessions.Get(ctx, id); !errors.Is(err, opsauth.ErrNoSession) {
		t.Errorf("Get after Delete = %v, want ErrNoSession", err)
	}
	if err := sessions.Delete(ctx, id); err != nil {
		t.Errorf("deleting twice: %v", err)
	}
	if _, err := sessions.Get(ctx, other); err != nil {
		t.Errorf("deleting one session ended another: %v", err)
	}
}

func TestSessionsRefuseWhatCreateDidNotMake(t *testing.T) {
	t.Parallel()
	rdb, err := redisclient.Open(redistest.New(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	sessions := opsauth.NewSessions(rdb, time.Hour)

	id, err := sessions.Create(ctx, opsauth.Session{UserID: uuid.New(), Role: auth.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	// A record someone else wrote under a well-formed id is not trusted.
	planted := strings.Repeat("A", 43)
	sum := sha256.Sum256([]byte(planted))
	rdb.HSet(ctx, "gateway:session:"+hex.EncodeToString(sum[:]), "user_id", "root", "role", "admin")

	for name, id := range map[string]string{
		"empty":           "",
		"not base64":      "!!!!",
		"too short":       id[:20],
		"padded":          id + "=",
		"made-up":         strings.Repeat("B", 43),
		"planted record":  planted,
		"the key instead": hex.EncodeToString(sum[:]),
	} {
		_, err := sessions.Get(ctx, id)
		if !errors.Is(err, opsauth.ErrNoSession) {
			t.Errorf("%s: Get = %v, want ErrNoSession", name, err)
		}
		if code := apperr.CodeOf(err); code != apperr.Unauthorized {
			t.Errorf("%s: Get = %v, code %s; want %s", name, err, code, apperr.Unauthorized)
		}
	}
}

func TestSessionsReportRedisDownAsUnavailable(t *testing.T) {
	t.Parallel()
	addr := closedport.Addr(t)
	// No retries: each call fails at its first refused connection.
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	sessions := opsauth.NewSessions(rdb, time.Hour)

	if _, err := sessions.Create(ctx, opsauth.Session{UserID: uuid.New(), Role: auth.RoleAdmin}); apperr.CodeOf(err) != apperr.Unavailable {
		t.Errorf("Create = %v, want unavailable", err)
	}
	id := strings.Repeat("A", 43)
	if _, err := sessions.Get(ctx, id); apperr.CodeOf(err) != apperr.Unavailable {
		t.Errorf("Get = %v, want unavailable", err)
	}
	if err := sessions.Delete(ctx, id); apperr.CodeOf(err) != apperr.Unavailable {
		t.Errorf("Delete = %v, want unavailable", err)
	}
}
