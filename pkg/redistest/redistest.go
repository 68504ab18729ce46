// Package redistest leases a test one of Redis's logical databases, flushed before and
// after use, so that parallel test stacks never see each other's keys, asynq's included
// (asynq's keys take no prefix). The server is TEST_REDIS_URL (default 127.0.0.1:6379).
package redistest

import (
	"context"
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

func serverURL() string {
	if u := os.Getenv("TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// New returns the URL of a logical database (1..15) leased for t; it waits for one to
// be free. Leases live in database 0 as keys bazaar:test:lease:N.
func New(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	opt, err := redis.ParseURL(serverURL())
	if err != nil {
		t.Fatal(err)
	}
	opt.DB = 0
	ctl := redis.NewClient(opt)
	defer ctl.Close()
	if err := ctl.Ping(ctx).Err(); err != nil {
		t.Fatalf("redistest: ping %s: %v (is Redis running?)", serverURL(), err)
	}
	token := fmt.Sprintf("%s-%d", t.Name(), time.Now().UnixNano())
	deadline := time.Now().Add(2 * time.Minute)
	for {
		for db := 1; db <= 15; db++ {
			key := "bazaar:test:lease:" + strconv.Itoa(db)
			ok, err := ctl.SetNX(ctx, key, token, leaseTTL).Result()
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				continue
			}
			dbOpt := *opt
			dbOpt.DB = db
			c := redis.NewClient(&dbOpt)
			if err := c.FlushDB(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			c.Close()
			t.Cleanup(func() {
				c := redis.NewClient(&dbOpt)
				_ = c.FlushDB(context.Background()).Err()
				c.Close()
				ctl := redis.NewClient(opt)
				if v, _ := ctl.Get(context.Background(), key).Result(); v == token {
					ctl.Del(context.Background(), key)
				}
				ctl.Close()
			})
			u, _ := url.Parse(serverURL())
			u.Path = "/" + strconv.Itoa(db)
			return u.String()
		}
		if time.Now().After(deadline) {
			t.Fatal("redistest: no free logical database in 2 minutes")
		}
		time.Sleep(100 * time.Millisecond) // poll for a lease to free up
	}
}
