// Command orders is Bazaar's orders service. See run.go for what it starts.
package main

import "github.com/bazaar-shop/bazaar/pkg/platform"

func main() { platform.Main("orders", run) }
