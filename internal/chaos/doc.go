// Package chaos breaks a running Bazaar under load and then checks that it lost
// nothing. Run starts a stack of its own (internal/devstack) on a private Postgres
// cluster and a private Redis, with TCP proxies between orders and its two
// downstream services and between notifications and the mail server; drives it
// with the load generator (internal/loadgen) through the gateway; injects faults
// on a wall-clock schedule (a Plan) while the load runs; lets the system come to
// rest; and judges it with the invariant checker (internal/invariants), extended to
// events and e-mail. The Result renders as a table (WriteTable): orders by outcome,
// each fault with its time window, each invariant with its count of violations.
//
// The faults (Kind):
//
//   - kill: SIGKILL one program and start it again (orders while sagas are in
//     flight);
//   - down: SIGKILL payments or orders and keep it down longer than orders'
//     CHARGE_BUDGET;
//   - redis-restart, postgres-restart: stop the private server (gracefully, or as
//     a crash) and start it again, data kept;
//   - cut: drop every connection from orders to payments and refuse new ones, then
//     heal;
//   - slow: delay every chunk between orders and inventory;
//   - smtp-down: drop and refuse every connection from notifications to the mail
//     server, for minutes;
//   - poison: XADD an entry whose data is not JSON to events.orders.
//
// Beside the faults, an admin changes the catalogue while the load runs, through
// the gateway: restocks (PATCH stock) and price changes (PATCH price_cents), which
// the checker accounts for (invariants.AccountStockChanges).
//
// Only the stack's own servers are restarted: the machine's shared Postgres and
// Redis, which other tests use at the same time, are never touched. The gateway's
// rate limits are off in this stack (RATE_* = 0), so that the load is not throttled.
//
// cmd/chaos is the command line (make chaos); chaos_test.go runs a short run as part
// of make test. docs/reliability.md shows a long run's table and how to read it.
package chaos
