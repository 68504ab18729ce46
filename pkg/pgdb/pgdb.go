// Package pgdb opens a service's Postgres pool and applies the service's embedded SQL
// migrations (goose), under a Postgres advisory lock so that replicas starting together
// migrate once.
package pgdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// Open makes a pool for url. It does not wait for the server: the pool connects on
// first use and reconnects by itself after the server comes back.
func Open(ctx context.Context, url string, opts ...Option) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 || cfg.ConnConfig.ConnectTimeout > 5e9 {
		cfg.ConnConfig.ConnectTimeout = 5e9 // 5s: fail fast enough for readiness probes
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.tracer != nil {
		cfg.ConnConfig.Tracer = queryTracer{tracer: o.tracer, database: cfg.ConnConfig.Database}
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	return pool, nil
}

// Migrator applies and checks one service's migrations.
type Migrator struct {
	db       *sql.DB
	provider *goose.Provider
}

// NewMigrator reads the migrations in fsys (SQL files at its root, goose format).
func NewMigrator(pool *pgxpool.Pool, fsys fs.FS, log *slog.Logger) (*Migrator, error) {
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, err
	}
	db := stdlib.OpenDBFromPool(pool)
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys,
		goose.WithSessionLocker(locker), goose.WithSlog(log), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	return &Migrator{db: db, provider: p}, nil
}

// Up applies every pending migration and returns the schema version reached.
func (m *Migrator) Up(ctx context.Context) (int64, error) {
	if _, err := m.provider.Up(ctx); err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	return m.provider.GetDBVersion(ctx)
}

// ErrPending means the database lacks migrations this binary expects.
var ErrPending = errors.New("migrations pending")

// Check is nil when the database has every migration applied: the readiness probe.
func (m *Migrator) Check(ctx context.Context) error {
	pending, err := m.provider.HasPending(ctx)
	if err != nil {
		return err
	}
	if pending {
		return ErrPending
	}
	return nil
}

// Close releases the migrator (not the pool).
func (m *Migrator) Close() error { return m.db.Close() }

// Migrate opens a migrator, applies fsys and closes it: for tests and tools.
func Migrate(ctx context.Context, pool *pgxpool.Pool, fsys fs.FS, log *slog.Logger) error {
	m, err := NewMigrator(pool, fsys, log)
	if err != nil {
		return err
	}
	defer m.Close()
	_, err = m.Up(ctx)
	return err
}
