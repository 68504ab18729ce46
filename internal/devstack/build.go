package devstack

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
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
// for its version, so that changing MailpitVersion builds the new one ("-ui": built
// with its web UI, which the binaries of earlier checkouts, under the version alone,
// lack).
func DefaultMailpitBin(binDir string) string {
	return filepath.Join(binDir, "mailpit-"+MailpitVersion+"-ui", "mailpit")
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

// ensureMailpit builds Mailpit, web UI and all, into the directory of bin, unless bin
// is already there. Two stacks may start at once on a fresh clone (make test runs the
// e2e package and cmd/devstack's test side by side) and both build it: each builds in
// a directory of its own and renames the result into place, so that neither can start
// a binary the other is still writing.
//
// `go install` alone gives a Mailpit whose inbox is a blank page: the module carries
// the UI's sources and package.json but not the bundle the binary embeds
// (server/ui/dist). So the module's source is copied, its UI built with npm as
// Mailpit's own `npm run build` does, and the binary built from that. The packages
// come from mailpitui/package.json and its lockfile, not Mailpit's: some versions its
// lockfile pins are not served by the registry this project is built from (rapidoc
// ^12: 9.3.8 is the newest served; sass-embedded 1.108.1: 1.108.2), so those two files
// pin what is served, and only what the build needs (no linters, no test runners).
func ensureMailpit(ctx context.Context, repoDir, bin string, out *sink) error {
	if _, err := os.Stat(bin); err == nil {
		return nil
	}
	dir := filepath.Dir(bin)
	out.printf("building Mailpit %s, web UI and all, into %s (about a minute the first time)", MailpitVersion, dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(dir, ".build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	src, err := moduleSource(ctx, repoDir, MailpitModule+"@"+MailpitVersion)
	if err != nil {
		return err
	}
	work := filepath.Join(tmp, "src")
	if err := os.CopyFS(work, os.DirFS(src)); err != nil {
		return fmt.Errorf("copying Mailpit's source: %w", err)
	}
	for _, name := range []string{"package.json", "package-lock.json"} {
		b, err := mailpitUI.ReadFile("mailpitui/" + name)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(work, name), b, 0o644); err != nil {
			return err
		}
	}
	steps := []struct {
		what, name string
		env, args  []string
	}{
		// install, not ci: the lockfile lacks optional packages the registry does not
		// serve (sass-embedded-all-unknown past 1.105), which install skips and ci
		// refuses. --no-save: the lockfile stays as committed.
		{"installing Mailpit's UI packages", "npm", nil, []string{"install", "--no-audit", "--no-fund", "--no-save"}},
		{"building Mailpit's UI", "node", []string{"MINIFY=true"}, []string{"esbuild.config.mjs"}},
		{"building Mailpit", "go", nil, []string{"build", "-trimpath",
			"-ldflags", "-s -w -X " + MailpitModule + "/config.Version=" + MailpitVersion,
			"-o", filepath.Join(tmp, filepath.Base(bin)), "."}},
	}
	for _, st := range steps {
		if err := command(ctx, work, st.env, st.name, st.args, out, st.what); err != nil {
			return err
		}
		if st.name == "node" {
			if _, err := os.Stat(filepath.Join(work, "server", "ui", "dist", "app.js")); err != nil {
				return fmt.Errorf("building Mailpit's UI made no server/ui/dist/app.js: %w", err)
			}
		}
	}
	return os.Rename(filepath.Join(tmp, filepath.Base(bin)), bin)
}

// mailpitUI is the package.json and lockfile Mailpit's UI is built with.
//
//go:embed mailpitui/package.json mailpitui/package-lock.json
var mailpitUI embed.FS

// moduleSource is the directory of module@version in the module cache, downloaded
// there first when missing.
func moduleSource(ctx context.Context, repoDir, module string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", module)
	cmd.Dir = repoDir
	b, err := cmd.Output()
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(b, &info); jerr != nil || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s: %v %s", module, err, info.Error)
	}
	return info.Dir, nil
}

// goCommand runs the go tool (see command).
func goCommand(ctx context.Context, dir string, env, args []string, out *sink, what string) error {
	return command(ctx, dir, env, "go", args, out, what)
}

// command runs the program name (go, npm, node) with extra env on top of ours (the go
// tool needs HOME, GOCACHE, GOPATH, GOFLAGS as the developer has them), printing a
// progress line every 15 s so that a long first build does not look hung. Its output
// goes to out.
func command(ctx context.Context, dir string, env []string, name string, args []string, out *sink, what string) error {
	path, err := exec.LookPath(name)
	if err != nil {
		return fmt.Errorf("the %s command is not on PATH (%s needs it)", name, what)
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	w := &lineWriter{sink: out, name: name}
	cmd.Stdout, cmd.Stderr = w, w
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
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
				return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
			}
			out.printf("%s: done in %s", what, time.Since(start).Round(100*time.Millisecond))
			return nil
		case <-tick.C:
			out.printf("%s: still going (%s)", what, time.Since(start).Round(time.Second))
		}
	}
}
