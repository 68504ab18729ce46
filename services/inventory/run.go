package main

import (
	"context"
	"io"

	"github.com/bazaar-shop/bazaar/pkg/config"
	"github.com/bazaar-shop/bazaar/pkg/platform"
	"github.com/bazaar-shop/bazaar/services/inventory/internal/postgres/migrations"
)

// run starts the inventory service. So far it owns its database and migrations and
// answers only the operational routes (/healthz, /readyz, /metrics); its API arrives
// with the issues that build it.
func run(ctx context.Context, _ []string, getenv func(string) string, stdout io.Writer) error {
	env := config.New(getenv)
	cfg := platform.LoadConfig(env, "inventory", ":8082")
	if err := env.Err(); err != nil {
		return err
	}
	p, err := platform.Start(ctx, cfg, migrations.FS, stdout)
	if err != nil {
		return err
	}
	defer p.Close()
	return p.Serve(ctx, p.Router())
}
