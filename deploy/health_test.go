package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"

	"github.com/bazaar-shop/bazaar/internal/demo"
	programlist "github.com/bazaar-shop/bazaar/internal/programs"
)

// dependsOn is what each long-running container waits for before it starts, and in
// which state: the real dependencies, so that nothing starts against a database
// still initialising or a service not yet able to answer.
var dependsOn = map[string]map[string]string{
	"users":         {"postgres": types.ServiceConditionHealthy, "redis": types.ServiceConditionHealthy, "secrets": types.ServiceConditionCompletedSuccessfully},
	"inventory":     {"postgres": types.ServiceConditionHealthy, "redis": types.ServiceConditionHealthy, "secrets": types.ServiceConditionCompletedSuccessfully},
	"payments":      {"postgres": types.ServiceConditionHealthy, "redis": types.ServiceConditionHealthy, "secrets": types.ServiceConditionCompletedSuccessfully},
	"orders":        {"postgres": types.ServiceConditionHealthy, "redis": types.ServiceConditionHealthy, "secrets": types.ServiceConditionCompletedSuccessfully, "inventory": types.ServiceConditionHealthy, "payments": types.ServiceConditionHealthy},
	"notifications": {"postgres": types.ServiceConditionHealthy, "redis": types.ServiceConditionHealthy, "secrets": types.ServiceConditionCompletedSuccessfully, "mailpit": types.ServiceConditionHealthy},
	"gateway":       {"redis": types.ServiceConditionHealthy, "users": types.ServiceConditionHealthy, "inventory": types.ServiceConditionHealthy, "payments": types.ServiceConditionHealthy, "orders": types.ServiceConditionHealthy, "notifications": types.ServiceConditionHealthy},
	"seed":          {"gateway": types.ServiceConditionHealthy},
}

// Finding: no program had a healthcheck (the images have no shell or curl, and the
// programs had no probe), so depends_on could wait for nothing but Postgres, and
// Postgres's check passed before its init SQL had run.
func TestComposeEveryContainerIsHealthCheckedAndStartsAfterWhatItNeeds(t *testing.T) {
	t.Parallel()
	p := loadProject(t)
	for name := range programs {
		s, _ := p.GetService(name)
		hc := s.HealthCheck
		if hc == nil || hc.Disable {
			t.Errorf("%s has no healthcheck", name)
			continue
		}
		if got := strings.Join(hc.Test, " "); got != "CMD /app -probe" {
			t.Errorf("%s healthcheck = %q, want the program's own probe, CMD /app -probe", name, got)
		}
		if hc.Timeout == nil || hc.Interval == nil || hc.Retries == nil || hc.StartPeriod == nil {
			t.Errorf("%s healthcheck leaves its timing to the engine's defaults: %+v", name, hc)
		}
	}
	for _, name := range []string{"postgres", "redis", "mailpit"} {
		if s, _ := p.GetService(name); s.HealthCheck == nil || len(s.HealthCheck.Test) < 2 {
			t.Errorf("%s has no healthcheck", name)
		}
	}

	// Postgres is healthy only once the init SQL is done: over TCP (the init's
	// temporary server listens on the socket only) and into the last database the
	// init creates.
	pg, _ := p.GetService("postgres")
	check := strings.Join(pg.HealthCheck.Test, " ")
	initSQL, err := os.ReadFile("postgres-init.sql")
	if err != nil {
		t.Fatal(err)
	}
	creates := regexp.MustCompile(`CREATE DATABASE (\w+)`).FindAllStringSubmatch(string(initSQL), -1)
	if len(creates) == 0 {
		t.Fatal("postgres-init.sql creates no database")
	}
	last := creates[len(creates)-1][1]
	if !strings.Contains(check, "-h 127.0.0.1") || !strings.Contains(check, "-d "+last) {
		t.Errorf("postgres healthcheck %q: want a check over TCP (-h 127.0.0.1) into %s, the init's last database", check, last)
	}

	for name, want := range dependsOn {
		s, err := p.GetService(name)
		if err != nil {
			t.Errorf("no service %s", name)
			continue
		}
		got := map[string]string{}
		for dep, d := range s.DependsOn {
			got[dep] = d.Condition
		}
		for dep, cond := range want {
			if got[dep] != cond {
				t.Errorf("%s: depends_on %s = %q, want %q", name, dep, got[dep], cond)
			}
		}
		for dep := range got {
			if _, ok := want[dep]; !ok {
				t.Errorf("%s waits for %s, which this test does not know as one of its dependencies", name, dep)
			}
		}
	}
}

// Finding: images floated (postgres:16, redis:7, golang:1.26) while go.mod pins the
// Go version to the patch.
func TestComposePinsImageVersionsAndGoModsGo(t *testing.T) {
	t.Parallel()
	p := loadProject(t)
	pinned := regexp.MustCompile(`:v?\d+\.\d+(\.\d+)?(-[a-z0-9]+)?$|@sha256:[0-9a-f]{64}$`)
	for _, s := range p.Services {
		if s.Image != "" && !pinned.MatchString(s.Image) {
			t.Errorf("%s runs image %q: want a version to the minor at least, or a digest", s.Name, s.Image)
		}
	}
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(mod)
	dockerfile, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if goVersion == nil {
		t.Fatal("go.mod has no go line")
	}
	if want := "FROM golang:" + string(goVersion[1]) + "-"; !strings.Contains(string(dockerfile), want) {
		t.Errorf("deploy/Dockerfile does not build with go.mod's Go (%s): no %q in it", goVersion[1], want)
	}
}

// A compose stack opens with the same shop as make run: the catalogue, the admin and
// the demo shopper.
func TestComposeSeedsWhatMakeRunSeeds(t *testing.T) {
	t.Parallel()
	p := loadProject(t)
	inv, _ := p.GetService("inventory")
	if env(inv, "SEED_CATALOGUE") != "true" {
		t.Error("inventory does not seed the catalogue")
	}
	users, _ := p.GetService("users")
	if got := env(users, "BOOTSTRAP_ADMIN_EMAIL"); got != demo.Admin.Email {
		t.Errorf("users bootstraps the admin %q, want make run's admin %q", got, demo.Admin.Email)
	}
	if got := env(users, "BOOTSTRAP_ADMIN_NAME"); got != demo.Admin.Name {
		t.Errorf("users bootstraps the admin named %q, want make run's admin's name %q", got, demo.Admin.Name)
	}
	seed, err := p.GetService("seed")
	if err != nil {
		t.Fatal("no seed job")
	}
	if seed.Build == nil {
		t.Error("the seed job has no build, want one of cmd/bazaarctl")
	} else if got := *seed.Build.Args["PROGRAM"]; got != "cmd/bazaarctl" {
		t.Errorf("the seed job builds PROGRAM=%s, want cmd/bazaarctl", got)
	}
	if got := strings.Join(seed.Command, " "); got != "demo seed -gateway http://gateway:8080" {
		t.Errorf("the seed job runs %q", got)
	}
	if seed.Restart != "on-failure" {
		t.Errorf("the seed job restarts %q: want on-failure, so that a gateway not yet able to register is tried again", seed.Restart)
	}
}

// Only the gateway (and Mailpit's inbox, on loopback) is reachable from outside, and
// a service can be scaled: `docker compose up --scale inventory=2` needs no fixed
// container name or published port, and a fixed CONSUMER_NAME would put two replicas
// under one name in a consumer group.
func TestComposePublishesNoDatabaseAndScales(t *testing.T) {
	t.Parallel()
	p := loadProject(t)
	for _, name := range []string{"postgres", "redis"} {
		if s, _ := p.GetService(name); len(s.Ports) != 0 {
			t.Errorf("%s publishes %+v: the databases stay on the compose network", name, s.Ports)
		}
	}
	for name := range programs {
		s, _ := p.GetService(name)
		if s.ContainerName != "" {
			t.Errorf("%s has container_name %q: it could not be scaled", name, s.ContainerName)
		}
		if _, set := s.Environment["CONSUMER_NAME"]; set {
			t.Errorf("%s sets CONSUMER_NAME: every replica would share it", name)
		}
	}
	gw, _ := p.GetService("gateway")
	for name := range programs {
		if name == "gateway" {
			continue
		}
		// A name, which the gateway's balancer resolves to every replica's address.
		if u := env(gw, strings.ToUpper(name)+"_URL"); !strings.HasPrefix(u, "http://"+name+":") {
			t.Errorf("gateway %s_URL = %q: want the service's name, resolved to its replicas", strings.ToUpper(name), u)
		}
	}
}

// Finding: there was no .dockerignore, so each build's context carried bin/, the
// caches and .git. It must still send every file the builds read: the Go files and
// embedded files of every package the images are built from.
func TestDockerignoreSendsWhatTheBuildsReadAndNotTheRest(t *testing.T) {
	t.Parallel()
	f, err := os.Open("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	patterns, err := ignorefile.ReadAll(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	excluded := func(path string) bool {
		ok, err := pm.MatchesOrParentMatches(path)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	for _, path := range []string{".git/HEAD", "bin/users", ".cache/go-build/x", "var/log", "gateway/gateway.test", "docs/benchmarks.md"} {
		if !excluded(path) {
			t.Errorf(".dockerignore sends %s", path)
		}
	}

	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dirs := []string{"./cmd/bazaarctl"}
	for _, dir := range programs {
		dirs = append(dirs, "./"+dir)
	}
	cmd := exec.Command("go", append([]string{"list", "-deps", "-json=Dir,Module,GoFiles,EmbedFiles"}, dirs...)...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	needed := []string{"go.mod", "go.sum"}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var pkg struct {
			Dir                 string
			Module              *struct{ Main bool }
			GoFiles, EmbedFiles []string
		}
		if err := dec.Decode(&pkg); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if pkg.Module == nil || !pkg.Module.Main {
			continue // the module cache's, downloaded in the build
		}
		rel, err := filepath.Rel(root, pkg.Dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range slices.Concat(pkg.GoFiles, pkg.EmbedFiles) {
			needed = append(needed, filepath.ToSlash(filepath.Join(rel, f)))
		}
	}
	if len(needed) < 50 {
		t.Fatalf("go list found only %d files the builds read", len(needed))
	}
	for _, path := range needed {
		if excluded(path) {
			t.Errorf(".dockerignore leaves out %s, which the builds read", path)
		}
	}
}

// Every variable the compose file gives a program is one the program reads (found in
// its sources, programEnvNames): a misspelt name would be ignored without a word and
// its default used. A secret read with SecretOrFile may come as NAME_FILE.
func TestComposeEnvironmentIsWhatTheProgramsRead(t *testing.T) {
	t.Parallel()
	p := loadProject(t)
	for _, prog := range programlist.All {
		s, err := p.GetService(prog.Name)
		if err != nil {
			t.Errorf("no service %s", prog.Name)
			continue
		}
		names, secret := programEnvNames(t, prog.Dir)
		for key := range s.Environment {
			base, isFile := strings.CutSuffix(key, "_FILE")
			if !names[key] && !(isFile && secret[base]) {
				t.Errorf("compose gives %s %s, which it does not read", prog.Name, key)
			}
		}
	}
}
