package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/bazaar-shop/bazaar/internal/devstack"
	"github.com/bazaar-shop/bazaar/internal/testkit/closedport"
)

func TestRunSaysWhichServerIsDownAndFails(t *testing.T) {
	t.Parallel()
	closed := closedport.Addr(t)
	env := map[string]string{
		"BAZAAR_ADMIN_DATABASE_URL": "postgres://postgres@" + closed + "/postgres?sslmode=disable",
		"REDIS_URL":                 "redis://" + closed + "/0",
	}
	var out bytes.Buffer
	err := run(context.Background(), []string{"devstack"}, func(k string) string { return env[k] }, &out)
	if err == nil {
		t.Fatal("run succeeded with Postgres and Redis down")
	}
	for _, want := range []string{"Postgres is not reachable", "pg_ctlcluster", "BAZAAR_ADMIN_DATABASE_URL", "Redis is not reachable", "redis-server", "REDIS_URL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(out.String(), "building") {
		t.Errorf("run built the programs before checking the servers:\n%s", out.String())
	}
}

func TestRunRejectsABadVariable(t *testing.T) {
	t.Parallel()
	env := map[string]string{"REDIS_URL": "ftp://127.0.0.1/0", "INSTANCES": "inventory=2,gateway=2"}
	err := run(context.Background(), []string{"devstack"}, func(k string) string { return env[k] }, &bytes.Buffer{})
	for _, name := range []string{"REDIS_URL", "INSTANCES", "gateway=2"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("err = %v; want one naming %s", err, name)
		}
	}
}

// INSTANCES=inventory=2 runs two instances of inventory, on make run's ports and the
// ones a hundred above, and the banner says where.
func TestInstancesAreReadAndShown(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(func(k string) string { return map[string]string{"INSTANCES": "inventory=2"}[k] })
	if err != nil {
		t.Fatal(err)
	}
	opts := stackOptions(cfg, "/repo", &bytes.Buffer{})
	if opts.Instances["inventory"] != 2 {
		t.Errorf("stack instances %v; want inventory=2", opts.Instances)
	}
	if len(opts.Instances) != 1 {
		t.Errorf("stack instances %v; want inventory=2 alone", opts.Instances)
	}
	var out bytes.Buffer
	banner(&out, devstack.URLs{
		Instances: map[string][]string{"inventory": {"inventory", "inventory-2"}, "users": {"users"}},
		Programs:  map[string]string{"inventory": "http://127.0.0.1:8082", "inventory-2": "http://127.0.0.1:8182"},
	})
	for _, want := range []string{"2 instances", "http://127.0.0.1:8182"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("banner without %q, want it:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "users") {
		t.Errorf("banner names users, a single instance; want it not named:\n%s", out.String())
	}
}

func TestBannerShowsTheURLsAndLogins(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	cfg, err := loadConfig(func(k string) string {
		return map[string]string{"BAZAAR_SHOPPER_EMAIL": "me@example.com", "BAZAAR_SHOPPER_PASSWORD": "s3cret-pass"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	banner(&out, devstack.URLs{Gateway: "http://127.0.0.1:8080", Mailpit: "http://127.0.0.1:8025", Admin: cfg.Admin, Shopper: cfg.Shopper})
	for _, want := range []string{
		"http://127.0.0.1:8080", "http://127.0.0.1:8080/health", "http://127.0.0.1:8025",
		"admin@bazaar.local / bazaar-admin", "me@example.com / s3cret-pass",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("banner lacks %q:\n%s", want, out.String())
		}
	}
}
