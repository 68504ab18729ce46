package devstack

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Several instances of a service (Options.Instances): the first is named after the
// service ("inventory"), the others after it and their number ("inventory-2",
// "inventory-3"), and each is a program of its own in URLs, StopProgram, KillProgram
// and RestartProgram. They share the service's database, key and environment
// (Options.ProgramEnv by the service's name reaches them all), each with listeners of
// its own: on a stack with fixed ports, instance k of a service listens 100·(k−1)
// above the first's ports (inventory-2 on 8182 and 9182 beside inventory's 8082 and
// 9082), on free ports otherwise. Only the first seeds the catalogue, and each of the
// others has CONSUMER_NAME=<its name>, since replicas' consumer names must differ.
// Orders and the gateway get every instance's URL, comma-separated, in the order of
// their numbers: orders' INVENTORY_URL and PAYMENTS_URL list the internal listeners,
// the gateway's <NAME>_URL the public ones and <NAME>_INTERNAL_URL the internal ones,
// in the same order (pkg/balancer pairs them by position).

// MaxInstances is the most instances of one service a stack runs: instance 9 of the
// last service still listens below make run's other ports' next hundred.
const MaxInstances = 9

// ParseInstances reads how many instances of each service to run from a list such as
// "inventory=2,payments=3" (INSTANCES); "" is one of each. It fails naming an unknown
// service or a count that is not 1 to MaxInstances.
func ParseInstances(list string) (map[string]int, error) {
	out := map[string]int{}
	if strings.TrimSpace(list) == "" {
		return out, nil
	}
	var errs []error
	for _, item := range strings.Split(list, ",") {
		name, count, ok := strings.Cut(strings.TrimSpace(item), "=")
		n, err := strconv.Atoi(count)
		switch {
		case !ok || err != nil:
			errs = append(errs, fmt.Errorf("%q: want <service>=<count>, such as inventory=2", item))
		case !slices.Contains(Services, name):
			errs = append(errs, fmt.Errorf("%q: %s is not one of the services (%s)", item, name, strings.Join(Services, ", ")))
		case n < 1 || n > MaxInstances:
			errs = append(errs, fmt.Errorf("%q: from 1 to %d instances", item, MaxInstances))
		default:
			out[name] = n
		}
	}
	return out, errors.Join(errs...)
}

// checkInstances rejects Options.Instances entries that ParseInstances would.
func checkInstances(instances map[string]int) error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(instances)) {
		if n := instances[name]; !slices.Contains(Services, name) || n < 1 || n > MaxInstances {
			errs = append(errs, fmt.Errorf("devstack: Options.Instances: %s=%d: want a service and 1 to %d", name, n, MaxInstances))
		}
	}
	return errors.Join(errs...)
}

// instanceName is the name of a service's k-th instance (from 1).
func instanceName(service string, k int) string {
	if k == 1 {
		return service
	}
	return service + "-" + strconv.Itoa(k)
}

// instanceNames are every instance of service, in order.
func (o Options) instanceNames(service string) []string {
	names := []string{service}
	for k := 2; k <= o.Instances[service]; k++ {
		names = append(names, instanceName(service, k))
	}
	return names
}

// extraInstances are the instances after the first of each of services, in order.
func (o Options) extraInstances(services ...string) []string {
	var out []string
	for _, s := range services {
		out = append(out, o.instanceNames(s)[1:]...)
	}
	return out
}

// serviceOf is the service (or program) an instance belongs to: "inventory" for
// "inventory-2", the name itself for any other.
func serviceOf(name string) string {
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		if k, err := strconv.Atoi(name[i+1:]); err == nil && k >= 2 && slices.Contains(Services, name[:i]) {
			return name[:i]
		}
	}
	return name
}

// instanceNumber is an instance's number (1 for the first, or any other program).
func instanceNumber(name string) int {
	if s := serviceOf(name); s != name {
		k, _ := strconv.Atoi(name[len(s)+1:])
		return k
	}
	return 1
}

// portOf is where an instance listens: the service's port (public, or internal),
// 100·(k−1) above it for the k-th; 0 (a free one) when the service's is 0.
func portOf(base, k int) int {
	if base == 0 {
		return 0
	}
	return base + 100*(k-1)
}

// urlList is the URLs of every instance of service in urls, comma-separated.
func (s *Stack) urlList(service string, urls map[string]string) string {
	var out []string
	for _, name := range s.opts.instanceNames(service) {
		out = append(out, urls[name])
	}
	return strings.Join(out, ",")
}
