package programs_test

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/bazaar-shop/bazaar/internal/programs"
)

// The list is the whole truth: every program directory in the repository is on it,
// each entry's directory is a program calling itself by the entry's name, and no two
// share a name or a port.
func TestTheListIsEveryProgramInTheRepository(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "..")
	dirs, err := filepath.Glob(filepath.Join(root, "services", "*", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	dirs = append(dirs, filepath.Join(root, "gateway", "main.go"))
	for _, main := range dirs {
		dir, _ := filepath.Rel(root, filepath.Dir(main))
		if !slices.ContainsFunc(programs.All, func(p programs.Program) bool { return p.Dir == filepath.ToSlash(dir) }) {
			t.Errorf("%s is a program missing from programs.All", dir)
		}
	}
	names, ports := map[string]bool{}, map[int]string{}
	for _, p := range programs.All {
		if names[p.Name] {
			t.Errorf("%s is listed twice", p.Name)
		}
		names[p.Name] = true
		src, err := os.ReadFile(filepath.Join(root, p.Dir, "main.go"))
		if err != nil {
			t.Errorf("%s: %v", p.Name, err)
			continue
		}
		if want := `platform.Main("` + p.Name + `", run)`; !strings.Contains(string(src), want) {
			t.Errorf("%s/main.go does not call %s", p.Dir, want)
		}
		for _, port := range []int{p.Port, p.InternalPort} {
			if port == 0 {
				continue
			}
			if other, ok := ports[port]; ok {
				t.Errorf("%s and %s share port %d", p.Name, other, port)
			}
			ports[port] = p.Name
		}
		if p.Port == 0 {
			t.Errorf("%s: port 0, want one", p.Name)
		}
		if p.Service() && p.InternalPort == 0 {
			t.Errorf("%s: a service with internal port 0, want one", p.Name)
		}
		if !p.Service() && p.InternalPort != 0 {
			t.Errorf("%s: not a service, with internal port %d; want none", p.Name, p.InternalPort)
		}
	}
	got := programs.Services()
	if slices.Contains(got, programs.Gateway) {
		t.Errorf("Services() = %v, want it without %s", got, programs.Gateway)
	}
	if len(got) != len(programs.All)-1 {
		t.Errorf("Services() = %v, %d of them; want every program but the gateway, %d", got, len(got), len(programs.All)-1)
	}
	if programs.All[0].Name != "users" || programs.All[len(programs.All)-1].Name != programs.Gateway {
		t.Errorf("start order %v: users first (the others fetch its keys), the gateway last", programs.Names())
	}
}

// Each program's own defaults (what it listens on when HTTP_ADDR and INTERNAL_ADDR
// are unset) are the list's ports.
func TestEachProgramDefaultsToItsListedPorts(t *testing.T) {
	t.Parallel()
	for _, p := range programs.All {
		src, err := os.ReadFile(filepath.Join("..", "..", p.Dir, "run.go"))
		if err != nil {
			t.Fatal(err)
		}
		want := `platform.LoadConfig(env, "` + p.Name + `", ":` + strconv.Itoa(p.Port) + `", ":` + strconv.Itoa(p.InternalPort) + `")`
		if !p.Service() {
			want = `env.Addr("HTTP_ADDR", ":` + strconv.Itoa(p.Port) + `")`
		}
		if !strings.Contains(string(src), want) {
			t.Errorf("%s/run.go does not load its configuration with %s", p.Dir, want)
		}
	}
}
