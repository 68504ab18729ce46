package devstack

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/bazaar-shop/bazaar/internal/programs"
)

// Services are the programs that own a database, in the order the stack starts them
// (users first: the others fetch its signing keys).
var Services = programs.Services()

// Database is one service's database and the role that owns it.
type Database struct {
	Service string // "users"
	Name    string // prefix + service: "bazaar_users"
	Role    string // same as Name; its password is its name too (local use only)
	URL     string // how the service connects: as Role, to Name, on the admin URL's server
}

// validPrefix keeps database and role names plain identifiers, so that they need no
// quoting anywhere (psql sessions, DATABASE_URL) and fit Postgres's 63-byte limit.
var validPrefix = regexp.MustCompile(`^[a-z][a-z0-9_]{0,40}$`)

// Databases names each service's database for prefix on the server of adminURL. It
// fails on a prefix that is not lower-case letters, digits and underscores, or an
// adminURL that is not a URL.
func Databases(adminURL, prefix string) ([]Database, error) {
	if !validPrefix.MatchString(prefix) {
		return nil, fmt.Errorf("database prefix %q: want lower-case letters, digits and _ (at most 41), starting with a letter", prefix)
	}
	admin, err := url.Parse(adminURL)
	if err != nil || admin.Host == "" {
		return nil, fmt.Errorf("admin database URL: want postgres://user@host:port/db")
	}
	dbs := make([]Database, 0, len(Services))
	for _, svc := range Services {
		name := prefix + svc
		u := *admin
		u.User = url.UserPassword(name, name)
		u.Path = "/" + name
		dbs = append(dbs, Database{Service: svc, Name: name, Role: name, URL: u.String()})
	}
	return dbs, nil
}

// EnsureDatabases creates, for each service, a login role and a database owned by it,
// and revokes PUBLIC's access to the database so that each role reaches only its own.
// Running it again changes nothing (an existing role gets its password reset to the
// local one); two runners racing on the same names both succeed. It fails when
// Postgres is unreachable or refuses the statements (the admin URL needs a role that
// may create roles and databases).
func EnsureDatabases(ctx context.Context, adminURL, prefix string) ([]Database, error) {
	dbs, err := Databases(adminURL, prefix)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return nil, fmt.Errorf("connect to Postgres: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// Two runners at once (two `make run`s, e2e beside make run) would trip over each
	// other's catalogue updates ("tuple concurrently updated"): take turns. The lock
	// is the session's, so it goes with the connection.
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", setupLockKey); err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	for _, db := range dbs {
		if err := ensureDatabase(ctx, conn, db); err != nil {
			return nil, fmt.Errorf("database %s: %w", db.Name, err)
		}
	}
	return dbs, nil
}

func ensureDatabase(ctx context.Context, conn *pgx.Conn, db Database) error {
	role := pgx.Identifier{db.Role}.Sanitize()
	name := pgx.Identifier{db.Name}.Sanitize()
	// CREATE ROLE and CREATE DATABASE take no bind parameters and have no IF NOT
	// EXISTS, so: look, then create (accepting that something other than a runner
	// made it in between).
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)", db.Role).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE ROLE "+role+" LOGIN PASSWORD "+literal(db.Role)); err != nil && !duplicate(err) {
			return fmt.Errorf("create role: %w", err)
		}
	}
	if _, err := conn.Exec(ctx, "ALTER ROLE "+role+" LOGIN PASSWORD "+literal(db.Role)); err != nil {
		return fmt.Errorf("alter role: %w", err)
	}
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", db.Name).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+name+" OWNER "+role); err != nil && !duplicate(err) {
			return fmt.Errorf("create database: %w", err)
		}
	}
	for _, stmt := range []string{
		"ALTER DATABASE " + name + " OWNER TO " + role,
		// PUBLIC may CONNECT to a new database by default; take that away so that the
		// other services' roles cannot reach this one.
		"REVOKE ALL ON DATABASE " + name + " FROM PUBLIC",
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("%s: %w", stmt, err)
		}
	}
	return nil
}

// DropDatabases drops the databases and roles EnsureDatabases made for prefix,
// closing any connections still open to them. Missing ones are skipped. It returns
// every failure, joined.
func DropDatabases(ctx context.Context, adminURL, prefix string) error {
	dbs, err := Databases(adminURL, prefix)
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connect to Postgres: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var errs []error
	for _, db := range dbs {
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{db.Name}.Sanitize()+" WITH (FORCE)"); err != nil {
			errs = append(errs, fmt.Errorf("drop database %s: %w", db.Name, err))
			continue
		}
		if _, err := conn.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{db.Role}.Sanitize()); err != nil {
			errs = append(errs, fmt.Errorf("drop role %s: %w", db.Role, err))
		}
	}
	return errors.Join(errs...)
}

// setupLockKey is the advisory lock EnsureDatabases holds: any number, the same in
// every runner.
const setupLockKey int64 = 0x62617a6161722d64 // "bazaar-d"

// literal quotes s as an SQL string literal, for the statements that take no
// parameters.
func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// duplicate reports whether err is Postgres saying the role or database already exists
// (another runner created it between our look and our create).
func duplicate(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case "42710", "42P04", "23505": // duplicate_object, duplicate_database, unique_violation (pg_authid)
		return true
	}
	return false
}
