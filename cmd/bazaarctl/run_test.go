package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/pkg/redisclient"
)

func TestDLQListAndReplay(t *testing.T) {
	t.Parallel()
	url := redistest.New(t)
	rdb, _ := redisclient.Open(url)
	defer rdb.Close()
	ctx := context.Background()
	id, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: "events.dlq", Values: map[string]any{
		"id": "e1", "type": "user.registered", "data": "{}",
		"dlq_stream": "events.users", "dlq_entry_id": "1-0", "dlq_group": "notifications",
		"dlq_error": "smtp exploded", "dlq_deliveries": "5", "dlq_time": time.Now().UTC().Format(time.RFC3339Nano),
	}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	getenv := func(k string) string { return map[string]string{"REDIS_URL": url}[k] }

	var out bytes.Buffer
	if err := run(ctx, []string{"bazaarctl", "dlq", "list"}, getenv, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), id) {
		t.Fatalf("list printed %q, want the event %s in it", out.String(), id)
	}
	if !strings.Contains(out.String(), "smtp exploded") {
		t.Fatalf("list printed %q, want its error, smtp exploded, in it", out.String())
	}
	out.Reset()
	if err := run(ctx, []string{"bazaarctl", "dlq", "replay", "-all"}, getenv, &out); err != nil {
		t.Fatal(err)
	}
	back, _ := rdb.XRange(ctx, "events.users", "-", "+").Result()
	if len(back) != 1 {
		t.Fatalf("events.users = %+v, want 1 entry", back)
	}
	if got := back[0].Values["type"]; got != "user.registered" {
		t.Fatalf("events.users entry of type %v, want user.registered: %+v", got, back[0])
	}
	if got := back[0].Values["dlq_error"]; got != nil {
		t.Fatalf("events.users entry with dlq_error %v, want none", got)
	}
	if n, _ := rdb.XLen(ctx, "events.dlq").Result(); n != 0 {
		t.Fatalf("DLQ still has %d entries", n)
	}
}

func TestUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"bazaarctl"}, {"bazaarctl", "dlq", "shred"}, {"bazaarctl", "outbox", "pending"}} {
		if err := run(context.Background(), args, func(string) string { return "" }, &bytes.Buffer{}); err == nil {
			t.Errorf("%v: want an error", args)
		}
	}
}

// demo seed registers the shopper make run seeds, through the gateway it is given,
// with the shopper's login from the environment.
func TestDemoSeedRegistersTheShopperThroughTheGateway(t *testing.T) {
	t.Parallel()
	var registered map[string]string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/auth/register" {
			t.Errorf("asked %s", r.URL.Path)
		}
		json.NewDecoder(r.Body).Decode(&registered)
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(srv.Close)
	getenv := func(k string) string { return map[string]string{"BAZAAR_SHOPPER_EMAIL": "s@shop.test"}[k] }
	var out bytes.Buffer
	if err := run(context.Background(), []string{"bazaarctl", "demo", "seed", "-gateway", srv.URL}, getenv, &out); err != nil {
		t.Fatal(err)
	}
	if registered["email"] != "s@shop.test" {
		t.Errorf("registered email %q, want s@shop.test", registered["email"])
	}
	if registered["password"] != "bazaar-shopper" {
		t.Errorf("registered password %q, want bazaar-shopper", registered["password"])
	}
	if !strings.Contains(out.String(), "seeded the shopper s@shop.test") {
		t.Errorf("said %q, want \"seeded the shopper s@shop.test\"", out.String())
	}
}
