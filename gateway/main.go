// Command gateway is Bazaar's API gateway: the one address clients talk to. It routes
// the public API to the services, checks access tokens on the way, and reports the
// health of the whole system. See run.go for what it starts.
package main

import "github.com/bazaar-shop/bazaar/pkg/platform"

func main() { platform.Main("gateway", run) }
