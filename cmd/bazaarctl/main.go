// Command bazaarctl is the operator's tool: the event backbone (list and replay the
// dead-letter queue, re-publish a service's outbox rows by time range) and a stack's
// secrets (create them on first start, rotate a service's key).
//
//	bazaarctl dlq list [-n 50]
//	bazaarctl dlq replay ID... | -all
//	bazaarctl outbox pending
//	bazaarctl outbox republish -from 2026-01-02T15:00:00Z -to 2026-01-02T16:00:00Z
//	bazaarctl secrets init -dir /secrets -owner 65532:65532
//	bazaarctl keys rotate -dir var/keys orders
//
// It reads REDIS_URL (dlq) and DATABASE_URL (outbox: the service's own database).
package main

import "github.com/bazaar-shop/bazaar/pkg/platform"

func main() { platform.Main("bazaarctl", run) }
