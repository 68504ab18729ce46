package devstack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/bazaar-shop/bazaar/internal/programs"
)

// Mailpit is built from its module at this version (docs/contract.md names it) when its binary
// is missing.
const (
	MailpitModule  = "github.com/axllent/mailpit"
	MailpitVersion = "v1.33.1"
)

// DefaultMailpitBin is where the stack keeps Mailpit under binDir: in a directory named
// for its version, so that changing MailpitVersion builds the new one.
func DefaultMailpitBin(binDir string) string {
	return filepath.Join(binDir, "mailpit-"+MailpitVersion, "mailpit")
}

// Programs are Bazaar's programs (internal/programs) and their packages, relative to
// the module root, in the order the stack starts them.
var Programs = func() []struct{ Name, Package string } {
	out := make([]struct{ Name, Package string }, len(programs.All))
	for i, p := range programs.All {
		out[i].Name, out[i].Package = p.Name, "./"+p.Dir
	}
	return out
}()

const modulePath = "github.com/bazaar-shop/bazaar"

// FindRepoRoot walks up from dir to the directory whose go.mod declares Bazaar's module.
func FindRepoRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			bytes.Contains(b, []byte("module "+modulePath+"\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("not inside the Bazaar repository (no go.mod for %s above the working directory)", modulePath)
		}
		dir = parent
	}
}

// buildPrograms compiles the six programs into binDir with one go build, which shares
// the work of their common packages.
func buildPrograms(ctx context.Context, repoDir, binDir string, out *sink) error {
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return err
	}
	args := []string{"build", "-o", binDir + string(filepath.Separator)}
	for _, p := range Programs {
		args = append(args, p.Package)
	}
	out.printf("building the programs into %s", binDir)
	return goCommand(ctx, repoDir, nil, args, out, "building the programs")
}

// ensureMailpit builds Mailpit into the directory of bin with go install, unless bin is
// already there. Two stacks may start at once on a fresh clone (make test runs the e2e
// package and cmd/devstack's test side by side) and both build it: each installs into
// a directory of its own and renames the result into place, so that neither can start
// a binary the other is still writing.
func ensureMailpit(ctx context.Context, repoDir, bin string, out *sink) error {
	if _, err := os.Stat(bin); err == nil {
		return nil
	}
	dir := filepath.Dir(bin)
	out.printf("building Mailpit %s into %s (about a minute the first time)", MailpitVersion, dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(dir, ".install-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	env := []string{"GOBIN=" + tmp}
	err = goCommand(ctx, repoDir, env, []string{"install", MailpitModule + "@" + MailpitVersion}, out, "building Mailpit")
	if err != nil {
		return err
	}
	built := filepath.Join(tmp, filepath.Base(bin))
	if _, err := os.Stat(built); err != nil {
		return fmt.Errorf("go install %s@%s did not produce %s", MailpitModule, MailpitVersion, built)
	}
	return os.Rename(built, bin)
}

// goCommand runs the go tool with extra env on top of ours (the go tool needs HOME,
// GOCACHE, GOPATH, GOFLAGS as the developer has them), printing a progress line every
// 15 s so that a long first build does not look hung. Its output goes to out.
func goCommand(ctx context.Context, dir string, env, args []string, out *sink, what string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return errors.New("the go command is not on PATH")
	}
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	w := &lineWriter{sink: out, name: "go"}
	cmd.Stdout, cmd.Stderr = w, w
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-waited:
			w.flush()
			if err != nil {
				return fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
			}
			out.printf("%s: done in %s", what, time.Since(start).Round(100*time.Millisecond))
			return nil
		case <-tick.C:
			out.printf("%s: still going (%s)", what, time.Since(start).Round(time.Second))
		}
	}
}
