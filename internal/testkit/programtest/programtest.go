// Package programtest runs a program's run function inside a test, the way main would
// (docs/style.md: tests call the same run, on port 0), and hands back its base URL.
package programtest

import (
	"context"
	"io"
	"maps"
	"regexp"
	"testing"
	"time"

	"github.com/bazaar-shop/bazaar/internal/testkit/syncbuf"
	"github.com/bazaar-shop/bazaar/pkg/platform"
)

// Program is a program running inside a test.
type Program struct {
	URL  string // the public listener: http://127.0.0.1:port
	t    testing.TB
	logs *syncbuf.Buffer
	run  platform.RunFunc
	env  map[string]string
}

var internalListening = regexp.MustCompile(`"msg":"internal listening"[^\n]*?"addr":"([^"]+)"`)

// InternalURL is the base URL of a service's internal listener (INTERNAL_ADDR, a free
// port unless the test set one), waiting up to 10s for it to be logged.
func (p *Program) InternalURL() string {
	p.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if m := internalListening.FindStringSubmatch(p.logs.String()); m != nil {
			return "http://" + m[1]
		}
	}
	p.t.Fatalf("no internal listener in the logs:\n%s", p.logs.String())
	return ""
}

// listenLines are the log lines that say where a program listens, by the variable
// that sets the address: the public, internal and (the gateway's) operations
// listeners.
var listenLines = map[string]*regexp.Regexp{
	"HTTP_ADDR":     listening,
	"INTERNAL_ADDR": internalListening,
	"OPS_ADDR":      regexp.MustCompile(`"msg":"ops listening"[^\n]*?"addr":"([^"]+)"`),
}

// Probe runs the program's run function the way a container's healthcheck runs the
// binary (`<program> -probe`): with the test's environment, in which each listen
// address is the one the program really took, and returns what run returned.
func (p *Program) Probe() error {
	env := maps.Clone(p.env)
	logs := p.logs.String()
	for name, line := range listenLines {
		if m := line.FindStringSubmatch(logs); m != nil {
			env[name] = m[1]
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*platform.ProbeTimeout)
	defer cancel()
	return p.run(ctx, []string{"test", platform.ProbeFlag}, func(k string) string { return env[k] }, io.Discard)
}

// Logs is everything the program has logged so far.
func (p *Program) Logs() string { return p.logs.String() }

var listening = regexp.MustCompile(`"msg":"listening"[^\n]*?"addr":"([^"]+)"`)

// Start runs run with env (HTTP_ADDR and INTERNAL_ADDR default to 127.0.0.1:0) until the test ends, and
// waits for it to listen. At the end of the test it stops the program and fails the
// test if run returned an error; the program's logs are printed when the test failed.
func Start(t testing.TB, run platform.RunFunc, env map[string]string) *Program {
	t.Helper()
	if _, ok := env["HTTP_ADDR"]; !ok {
		env["HTTP_ADDR"] = "127.0.0.1:0"
	}
	if _, ok := env["INTERNAL_ADDR"]; !ok {
		env["INTERNAL_ADDR"] = "127.0.0.1:0"
	}
	getenv := func(k string) string { return env[k] }
	logs := &syncbuf.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"test"}, getenv, logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run returned %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("run did not return within 30s of being stopped")
		}
		if t.Failed() {
			t.Logf("program logs:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if m := listening.FindStringSubmatch(logs.String()); m != nil {
			return &Program{URL: "http://" + m[1], t: t, logs: logs, run: run, env: maps.Clone(env)}
		}
		select {
		case err := <-done:
			done <- err // for the cleanup
			t.Fatalf("run returned before listening: %v\nlogs:\n%s", err, logs.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("program did not listen within 60s; logs:\n%s", logs.String())
	return nil
}
