// Package e2e holds Bazaar's end-to-end tests: black-box tests that talk to the
// gateway of a running stack over real HTTP, as a client would. With E2E_BASE_URL set
// they target that stack (such as one started by `make run`); otherwise TestMain
// starts a stack of its own with internal/devstack, on free ports, with throw-away
// databases bazaar_e2e_<random>_* and a leased Redis database, so that it never
// collides with a running `make run` or with another test run. The tests are skipped
// with -short.
//
// A stack started by make run or docker compose keeps the gateway's default rate
// limits (10 log-ins and sign-ups a minute per client IP, 5 per e-mail address, 20
// requests a second per IP and 50 per user), which a test run from one address soon
// reaches. The client therefore waits out every 429 as its Retry-After says and sends
// the request again (until shortly before -timeout), takes turns at signing in, and
// signs in only where a test needs it: the admin once per stack, and a pool of
// shoppers, each registered once per run and lent to one test at a time
// (accounts_test.go). A whole run against make run takes about three minutes, most
// of it waiting for the sign-in limit. cmd/devstack's tests run part of the suite
// this way on every make test.
//
// Tests that break something (Redis cut, payments stopped, orders killed, inventory
// slowed) start a stack of their own (startStack), tuned through devstack's
// per-program environment, and end by checking the saga's invariants over its
// databases (internal/invariants). The other tests share one stack, each with users
// and products of its own, and check the invariants scoped to their products.
package e2e
