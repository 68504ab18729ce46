// Package loadgen drives a running Bazaar through its gateway as a crowd of shoppers
// would, and reports what happened: cmd/loadgen is its command line, and a chaos
// runner can call it to put load on a stack while it breaks things.
//
// A run (Run with a Config, best started from DefaultConfig) signs in a pool of shared
// accounts, then places orders either in an open loop (Config.Rate orders a second,
// whatever the system's latency, at most Config.MaxInFlight at once) or in a closed
// loop (Config.Concurrency shoppers, each ordering again once done), until
// Config.Duration or Config.Orders. Each order is a shopper's visit: browse, order,
// maybe replay the POST with its Idempotency-Key, follow the order to its end, maybe
// cancel it (see Run).
//
// The gateway's rate limits are respected rather than fought: sign-ins are paced
// (Config.SignInsPerMinute), catalogue browsing and token refreshes too
// (Config.AnonymousPerSecond), and a 429 is waited out as its Retry-After says. The
// accounts (AccountPrefix-<n>@bazaar.test, one password) and their tokens
// (Config.TokenCache) are reused across runs, so that a run against a stack that has
// seen one before signs in with refreshes, not log-ins.
//
// The Summary counts every order once, by outcome (confirmed, cancelled by reason,
// pending, failed by error kind), lists the ids of the orders created, and gives the
// POST latency's quantiles, the errors by kind and the requests by endpoint;
// Summary.Consistent checks that the counts add up. WriteTable and WriteJSON render
// it; FormatProgress renders the Progress a run reports every second.
package loadgen
