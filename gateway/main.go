// Command gateway is Bazaar's API gateway: the one address clients talk to. It routes
// the public API to the services, checks access tokens on the way, reports the health
// of the whole system, and serves administrators the task monitor under /ops. See
// run.go for what it starts.
package main

import "github.com/bazaar-shop/bazaar/pkg/platform"

func main() { platform.Main("gateway", run) }
