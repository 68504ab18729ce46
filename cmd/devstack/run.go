package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/bazaar-shop/bazaar/internal/devstack"
	"github.com/bazaar-shop/bazaar/pkg/config"
)

// Config is what devstack reads from its environment; every variable has the local
// default that makes `make run` work on a fresh clone.
type Config struct {
	AdminDatabaseURL string // BAZAAR_ADMIN_DATABASE_URL: a role that may create roles and databases
	RedisURL         string // REDIS_URL
	Admin, Shopper   devstack.Login
	LogLevel         string // LOG_LEVEL of every program
	OTLPEndpoint     string // OTEL_EXPORTER_OTLP_ENDPOINT, passed to every program
	NoColor          bool   // NO_COLOR (https://no-color.org)
	// Instances (INSTANCES, such as inventory=2,payments=2) is how many instances of
	// a service to run behind orders and the gateway; one of each by default.
	Instances map[string]int
}

func loadConfig(getenv func(string) string) (Config, error) {
	env := config.New(getenv)
	c := Config{
		AdminDatabaseURL: env.URL("BAZAAR_ADMIN_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "postgres", "postgresql"),
		RedisURL:         env.URL("REDIS_URL", "redis://127.0.0.1:6379/0", "redis", "rediss"),
		Admin: devstack.Login{
			Email:    env.String("BAZAAR_ADMIN_EMAIL", devstack.DefaultAdmin.Email),
			Password: env.Secret("BAZAAR_ADMIN_PASSWORD", devstack.DefaultAdmin.Password),
			Name:     devstack.DefaultAdmin.Name,
		},
		Shopper: devstack.Login{
			Email:    env.String("BAZAAR_SHOPPER_EMAIL", devstack.DefaultShopper.Email),
			Password: env.Secret("BAZAAR_SHOPPER_PASSWORD", devstack.DefaultShopper.Password),
			Name:     devstack.DefaultShopper.Name,
		},
		LogLevel:     env.String("LOG_LEVEL", "info"),
		OTLPEndpoint: env.OptionalURL("OTEL_EXPORTER_OTLP_ENDPOINT", "http", "https"),
		NoColor:      getenv("NO_COLOR") != "",
	}
	instances, err := devstack.ParseInstances(env.String("INSTANCES", ""))
	if err != nil {
		err = fmt.Errorf("INSTANCES: %w", err)
	}
	c.Instances = instances
	return c, errors.Join(env.Err(), err)
}

// run builds and starts the local stack on the fixed ports of docs/contract.md, with the
// databases bazaar_<service> (kept between runs), and serves until ctx ends (Ctrl-C)
// or a program dies; then it stops everything. It fails when Postgres or Redis is
// unreachable (saying how to start it), a port is taken, or a program fails.
func run(ctx context.Context, _ []string, getenv func(string) string, stdout io.Writer) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	root, err := devstack.FindRepoRoot(".")
	if err != nil {
		return err
	}
	stack, err := devstack.Start(ctx, stackOptions(cfg, root, stdout))
	if err != nil {
		if ctx.Err() != nil {
			return nil // Ctrl-C while starting: Start has stopped what it started
		}
		return err
	}
	banner(stdout, stack.URLs())

	select {
	case <-ctx.Done():
	case <-stack.Done():
	}
	stopErr := stack.Stop(context.Background())
	if err := stack.Err(); err != nil {
		return errors.Join(err, stopErr)
	}
	if stopErr != nil {
		return fmt.Errorf("stopping: %w", stopErr)
	}
	fmt.Fprintln(stdout, "Bazaar stopped; its databases bazaar_* are kept for the next run.")
	return nil
}

// stackOptions are make run's stack: the fixed ports, the databases bazaar_<service>,
// and the programs with their own defaults for everything else (the gateway's rate
// limits included). The test that runs the e2e suite against a stack like make run's
// starts it from these too, changing only where it runs.
func stackOptions(cfg Config, root string, stdout io.Writer) devstack.Options {
	env := map[string]string{}
	if cfg.OTLPEndpoint != "" {
		env["OTEL_EXPORTER_OTLP_ENDPOINT"] = cfg.OTLPEndpoint
	}
	return devstack.Options{
		RepoDir:          root,
		AdminDatabaseURL: cfg.AdminDatabaseURL,
		RedisURL:         cfg.RedisURL,
		DatabasePrefix:   "bazaar_",
		// Kept between runs like the databases, so that a key can be rotated by hand
		// while the stack runs (docs/security.md, "Rotating a service key").
		KeysDir:   filepath.Join(root, "var", "keys"),
		Ports:     devstack.DefaultPorts,
		Instances: cfg.Instances,
		LogLevel:  cfg.LogLevel,
		Env:       env,
		Admin:     cfg.Admin,
		Shopper:   cfg.Shopper,
		Output:    stdout,
		Color:     !cfg.NoColor && isTerminal(stdout),
	}
}

func banner(w io.Writer, u devstack.URLs) {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\n  Bazaar is running.")
	fmt.Fprintln(tw, "")
	fmt.Fprintf(tw, "  shop\t%s/\t(the storefront; sign in as the shopper, or as the admin for /admin)\n", u.Gateway)
	fmt.Fprintf(tw, "  api\t%s/api/v1\t(reference: %s/docs)\n", u.Gateway, u.Gateway)
	fmt.Fprintf(tw, "  health\t%s/health\n", u.Gateway)
	fmt.Fprintf(tw, "  mailpit\t%s\t(the inbox every e-mail goes to)\n", u.Mailpit)
	fmt.Fprintf(tw, "  tasks\t%s/ops/tasks/\t(the task monitor; sign in as the admin)\n", u.Gateway)
	fmt.Fprintf(tw, "  keys\t%s\t(the services' keys for internal calls)\n", u.KeysDir)
	for _, service := range slices.Sorted(maps.Keys(u.Instances)) {
		if names := u.Instances[service]; len(names) > 1 {
			var at []string
			for _, name := range names {
				at = append(at, u.Programs[name])
			}
			fmt.Fprintf(tw, "  %s\t%d instances\t(%s)\n", service, len(names), strings.Join(at, ", "))
		}
	}
	fmt.Fprintln(tw, "")
	fmt.Fprintf(tw, "  admin\t%s / %s\n", u.Admin.Email, u.Admin.Password)
	fmt.Fprintf(tw, "  shopper\t%s / %s\n", u.Shopper.Email, u.Shopper.Password)
	fmt.Fprintln(tw, "")
	fmt.Fprintf(tw, "  try\tcurl -s %s/health\n", u.Gateway)
	fmt.Fprintln(tw, "  Ctrl-C stops everything.")
	fmt.Fprintln(tw, "")
	tw.Flush()
	// One write, so that the banner is not torn by the programs' log lines.
	_, _ = io.WriteString(w, b.String())
}

// isTerminal reports whether w is a terminal, where colour helps; in a file or a pipe
// escape codes would only be noise.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
