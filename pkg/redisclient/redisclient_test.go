package redisclient_test

import (
	"context"
	"testing"

	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/pkg/redisclient"
)

func TestOpenTalksToTheDatabaseInTheURL(t *testing.T) {
	t.Parallel()
	url := redistest.New(t)
	c, err := redisclient.Open(url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got := c.Options().DB; got == 0 {
		t.Fatalf("client on database %d; the leased URL %s names another", got, url)
	}
	v, err := c.Get(ctx, "k").Result()
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if v != "v" {
		t.Fatalf("Get = %q, want v", v)
	}
}

func TestOpenRefusesABadURL(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"http://localhost:6379", "redis://localhost:6379/notanumber", "::"} {
		if _, err := redisclient.Open(u); err == nil {
			t.Errorf("Open(%q) accepted it", u)
		}
	}
}
