//go:build !race

package main

// raceEnabled says this test binary was built with -race (see race_test.go).
const raceEnabled = false
