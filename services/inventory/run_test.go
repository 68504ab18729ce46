package main

import (
	"testing"

	"github.com/bazaar-shop/bazaar/pkg/pgtest"
	"github.com/bazaar-shop/bazaar/pkg/programtest"
	"github.com/bazaar-shop/bazaar/pkg/redistest"
)

// The inventory service starts on its own fresh database, applies its migrations and
// answers the operational routes.
func TestRunServesOperationalRoutes(t *testing.T) {
	t.Parallel()
	prog := programtest.Start(t, run, map[string]string{
		"DATABASE_URL": pgtest.NewDatabase(t),
		"REDIS_URL":    redistest.New(t),
	})
	programtest.AssertOperational(t, prog.URL, "postgres", "migrations", "redis")
}
