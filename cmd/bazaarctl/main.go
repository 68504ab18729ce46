// Command bazaarctl is the operator's tool for the event backbone: list and replay the
// dead-letter queue, and re-publish a service's outbox rows by time range.
//
//	bazaarctl dlq list [-n 50]
//	bazaarctl dlq replay ID... | -all
//	bazaarctl outbox pending
//	bazaarctl outbox republish -from 2026-01-02T15:00:00Z -to 2026-01-02T16:00:00Z
//
// It reads REDIS_URL (dlq) and DATABASE_URL (outbox: the service's own database).
package main

import "github.com/bazaar-shop/bazaar/pkg/platform"

func main() { platform.Main("bazaarctl", run) }
