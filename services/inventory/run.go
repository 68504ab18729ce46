package main

import (
	"context"
	"io"

	"github.com/bazaar-shop/bazaar/pkg/config"
	"github.com/bazaar-shop/bazaar/pkg/platform"
	"github.com/bazaar-shop/bazaar/services/inventory/internal/postgres/migrations"
)

// run starts the inventory service. So far it owns its database, migrations and outbox and
// answers only the operational routes (/healthz, /readyz, /metrics); its API arrives
// with the issue that builds it.
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
	// Its outbox is relayed to events.inventory and cleaned daily, ready for the events its
	// API will write.
	if err := p.RelayOutbox(); err != nil {
		return err
	}
	return p.Serve(ctx, p.Router())
}
