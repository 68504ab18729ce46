package outbox

import (
	"embed"
	"errors"
	"io/fs"
	"slices"
	"strings"
)

// table is the outbox table's migration, the first of every service that publishes.
//
//go:embed migrations/00001_outbox.sql
var table embed.FS

const tableFile = "00001_outbox.sql"

// WithTable is a service's migrations (goose SQL files at the root of service,
// numbered from 00002) with the outbox table's as 00001: the one line a new service
// needs for its outbox. Databases migrated when each service kept its own copy of the
// file are at version 1 already and see no change.
func WithTable(service fs.FS) fs.FS { return withTable{service} }

type withTable struct{ service fs.FS }

func (w withTable) Open(name string) (fs.File, error) {
	if name == tableFile {
		return table.Open("migrations/" + tableFile)
	}
	return w.service.Open(name)
}

// ReadDir lists the root with the table's file among the service's, in name order.
func (w withTable) ReadDir(name string) ([]fs.DirEntry, error) {
	entries, err := fs.ReadDir(w.service, name)
	if err != nil || name != "." {
		return entries, err
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "00001_") {
			return nil, errors.New("outbox: the service's migrations must start at 00002, after " + tableFile + "; found " + e.Name())
		}
	}
	own, err := fs.ReadDir(table, "migrations")
	if err != nil {
		return nil, err
	}
	entries = append(entries, own...)
	slices.SortFunc(entries, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return entries, nil
}
