package devstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/pkg/config"
)

// UnreachableError says that a server the stack needs (Postgres or Redis) could not be
// reached, and how to start it.
type UnreachableError struct {
	Server string // "Postgres" or "Redis"
	URL    string // the URL tried, password masked
	Hint   string // how to start the server or point the stack elsewhere
	Err    error
}

// Error names the server, the URL, the cause and the hint, one per line.
func (e *UnreachableError) Error() string {
	return fmt.Sprintf("%s is not reachable at %s: %v\n  %s", e.Server, e.URL, e.Err, e.Hint)
}

// Unwrap is the connection error.
func (e *UnreachableError) Unwrap() error { return e.Err }

// The commands that start the servers on this project's machines (Debian's packages).
const (
	startPostgres = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
	startRedis    = "redis-server --daemonize yes --bind 127.0.0.1 --port 6379"
)

// CheckServers connects to Postgres at adminURL and pings Redis at redisURL. When
// either cannot be reached it returns an *UnreachableError for each one down (joined),
// whose hint quotes the command that starts it and names the variable (pgVar,
// redisVar) that points the stack at another server.
func CheckServers(ctx context.Context, adminURL, pgVar, redisURL, redisVar string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var errs []error
	if err := pingPostgres(ctx, adminURL); err != nil {
		errs = append(errs, &UnreachableError{
			Server: "Postgres", URL: config.Mask(adminURL), Err: err,
			Hint: "start it with: " + startPostgres + "\n  or start PostgreSQL your own way, or set " + pgVar + " to a server that is running",
		})
	}
	if err := pingRedis(ctx, redisURL); err != nil {
		errs = append(errs, &UnreachableError{
			Server: "Redis", URL: config.Mask(redisURL), Err: err,
			Hint: "start it with: " + startRedis + "\n  or start Redis your own way, or set " + redisVar + " to a server that is running",
		})
	}
	return errors.Join(errs...)
}

func pingPostgres(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.Ping(ctx)
}

func pingRedis(ctx context.Context, url string) error {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return err
	}
	// Dial first: go-redis logs every failed dial on its own, which would bury the
	// message that says how to start Redis.
	var d net.Dialer
	conn, err := d.DialContext(ctx, opt.Network, opt.Addr)
	if err != nil {
		return err
	}
	conn.Close()
	c := redis.NewClient(opt)
	defer c.Close()
	return c.Ping(ctx).Err()
}
