// Command inventory is Bazaar's inventory service. See run.go for what it starts.
package main

import "github.com/bazaar-shop/bazaar/pkg/platform"

func main() { platform.Main("inventory", run) }
