package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/bazaar-shop/bazaar/pkg/config"
	"github.com/bazaar-shop/bazaar/pkg/platform"
	"github.com/bazaar-shop/bazaar/services/inventory/internal/catalogue"
	"github.com/bazaar-shop/bazaar/services/inventory/internal/httpapi"
	"github.com/bazaar-shop/bazaar/services/inventory/internal/jobs"
	"github.com/bazaar-shop/bazaar/services/inventory/internal/postgres"
	"github.com/bazaar-shop/bazaar/services/inventory/internal/postgres/migrations"
	"github.com/bazaar-shop/bazaar/services/inventory/internal/product"
	"github.com/bazaar-shop/bazaar/services/inventory/internal/reservation"
)

// settings is the inventory service's configuration: the platform's shared settings
// plus its own.
type settings struct {
	platform.Config
	// ReservationTTL is how long a reservation holds stock without being committed
	// before reservations:expire releases it (RESERVATION_TTL).
	ReservationTTL time.Duration
	// SeedCatalogue loads the demo catalogue at start, adding the products whose SKU is
	// missing (SEED_CATALOGUE); the local stack and the end-to-end tests set it.
	SeedCatalogue bool
}

// loadSettings reads the configuration; the error names every bad variable.
func loadSettings(getenv func(string) string) (settings, error) {
	env := config.New(getenv)
	s := settings{
		Config:         platform.LoadConfig(env, "inventory", ":8082", ":9082"),
		ReservationTTL: env.Duration("RESERVATION_TTL", 15*time.Minute),
		SeedCatalogue:  env.Bool("SEED_CATALOGUE", false),
	}
	if err := env.Err(); err != nil {
		return settings{}, err
	}
	return s, nil
}

// run starts the inventory service: the product catalogue (public reads, admin
// writes), the stock reservations of the orders saga (/internal), and the
// reservations:expire task that gives back stock no order committed.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cfg, err := loadSettings(getenv)
	if err != nil {
		return err
	}
	if platform.Probing(args) {
		return platform.Probe(ctx, cfg.InternalAddr)
	}
	p, err := platform.Start(ctx, cfg.Config, migrations.FS, stdout)
	if err != nil {
		return err
	}
	defer p.Close()
	p.Log.Info("inventory settings", "reservation_ttl", cfg.ReservationTTL.String(), "seed_catalogue", cfg.SeedCatalogue)

	store := postgres.NewStore(p.Pool)
	products := product.NewService(store, time.Now)
	reservations := reservation.NewService(store, cfg.ReservationTTL, time.Now)

	if cfg.SeedCatalogue {
		items, err := catalogue.Products()
		if err != nil {
			return err
		}
		created, err := products.Seed(ctx, items)
		if err != nil {
			return fmt.Errorf("seed the catalogue: %w", err)
		}
		p.Log.Info("catalogue seeded", "products", len(items), "created", created)
	}

	// Product and stock events leave through the outbox relay; while Redis is down
	// they wait in the outbox and reservations carry on.
	if err := p.RelayOutbox(); err != nil {
		return err
	}
	queue, err := p.Tasks()
	if err != nil {
		return err
	}
	if err := jobs.RegisterExpiry(queue.Worker, queue.Scheduler, reservations, p.Log); err != nil {
		return err
	}

	services, err := p.ServiceVerifier()
	if err != nil {
		return err
	}
	d := httpapi.Deps{
		Log:          p.Log,
		Products:     products,
		Reservations: reservations,
		Verifier:     p.TokenVerifier(),
		Services:     services,
		Events:       store,
	}
	public, internal := p.Router(), p.InternalRouter()
	httpapi.Mount(public, d)
	httpapi.MountInternal(internal, d)
	return p.Serve(ctx, public, internal)
}
