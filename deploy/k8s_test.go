package deploy

// The Kubernetes manifests (k8s/): each overlay is built with the kustomize API that
// kubectl apply -k uses, in-process, since no cluster runs where the tests do; every
// object is decoded strictly into the Kubernetes API's own Go types (a misspelt or
// misplaced field fails), and then checked for what the system relies on.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	programlist "github.com/bazaar-shop/bazaar/internal/programs"
	"github.com/bazaar-shop/bazaar/pkg/httpserver"
)

var k8sOverlays = []string{"dev", "prod"}

// k8sBuild is one overlay, built and decoded.
type k8sBuild struct {
	overlay      string
	deployments  map[string]*appsv1.Deployment
	statefulSets map[string]*appsv1.StatefulSet
	services     map[string]*corev1.Service
	hpas         map[string]*autoscalingv2.HorizontalPodAutoscaler
	pdbs         map[string]*policyv1.PodDisruptionBudget
	policies     map[string]*networkingv1.NetworkPolicy
	configMaps   map[string]*corev1.ConfigMap
	secrets      map[string]*corev1.Secret
	clusters     map[string]map[string]any // CloudNativePG Clusters: no Go types here
}

// k8sTypes are the kinds the overlays may hold, with their API versions.
var k8sTypes = map[string]string{
	"Namespace":               "v1",
	"ConfigMap":               "v1",
	"Secret":                  "v1",
	"Service":                 "v1",
	"Deployment":              "apps/v1",
	"StatefulSet":             "apps/v1",
	"HorizontalPodAutoscaler": "autoscaling/v2",
	"PodDisruptionBudget":     "policy/v1",
	"NetworkPolicy":           "networking.k8s.io/v1",
	"Cluster":                 "postgresql.cnpg.io/v1",
}

var k8sBuilds = map[string]func() (*k8sBuild, error){}

func init() {
	for _, o := range k8sOverlays {
		k8sBuilds[o] = sync.OnceValues(func() (*k8sBuild, error) { return buildOverlay(o) })
	}
}

// overlay builds k8s/overlays/<name> once for all the tests.
func overlay(t *testing.T, name string) *k8sBuild {
	t.Helper()
	b, err := k8sBuilds[name]()
	if err != nil {
		t.Fatalf("overlay %s: %v", name, err)
	}
	return b
}

func buildOverlay(name string) (*k8sBuild, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join("k8s", "overlays", name))
	if err != nil {
		return nil, fmt.Errorf("kustomize build: %w", err)
	}
	b := &k8sBuild{
		overlay:     name,
		deployments: map[string]*appsv1.Deployment{}, statefulSets: map[string]*appsv1.StatefulSet{},
		services: map[string]*corev1.Service{}, hpas: map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		pdbs: map[string]*policyv1.PodDisruptionBudget{}, policies: map[string]*networkingv1.NetworkPolicy{},
		configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		clusters: map[string]map[string]any{},
	}
	for _, r := range rm.Resources() {
		raw, err := r.MarshalJSON()
		if err != nil {
			return nil, err
		}
		kind, objName := r.GetKind(), r.GetName()
		if want, ok := k8sTypes[kind]; !ok {
			return nil, fmt.Errorf("%s %s: a kind this test does not know", kind, objName)
		} else if got := r.GetApiVersion(); got != want {
			return nil, fmt.Errorf("%s %s: apiVersion %s, want %s", kind, objName, got, want)
		}
		var into any
		switch kind {
		case "Namespace":
			into = &corev1.Namespace{}
		case "ConfigMap":
			into = put(b.configMaps, objName, &corev1.ConfigMap{})
		case "Secret":
			into = put(b.secrets, objName, &corev1.Secret{})
		case "Service":
			into = put(b.services, objName, &corev1.Service{})
		case "Deployment":
			into = put(b.deployments, objName, &appsv1.Deployment{})
		case "StatefulSet":
			into = put(b.statefulSets, objName, &appsv1.StatefulSet{})
		case "HorizontalPodAutoscaler":
			into = put(b.hpas, objName, &autoscalingv2.HorizontalPodAutoscaler{})
		case "PodDisruptionBudget":
			into = put(b.pdbs, objName, &policyv1.PodDisruptionBudget{})
		case "NetworkPolicy":
			into = put(b.policies, objName, &networkingv1.NetworkPolicy{})
		case "Cluster":
			m := map[string]any{}
			b.clusters[objName] = m
			into = &m
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(into); err != nil {
			return nil, fmt.Errorf("%s %s does not decode strictly: %w", kind, objName, err)
		}
	}
	return b, nil
}

func put[T any](m map[string]*T, name string, v *T) *T {
	m[name] = v
	return v
}

// container is the program's container in its Deployment.
func (b *k8sBuild) container(t *testing.T, program string) (*appsv1.Deployment, *corev1.Container) {
	t.Helper()
	d, ok := b.deployments[program]
	if !ok {
		t.Fatalf("%s: no Deployment %s", b.overlay, program)
	}
	for i := range d.Spec.Template.Spec.Containers {
		if c := &d.Spec.Template.Spec.Containers[i]; c.Name == program {
			return d, c
		}
	}
	t.Fatalf("%s: Deployment %s has no container %s", b.overlay, program, program)
	return nil, nil
}

// envOf is the container's environment by name: its literal values, "secret:<name>/<key>"
// for a Secret's key, and the keys of the ConfigMaps it takes whole.
func (b *k8sBuild) envOf(t *testing.T, c *corev1.Container) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef == nil {
			t.Errorf("%s: %s takes its environment from something other than a ConfigMap: %+v", b.overlay, c.Name, from)
			continue
		}
		cm, ok := b.configMaps[from.ConfigMapRef.Name]
		if !ok {
			t.Errorf("%s: %s reads ConfigMap %s, which the overlay does not make", b.overlay, c.Name, from.ConfigMapRef.Name)
			continue
		}
		maps.Copy(out, cm.Data)
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			out[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			out[e.Name] = "secret:" + e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
		default:
			out[e.Name] = "(from elsewhere)"
		}
	}
	return out
}

// portOf resolves a probe's or Service's port (a number, or a container port's name).
func portOf(c *corev1.Container, p intstr.IntOrString) int32 {
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	return -1
}

func addrPort(addr string) int32 {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return -1
	}
	n, _ := strconv.Atoi(port)
	return int32(n)
}

// Every program has its Deployment, Service, autoscaler, disruption budget and network
// policy in both overlays, selecting its own pods.
func TestK8sEveryProgramHasItsObjects(t *testing.T) {
	t.Parallel()
	for _, o := range k8sOverlays {
		b := overlay(t, o)
		for _, p := range programlist.All {
			d, c := b.container(t, p.Name)
			pods := d.Spec.Template.Labels
			if d.Spec.Selector == nil {
				t.Errorf("%s: Deployment %s has no selector, want one of its own pods %v", o, p.Name, pods)
			} else if !selects(d.Spec.Selector.MatchLabels, pods) {
				t.Errorf("%s: Deployment %s selects %v, which are not its own pods %v", o, p.Name, d.Spec.Selector.MatchLabels, pods)
			}
			if d.Spec.Replicas != nil {
				t.Errorf("%s: Deployment %s sets replicas (%d): its autoscaler owns the count, and every apply would reset it", o, p.Name, *d.Spec.Replicas)
			}
			if want := "ghcr.io/bazaar-shop/" + p.Name + ":"; !strings.HasPrefix(c.Image, want) ||
				strings.HasSuffix(c.Image, ":latest") || len(c.Image) == len(want) {
				t.Errorf("%s: %s runs image %q, want %s<pinned tag>", o, p.Name, c.Image, want)
			}

			s, ok := b.services[p.Name]
			if !ok {
				t.Errorf("%s: no Service %s", o, p.Name)
			} else if !selects(s.Spec.Selector, pods) {
				t.Errorf("%s: Service %s does not select %s's pods", o, p.Name, p.Name)
			}

			h, ok := b.hpas[p.Name]
			switch {
			case !ok:
				t.Errorf("%s: no HorizontalPodAutoscaler %s", o, p.Name)
			case h.Spec.ScaleTargetRef != (autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: p.Name}):
				t.Errorf("%s: autoscaler %s scales %+v", o, p.Name, h.Spec.ScaleTargetRef)
			case h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 1 || h.Spec.MaxReplicas < *h.Spec.MinReplicas || len(h.Spec.Metrics) == 0:
				t.Errorf("%s: autoscaler %s: min %v max %d metrics %d", o, p.Name, h.Spec.MinReplicas, h.Spec.MaxReplicas, len(h.Spec.Metrics))
			case o == "prod" && *h.Spec.MinReplicas < 2:
				t.Errorf("prod: autoscaler %s keeps %d replica: one pod is one failure from an outage", p.Name, *h.Spec.MinReplicas)
			}

			pdb, ok := b.pdbs[p.Name]
			switch {
			case !ok:
				t.Errorf("%s: no PodDisruptionBudget %s", o, p.Name)
			case pdb.Spec.Selector == nil || !selects(pdb.Spec.Selector.MatchLabels, pods) || len(pdb.Spec.Selector.MatchExpressions) != 0:
				t.Errorf("%s: PodDisruptionBudget %s does not select %s's pods", o, p.Name, p.Name)
			case pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() < 1 || pdb.Spec.MinAvailable != nil:
				// minAvailable: 1 with one replica would block every node drain.
				t.Errorf("%s: PodDisruptionBudget %s: want maxUnavailable of 1 or more, so that a drain can always go on", o, p.Name)
			}

			np, ok := b.policies[p.Name]
			if !ok {
				t.Errorf("%s: no NetworkPolicy %s", o, p.Name)
			} else {
				if !selects(np.Spec.PodSelector.MatchLabels, pods) {
					t.Errorf("%s: NetworkPolicy %s selects %v, want %s's pods %v", o, p.Name, np.Spec.PodSelector.MatchLabels, p.Name, pods)
				}
				if len(np.Spec.PodSelector.MatchExpressions) != 0 {
					t.Errorf("%s: NetworkPolicy %s selects with expressions %+v, want labels alone", o, p.Name, np.Spec.PodSelector.MatchExpressions)
				}
				for _, typ := range []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress} {
					if !slices.Contains(np.Spec.PolicyTypes, typ) {
						t.Errorf("%s: NetworkPolicy %s has policy types %v, want %s among them", o, p.Name, np.Spec.PolicyTypes, typ)
					}
				}
			}
		}
	}
}

// selects reports whether a non-empty selector matches labels.
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// The probes ask the listener the program serves them on (a service's internal one, the
// gateway's operations one), the ports are the ones its environment makes it listen
// on, and its Service and its callers' URLs point at them.
func TestK8sProbesAndPortsMatchTheListeners(t *testing.T) {
	t.Parallel()
	for _, o := range k8sOverlays {
		b := overlay(t, o)
		for _, p := range programlist.All {
			_, c := b.container(t, p.Name)
			env := b.envOf(t, c)
			probeVar := "INTERNAL_ADDR"
			if !p.Service() {
				probeVar = "OPS_ADDR"
			}
			public, probePort := addrPort(env["HTTP_ADDR"]), addrPort(env[probeVar])
			if public != 8080 || probePort != 9090 {
				t.Errorf("%s: %s HTTP_ADDR=%q %s=%q, want :8080 and :9090", o, p.Name, env["HTTP_ADDR"], probeVar, env[probeVar])
			}
			var declared []int32
			for _, cp := range c.Ports {
				declared = append(declared, cp.ContainerPort)
			}
			if !slices.Contains(declared, public) || !slices.Contains(declared, probePort) {
				t.Errorf("%s: %s declares ports %v, want %d and %d", o, p.Name, declared, public, probePort)
			}
			for _, probe := range []struct {
				name, path string
				p          *corev1.Probe
			}{
				{"startup", "/healthz", c.StartupProbe},
				{"liveness", "/healthz", c.LivenessProbe},
				{"readiness", "/readyz", c.ReadinessProbe},
			} {
				if probe.p == nil || probe.p.HTTPGet == nil {
					t.Errorf("%s: %s has no HTTP %s probe", o, p.Name, probe.name)
					continue
				}
				g := probe.p.HTTPGet
				if g.Path != probe.path || portOf(c, g.Port) != probePort {
					t.Errorf("%s: %s %s probe asks %s on port %s (%d), want %s on %d (%s)",
						o, p.Name, probe.name, g.Path, g.Port.String(), portOf(c, g.Port), probe.path, probePort, probeVar)
				}
			}
			// Start-up may wait out STARTUP_TIMEOUT (30s) for Postgres, then migrate.
			if s := c.StartupProbe; s != nil && s.PeriodSeconds*s.FailureThreshold < 60 {
				t.Errorf("%s: %s's start-up probe gives up after %ds", o, p.Name, s.PeriodSeconds*s.FailureThreshold)
			}

			svc, ok := b.services[p.Name]
			if !ok {
				continue
			}
			ports := map[string]int32{}
			for _, sp := range svc.Spec.Ports {
				ports[sp.Name] = sp.Port
				if sp.Port != portOf(c, sp.TargetPort) {
					t.Errorf("%s: Service %s port %s (%d) goes to container port %d: the Service port and the container's should be the same",
						o, p.Name, sp.Name, sp.Port, portOf(c, sp.TargetPort))
				}
			}
			if ports["http"] != public {
				t.Errorf("%s: Service %s has no port http on %d: %v", o, p.Name, public, ports)
			}
			if p.Service() {
				// Every instance visible to the gateway's and orders' balancers.
				if svc.Spec.ClusterIP != corev1.ClusterIPNone {
					t.Errorf("%s: Service %s is not headless (clusterIP %q): the balancers would see one address", o, p.Name, svc.Spec.ClusterIP)
				}
				if ports["internal"] != probePort {
					t.Errorf("%s: Service %s has no port internal on %d: %v", o, p.Name, probePort, ports)
				}
			}
		}

		_, gw := b.container(t, programlist.Gateway)
		gwEnv := b.envOf(t, gw)
		for _, name := range programlist.Services() {
			v := strings.ToUpper(name)
			if got, want := gwEnv[v+"_URL"], "http://"+name+":8080"; got != want {
				t.Errorf("%s: gateway %s_URL = %q, want %q", o, v, got, want)
			}
			if got, want := gwEnv[v+"_INTERNAL_URL"], "http://"+name+":9090"; got != want {
				t.Errorf("%s: gateway %s_INTERNAL_URL = %q, want %q", o, v, got, want)
			}
		}
		_, orders := b.container(t, "orders")
		ordersEnv := b.envOf(t, orders)
		for _, callee := range []string{"inventory", "payments"} {
			v := strings.ToUpper(callee) + "_URL"
			if got, want := ordersEnv[v], "http://"+callee+":9090"; got != want {
				t.Errorf("%s: orders %s = %q, want %q: the saga calls the internal listeners", o, v, got, want)
			}
		}
		for _, p := range programlist.All {
			_, c := b.container(t, p.Name)
			if got := b.envOf(t, c)["JWKS_URL"]; got != "http://users:8080/.well-known/jwks.json" {
				t.Errorf("%s: %s JWKS_URL = %q", o, p.Name, got)
			}
		}
	}
}

// Every container of every workload has CPU and memory requests and limits.
func TestK8sResourcesAreRequestedAndLimited(t *testing.T) {
	t.Parallel()
	for _, o := range k8sOverlays {
		b := overlay(t, o)
		for name, spec := range b.podSpecs() {
			for _, c := range spec.Containers {
				r := c.Resources
				for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
					req, hasReq := r.Requests[res]
					lim, hasLim := r.Limits[res]
					if !hasReq {
						t.Errorf("%s: %s container %s: no %s request, want one", o, name, c.Name, res)
					} else if req.IsZero() {
						t.Errorf("%s: %s container %s: %s request 0, want above 0", o, name, c.Name, res)
					}
					if !hasLim {
						t.Errorf("%s: %s container %s: no %s limit, want one", o, name, c.Name, res)
					} else if lim.Cmp(req) < 0 {
						t.Errorf("%s: %s container %s: %s limit %v below the request %v, want at least the request", o, name, c.Name, res, lim.String(), req.String())
					}
				}
			}
		}
	}
}

// podSpecs are the pod templates of every Deployment and StatefulSet, by name.
func (b *k8sBuild) podSpecs() map[string]corev1.PodSpec {
	out := map[string]corev1.PodSpec{}
	for n, d := range b.deployments {
		out["Deployment "+n] = d.Spec.Template.Spec
	}
	for n, s := range b.statefulSets {
		out["StatefulSet "+n] = s.Spec.Template.Spec
	}
	return out
}

// Every pod runs as a user other than root, on a read-only root, with no privilege to
// gain, no capability, the runtime's seccomp profile and no API token.
func TestK8sPodsAreLockedDown(t *testing.T) {
	t.Parallel()
	for _, o := range k8sOverlays {
		b := overlay(t, o)
		for name, spec := range b.podSpecs() {
			pod := spec.SecurityContext
			if pod == nil {
				pod = &corev1.PodSecurityContext{}
			}
			if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
				t.Errorf("%s: %s mounts a service account token; nothing of Bazaar's calls the Kubernetes API", o, name)
			}
			for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
				sc := c.SecurityContext
				if sc == nil {
					t.Errorf("%s: %s container %s has no securityContext", o, name, c.Name)
					continue
				}
				nonRoot := sc.RunAsNonRoot
				if nonRoot == nil {
					nonRoot = pod.RunAsNonRoot
				}
				user := sc.RunAsUser
				if user == nil {
					user = pod.RunAsUser
				}
				seccomp := sc.SeccompProfile
				if seccomp == nil {
					seccomp = pod.SeccompProfile
				}
				switch {
				case nonRoot == nil || !*nonRoot:
					t.Errorf("%s: %s container %s: runAsNonRoot is not true", o, name, c.Name)
				case user == nil || *user == 0:
					// The images name their user (distroless "nonroot"): the kubelet
					// refuses to start a runAsNonRoot pod whose user is not a number.
					t.Errorf("%s: %s container %s: runAsUser %v, want a number other than 0", o, name, c.Name, user)
				}
				if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
					t.Errorf("%s: %s container %s: readOnlyRootFilesystem is not true", o, name, c.Name)
				}
				if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
					t.Errorf("%s: %s container %s: allowPrivilegeEscalation is not false", o, name, c.Name)
				}
				if sc.Privileged != nil && *sc.Privileged {
					t.Errorf("%s: %s container %s is privileged", o, name, c.Name)
				}
				if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
					t.Errorf("%s: %s container %s: capabilities %+v, want drop [ALL] and no add", o, name, c.Name, sc.Capabilities)
				}
				if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
					t.Errorf("%s: %s container %s: seccompProfile %+v, want RuntimeDefault", o, name, c.Name, seccomp)
				}
			}
		}
	}
}

// What a program does between SIGTERM and its exit, at the longest, read from the code
// where the code says it (pkg/httpserver's ShutdownTimeout) and written here where it
// does not export it.
const (
	// pkg/tasks: a worker's default ShutdownTimeout (Config.ShutdownTimeout), waited
	// for alongside the listeners' shutdown.
	tasksShutdown = 20 * time.Second
	// pkg/platform Close: flushing the traces, after the listeners.
	traceFlush = 5 * time.Second
)

// The grace period outlasts the preStop pause and the program's whole drain, so that
// the kubelet never kills a program still finishing requests or tasks.
func TestK8sTerminationGraceOutlastsTheDrain(t *testing.T) {
	t.Parallel()
	httpShutdown := httpserver.New(":0", http.NotFoundHandler(), slog.New(slog.DiscardHandler)).ShutdownTimeout
	if httpShutdown <= 0 {
		t.Fatalf("pkg/httpserver's ShutdownTimeout is %v", httpShutdown)
	}
	for _, o := range k8sOverlays {
		b := overlay(t, o)
		for _, p := range programlist.All {
			d, c := b.container(t, p.Name)
			var preStop time.Duration
			if l := c.Lifecycle; l != nil && l.PreStop != nil {
				if l.PreStop.Sleep == nil {
					t.Errorf("%s: %s's preStop is not a sleep: the image has no shell to run anything else", o, p.Name)
				} else {
					preStop = time.Duration(l.PreStop.Sleep.Seconds) * time.Second
				}
			}
			// pkg/platform Serve: the two listeners and the task worker drain at
			// the same time; the gateway runs no task worker.
			drain := preStop + max(httpShutdown, tasksShutdown) + traceFlush
			if !p.Service() {
				drain = preStop + httpShutdown + traceFlush
			}
			grace := time.Duration(-1)
			if g := d.Spec.Template.Spec.TerminationGracePeriodSeconds; g != nil {
				grace = time.Duration(*g) * time.Second
			}
			if grace <= drain {
				t.Errorf("%s: %s terminationGracePeriodSeconds %v, want more than its drain, %v", o, p.Name, grace, drain)
			}
		}
	}
}

// goRuntimeEnv are read by the Go runtime of every program, not through pkg/config.
var goRuntimeEnv = []string{"GOGC", "GOMEMLIMIT", "GOMAXPROCS"}

// Every variable the manifests give a program is one the program reads: a misspelt or
// stale name would be ignored without a word, its default taken instead.
func TestK8sEnvironmentIsWhatTheProgramsRead(t *testing.T) {
	t.Parallel()
	reads := map[string]map[string]bool{}
	secrets := map[string]bool{} // names read by SecretOrFile, which must never be literal
	for _, p := range programlist.All {
		names, secretNames := programEnvNames(t, p.Dir)
		names["GOMEMLIMIT"], names["GOMAXPROCS"], names["GOGC"] = true, true, true
		reads[p.Name] = names
		maps.Copy(secrets, secretNames)
	}
	// The scan must see what is known to be read, and not what is known not to be.
	for program, want := range map[string][]string{
		"users":   {"HTTP_ADDR", "DATABASE_URL", "SIGNING_KEK_FILE", "BOOTSTRAP_ADMIN_PASSWORD_FILE", "OTEL_EXPORTER_OTLP_ENDPOINT", "TRUSTED_PROXIES"},
		"orders":  {"INVENTORY_URL", "PAYMENTS_URL", "SERVICE_KEY_FILE", "OTEL_SDK_DISABLED"},
		"gateway": {"OPS_ADDR", "USERS_URL", "NOTIFICATIONS_INTERNAL_URL", "OTEL_TRACES_EXPORTER", "RATE_EDGE_IP"},
	} {
		for _, v := range want {
			if !reads[program][v] {
				t.Errorf("the scan of %s's sources misses %s", program, v)
			}
		}
	}
	for program, not := range map[string][]string{
		"gateway":       {"DATABASE_URL", "INTERNAL_ADDR", "SERVICE_KEY_FILE", "SIGNING_KEK"},
		"notifications": {"INVENTORY_URL", "SIGNING_KEK"},
		"users":         {"SMTP_ADDR", "OPS_ADDR"},
	} {
		for _, v := range not {
			if reads[program][v] {
				t.Errorf("the scan says %s reads %s, which it does not", program, v)
			}
		}
	}
	for _, name := range []string{"SIGNING_KEK", "BOOTSTRAP_ADMIN_PASSWORD"} {
		if !secrets[name] {
			t.Errorf("the scan misses users' secret %s: %v", name, secrets)
		}
	}

	for _, o := range k8sOverlays {
		b := overlay(t, o)
		for _, p := range programlist.All {
			_, c := b.container(t, p.Name)
			env := b.envOf(t, c)
			for _, name := range slices.Sorted(maps.Keys(env)) {
				if !reads[p.Name][name] {
					t.Errorf("%s: %s is given %s, which it does not read", o, p.Name, name)
				}
				if secrets[name] && !strings.HasPrefix(env[name], "secret:") {
					t.Errorf("%s: %s is given %s as a plain value: hand it over as %s_FILE, from a Secret", o, p.Name, name, name)
				}
			}
			if _, set := env["CONSUMER_NAME"]; set {
				t.Errorf("%s: %s sets CONSUMER_NAME: every replica would share it (each takes its pod's name)", o, p.Name)
			}
			if p.Service() && !strings.HasPrefix(env["DATABASE_URL"], "secret:") {
				t.Errorf("%s: %s's DATABASE_URL is %q, not from a Secret", o, p.Name, env["DATABASE_URL"])
			}
			if limit := c.Resources.Limits[corev1.ResourceMemory]; env["GOMEMLIMIT"] != "" {
				soft, err := parseGoMemLimit(env["GOMEMLIMIT"])
				if err != nil || soft >= limit.Value() {
					t.Errorf("%s: %s GOMEMLIMIT=%s (%v), want below its memory limit %s", o, p.Name, env["GOMEMLIMIT"], err, limit.String())
				}
			}
		}
		_, users := b.container(t, "users")
		ue := b.envOf(t, users)
		for _, v := range []string{"SIGNING_KEK_FILE", "BOOTSTRAP_ADMIN_PASSWORD_FILE", "BOOTSTRAP_ADMIN_EMAIL"} {
			if ue[v] == "" {
				t.Errorf("%s: users has no %s", o, v)
			}
		}
	}
}

// parseGoMemLimit reads GOMEMLIMIT's form: bytes, or a number with B, KiB, MiB, GiB or TiB.
func parseGoMemLimit(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseInt(n, 10, 64)
			return v * u.mult, err
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

// The config.Env methods that read a variable named by their first argument.
var envMethods = map[string]bool{
	"String": true, "Secret": true, "SecretOrFile": true, "OneOf": true, "Int": true, "Duration": true,
	"Bool": true, "Addr": true, "URL": true, "OptionalURL": true, "KeyValues": true, "Valid": true,
}

var envName = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)

// programEnvNames are the variables the program in dir reads, found in its Go sources
// rather than kept in a list here: every read goes through a pkg/config Env, as
// env.<Method>("NAME", ...) (env.Valid("USERS_URL", def, balancer.ValidURLs)), or a
// helper handed the Env and the name. The scan takes the program's own package whole, and from the
// module's other packages the functions it calls, and those they call, so that
// pkg/platform's LoadConfig and pkg/telemetry's OTEL_ variables count for the services
// that call them and not for the gateway, which runs in pkg/platform but reads its own.
// A name built as <something> + "_SUFFIX" is a per-service variable (the gateway's
// USERS_INTERNAL_URL …): the scan gives it every service's prefix. secret are the names
// read with SecretOrFile, which also read NAME_FILE.
func programEnvNames(t *testing.T, dir string) (names, secret map[string]bool) {
	t.Helper()
	const module = "github.com/bazaar-shop/bazaar/"
	names, secret = map[string]bool{}, map[string]bool{}
	type fn struct{ dir, name string }
	seen := map[fn]bool{}
	parsed := map[string][]*ast.File{}
	files := func(d string) []*ast.File {
		if f, ok := parsed[d]; ok {
			return f
		}
		paths, err := filepath.Glob(filepath.Join("..", d, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		var out []*ast.File
		for _, p := range paths {
			if strings.HasSuffix(p, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, f)
		}
		parsed[d] = out
		return out
	}
	var queue []fn
	// scan notes the names read in node, and queues the module's functions it calls.
	scan := func(node ast.Node, f *ast.File) {
		imports := map[string]string{}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if !strings.HasPrefix(p, module) {
				continue
			}
			alias := path.Base(p)
			if imp.Name != nil {
				alias = imp.Name.Name
			}
			imports[alias] = strings.TrimPrefix(p, module)
		}
		ast.Inspect(node, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, isSel := call.Fun.(*ast.SelectorExpr)
			if isSel {
				if x, ok := sel.X.(*ast.Ident); ok && imports[x.Name] != "" {
					queue = append(queue, fn{imports[x.Name], sel.Sel.Name})
				}
			}
			for i, arg := range call.Args {
				// The name is the first argument of an Env method, or the one after
				// the Env handed to a helper.
				byMethod := i == 0 && isSel && envMethods[sel.Sel.Name]
				byHelper := i > 0 && isIdent(call.Args[i-1], "env")
				if !byMethod && !byHelper {
					continue
				}
				var found []string
				switch a := arg.(type) {
				case *ast.BasicLit:
					if s, err := strconv.Unquote(a.Value); err == nil && envName.MatchString(s) {
						found = append(found, s)
					}
				case *ast.BinaryExpr:
					if lit, ok := a.Y.(*ast.BasicLit); ok && a.Op == token.ADD {
						if suffix, err := strconv.Unquote(lit.Value); err == nil && strings.HasPrefix(suffix, "_") {
							for _, s := range programlist.Services() {
								found = append(found, strings.ToUpper(s)+suffix)
							}
						}
					}
				}
				for _, name := range found {
					names[name] = true
					if byMethod && sel.Sel.Name == "SecretOrFile" {
						names[name+"_FILE"] = true
						secret[name] = true
					}
				}
			}
			return true
		})
	}
	for _, f := range files(dir) {
		scan(f, f)
	}
	for len(queue) > 0 {
		next := queue[0]
		queue = queue[1:]
		if seen[next] {
			continue
		}
		seen[next] = true
		for _, f := range files(next.dir) {
			for _, d := range f.Decls {
				if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv == nil && fd.Name.Name == next.name {
					scan(fd, f)
				}
			}
		}
	}
	if len(names) < 5 {
		t.Fatalf("the scan of %s found only %v", dir, names)
	}
	return names, secret
}

func isIdent(e ast.Expr, name string) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == name
}

// Each program's NetworkPolicy lets in exactly the callers it has, on the ports they
// call, and lets it call exactly what it needs.
func TestK8sNetworkPoliciesAllowExactlyTheCallers(t *testing.T) {
	t.Parallel()
	// <port>/<protocol> <peer>: a program's name for its pods, "monitoring" for the
	// namespace labelled for Prometheus, "any" for anywhere.
	ingress := map[string][]string{
		"users": {
			// The other services fetch users' JWKS from its public listener.
			"8080/TCP gateway", "8080/TCP inventory", "8080/TCP payments", "8080/TCP orders", "8080/TCP notifications",
			"9090/TCP gateway", "9090/TCP monitoring",
		},
		"inventory":     {"8080/TCP gateway", "9090/TCP gateway", "9090/TCP orders", "9090/TCP monitoring"},
		"payments":      {"8080/TCP gateway", "9090/TCP gateway", "9090/TCP orders", "9090/TCP monitoring"},
		"orders":        {"8080/TCP gateway", "9090/TCP gateway", "9090/TCP monitoring"},
		"notifications": {"8080/TCP gateway", "9090/TCP gateway", "9090/TCP monitoring"},
		"gateway":       {"8080/TCP any", "9090/TCP monitoring"},
	}
	smtp := map[string]string{"dev": "1025/TCP mailpit", "prod": "587/TCP cidr:0.0.0.0/0"}
	for _, o := range k8sOverlays {
		b := overlay(t, o)
		for _, p := range programlist.All {
			np, ok := b.policies[p.Name]
			if !ok {
				t.Errorf("%s: no NetworkPolicy %s", o, p.Name)
				continue
			}
			egress := []string{"53/UDP any", "53/TCP any", "6379/TCP redis"}
			if p.Service() {
				db := "postgres"
				if o == "prod" {
					db = "cnpg:bazaar-" + p.Name + "-db"
				}
				egress = append(egress, "5432/TCP "+db)
				if p.Name != "users" {
					egress = append(egress, "8080/TCP users")
				}
			}
			switch p.Name {
			case "orders":
				egress = append(egress, "9090/TCP inventory", "9090/TCP payments")
			case "notifications":
				egress = append(egress, smtp[o])
			case programlist.Gateway:
				for _, s := range programlist.Services() {
					egress = append(egress, "8080/TCP "+s, "9090/TCP "+s)
				}
			}
			var gotIn, gotOut []string
			for _, r := range np.Spec.Ingress {
				gotIn = append(gotIn, policyRules(r.Ports, r.From)...)
			}
			for _, r := range np.Spec.Egress {
				gotOut = append(gotOut, policyRules(r.Ports, r.To)...)
			}
			if d, m := setDiff(gotIn, ingress[p.Name]); len(d)+len(m) > 0 {
				t.Errorf("%s: %s's ingress lets in %v too many and %v too few", o, p.Name, d, m)
			}
			if d, m := setDiff(gotOut, egress); len(d)+len(m) > 0 {
				t.Errorf("%s: %s's egress allows %v too many and %v too few", o, p.Name, d, m)
			}
		}

		// The ports allowed are the ones the programs are configured with.
		_, n := b.container(t, "notifications")
		ne := b.envOf(t, n)
		if port := strconv.Itoa(int(addrPort(ne["SMTP_ADDR"]))); !strings.HasPrefix(smtp[o], port+"/") {
			t.Errorf("%s: notifications sends to SMTP_ADDR=%q, and its egress allows %s", o, ne["SMTP_ADDR"], smtp[o])
		}
		if u, err := url.Parse(ne["REDIS_URL"]); err != nil || u.Host != "redis:6379" {
			t.Errorf("%s: REDIS_URL = %q, want the redis Service on 6379", o, ne["REDIS_URL"])
		}
	}
}

// policyRules spells out a rule as "<port>/<protocol> <peer>" strings.
func policyRules(ports []networkingv1.NetworkPolicyPort, peers []networkingv1.NetworkPolicyPeer) []string {
	var portNames, peerNames []string
	for _, p := range ports {
		proto := corev1.ProtocolTCP
		if p.Protocol != nil {
			proto = *p.Protocol
		}
		port := "every-port"
		if p.Port != nil {
			port = p.Port.String()
		}
		if p.EndPort != nil {
			port += "-" + strconv.Itoa(int(*p.EndPort))
		}
		portNames = append(portNames, port+"/"+string(proto))
	}
	if len(portNames) == 0 {
		portNames = []string{"every-port"}
	}
	for _, p := range peers {
		peerNames = append(peerNames, peerName(p))
	}
	if len(peerNames) == 0 {
		peerNames = []string{"any"}
	}
	var out []string
	for _, port := range portNames {
		for _, peer := range peerNames {
			out = append(out, port+" "+peer)
		}
	}
	return out
}

func peerName(p networkingv1.NetworkPolicyPeer) string {
	raw, _ := json.Marshal(p)
	switch {
	case p.IPBlock != nil && p.PodSelector == nil && p.NamespaceSelector == nil && len(p.IPBlock.Except) == 0:
		return "cidr:" + p.IPBlock.CIDR
	case p.NamespaceSelector != nil && p.PodSelector == nil && p.IPBlock == nil &&
		len(p.NamespaceSelector.MatchExpressions) == 0 &&
		maps.Equal(p.NamespaceSelector.MatchLabels, map[string]string{"bazaar/monitoring": "true"}):
		return "monitoring"
	case p.PodSelector != nil && p.NamespaceSelector == nil && p.IPBlock == nil &&
		len(p.PodSelector.MatchExpressions) == 0 && len(p.PodSelector.MatchLabels) == 1:
		if v, ok := p.PodSelector.MatchLabels["app.kubernetes.io/name"]; ok {
			return v
		}
		if v, ok := p.PodSelector.MatchLabels["cnpg.io/cluster"]; ok {
			return "cnpg:" + v
		}
	}
	return "unrecognised peer " + string(raw)
}

// setDiff is what got has beyond want, and what it lacks.
func setDiff(got, want []string) (extra, missing []string) {
	for _, g := range got {
		if !slices.Contains(want, g) {
			extra = append(extra, g)
		}
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			missing = append(missing, w)
		}
	}
	return extra, missing
}

// No secret is in the repository: the overlays make no Secret (the operator creates
// them from `bazaarctl secrets init`'s files, or CloudNativePG does), and no file under
// k8s/ holds one.
func TestK8sNoSecretValueIsInTheRepository(t *testing.T) {
	t.Parallel()
	for _, o := range k8sOverlays {
		b := overlay(t, o)
		for name := range b.secrets {
			t.Errorf("%s: the overlay makes Secret %s: its value would be in the repository", o, name)
		}
		for name, cm := range b.configMaps {
			for k, v := range cm.Data {
				if u, err := url.Parse(v); err == nil && u.User != nil {
					if _, has := u.User.Password(); has {
						t.Errorf("%s: ConfigMap %s's %s holds a password", o, name, k)
					}
				}
			}
		}
	}
	err := filepath.WalkDir("k8s", func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p == filepath.Join("k8s", "secrets") {
			return filepath.SkipDir // git-ignored: where an operator may keep bazaarctl's files
		}
		if d.IsDir() {
			return nil
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if regexp.MustCompile(`(?m)^\s*kind:\s*Secret\s*$|secretGenerator|BEGIN [A-Z ]*PRIVATE KEY`).Match(raw) {
			t.Errorf("%s holds a Secret, a secret generator or a key", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Each service mounts its own key and the public keys, as whole volumes (a subPath
// mount is never refreshed, and a key rotation needs the refresh), where its
// SERVICE_KEY_FILE and SERVICE_TRUST_DIR say; users mounts its KEK and the admin's
// password; the gateway mounts nothing secret.
func TestK8sSecretsAreMountedWhereTheProgramsReadThem(t *testing.T) {
	t.Parallel()
	for _, o := range k8sOverlays {
		b := overlay(t, o)
		for _, p := range programlist.All {
			d, c := b.container(t, p.Name)
			env := b.envOf(t, c)
			volumes := map[string]corev1.Volume{}
			for _, v := range d.Spec.Template.Spec.Volumes {
				volumes[v.Name] = v
			}
			// mounted is the volume mounted at dir, with dir's mount.
			mounted := func(dir string) (corev1.Volume, bool) {
				for _, m := range c.VolumeMounts {
					if m.MountPath == dir {
						if m.SubPath != "" {
							t.Errorf("%s: %s mounts %s with subPath %q, want none", o, p.Name, dir, m.SubPath)
						}
						if !m.ReadOnly {
							t.Errorf("%s: %s mounts %s writable, want readOnly", o, p.Name, dir)
						}
						return volumes[m.Name], true
					}
				}
				return corev1.Volume{}, false
			}
			if !p.Service() {
				for _, v := range volumes {
					if v.Secret != nil {
						t.Errorf("%s: the gateway mounts Secret %s: it needs none", o, v.Secret.SecretName)
					}
				}
				continue
			}
			key, ok := mounted(filepath.Dir(env["SERVICE_KEY_FILE"]))
			if !ok || key.Secret == nil || key.Secret.SecretName != "bazaar-"+p.Name+"-key" ||
				filepath.Base(env["SERVICE_KEY_FILE"]) != "service.key" {
				t.Errorf("%s: %s's SERVICE_KEY_FILE %q is not service.key in its own Secret bazaar-%s-key: %+v", o, p.Name, env["SERVICE_KEY_FILE"], p.Name, key)
			} else if m := key.Secret.DefaultMode; m == nil || *m&0o007 != 0 {
				t.Errorf("%s: %s's key is readable by others (defaultMode %s)", o, p.Name, fileMode(m))
			}
			trust, ok := mounted(env["SERVICE_TRUST_DIR"])
			if !ok || trust.ConfigMap == nil || trust.ConfigMap.Name != "bazaar-trust" {
				t.Errorf("%s: %s's SERVICE_TRUST_DIR %q is not the bazaar-trust ConfigMap: %+v", o, p.Name, env["SERVICE_TRUST_DIR"], trust)
			}
			for _, v := range volumes {
				if v.Secret != nil && strings.HasSuffix(v.Secret.SecretName, "-key") && v.Secret.SecretName != "bazaar-"+p.Name+"-key" {
					t.Errorf("%s: %s mounts another service's key, %s", o, p.Name, v.Secret.SecretName)
				}
			}
			if p.Name == "users" {
				for _, f := range []string{"SIGNING_KEK_FILE", "BOOTSTRAP_ADMIN_PASSWORD_FILE"} {
					v, ok := mounted(filepath.Dir(env[f]))
					if !ok || v.Secret == nil || v.Secret.SecretName != "bazaar-users" {
						t.Errorf("%s: users' %s %q is not in the bazaar-users Secret", o, f, env[f])
					}
				}
			}
		}
	}
}

// The Secrets and ConfigMaps the overlays use but do not make are what
// k8s/create-secrets.sh creates, with the keys they read (run here with a kubectl that
// only writes down what it is asked), apart from those CloudNativePG makes.
func TestK8sCreateSecretsMakesWhatTheOverlaysNeed(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	for _, o := range k8sOverlays {
		b := overlay(t, o)
		// What the overlay reads: name → keys ("" for a whole volume).
		needs := map[string][]string{}
		for _, spec := range b.podSpecs() {
			for _, v := range spec.Volumes {
				switch {
				case v.Secret != nil:
					needs["secret "+v.Secret.SecretName] = append(needs["secret "+v.Secret.SecretName], "")
				case v.ConfigMap != nil:
					if _, made := b.configMaps[v.ConfigMap.Name]; !made {
						needs["configmap "+v.ConfigMap.Name] = append(needs["configmap "+v.ConfigMap.Name], "")
					}
				}
			}
			for _, c := range spec.Containers {
				for _, e := range c.Env {
					if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
						r := e.ValueFrom.SecretKeyRef
						needs["secret "+r.Name] = append(needs["secret "+r.Name], r.Key)
					}
				}
			}
		}
		for name := range b.clusters {
			delete(needs, "secret "+name+"-app") // CloudNativePG's
		}

		dir := t.TempDir()
		secrets := filepath.Join(dir, "secrets")
		for _, f := range []string{"users/signing-kek", "users/admin-password", "keys/public/users.pub"} {
			writeFile(t, filepath.Join(secrets, f), "x")
		}
		for _, s := range programlist.Services() {
			writeFile(t, filepath.Join(secrets, "keys", s, "service.key"), "x")
			writeFile(t, filepath.Join(secrets, "keys", "public", s+".pub"), "x")
		}
		log := filepath.Join(dir, "kubectl.log")
		// Records each call; "get" finds nothing, so everything is created.
		writeFile(t, filepath.Join(dir, "bin", "kubectl"), "#!/bin/bash\necho \"$*\" >> \""+log+"\"\n[ \"$1\" != get ] && [ \"$3\" != get ]\n")
		if err := os.Chmod(filepath.Join(dir, "bin", "kubectl"), 0o755); err != nil {
			t.Fatal(err)
		}
		args := []string{"k8s/create-secrets.sh", "-n", "bazaar-" + o, "-dir", secrets}
		if o == "dev" {
			args = append(args, "-dev")
		}
		cmd := exec.Command("bash", args...)
		cmd.Env = append(os.Environ(), "PATH="+filepath.Join(dir, "bin")+string(os.PathListSeparator)+os.Getenv("PATH"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: create-secrets.sh: %v\n%s", o, err, out)
		}
		calls, err := os.ReadFile(log)
		if err != nil {
			t.Fatal(err)
		}
		made := map[string][]string{} // "secret NAME" → keys
		createRE := regexp.MustCompile(`create (secret generic|configmap) (\S+)(.*)`)
		keyRE := regexp.MustCompile(`--from-(?:literal|file)=([^=\s]+)=`)
		for _, line := range strings.Split(string(calls), "\n") {
			m := createRE.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			kind := strings.TrimSuffix(m[1], " generic")
			for _, k := range keyRE.FindAllStringSubmatch(m[3], -1) {
				made[kind+" "+m[2]] = append(made[kind+" "+m[2]], k[1])
			}
			if strings.Contains(m[3], "--from-file="+filepath.Join(secrets, "keys", "public")) {
				made[kind+" "+m[2]] = append(made[kind+" "+m[2]], "(a directory)")
			}
		}
		for obj, keys := range needs {
			have, ok := made[obj]
			if !ok {
				t.Errorf("%s: the overlay needs %s, which create-secrets.sh does not create", o, obj)
				continue
			}
			for _, k := range keys {
				if k != "" && !slices.Contains(have, k) {
					t.Errorf("%s: the overlay reads key %s of %s; create-secrets.sh gives it %v", o, k, obj, have)
				}
			}
		}
		for obj := range made {
			if _, ok := needs[obj]; !ok {
				t.Errorf("%s: create-secrets.sh creates %s, which the overlay does not use", o, obj)
			}
		}
	}
}

func fileMode(m *int32) string {
	if m == nil {
		return "unset, 0644"
	}
	return fmt.Sprintf("%#o", *m)
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Prod has one CloudNativePG cluster per service database, each service reading the
// Secret its cluster makes; dev has one Postgres that creates every service's role and
// database with the passwords of the same Secrets.
func TestK8sEachServiceHasItsOwnDatabase(t *testing.T) {
	t.Parallel()
	prod := overlay(t, "prod")
	for _, s := range programlist.Services() {
		name, db := "bazaar-"+s+"-db", "bazaar_"+s
		c, ok := prod.clusters[name]
		if !ok {
			t.Errorf("prod: no CloudNativePG Cluster %s", name)
			continue
		}
		instances, _ := dig(c, "spec", "instances").(float64)
		if instances < 2 {
			t.Errorf("prod: Cluster %s has %v instances: want a replica to fail over to", name, dig(c, "spec", "instances"))
		}
		if got := dig(c, "spec", "bootstrap", "initdb", "database"); got != db {
			t.Errorf("prod: Cluster %s bootstraps database %v, want %s", name, got, db)
		}
		if got := dig(c, "spec", "bootstrap", "initdb", "owner"); got != db {
			t.Errorf("prod: Cluster %s bootstraps the database owned by %v, want %s", name, got, db)
		}
		if size, _ := dig(c, "spec", "storage", "size").(string); size == "" {
			t.Errorf("prod: Cluster %s has no storage size", name)
		} else if _, err := resource.ParseQuantity(size); err != nil {
			t.Errorf("prod: Cluster %s storage size %q: %v", name, size, err)
		}
	}
	if len(prod.clusters) != len(programlist.Services()) {
		t.Errorf("prod: %d Clusters, want one per service", len(prod.clusters))
	}
	if _, ok := prod.statefulSets["postgres"]; ok {
		t.Error("prod runs the dev Postgres")
	}

	dev := overlay(t, "dev")
	if len(dev.clusters) != 0 {
		t.Errorf("dev has CloudNativePG Clusters: %v", slices.Collect(maps.Keys(dev.clusters)))
	}
	pg, ok := dev.statefulSets["postgres"]
	if !ok {
		t.Fatal("dev: no Postgres StatefulSet")
	}
	pgEnv := map[string]string{}
	for _, e := range pg.Spec.Template.Spec.Containers[0].Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			pgEnv[e.Name] = e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
		}
	}
	var script string
	for _, cm := range dev.configMaps {
		if s, ok := cm.Data["init-databases.sh"]; ok {
			script = s
		}
	}
	loop := regexp.MustCompile(`(?m)^for service in (.+); do$`).FindStringSubmatch(script)
	if loop == nil {
		t.Error("dev: the Postgres init has no \"for service in ...; do\" loop, want one creating every service's database")
	} else if got, want := strings.Join(strings.Fields(loop[1]), ","), strings.Join(programlist.Services(), ","); got != want {
		t.Errorf("dev: the Postgres init creates the databases of %s, want every service's: %s", got, want)
	}

	for _, b := range []*k8sBuild{dev, prod} {
		for _, s := range programlist.Services() {
			_, c := b.container(t, s)
			want := "secret:bazaar-" + s + "-db-app/uri"
			if got := b.envOf(t, c)["DATABASE_URL"]; got != want {
				t.Errorf("%s: %s DATABASE_URL = %q, want %q", b.overlay, s, got, want)
			}
			if b == dev {
				if got := pgEnv["PASSWORD_"+strings.ToUpper(s)]; got != "bazaar-"+s+"-db-app/password" {
					t.Errorf("dev: Postgres makes %s's role with the password %q, want bazaar-%s-db-app/password", s, got, s)
				}
			} else if _, ok := b.clusters["bazaar-"+s+"-db"]; !ok {
				t.Errorf("prod: %s reads a Secret no Cluster makes", s)
			}
		}
	}
}

func dig(m map[string]any, keys ...string) any {
	var v any = m
	for _, k := range keys {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}

// Redis is kept as compose keeps it (docs/operations.md, "Redis"): never evicting, an
// append-only file on a volume, and a memory ceiling below the container's limit.
func TestK8sRedisKeepsItsData(t *testing.T) {
	t.Parallel()
	for _, o := range k8sOverlays {
		b := overlay(t, o)
		r, ok := b.statefulSets["redis"]
		if !ok {
			t.Errorf("%s: no Redis StatefulSet", o)
			continue
		}
		spec := r.Spec.Template.Spec
		c := spec.Containers[0]
		var conf string
		var dataMounted bool
		for _, m := range c.VolumeMounts {
			for _, v := range spec.Volumes {
				if v.Name == m.Name && v.ConfigMap != nil {
					conf = b.configMaps[v.ConfigMap.Name].Data["redis.conf"]
				}
			}
			for _, pvc := range r.Spec.VolumeClaimTemplates {
				if pvc.Name == m.Name && m.MountPath == "/data" {
					dataMounted = true
				}
			}
		}
		if !dataMounted {
			t.Errorf("%s: Redis keeps /data on no volume claim", o)
		}
		if !slices.Contains(c.Args, "/etc/redis/redis.conf") {
			t.Errorf("%s: Redis runs %v, not its redis.conf", o, c.Args)
		}
		settings := map[string]string{}
		for _, line := range strings.Split(conf, "\n") {
			if f := strings.Fields(line); len(f) == 2 && !strings.HasPrefix(f[0], "#") {
				settings[f[0]] = f[1]
			}
		}
		for k, want := range map[string]string{"appendonly": "yes", "appendfsync": "everysec", "maxmemory-policy": "noeviction", "dir": "/data"} {
			if settings[k] != want {
				t.Errorf("%s: redis.conf %s = %q, want %q", o, k, settings[k], want)
			}
		}
		maxmem, err := redisBytes(settings["maxmemory"])
		limit := c.Resources.Limits[corev1.ResourceMemory]
		if err != nil || maxmem <= 0 || maxmem >= limit.Value() {
			t.Errorf("%s: redis maxmemory %q (%v), want set below the container's limit %s", o, settings["maxmemory"], err, limit.String())
		}
	}
}

// redisBytes reads a Redis memory size: bytes, or a number with k, kb, m, mb, g or gb
// (kb, mb and gb are powers of 1024, the others of 1000).
func redisBytes(s string) (int64, error) {
	m := regexp.MustCompile(`^(\d+)(k|kb|m|mb|g|gb)?$`).FindStringSubmatch(strings.ToLower(s))
	if m == nil {
		return 0, fmt.Errorf("not a Redis memory size: %q", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	mult := map[string]int64{"": 1, "k": 1e3, "kb": 1 << 10, "m": 1e6, "mb": 1 << 20, "g": 1e9, "gb": 1 << 30}[m[2]]
	return n * mult, err
}

// The images other than Bazaar's own are pinned to a version.
func TestK8sImagesArePinned(t *testing.T) {
	t.Parallel()
	pinned := regexp.MustCompile(`:v?\d+\.\d+(\.\d+)?(-[a-z0-9]+)?$|@sha256:[0-9a-f]{64}$`)
	for _, o := range k8sOverlays {
		b := overlay(t, o)
		for name, spec := range b.podSpecs() {
			for _, c := range spec.Containers {
				if !pinned.MatchString(c.Image) {
					t.Errorf("%s: %s runs %q: want a version to the minor at least, or a digest", o, name, c.Image)
				}
			}
		}
		for name, c := range b.clusters {
			if img, _ := dig(c, "spec", "imageName").(string); !pinned.MatchString(img) {
				t.Errorf("%s: Cluster %s runs %q", o, name, img)
			}
		}
	}
}
