// Package devstack runs the whole of Bazaar on one machine: it checks that Postgres and
// Redis are up, creates each service's database and role, builds the six programs (and
// Mailpit when it is missing), starts them with their environment, waits until each is
// ready, seeds the demo accounts, and stops everything again. `make run`
// (cmd/devstack) and the e2e suite (e2e/) are its two users; they differ only in
// Options: fixed ports and kept databases for the one, free ports and throw-away
// databases for the other.
//
// For fault tests a stack can also stop, kill (SIGKILL) and restart one program while
// the others run on (StopProgram, KillProgram, RestartProgram), and give one program
// variables of its own (Options.ProgramEnv), such as an INVENTORY_URL that points at a
// proxy placed in front of a program whose port was chosen up front (HoldPorts,
// Options.Ports). A service may run as several instances behind orders and the
// gateway (Options.Instances; see instances.go).
package devstack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bazaar-shop/bazaar/internal/demo"
	"github.com/bazaar-shop/bazaar/pkg/svcauth"
)

// Login is a seeded account.
type Login = demo.Login

// DefaultAdmin and DefaultShopper are the demo logins, for local use only.
var (
	DefaultAdmin   = demo.Admin
	DefaultShopper = demo.Shopper
)

// Ports are where the programs listen on 127.0.0.1. A zero port means any free one.
// Each service has two listeners: the public one (Users, ...), which the gateway
// proxies to, and the internal one (UsersInternal, ...) with the /internal routes and
// the probes, which orders and the gateway's /health call.
type Ports struct {
	Gateway, Users, Inventory, Payments, Orders, Notifications                                int
	UsersInternal, InventoryInternal, PaymentsInternal, OrdersInternal, NotificationsInternal int
	MailpitWeb, MailpitSMTP                                                                   int
}

// DefaultPorts are the ports of docs/contract.md, "Programs".
var DefaultPorts = Ports{
	Gateway: 8080, Users: 8081, Inventory: 8082, Payments: 8083, Orders: 8084, Notifications: 8085,
	UsersInternal: 9081, InventoryInternal: 9082, PaymentsInternal: 9083, OrdersInternal: 9084, NotificationsInternal: 9085,
	MailpitWeb: 8025, MailpitSMTP: 1025,
}

// internalOf is the port of a service's internal listener.
func (p Ports) internalOf(service string) int {
	switch service {
	case "users":
		return p.UsersInternal
	case "inventory":
		return p.InventoryInternal
	case "payments":
		return p.PaymentsInternal
	case "orders":
		return p.OrdersInternal
	case "notifications":
		return p.NotificationsInternal
	}
	return 0
}

func (p Ports) of(program string) int {
	switch program {
	case "gateway":
		return p.Gateway
	case "users":
		return p.Users
	case "inventory":
		return p.Inventory
	case "payments":
		return p.Payments
	case "orders":
		return p.Orders
	case "notifications":
		return p.Notifications
	}
	return 0
}

// Options say where the stack finds its servers, what it names its databases and
// where its programs listen. Zero values take the defaults noted.
type Options struct {
	RepoDir string // the module root, where go build runs (required)
	BinDir  string // where the programs are built (default RepoDir/bin)
	// MailpitBin is the Mailpit binary, built there when missing (default
	// DefaultMailpitBin(BinDir)).
	MailpitBin string
	// MailpitArgs are more arguments for Mailpit, after the stack's own (its
	// addresses): a chaos run keeps every message with "--max", "0" rather than
	// Mailpit's default of the last 500.
	MailpitArgs []string

	AdminDatabaseURL string // a Postgres role that may create roles and databases (default postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable)
	RedisURL         string // every program's REDIS_URL (default redis://127.0.0.1:6379/0)
	// AdminDatabaseURLVar and RedisURLVar name the variables that set the two URLs, for
	// the message when a server is unreachable (defaults BAZAAR_ADMIN_DATABASE_URL, REDIS_URL).
	AdminDatabaseURLVar, RedisURLVar string
	// DatabasePrefix names the databases and roles: prefix+"users" and so on (default "bazaar_").
	DatabasePrefix string
	// DropDatabases drops the databases and roles on Stop (the e2e suite does; make run
	// keeps them).
	DropDatabases bool

	// KeysDir is where the services' keys are kept (svcauth: each service's private
	// key, and the public keys they trust), created on first start. Default: a new
	// temporary directory, removed on Stop.
	KeysDir string

	// Ports are where the programs listen; zero ports are free ones. A test that must
	// know a program's address before the stack starts (to put a proxy in front of
	// it) picks one with HoldPorts and sets it here.
	Ports    Ports
	LogLevel string // every program's LOG_LEVEL (default info)
	// Env holds more variables for every program (OTEL_EXPORTER_OTLP_ENDPOINT, ...);
	// the stack's own (HTTP_ADDR, DATABASE_URL, ...) win over them. Programs get
	// nothing else: not the runner's environment.
	Env map[string]string
	// ProgramEnv holds variables for one program each, by program name ("orders").
	// They win over everything else, the stack's own included, so that a test can
	// point orders' INVENTORY_URL at a proxy or shorten its SAGA_INLINE_TIMEOUT.
	// A name that is not one of Programs is an error. A service's entry reaches
	// every instance of it.
	ProgramEnv map[string]map[string]string
	// Instances is how many instances of a service to run, by its name (default 1;
	// at most MaxInstances): the gateway and orders are given all of them to balance
	// over (see instances.go).
	Instances map[string]int

	Admin, Shopper Login // the seeded accounts (defaults DefaultAdmin, DefaultShopper)

	// Output receives the stack's progress lines and every program's output, one line
	// at a time, each prefixed with its program's name (default io.Discard).
	Output io.Writer
	Color  bool // colour the name column (for a terminal)

	ReadyTimeout time.Duration // how long to wait for the programs to be ready (default 2m)
	StopTimeout  time.Duration // how long each program has to exit after SIGTERM (default 15s)
}

func (o *Options) setDefaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&o.BinDir, filepath.Join(o.RepoDir, "bin"))
	def(&o.MailpitBin, DefaultMailpitBin(o.BinDir))
	def(&o.AdminDatabaseURL, "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
	def(&o.RedisURL, "redis://127.0.0.1:6379/0")
	def(&o.AdminDatabaseURLVar, "BAZAAR_ADMIN_DATABASE_URL")
	def(&o.RedisURLVar, "REDIS_URL")
	def(&o.DatabasePrefix, "bazaar_")
	def(&o.LogLevel, "info")
	if o.Admin == (Login{}) {
		o.Admin = DefaultAdmin
	}
	if o.Shopper == (Login{}) {
		o.Shopper = DefaultShopper
	}
	if o.Output == nil {
		o.Output = io.Discard
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 2 * time.Minute
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = 15 * time.Second
	}
}

// URLs are where the running stack answers.
type URLs struct {
	Gateway  string            // http://127.0.0.1:8080
	Mailpit  string            // Mailpit's web inbox
	SMTPAddr string            // Mailpit's SMTP host:port
	Programs map[string]string // every program's base URL, by name ("inventory-2" for a second instance)
	Internal map[string]string // every service instance's internal listener, by name
	// GatewayOps is the gateway's operations listener (its /metrics, and the probes
	// again): on a free port, learned from its log, when the stack's are free.
	GatewayOps string
	// Instances are the names of each service's instances, in order: the service's
	// own name, then <name>-2 and so on (Options.Instances).
	Instances map[string][]string
	KeysDir   string // the service keys (svcauth.KeyFile, svcauth.TrustDir)
	RedisURL  string
	Databases []Database
	Admin     Login // the seeded accounts
	Shopper   Login
}

// Stack is a running Bazaar.
type Stack struct {
	opts  Options
	out   *sink
	urls  URLs
	procs []*process // in start order

	failed   chan struct{} // closed when a program exited on its own
	failOnce sync.Once
	failErr  error

	tempKeys string // the keys directory Start made, removed by Stop

	// holds keep every program's ports from start to Stop (see portHolds); port is
	// each, by what it is for: a program's name ("inventory-2") for its public
	// listener, then " internal" for its internal one, "gateway ops",
	// "mailpit web" and "mailpit smtp".
	holds portHolds
	port  map[string]int

	mu       sync.Mutex
	stopping bool
	stopOnce sync.Once
	stopErr  error
}

// Start brings the stack up and returns once every program is ready and the demo
// accounts exist. On failure it stops whatever it started (dropping the databases if
// opts.DropDatabases) and returns why: an *UnreachableError when Postgres or Redis is
// down, a port in use, a failed build, or a program that exited or was not ready in
// time (quoting its last lines of output).
func Start(ctx context.Context, opts Options) (*Stack, error) {
	if opts.RepoDir == "" {
		return nil, errors.New("devstack: Options.RepoDir is required")
	}
	opts.setDefaults()
	s := &Stack{opts: opts, out: &sink{w: opts.Output, color: opts.Color}, failed: make(chan struct{})}
	s.urls.RedisURL = opts.RedisURL
	s.urls.Admin, s.urls.Shopper = opts.Admin, opts.Shopper
	s.urls.Programs = map[string]string{}
	s.urls.Internal = map[string]string{}

	if err := errors.Join(checkProgramEnv(opts.ProgramEnv), checkInstances(opts.Instances)); err != nil {
		return nil, err
	}
	if err := CheckServers(ctx, opts.AdminDatabaseURL, opts.AdminDatabaseURLVar, opts.RedisURL, opts.RedisURLVar); err != nil {
		return nil, err
	}
	if _, err := Databases(opts.AdminDatabaseURL, opts.DatabasePrefix); err != nil {
		return nil, err
	}
	if err := s.reservePorts(); err != nil {
		return nil, err
	}
	if err := s.build(ctx); err != nil {
		s.holds.releaseAll()
		return nil, err
	}
	s.out.printf("creating databases and roles %s*", opts.DatabasePrefix)
	dbs, err := EnsureDatabases(ctx, opts.AdminDatabaseURL, opts.DatabasePrefix)
	if err != nil {
		if opts.DropDatabases {
			_ = DropDatabases(context.WithoutCancel(ctx), opts.AdminDatabaseURL, opts.DatabasePrefix)
		}
		s.holds.releaseAll()
		return nil, err
	}
	s.urls.Databases = dbs
	if err := s.ensureKeys(); err != nil {
		_ = s.Stop(context.WithoutCancel(ctx))
		return nil, err
	}
	if err := s.start(ctx); err != nil {
		_ = s.Stop(context.WithoutCancel(ctx))
		return nil, err
	}
	return s, nil
}

// ensureKeys gives every service a key to prove itself with on internal calls, and
// every service the others' public keys, as the compose file's init container does.
func (s *Stack) ensureKeys() error {
	dir := s.opts.KeysDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "bazaar-keys-")
		if err != nil {
			return fmt.Errorf("devstack: a directory for the service keys: %w", err)
		}
		dir, s.tempKeys = tmp, tmp
	}
	created, err := svcauth.EnsureKeys(dir, Services...)
	if err != nil {
		return fmt.Errorf("devstack: service keys: %w", err)
	}
	if len(created) > 0 {
		s.out.printf("service keys created in %s for %s", dir, strings.Join(created, ", "))
	}
	s.urls.KeysDir = dir
	return nil
}

// build compiles the programs and Mailpit side by side: on a warm cache both are quick,
// on a cold one Mailpit's minute overlaps the programs' build.
func (s *Stack) build(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- ensureMailpit(ctx, s.opts.RepoDir, s.opts.MailpitBin, s.out) }()
	err := buildPrograms(ctx, s.opts.RepoDir, s.opts.BinDir, s.out)
	return errors.Join(err, <-errc)
}

// start starts Mailpit and the programs, waits for them to be ready and seeds.
func (s *Stack) start(ctx context.Context) error {
	o := s.opts
	webPort, smtpPort := s.port["mailpit web"], s.port["mailpit smtp"]
	s.urls.Instances = map[string][]string{}
	for _, name := range Services {
		s.urls.Instances[name] = o.instanceNames(name)
	}
	s.urls.Mailpit = "http://127.0.0.1:" + strconv.Itoa(webPort)
	s.urls.SMTPAddr = "127.0.0.1:" + strconv.Itoa(smtpPort)
	mailpit, err := startProcess("mailpit", o.MailpitBin, append([]string{
		"--listen", "127.0.0.1:" + strconv.Itoa(webPort),
		"--smtp", "127.0.0.1:" + strconv.Itoa(smtpPort),
		"--disable-version-check", // no calls home from a dev stack or a test
		"--smtp-disable-rdns",
	}, o.MailpitArgs...), []string{}, s.out)
	if err != nil {
		return err
	}
	s.track(mailpit)

	usersURL := "http://127.0.0.1:" + strconv.Itoa(s.port["users"])
	jwks := usersURL + "/.well-known/jwks.json"
	dbURL := map[string]string{}
	for _, db := range s.urls.Databases {
		dbURL[db.Service] = db.URL
	}
	// envFor is a program's own variables.
	envFor := func(program string) map[string]string {
		service, k := serviceOf(program), instanceNumber(program)
		env := map[string]string{
			"HTTP_ADDR": "127.0.0.1:" + strconv.Itoa(s.port[program]),
			"REDIS_URL": o.RedisURL,
			"JWKS_URL":  jwks,
			"LOG_LEVEL": o.LogLevel,
		}
		if u, ok := dbURL[service]; ok {
			env["DATABASE_URL"] = u
		}
		if slices.Contains(Services, service) {
			env["INTERNAL_ADDR"] = "127.0.0.1:" + strconv.Itoa(s.port[program+" internal"])
			env["SERVICE_KEY_FILE"] = svcauth.KeyFile(s.urls.KeysDir, service)
			env["SERVICE_TRUST_DIR"] = svcauth.TrustDir(s.urls.KeysDir)
		}
		if k > 1 {
			env["CONSUMER_NAME"] = program // replicas' names in a consumer group differ
		}
		return env
	}

	// Users first: the others verify tokens with its keys. Then the services that
	// call no other (inventory, payments, notifications) at once; then orders, which
	// calls inventory and payments and so must be told where they listen; then the
	// gateway, which needs every URL. The further instances of a service start once
	// its first listens (that is, has migrated and seeded): the ones of users and the
	// leaves together, then orders' after orders.
	usersEnv := envFor("users")
	usersEnv["BOOTSTRAP_ADMIN_EMAIL"] = o.Admin.Email
	usersEnv["BOOTSTRAP_ADMIN_PASSWORD"] = o.Admin.Password
	usersEnv["BOOTSTRAP_ADMIN_NAME"] = o.Admin.Name
	// Users seals its signing keys with this key-encryption key. Fixed, like the demo
	// passwords: make run keeps its database between runs, and keys sealed under one
	// key cannot be opened with another. Local stacks only.
	usersEnv["SIGNING_KEK"] = "YmF6YWFyLWxvY2FsLWRldi1zaWduaW5nLWtlay0zMmI="
	if err := s.startPrograms(ctx, map[string]map[string]string{"users": usersEnv}); err != nil {
		return err
	}
	leaves := map[string]map[string]string{}
	for _, name := range []string{"inventory", "payments", "notifications"} {
		leaves[name] = envFor(name)
	}
	leaves["notifications"]["SMTP_ADDR"] = s.urls.SMTPAddr
	leaves["notifications"]["REPORT_EMAIL"] = o.Admin.Email // the daily sales report goes to the seeded admin
	leaves["inventory"]["SEED_CATALOGUE"] = "true"          // the demo catalogue, loaded once
	if err := s.startPrograms(ctx, leaves); err != nil {
		return err
	}
	extra := map[string]map[string]string{}
	for _, name := range o.extraInstances("users", "inventory", "payments", "notifications") {
		first := serviceOf(name)
		env := envFor(name)
		if first == "users" {
			env = maps.Clone(usersEnv)
			maps.Copy(env, envFor(name))
		}
		if first == "notifications" {
			env["SMTP_ADDR"], env["REPORT_EMAIL"] = leaves[first]["SMTP_ADDR"], leaves[first]["REPORT_EMAIL"]
		}
		extra[name] = env // the catalogue is the first inventory's to seed
	}
	if err := s.startPrograms(ctx, extra); err != nil {
		return err
	}
	orders := envFor("orders")
	orders["INVENTORY_URL"] = s.urlList("inventory", s.urls.Internal)
	orders["PAYMENTS_URL"] = s.urlList("payments", s.urls.Internal)
	if err := s.startPrograms(ctx, map[string]map[string]string{"orders": orders}); err != nil {
		return err
	}
	extra = map[string]map[string]string{}
	for _, name := range o.extraInstances("orders") {
		extra[name] = envFor(name)
		extra[name]["INVENTORY_URL"], extra[name]["PAYMENTS_URL"] = orders["INVENTORY_URL"], orders["PAYMENTS_URL"]
	}
	if err := s.startPrograms(ctx, extra); err != nil {
		return err
	}
	gw := envFor("gateway")
	if ops, ok := s.port["gateway ops"]; ok {
		gw["OPS_ADDR"] = "127.0.0.1:" + strconv.Itoa(ops)
	}
	gw["MAILPIT_URL"] = s.urls.Mailpit // the admin pages link to the inbox
	for _, name := range Services {
		gw[strings.ToUpper(name)+"_URL"] = s.urlList(name, s.urls.Programs)
		gw[strings.ToUpper(name)+"_INTERNAL_URL"] = s.urlList(name, s.urls.Internal)
	}
	if err := s.startPrograms(ctx, map[string]map[string]string{"gateway": gw}); err != nil {
		return err
	}
	s.urls.Gateway = s.urls.Programs["gateway"]

	if err := s.waitReady(ctx, s.readyURLs()); err != nil {
		return err
	}
	return s.seed(ctx)
}

// programEnv is a program's whole environment: Options.Env, then the stack's own
// variables (own), then Options.ProgramEnv of its service, each layer winning over
// the one before; sorted, so that it reads the same on every start.
func programEnv(o Options, name string, own map[string]string) []string {
	all := maps.Clone(o.Env)
	if all == nil {
		all = map[string]string{}
	}
	maps.Copy(all, own)
	maps.Copy(all, o.ProgramEnv[serviceOf(name)])
	env := make([]string, 0, len(all))
	for _, k := range slices.Sorted(maps.Keys(all)) {
		env = append(env, k+"="+all[k])
	}
	return env
}

// startPrograms starts each program with its own env (see programEnv) and waits until
// each has logged the address it listens on.
func (s *Stack) startPrograms(ctx context.Context, envs map[string]map[string]string) error {
	var started []*process
	for _, name := range slices.Sorted(maps.Keys(envs)) {
		p, err := startProcess(name, filepath.Join(s.opts.BinDir, serviceOf(name)), nil, programEnv(s.opts, name, envs[name]), s.out)
		if err != nil {
			return err
		}
		s.track(p)
		started = append(started, p)
	}
	for _, p := range started {
		addr, err := s.waitListening(ctx, p, p.listen)
		if err != nil {
			return err
		}
		s.urls.Programs[p.name] = "http://" + addr
		service := slices.Contains(Services, serviceOf(p.name))
		if !service && p.name != "gateway" {
			continue
		}
		if addr, err = s.waitListening(ctx, p, p.internal); err != nil {
			return err
		}
		if service {
			s.urls.Internal[p.name] = "http://" + addr
		} else {
			s.urls.GatewayOps = "http://" + addr
		}
	}
	return nil
}

// waitListening waits until p has logged the address it listens on, on the channel
// of one of its listeners (p.listen, p.internal).
func (s *Stack) waitListening(ctx context.Context, p *process, listener chan string) (string, error) {
	deadline := time.NewTimer(s.opts.ReadyTimeout)
	defer deadline.Stop()
	select {
	case addr := <-listener:
		return addr, nil
	case <-p.done:
		desc, _ := p.exitStatus()
		return "", fmt.Errorf("%s exited before it listened (%s); its last lines:\n%s", p.name, desc, p.tail.String())
	case <-deadline.C:
		return "", fmt.Errorf("%s did not listen within %s; its last lines:\n%s", p.name, s.opts.ReadyTimeout, p.tail.String())
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// track adds p to the stack and watches it.
func (s *Stack) track(p *process) {
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	s.watch(p)
}

// watch waits for p to exit: a program that exits while the stack is not stopping,
// and without being asked to (StopProgram, KillProgram), is a failure, and the stack
// stops the rest rather than run half-dead.
func (s *Stack) watch(p *process) {
	go func() {
		<-p.done
		s.mu.Lock()
		stopping := s.stopping
		s.mu.Unlock()
		if stopping || p.exitExpected() {
			close(p.watched)
			return
		}
		desc, _ := p.exitStatus()
		err := fmt.Errorf("%s exited unexpectedly (%s); its last lines:\n%s", p.name, desc, p.tail.String())
		s.failOnce.Do(func() {
			s.failErr = err
			s.out.printf("%s exited unexpectedly (%s); stopping the rest", p.name, desc)
			// Stopping from here on, before Done says so: a control called as soon
			// as Done is closed (RestartProgram) must get ErrStopping, not start a
			// program that Stop then kills under it.
			s.mu.Lock()
			s.stopping = true
			s.mu.Unlock()
			close(s.failed)
		})
		close(p.watched)
		_ = s.Stop(context.Background())
	}()
}

// readyURLs are the /readyz of every program and Mailpit, by name.
func (s *Stack) readyURLs() map[string]string {
	pending := map[string]string{"mailpit": s.urls.Mailpit + "/readyz"}
	for name := range s.urls.Programs {
		pending[name] = s.readyURL(name)
	}
	return pending
}

// readyURL is a program's /readyz: on a service's internal listener, on the gateway's
// public one.
func (s *Stack) readyURL(name string) string {
	if u, ok := s.urls.Internal[name]; ok {
		return u + "/readyz"
	}
	return s.urls.Programs[name] + "/readyz"
}

// waitReady polls each /readyz of pending (by program name) until it answers 200 with
// a status that is not unhealthy, saying which ones it is still waiting for.
func (s *Stack) waitReady(ctx context.Context, pending map[string]string) error {
	deadline := time.NewTimer(s.opts.ReadyTimeout)
	defer deadline.Stop()
	asked := pending
	pending = maps.Clone(pending)
	// Its own transport: an httptest server closing in the same process (a test's)
	// closes http.DefaultTransport's idle connections under requests (see
	// internal/testkit/testhttp).
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	poll := time.NewTicker(200 * time.Millisecond)
	defer poll.Stop()
	lastSaid := time.Time{}
	var lastErr = map[string]string{}
	for len(pending) > 0 {
		for name, u := range pending {
			if status, err := readiness(ctx, client, u); err != nil {
				lastErr[name] = err.Error()
			} else {
				delete(pending, name)
				if status == "degraded" {
					s.out.printf("%s is ready but degraded", name)
				}
			}
		}
		if len(pending) == 0 {
			break
		}
		if time.Since(lastSaid) > 5*time.Second {
			s.out.printf("waiting for %s to be ready", strings.Join(slices.Sorted(maps.Keys(pending)), ", "))
			lastSaid = time.Now()
		}
		select {
		case <-poll.C:
		case <-s.failed:
			return s.failErr
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			var why []string
			for _, name := range slices.Sorted(maps.Keys(pending)) {
				why = append(why, fmt.Sprintf("%s (%s)", name, lastErr[name]))
			}
			return fmt.Errorf("not ready within %s: %s", s.opts.ReadyTimeout, strings.Join(why, "; "))
		}
	}
	if len(asked) == 1 {
		s.out.printf("%s is ready", slices.Collect(maps.Keys(asked))[0])
	} else {
		s.out.printf("all programs are ready")
	}
	return nil
}

// readiness is the status a /readyz reports; an error unless it answered 200 (Mailpit's
// answers with no body: that is "healthy").
func readiness(ctx context.Context, client *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var r struct{ Status string }
	_ = json.Unmarshal(body, &r)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(body))
	}
	if r.Status == "" {
		r.Status = "healthy"
	}
	return r.Status, nil
}

// seed registers the demo shopper and checks the admin's login (demo.Seed).
func (s *Stack) seed(ctx context.Context) error {
	return demo.Seed(ctx, s.urls.Gateway, s.opts.Admin, s.opts.Shopper, s.out.printf)
}

// URLs are where the stack answers.
func (s *Stack) URLs() URLs { return s.urls }

// Done is closed when a program has exited on its own; the stack has then stopped the
// rest, and Err says which program and how.
func (s *Stack) Done() <-chan struct{} { return s.failed }

// Err is why the stack failed after it started (see Done), or nil.
func (s *Stack) Err() error {
	select {
	case <-s.failed:
		return s.failErr
	default:
		return nil
	}
}

// Stop sends SIGTERM to every program and Mailpit, waits for each to exit (killing one
// that takes longer than Options.StopTimeout), reports how each ended, and drops the
// databases when Options.DropDatabases. Calling it again returns the first result. It
// returns an error naming each program that did not stop cleanly (exit code 0) and
// any failure to drop the databases; a program that had already failed is Err's.
func (s *Stack) Stop(ctx context.Context) error {
	s.stopOnce.Do(func() { s.stopErr = s.stop(ctx) })
	return s.stopErr
}

func (s *Stack) stop(ctx context.Context) error {
	s.mu.Lock()
	s.stopping = true
	procs := slices.Clone(s.procs)
	s.mu.Unlock()

	var alreadyGone = map[*process]bool{}
	for _, p := range procs {
		alreadyGone[p] = p.exited()
	}
	if len(procs) > 0 {
		s.out.printf("stopping %d programs", len(procs))
	}
	// All at once: each shuts down gracefully on its own, and the gateway's in-flight
	// requests to a service already gone fail the way they would in production.
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.stop(s.opts.StopTimeout)
		}()
	}
	wg.Wait()

	var errs []error
	for _, p := range procs {
		desc, clean := p.exitStatus()
		switch {
		case alreadyGone[p]:
			s.out.printf("%s had already exited (%s)", p.name, desc)
		case clean:
			s.out.printf("%s stopped (%s)", p.name, desc)
		default:
			s.out.printf("%s did not stop cleanly (%s)", p.name, desc)
			errs = append(errs, fmt.Errorf("%s: %s", p.name, desc))
		}
	}
	if s.opts.DropDatabases {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := DropDatabases(dctx, s.opts.AdminDatabaseURL, s.opts.DatabasePrefix); err != nil {
			errs = append(errs, err)
		} else {
			s.out.printf("dropped databases and roles %s*", s.opts.DatabasePrefix)
		}
	}
	if s.tempKeys != "" {
		if err := os.RemoveAll(s.tempKeys); err != nil {
			errs = append(errs, fmt.Errorf("remove the service keys: %w", err))
		}
	}
	s.holds.releaseAll()
	return errors.Join(errs...)
}

// reservePorts holds every port the programs will listen on, for the stack's life
// (see portHolds): the fixed ones of Options.Ports, and free ones where it says 0. A
// fixed port that is taken (most often by another `make run`) fails here, naming its
// program, before anything is built or started.
func (s *Stack) reservePorts() error {
	o := s.opts
	want := map[string]int{"mailpit web": o.Ports.MailpitWeb, "mailpit smtp": o.Ports.MailpitSMTP, "gateway": o.Ports.Gateway}
	if o.Ports.Gateway == 0 {
		// On free ports the gateway's operations listener gets one too; otherwise
		// it keeps its default, 9080, make run's.
		want["gateway ops"] = 0
	}
	for _, service := range Services {
		for _, name := range o.instanceNames(service) {
			k := instanceNumber(name)
			want[name] = portOf(o.Ports.of(service), k)
			want[name+" internal"] = portOf(o.Ports.internalOf(service), k)
		}
	}
	s.port = map[string]int{}
	var errs []error
	for _, what := range slices.Sorted(maps.Keys(want)) {
		p, err := s.holds.hold(want[what], what)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.port[what] = p
	}
	if len(errs) > 0 {
		s.holds.releaseAll()
		return errors.Join(errs...)
	}
	return nil
}
