// Package e2e holds Bazaar's end-to-end tests: black-box tests that talk to the
// gateway of a running stack over real HTTP, as a client would. With E2E_BASE_URL set
// they target that stack (such as one started by `make run`); otherwise TestMain
// starts a stack of its own with internal/devstack, on free ports, with throw-away
// databases bazaar_e2e_<random>_* and a leased Redis database, so that it never
// collides with a running `make run` or with another test run. The tests are skipped
// with -short.
//
// Tests that break something (Redis cut, payments stopped, orders killed, inventory
// slowed) start a stack of their own (startStack), tuned through devstack's
// per-program environment, and end by checking the saga's invariants over its
// databases (internal/invariants). The other tests share one stack, each with users
// and products of its own, and check the invariants scoped to their products.
package e2e
