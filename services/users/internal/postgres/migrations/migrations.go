// Package migrations holds the users service's schema changes in goose's SQL format,
// embedded in the binary and applied at start.
package migrations

import (
	"embed"
	"io/fs"

	"github.com/bazaar-shop/bazaar/pkg/outbox"
)

//go:embed *.sql
var own embed.FS

// FS holds the migration files at its root: the outbox table's first (pkg/outbox),
// then the service's own, from 00002.
var FS fs.FS = outbox.WithTable(own)
