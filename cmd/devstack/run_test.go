package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"

	"github.com/bazaar-shop/bazaar/internal/devstack"
)

func TestRunSaysWhichServerIsDownAndFails(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	env := map[string]string{
		"BAZAAR_ADMIN_DATABASE_URL": "postgres://postgres@" + closed + "/postgres?sslmode=disable",
		"REDIS_URL":                 "redis://" + closed + "/0",
	}
	var out bytes.Buffer
	err = run(context.Background(), []string{"devstack"}, func(k string) string { return env[k] }, &out)
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
	env := map[string]string{"REDIS_URL": "ftp://127.0.0.1/0"}
	err := run(context.Background(), []string{"devstack"}, func(k string) string { return env[k] }, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "REDIS_URL") {
		t.Fatalf("err = %v; want one naming REDIS_URL", err)
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
