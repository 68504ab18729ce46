// Command chaos runs Bazaar on a private stack, breaks it under load and judges what
// is left (make chaos). See run.go for its flags and internal/chaos for the faults
// and the checks; docs/reliability.md shows a run and how to read it.
package main

import "github.com/bazaar-shop/bazaar/pkg/platform"

func main() { platform.Main("chaos", run) }
