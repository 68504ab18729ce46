package redistest

import (
	"context"
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestLeaseGivesAFlushedDatabaseAndReleaseFreesIt(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Redis")
	}
	t.Parallel()
	ctx := context.Background()
	u, release, err := Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	opt, err := redis.ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	if opt.DB < 1 || opt.DB > 15 {
		t.Fatalf("leased database %d; want 1..15", opt.DB)
	}
	c := redis.NewClient(opt)
	defer c.Close()
	if n, err := c.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Fatalf("leased database holds %d keys (%v); want it flushed", n, err)
	}
	key := "redistest:" + newToken()
	if err := c.Set(ctx, key, "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	ctlOpt := *opt
	ctlOpt.DB = 0
	ctl := redis.NewClient(&ctlOpt)
	defer ctl.Close()
	leaseKey := "bazaar:test:lease:" + strconv.Itoa(opt.DB)
	holder, err := ctl.Get(ctx, leaseKey).Result()
	if err != nil {
		t.Fatalf("no lease recorded at %s: %v", leaseKey, err)
	}
	// Nobody else can lease it meanwhile.
	if other := New(t); other == u {
		t.Fatalf("%s leased twice", u)
	}

	release()
	// Another test may lease the database as soon as it is free, so look only for
	// what is ours: our key (flushed) and our lease (gone or someone else's now).
	if n, err := c.Exists(ctx, key).Result(); err != nil || n != 0 {
		t.Errorf("after release our key is still there (%d, %v); want the database flushed", n, err)
	}
	if now, _ := ctl.Get(ctx, leaseKey).Result(); now == holder {
		t.Errorf("after release %s is still ours", leaseKey)
	}
}
