// Command payments is Bazaar's payments service. See run.go for what it starts.
package main

import "github.com/bazaar-shop/bazaar/pkg/platform"

func main() { platform.Main("payments", run) }
