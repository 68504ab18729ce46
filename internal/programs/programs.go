// Package programs is the one list of Bazaar's programs: what each is called, where
// its main package is, and where the local stack has it listen. Everything that runs
// or deploys the whole system (the local stack and its build, the gateway's
// upstreams, the service keys, the compose file's test, the invariant checker) reads
// it here, and a test holds every deployment file to it, so that a new service is
// added in one place and nothing forgets it.
package programs

// Program is one of Bazaar's programs.
type Program struct {
	Name string // "users": its name everywhere (container, database bazaar_users, queue prefix)
	Dir  string // its main package, relative to the module root: "services/users"
	// Port and InternalPort are where the local stack has it listen (docs/contract.md,
	// "Programs"): the public listener, and the internal one (the /internal routes,
	// the probes and metrics), which the gateway does not have.
	Port, InternalPort int
}

// Service reports whether p is a service: it owns a database, has an internal
// listener and a service key. Every program but the gateway is one.
func (p Program) Service() bool { return p.Name != Gateway }

// Gateway is the name of the program every client talks to.
const Gateway = "gateway"

// All are Bazaar's programs in the order a stack starts them: users first (the
// others fetch its signing keys), the gateway last (it routes to the rest).
var All = []Program{
	{Name: "users", Dir: "services/users", Port: 8081, InternalPort: 9081},
	{Name: "inventory", Dir: "services/inventory", Port: 8082, InternalPort: 9082},
	{Name: "payments", Dir: "services/payments", Port: 8083, InternalPort: 9083},
	{Name: "orders", Dir: "services/orders", Port: 8084, InternalPort: 9084},
	{Name: "notifications", Dir: "services/notifications", Port: 8085, InternalPort: 9085},
	{Name: Gateway, Dir: "gateway", Port: 8080},
}

// Services are the names of the services (every program but the gateway), in start
// order.
func Services() []string {
	var names []string
	for _, p := range All {
		if p.Service() {
			names = append(names, p.Name)
		}
	}
	return names
}

// Names are the names of every program, in start order.
func Names() []string {
	names := make([]string, len(All))
	for i, p := range All {
		names[i] = p.Name
	}
	return names
}

// Get is the program called name, and whether there is one.
func Get(name string) (Program, bool) {
	for _, p := range All {
		if p.Name == name {
			return p, true
		}
	}
	return Program{}, false
}
