// Package redisclient opens the go-redis client a program uses for its Redis URL.
package redisclient

import (
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Open parses url (redis://[user:password@]host:port/db) into a client. Like a pgx
// pool it connects lazily and reconnects after Redis restarts.
func Open(url string) (*redis.Client, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("parse redis url: %w", err)
	}
	opt.DialTimeout = 2 * time.Second
	opt.ReadTimeout = 3 * time.Second
	opt.WriteTimeout = 3 * time.Second
	return redis.NewClient(opt), nil
}

// OpenBounded is Open for calls made while a request waits: every call gives up at its
// context's deadline (go-redis otherwise waits for its read timeout), a dial at one
// second, and a refused connection is not dialled again within the call. A check that
// must answer within a bound (a token's revocation, a cached read, a rate limit) uses
// it. Each tune, if any, adjusts the options further (a pool size).
func OpenBounded(url string, tune ...func(*redis.Options)) (*redis.Client, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("parse redis url: %w", err)
	}
	opt.ContextTimeoutEnabled = true
	opt.DialTimeout = time.Second
	opt.ReadTimeout = time.Second
	opt.WriteTimeout = time.Second
	opt.DialerRetries = 1
	for _, f := range tune {
		f(opt)
	}
	return redis.NewClient(opt), nil
}
