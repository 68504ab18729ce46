// Package deploy holds the deployment files; its test loads docker-compose.yml with
// compose-go (the loader docker compose itself uses), since no Docker engine runs where
// the tests do, and checks what the system relies on.
package deploy

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

var programs = map[string]string{
	"gateway": "gateway", "users": "services/users", "inventory": "services/inventory",
	"payments": "services/payments", "orders": "services/orders", "notifications": "services/notifications",
}

func loadProject(t *testing.T) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{"docker-compose.yml"},
		cli.WithWorkingDirectory("."), cli.WithName("bazaar"), cli.WithEnv([]string{}))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	return p
}

func env(s types.ServiceConfig, key string) string {
	if v, ok := s.Environment[key]; ok && v != nil {
		return *v
	}
	return ""
}

func TestComposeRunsEveryProgramFromThisRepo(t *testing.T) {
	t.Parallel()
	p := loadProject(t)
	for name, dir := range programs {
		s, err := p.GetService(name)
		if err != nil {
			t.Errorf("service %s missing: %v", name, err)
			continue
		}
		if s.Build == nil || s.Build.Args["PROGRAM"] == nil || *s.Build.Args["PROGRAM"] != dir {
			t.Errorf("%s does not build ./%s", name, dir)
			continue
		}
		if _, err := os.Stat(filepath.Join("..", dir, "main.go")); err != nil {
			t.Errorf("%s builds %s, which has no main.go", name, dir)
		}
		if !strings.HasSuffix(s.Build.Dockerfile, "deploy/Dockerfile") {
			t.Errorf("%s uses Dockerfile %q", name, s.Build.Dockerfile)
		}
		if env(s, "HTTP_ADDR") != ":8080" || env(s, "REDIS_URL") != "redis://redis:6379/0" {
			t.Errorf("%s: HTTP_ADDR=%q REDIS_URL=%q", name, env(s, "HTTP_ADDR"), env(s, "REDIS_URL"))
		}
	}
}

// Each service reaches only its own database, with its own role.
func TestComposeDatabasesAreSeparate(t *testing.T) {
	t.Parallel()
	p := loadProject(t)
	initSQL, err := os.ReadFile("postgres-init.sql")
	if err != nil {
		t.Fatal(err)
	}
	for name := range programs {
		if name == "gateway" {
			continue
		}
		s, _ := p.GetService(name)
		u, err := url.Parse(env(s, "DATABASE_URL"))
		if err != nil {
			t.Fatalf("%s DATABASE_URL: %v", name, err)
		}
		want := "bazaar_" + name
		if u.Host != "postgres:5432" || u.Path != "/"+want || u.User.Username() != want {
			t.Errorf("%s DATABASE_URL = %s, want role and database %s on postgres", name, u.Redacted(), want)
		}
		for _, stmt := range []string{"CREATE ROLE " + want + " LOGIN", "CREATE DATABASE " + want + " OWNER " + want} {
			if !strings.Contains(string(initSQL), stmt) {
				t.Errorf("postgres-init.sql lacks %q", stmt)
			}
		}
		if _, ok := s.DependsOn["postgres"]; !ok || s.DependsOn["postgres"].Condition != types.ServiceConditionHealthy {
			t.Errorf("%s does not wait for a healthy postgres", name)
		}
	}
}

func TestComposeGatewayReachesEveryService(t *testing.T) {
	t.Parallel()
	p := loadProject(t)
	gw, _ := p.GetService("gateway")
	for _, name := range []string{"users", "inventory", "payments", "orders", "notifications"} {
		if got := env(gw, strings.ToUpper(name)+"_URL"); got != "http://"+name+":8080" {
			t.Errorf("gateway %s_URL = %q", strings.ToUpper(name), got)
		}
	}
	if !slices.ContainsFunc(gw.Ports, func(pc types.ServicePortConfig) bool { return pc.Published == "8080" && pc.Target == 8080 }) {
		t.Errorf("gateway does not publish 8080: %+v", gw.Ports)
	}
	mp, _ := p.GetService("mailpit")
	// Everyone's mail is in that inbox: it is published on this machine's loopback
	// only, never to the network.
	if !slices.ContainsFunc(mp.Ports, func(pc types.ServicePortConfig) bool { return pc.Published == "8025" && pc.HostIP == "127.0.0.1" }) {
		t.Errorf("mailpit's web inbox is not published on 127.0.0.1:8025 alone: %+v", mp.Ports)
	}
	for _, pc := range mp.Ports {
		if pc.HostIP != "127.0.0.1" {
			t.Errorf("mailpit publishes %+v beyond loopback", pc)
		}
	}
	users, _ := p.GetService("users")
	if env(users, "BOOTSTRAP_ADMIN_EMAIL") != "admin@bazaar.local" || env(users, "BOOTSTRAP_ADMIN_PASSWORD") != "bazaar-admin" {
		t.Error("users does not seed the demo admin")
	}
}

// Redis holds the event streams and the task queue: it must never evict keys.
func TestComposeRedisNeverEvicts(t *testing.T) {
	t.Parallel()
	p := loadProject(t)
	r, _ := p.GetService("redis")
	cmd := strings.Join(r.Command, " ")
	if !strings.Contains(cmd, "--maxmemory-policy noeviction") || !strings.Contains(cmd, "--appendonly yes") {
		t.Errorf("redis command = %q", cmd)
	}
}
