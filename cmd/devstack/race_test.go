//go:build race

package main

// raceEnabled says this test binary was built with -race; a go test it runs is given
// the same flag, so that it builds from the same cache.
const raceEnabled = true
