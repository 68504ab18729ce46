// Package migrations holds the users service's schema changes in goose's SQL format,
// embedded in the binary and applied at start.
package migrations

import "embed"

// FS holds the migration files at its root.
//
//go:embed *.sql
var FS embed.FS
