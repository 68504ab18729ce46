// Package redistest leases a test one of Redis's logical databases, flushed before and
// after use, so that parallel test stacks never see each other's keys, asynq's included
// (asynq's keys take no prefix). The server is TEST_REDIS_URL (default 127.0.0.1:6379).
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// leaseTTL bounds how long a crashed test can keep a database from others.
const leaseTTL = 10 * time.Minute

// waitForLease bounds how long Lease waits for a free database when ctx has no
// earlier deadline.
const waitForLease = 2 * time.Minute

func serverURL() string {
	if u := os.Getenv("TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// New returns the URL of a logical database (1..15) leased for t; it waits for one to
// be free. The database is flushed and the lease returned when t ends.
func New(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("needs Redis; skipped by -short (make test-unit)")
	}
	u, release, err := Lease(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	return u
}

// Lease is New for callers without a *testing.T (a TestMain): it returns the URL of a
// flushed logical database (1..15) and a release func that flushes it and gives the
// lease back. It waits up to two minutes (or until ctx ends) for a free database;
// leases live in database 0 as keys bazaar:test:lease:N and expire after ten minutes
// so that a crashed test does not keep one forever. It fails when Redis cannot be
// reached or no database frees up in time.
func Lease(ctx context.Context) (dbURL string, release func(), err error) {
	opt, err := redis.ParseURL(serverURL())
	if err != nil {
		return "", nil, fmt.Errorf("redistest: TEST_REDIS_URL: %w", err)
	}
	opt.DB = 0
	ctl := redis.NewClient(opt)
	defer ctl.Close()
	if err := ctl.Ping(ctx).Err(); err != nil {
		return "", nil, fmt.Errorf("redistest: ping %s: %w (is Redis running?)", serverURL(), err)
	}
	token := newToken()
	ctx, cancel := context.WithTimeout(ctx, waitForLease)
	defer cancel()
	for {
		for db := 1; db <= 15; db++ {
			key := "bazaar:test:lease:" + strconv.Itoa(db)
			ok, err := ctl.SetNX(ctx, key, token, leaseTTL).Result()
			if err != nil {
				return "", nil, fmt.Errorf("redistest: lease: %w", err)
			}
			if !ok {
				continue
			}
			dbOpt := *opt
			dbOpt.DB = db
			if err := flush(ctx, &dbOpt); err != nil {
				ctl.Del(context.WithoutCancel(ctx), key)
				return "", nil, fmt.Errorf("redistest: flush database %d: %w", db, err)
			}
			release := func() {
				ctx := context.Background()
				_ = flush(ctx, &dbOpt)
				ctl := redis.NewClient(opt)
				defer ctl.Close()
				// Only our own lease: after leaseTTL another test may hold the key.
				if v, _ := ctl.Get(ctx, key).Result(); v == token {
					ctl.Del(ctx, key)
				}
			}
			u, _ := url.Parse(serverURL())
			u.Path = "/" + strconv.Itoa(db)
			return u.String(), release, nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return "", nil, errors.New("redistest: no free logical database in time")
			}
			return "", nil, ctx.Err()
		case <-time.After(100 * time.Millisecond): // poll for a lease to free up
		}
	}
}

func flush(ctx context.Context, opt *redis.Options) error {
	c := redis.NewClient(opt)
	defer c.Close()
	return c.FlushDB(ctx).Err()
}

// newToken names a lease holder uniquely, so that release never frees a lease that
// expired and was taken by someone else.
func newToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
