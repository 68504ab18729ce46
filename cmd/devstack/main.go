// Command devstack is `make run`: it brings up the whole of Bazaar on this machine
// (Mailpit and the six programs, with their databases and demo accounts), prints where
// to find it, and stops everything on Ctrl-C. See run.go.
package main

import "github.com/bazaar-shop/bazaar/pkg/platform"

func main() { platform.Main("devstack", run) }
