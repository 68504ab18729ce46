package devstack

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

func TestAPrivatePostgresKeepsItsDataAcrossAFastAndACrashRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Postgres cluster")
	}
	ctx := t.Context()
	pg, err := StartPrivatePostgres(ctx, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	query := func(sql string) int {
		t.Helper()
		conn, err := pgx.Connect(ctx, pg.AdminURL())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.WithoutCancel(ctx))
		var n int
		if err := conn.QueryRow(ctx, sql).Scan(&n); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return n
	}
	conn, err := pgx.Connect(ctx, pg.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE t AS SELECT 1 AS x`); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	for _, crash := range []bool{false, true} {
		pg.Stop(crash)
		if _, err := pgx.Connect(ctx, pg.AdminURL()); err == nil {
			t.Fatalf("connected to a stopped server (crash %v)", crash)
		}
		if err := pg.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if n := query(`SELECT count(*)::int FROM t`); n != 1 {
			t.Errorf("after a restart (crash %v) the table has %d rows; want 1", crash, n)
		}
	}
}

func TestAPrivateRedisKeepsItsDataAcrossARestartUnlessWiped(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis")
	}
	ctx := t.Context()
	r, err := StartPrivateRedis(ctx, true, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	opt, _ := redis.ParseURL(r.URL())
	client := redis.NewClient(opt)
	defer client.Close()
	if err := client.XAdd(ctx, &redis.XAddArgs{Stream: "s", Values: map[string]any{"k": "v"}}).Err(); err != nil {
		t.Fatal(err)
	}
	r.Stop(false)
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := client.XLen(ctx, "s").Result(); err != nil || n != 1 {
		t.Errorf("after a restart the stream has %d entries (%v); want 1", n, err)
	}
	r.Stop(true)
	if err := r.Wipe(); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := client.XLen(ctx, "s").Result(); err != nil || n != 0 {
		t.Errorf("after a wipe the stream has %d entries (%v); want none", n, err)
	}
}

// A private server's port is kept while it is stopped, so that it can start again
// there: see TestAStoppedProgramsPortsAreKeptForItsRestart.
func TestAStoppedPrivateServerKeepsItsPort(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Postgres and Redis")
	}
	t.Parallel()
	ctx := t.Context()
	pg, err := StartPrivatePostgres(ctx, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	r, err := StartPrivateRedis(ctx, false, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	pg.Stop(false)
	r.Stop(false)
	redisAddr := strings.TrimSuffix(strings.TrimPrefix(r.URL(), "redis://"), "/0")
	for name, addr := range map[string]string{"postgres": fmt.Sprintf("127.0.0.1:%d", pg.Port()), "redis": redisAddr} {
		if err := takenBy(addr); err == nil {
			t.Errorf("while %s was stopped another socket could take %s", name, addr)
		}
	}
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
}
