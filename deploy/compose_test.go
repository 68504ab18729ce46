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

	programlist "github.com/bazaar-shop/bazaar/internal/programs"
)

// programs are every program (internal/programs), their directories by name.
var programs = func() map[string]string {
	m := map[string]string{}
	for _, p := range programlist.All {
		m[p.Name] = p.Dir
	}
	return m
}()

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
		if s.Build == nil {
			t.Errorf("%s has no build, want one of ./%s", name, dir)
			continue
		}
		if s.Build.Args["PROGRAM"] == nil {
			t.Errorf("%s has no PROGRAM build arg, want %s", name, dir)
			continue
		}
		if got := *s.Build.Args["PROGRAM"]; got != dir {
			t.Errorf("%s builds PROGRAM=%s, want %s", name, got, dir)
			continue
		}
		if _, err := os.Stat(filepath.Join("..", dir, "main.go")); err != nil {
			t.Errorf("%s builds %s, which has no main.go", name, dir)
		}
		if !strings.HasSuffix(s.Build.Dockerfile, "deploy/Dockerfile") {
			t.Errorf("%s uses Dockerfile %q", name, s.Build.Dockerfile)
		}
		if got := env(s, "HTTP_ADDR"); got != ":8080" {
			t.Errorf("%s: HTTP_ADDR=%q, want :8080", name, got)
		}
		if got := env(s, "REDIS_URL"); got != "redis://redis:6379/0" {
			t.Errorf("%s: REDIS_URL=%q, want redis://redis:6379/0", name, got)
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
		if _, ok := s.DependsOn["postgres"]; !ok {
			t.Errorf("%s does not depend on postgres, want it to wait for a healthy postgres", name)
		} else if got := s.DependsOn["postgres"].Condition; got != types.ServiceConditionHealthy {
			t.Errorf("%s waits for postgres to be %s, want %s", name, got, types.ServiceConditionHealthy)
		}
	}
}

func TestComposeGatewayReachesEveryService(t *testing.T) {
	t.Parallel()
	p := loadProject(t)
	gw, _ := p.GetService("gateway")
	for _, name := range programlist.Services() {
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
	for _, name := range programlist.Services() {
		if got := env(gw, strings.ToUpper(name)+"_INTERNAL_URL"); got != "http://"+name+":9090" {
			t.Errorf("gateway %s_INTERNAL_URL = %q: /health asks the internal listeners", strings.ToUpper(name), got)
		}
	}
}

// Finding: the compose file baked in the admin's password (and a KEK everyone knows).
// Now both are generated on the first start by the secrets service and handed to
// users as files; nothing secret is in the file.
func TestComposeBakesInNoSecret(t *testing.T) {
	t.Parallel()
	p := loadProject(t)
	users, _ := p.GetService("users")
	if env(users, "BOOTSTRAP_ADMIN_EMAIL") != "admin@bazaar.local" {
		t.Error("users does not seed the admin")
	}
	for _, v := range []string{"BOOTSTRAP_ADMIN_PASSWORD", "SIGNING_KEK"} {
		if _, set := users.Environment[v]; set {
			t.Errorf("users has %s in the compose file; want %s_FILE, generated", v, v)
		}
	}
	wantFiles := map[string]string{
		"BOOTSTRAP_ADMIN_PASSWORD_FILE": "/run/bazaar/users/admin-password",
		"SIGNING_KEK_FILE":              "/run/bazaar/users/signing-kek",
	}
	for v, want := range wantFiles {
		if env(users, v) != want {
			t.Errorf("users %s = %q, want %q", v, env(users, v), want)
		}
	}
	if !mounts(users, "/run/bazaar/users", "users") {
		t.Errorf("users does not mount the secrets volume's users/ at /run/bazaar/users: %+v", users.Volumes)
	}
	raw, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"bazaar-admin", "YmF6YWFyLWxvY2FsLWRldi1zaWduaW5nLWtlay0zMmI="} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("docker-compose.yml still holds %q", secret)
		}
	}
	s, err := p.GetService("secrets")
	if err != nil {
		t.Fatal("no secrets service to create them")
	}
	if s.Build == nil {
		t.Error("the secrets service has no build, want one of cmd/bazaarctl")
	} else if got := *s.Build.Args["PROGRAM"]; got != "cmd/bazaarctl" {
		t.Errorf("the secrets service builds PROGRAM=%s, want cmd/bazaarctl", got)
	}
	if got, want := strings.Join(s.Command, " "), "secrets init -dir /secrets -owner 65532:65532"; got != want {
		t.Errorf("the secrets service runs %q, want %q", got, want)
	}
	if !mounts(s, "/secrets", "") {
		t.Errorf("the secrets service does not mount the secrets volume at /secrets: %+v", s.Volumes)
	}
	if s.Restart != "no" && s.Restart != "" {
		t.Errorf("the secrets service restarts (%q): it runs once per start", s.Restart)
	}
}

// mounts reports whether s mounts the secrets volume's subpath (the whole volume for
// "") at target, read-only unless it is the whole volume.
func mounts(s types.ServiceConfig, target, subpath string) bool {
	return slices.ContainsFunc(s.Volumes, func(v types.ServiceVolumeConfig) bool {
		sub := ""
		if v.Volume != nil {
			sub = v.Volume.Subpath
		}
		return v.Type == types.VolumeTypeVolume && v.Source == "secrets" && v.Target == target && sub == subpath &&
			(v.ReadOnly || subpath == "")
	})
}

// Finding: every service's internal routes were reachable with no credential. Now
// they are on a listener of their own (9090), published nowhere; each service holds
// its own key alone and trusts the others' public keys; orders calls the internal
// listeners; and every service starts after the secrets exist.
func TestComposeInternalListenersAndServiceKeys(t *testing.T) {
	t.Parallel()
	p := loadProject(t)
	for _, name := range programlist.Services() {
		s, _ := p.GetService(name)
		if got := env(s, "INTERNAL_ADDR"); got != ":9090" {
			t.Errorf("%s: INTERNAL_ADDR=%q, want :9090", name, got)
		}
		if got := env(s, "SERVICE_KEY_FILE"); got != "/run/bazaar/key/service.key" {
			t.Errorf("%s: SERVICE_KEY_FILE=%q, want /run/bazaar/key/service.key", name, got)
		}
		if got := env(s, "SERVICE_TRUST_DIR"); got != "/run/bazaar/trust" {
			t.Errorf("%s: SERVICE_TRUST_DIR=%q, want /run/bazaar/trust", name, got)
		}
		if len(s.Ports) != 0 {
			t.Errorf("%s publishes %+v: only the gateway is reachable from outside", name, s.Ports)
		}
		if !mounts(s, "/run/bazaar/key", "keys/"+name) {
			t.Errorf("%s does not mount its own key (keys/%s) at /run/bazaar/key, read-only: %+v", name, name, s.Volumes)
		}
		if !mounts(s, "/run/bazaar/trust", "keys/public") {
			t.Errorf("%s does not mount the public keys (keys/public) at /run/bazaar/trust, read-only: %+v", name, s.Volumes)
		}
		for _, v := range s.Volumes {
			if v.Source == "secrets" && v.Volume != nil && strings.HasPrefix(v.Volume.Subpath, "keys/") &&
				v.Volume.Subpath != "keys/"+name && v.Volume.Subpath != "keys/public" {
				t.Errorf("%s mounts another service's key: %s", name, v.Volume.Subpath)
			}
		}
		if d, ok := s.DependsOn["secrets"]; !ok {
			t.Errorf("%s does not depend on secrets, want it to wait for the secrets to be created", name)
		} else if d.Condition != types.ServiceConditionCompletedSuccessfully {
			t.Errorf("%s waits for secrets to be %s, want %s", name, d.Condition, types.ServiceConditionCompletedSuccessfully)
		}
	}
	orders, _ := p.GetService("orders")
	for _, v := range []string{"INVENTORY_URL", "PAYMENTS_URL"} {
		if u := env(orders, v); !strings.HasSuffix(u, ":9090") {
			t.Errorf("orders %s = %q: the saga calls the internal listeners", v, u)
		}
	}
	gw, _ := p.GetService("gateway")
	for _, v := range gw.Volumes {
		if v.Source == "secrets" {
			t.Errorf("the gateway mounts %+v: it needs no service secret", v)
		}
	}
}

// Redis holds the event streams and the task queue: it must never evict keys.
func TestComposeRedisNeverEvicts(t *testing.T) {
	t.Parallel()
	p := loadProject(t)
	r, _ := p.GetService("redis")
	cmd := strings.Join(r.Command, " ")
	for _, want := range []string{"--maxmemory-policy noeviction", "--appendonly yes"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("redis command = %q, want %s in it", cmd, want)
		}
	}
}
