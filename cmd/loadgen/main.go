// Command loadgen puts a crowd of shoppers on a running Bazaar through its gateway
// (`make run` or docker compose on http://localhost:8080 by default) and reports what
// happened. See run.go for its flags and internal/loadgen for what a shopper does.
package main

import "github.com/bazaar-shop/bazaar/pkg/platform"

func main() { platform.Main("loadgen", run) }
