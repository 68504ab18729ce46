package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"

	"github.com/bazaar-shop/bazaar/deploy/observability"
	programlist "github.com/bazaar-shop/bazaar/internal/programs"
)

// The observability profile's services (docs/observability.md).
var obsServices = []string{"otel-collector", "jaeger", "prometheus", "grafana"}

// obsNoProbe are the profile's containers that have no healthcheck, and why: the
// image has nothing a check could run.
var obsNoProbe = map[string]string{
	"otel-collector": "the image is the collector binary alone (FROM scratch): no shell, no wget, no probe command",
}

// obsPublished is everything the stack publishes with the profile on, by service:
// the gateway, and the web UIs of Mailpit, Grafana and Jaeger on loopback only.
var obsPublished = map[string]string{
	"gateway": ":8080:8080",
	"mailpit": "127.0.0.1:8025:8025",
	"grafana": "127.0.0.1:3000:3000",
	"jaeger":  "127.0.0.1:16686:16686",
}

// obsProject is the compose file loaded with the observability profile on and env as
// the environment compose interpolates from.
func obsProject(t *testing.T, env ...string) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{"docker-compose.yml"},
		cli.WithWorkingDirectory("."), cli.WithName("bazaar"), cli.WithEnv(env),
		cli.WithProfiles([]string{"observability"}))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml does not load with the observability profile: %v", err)
	}
	return p
}

// promtool checks the alerting rules and Prometheus's configuration, and runs the
// rules' unit tests (alerts_test.yml: series that fire each alert and series that do
// not). make test installs it first (scripts/ensure-promtool.sh); without it this
// test fails rather than skips, so that the alerts are never left untested.
func TestAlertRulesPassPromtool(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is not installed: run scripts/ensure-promtool.sh (make test does), which installs Debian's prometheus package")
	}
	dir := filepath.Join("observability", "prometheus")
	for _, args := range [][]string{
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
		{"check", "config", "prometheus.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// Each alert has a case in alerts_test.yml where it fires and one where it must not:
// promtool passes a rule file whose tests leave an alert out, or only ever expect
// it to fire (a rule that always fires would pass those). Each says what to do, and
// links to its section of docs/observability.md.
func TestEveryAlertHasTestsThatFireItAndThatDoNot(t *testing.T) {
	t.Parallel()
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	obsReadYAML(t, "observability/prometheus/alerts.yml", &rules)
	var tests struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			AlertRuleTest []struct {
				AlertName string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	obsReadYAML(t, "observability/prometheus/alerts_test.yml", &tests)
	if !slices.Equal(tests.RuleFiles, []string{"alerts.yml"}) {
		t.Errorf("alerts_test.yml tests %v, want alerts.yml", tests.RuleFiles)
	}
	fires, quiet := map[string]int{}, map[string]int{}
	for _, tc := range tests.Tests {
		for _, r := range tc.AlertRuleTest {
			if len(r.ExpAlerts) > 0 {
				fires[r.AlertName]++
			} else {
				quiet[r.AlertName]++
			}
		}
	}
	doc, err := os.ReadFile("../docs/observability.md")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			if fires[r.Alert] == 0 || quiet[r.Alert] == 0 {
				t.Errorf("%s: %d test evaluations where it fires and %d where it does not; want some of each", r.Alert, fires[r.Alert], quiet[r.Alert])
			}
			for _, a := range []string{"summary", "description", "runbook"} {
				if r.Annotations[a] == "" {
					t.Errorf("%s has no %s annotation", r.Alert, a)
				}
			}
			// The runbook is the alert's section of docs/observability.md.
			if want := "docs/observability.md#" + strings.ToLower(r.Alert); r.Annotations["runbook"] != want {
				t.Errorf("%s runbook = %q, want %q", r.Alert, r.Annotations["runbook"], want)
			}
			if !bytes.Contains(doc, []byte("\n### "+r.Alert+"\n")) {
				t.Errorf("docs/observability.md has no section ### %s, its runbook", r.Alert)
			}
		}
	}
	if n == 0 {
		t.Fatal("alerts.yml has no alert")
	}
}

// The profile's services exist only with the profile: the stack without it (make up)
// is unchanged, and depends on none of them.
func TestObservabilityProfileIsItsOwn(t *testing.T) {
	t.Parallel()
	p := obsProject(t)
	for _, name := range obsServices {
		s, err := p.GetService(name)
		if err != nil {
			t.Errorf("no service %s with the observability profile", name)
			continue
		}
		if !slices.Equal(s.Profiles, []string{"observability"}) {
			t.Errorf("%s has profiles %v, want [observability]", name, s.Profiles)
		}
	}
	plain := loadProject(t)
	for _, name := range obsServices {
		if _, err := plain.GetService(name); err == nil {
			t.Errorf("%s runs without the observability profile", name)
		}
	}
	for _, s := range plain.Services {
		for dep := range s.DependsOn {
			if slices.Contains(obsServices, dep) {
				t.Errorf("%s depends on %s, which runs only with the observability profile", s.Name, dep)
			}
		}
	}
}

// Every image of the profile is pinned, and every container has a healthcheck unless
// its image has nothing to run one with (obsNoProbe).
func TestObservabilityImagesArePinnedAndHealthChecked(t *testing.T) {
	t.Parallel()
	p := obsProject(t)
	pinned := regexp.MustCompile(`:v?\d+\.\d+\.\d+$|@sha256:[0-9a-f]{64}$`)
	for _, name := range obsServices {
		s, _ := p.GetService(name)
		if !pinned.MatchString(s.Image) {
			t.Errorf("%s runs image %q: want a version to the patch, or a digest", name, s.Image)
		}
		hc := s.HealthCheck
		if why, ok := obsNoProbe[name]; ok {
			if hc != nil && !hc.Disable {
				t.Errorf("%s has a healthcheck though %s; take it off obsNoProbe", name, why)
			}
			continue
		}
		if hc == nil || hc.Disable || len(hc.Test) < 2 {
			t.Errorf("%s has no healthcheck", name)
			continue
		}
		if hc.Timeout == nil || hc.Interval == nil || hc.Retries == nil || hc.StartPeriod == nil {
			t.Errorf("%s healthcheck leaves its timing to the engine's defaults: %+v", name, hc)
		}
	}
	raw, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	// Each exemption is explained where the service is.
	for name := range obsNoProbe {
		i := strings.Index(string(raw), "\n  "+name+":")
		if i < 0 || !strings.Contains(string(raw[max(0, i-400):i]), "No healthcheck") {
			t.Errorf("docker-compose.yml does not say above %s why it has no healthcheck", name)
		}
	}
}

// With the profile on, nothing is published but the gateway and, on loopback, the web
// UIs of Mailpit, Grafana and Jaeger: not Prometheus, not the collector, not the
// programs' metrics listeners.
func TestObservabilityPublishesOnlyTheUIsOnLoopback(t *testing.T) {
	t.Parallel()
	p := obsProject(t)
	for _, s := range p.Services {
		var got []string
		for _, pc := range s.Ports {
			got = append(got, pc.HostIP+":"+pc.Published+":"+strconv.Itoa(int(pc.Target)))
		}
		want := []string(nil)
		if w, ok := obsPublished[s.Name]; ok {
			want = []string{w}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s publishes %v, want %v", s.Name, got, want)
		}
	}
}

// Every program's metrics listener is on 9090 in its container (the services' internal
// listeners, the gateway's operations listener), and Prometheus scrapes exactly those:
// one job per program of internal/programs, by the program's name, and loads the
// alerts.
func TestPrometheusScrapesEveryProgram(t *testing.T) {
	t.Parallel()
	p := obsProject(t)
	for _, prog := range programlist.All {
		s, err := p.GetService(prog.Name)
		if err != nil {
			t.Errorf("no service %s", prog.Name)
			continue
		}
		listener := "INTERNAL_ADDR"
		if !prog.Service() {
			listener = "OPS_ADDR"
		}
		if got := env(s, listener); got != ":9090" {
			t.Errorf("%s %s = %q: want :9090, where Prometheus scrapes it", prog.Name, listener, got)
		}
	}

	var cfg struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
			DNSSDConfigs []struct {
				Names []string `yaml:"names"`
				Type  string   `yaml:"type"`
				Port  int      `yaml:"port"`
			} `yaml:"dns_sd_configs"`
		} `yaml:"scrape_configs"`
	}
	obsReadYAML(t, "observability/prometheus/prometheus.yml", &cfg)
	targets := map[string][]string{}
	for _, sc := range cfg.ScrapeConfigs {
		if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
			t.Errorf("job %s scrapes %s", sc.JobName, sc.MetricsPath)
		}
		for _, st := range sc.StaticConfigs {
			targets[sc.JobName] = append(targets[sc.JobName], st.Targets...)
		}
		for _, d := range sc.DNSSDConfigs {
			if d.Type != "A" {
				t.Errorf("job %s looks up %s records; want A, every replica's address", sc.JobName, d.Type)
			}
			for _, n := range d.Names {
				targets[sc.JobName] = append(targets[sc.JobName], n+":"+strconv.Itoa(d.Port))
			}
		}
	}
	for _, prog := range programlist.All {
		if want := []string{prog.Name + ":9090"}; !slices.Equal(targets[prog.Name], want) {
			t.Errorf("job %s scrapes %v, want %v", prog.Name, targets[prog.Name], want)
		}
		delete(targets, prog.Name)
	}
	if len(targets) != 0 {
		t.Errorf("prometheus.yml scrapes jobs that are no program: %v", targets)
	}
	if !slices.Contains(cfg.RuleFiles, "alerts.yml") {
		t.Errorf("prometheus.yml loads rules %v, not alerts.yml", cfg.RuleFiles)
	}

	// The directory holding both files is where the command reads the config.
	prom, _ := p.GetService("prometheus")
	if !obsMounts(prom, "observability/prometheus", "/etc/prometheus") {
		t.Errorf("prometheus does not mount deploy/observability/prometheus at /etc/prometheus: %+v", prom.Volumes)
	}
	if !slices.Contains(prom.Command, "--config.file=/etc/prometheus/prometheus.yml") {
		t.Errorf("prometheus runs %v, want --config.file=/etc/prometheus/prometheus.yml in it", prom.Command)
	}
}

// The programs export their spans to the collector only when
// OTEL_EXPORTER_OTLP_ENDPOINT is set where compose runs (the stack without the profile
// exports to no missing host); the collector receives OTLP/HTTP on 4318 and exports to
// Jaeger over OTLP.
func TestTracesGoThroughTheCollectorToJaegerWhenAsked(t *testing.T) {
	t.Parallel()
	plain := loadProject(t)
	for _, prog := range programlist.All {
		s, _ := plain.GetService(prog.Name)
		if _, set := s.Environment["OTEL_EXPORTER_OTLP_ENDPOINT"]; !set || env(s, "OTEL_EXPORTER_OTLP_ENDPOINT") != "" {
			t.Errorf("%s: OTEL_EXPORTER_OTLP_ENDPOINT = %q (set: %v) without it in the environment; want it empty (no export)",
				prog.Name, env(s, "OTEL_EXPORTER_OTLP_ENDPOINT"), set)
		}
	}
	const collector = "http://otel-collector:4318"
	p := obsProject(t, "OTEL_EXPORTER_OTLP_ENDPOINT="+collector)
	for _, prog := range programlist.All {
		s, _ := p.GetService(prog.Name)
		if got := env(s, "OTEL_EXPORTER_OTLP_ENDPOINT"); got != collector {
			t.Errorf("%s: OTEL_EXPORTER_OTLP_ENDPOINT = %q with it set to %s", prog.Name, got, collector)
		}
	}

	col, _ := p.GetService("otel-collector")
	i := slices.Index(col.Command, "--config")
	if i < 0 || i+1 >= len(col.Command) {
		t.Fatalf("the collector runs %v, want --config and a file in it", col.Command)
	}
	if !obsMounts(col, "observability/otel-collector/config.yml", col.Command[i+1]) {
		t.Fatalf("the collector reads %s, where deploy/observability/otel-collector/config.yml is not mounted: %+v", col.Command[i+1], col.Volumes)
	}
	var cfg struct {
		Receivers struct {
			OTLP struct {
				Protocols struct {
					HTTP struct {
						Endpoint string `yaml:"endpoint"`
					} `yaml:"http"`
				} `yaml:"protocols"`
			} `yaml:"otlp"`
		} `yaml:"receivers"`
		Exporters map[string]struct {
			Endpoint string `yaml:"endpoint"`
		} `yaml:"exporters"`
		Service struct {
			Pipelines map[string]struct {
				Receivers []string `yaml:"receivers"`
				Exporters []string `yaml:"exporters"`
			} `yaml:"pipelines"`
		} `yaml:"service"`
	}
	obsReadYAML(t, "observability/otel-collector/config.yml", &cfg)
	if ep := cfg.Receivers.OTLP.Protocols.HTTP.Endpoint; ep != "0.0.0.0:4318" {
		t.Errorf("the collector receives OTLP/HTTP on %q; want 0.0.0.0:4318, where the programs send", ep)
	}
	traces := cfg.Service.Pipelines["traces"]
	if !slices.Contains(traces.Receivers, "otlp") {
		t.Fatalf("the traces pipeline receives from %v, want otlp among them", traces.Receivers)
	}
	if len(traces.Exporters) != 1 {
		t.Fatalf("the traces pipeline exports to %v, want 1", traces.Exporters)
	}
	exp := traces.Exporters[0]
	if typ, _, _ := strings.Cut(exp, "/"); typ != "otlp_http" && typ != "otlp_grpc" {
		t.Errorf("traces are exported by %s; want OTLP", exp)
	}
	if ep := cfg.Exporters[exp].Endpoint; ep != "http://jaeger:4318" && ep != "jaeger:4317" {
		t.Errorf("traces go to %q; want Jaeger's OTLP receiver", ep)
	}
	if _, err := p.GetService("jaeger"); err != nil {
		t.Error("no jaeger service to export to")
	}
}

// Grafana's data sources are the profile's Prometheus and Jaeger, at the ports they
// listen on; the dashboards are mounted where the provider reads them, one per area,
// and each panel uses a data source that is provisioned.
func TestGrafanaIsProvisionedWithTheDataSourcesAndDashboards(t *testing.T) {
	t.Parallel()
	p := obsProject(t)
	g, _ := p.GetService("grafana")
	if !obsMounts(g, "observability/grafana/provisioning", "/etc/grafana/provisioning") {
		t.Errorf("grafana does not mount the provisioning at /etc/grafana/provisioning: %+v", g.Volumes)
	}

	var ds struct {
		Datasources []struct {
			Name, UID, Type, URL string
		} `yaml:"datasources"`
	}
	obsReadYAML(t, "observability/grafana/provisioning/datasources/datasources.yml", &ds)
	want := map[string]string{"prometheus": "http://prometheus:9090", "jaeger": "http://jaeger:16686"}
	uids := map[string]bool{}
	for _, d := range ds.Datasources {
		uids[d.UID] = true
		if u, ok := want[d.Type]; !ok || d.URL != u {
			t.Errorf("data source %s (%s) at %q; want only %v", d.Name, d.Type, d.URL, want)
		}
		delete(want, d.Type)
	}
	if len(want) != 0 {
		t.Errorf("no data source for %v", want)
	}
	// The services behind those URLs are the profile's.
	if prom, _ := p.GetService("prometheus"); !slices.Contains(prom.Command, "--config.file=/etc/prometheus/prometheus.yml") {
		t.Error("prometheus is not the profile's")
	}

	var providers struct {
		Providers []struct {
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	obsReadYAML(t, "observability/grafana/provisioning/dashboards/dashboards.yml", &providers)
	if len(providers.Providers) != 1 {
		t.Errorf("dashboards providers %+v, want 1", providers)
	} else {
		pr := providers.Providers[0]
		if pr.Type != "file" {
			t.Errorf("the dashboards provider is of type %q, want file", pr.Type)
		}
		if !obsMounts(g, "observability/grafana/dashboards", pr.Options.Path) {
			t.Errorf("the dashboards provider reads %s, where deploy/observability/grafana/dashboards is not mounted (%+v)", pr.Options.Path, g.Volumes)
		}
	}

	for _, area := range []string{"traffic", "saga", "events", "tasks"} {
		raw, err := os.ReadFile(filepath.Join("observability", observability.DashboardsDir, area+".json"))
		if err != nil {
			t.Errorf("no %s dashboard: %v", area, err)
			continue
		}
		var d struct {
			UID    string `json:"uid"`
			Panels []struct {
				Title      string `json:"title"`
				Datasource struct {
					UID string `json:"uid"`
				} `json:"datasource"`
				Targets []struct {
					Datasource struct {
						UID string `json:"uid"`
					} `json:"datasource"`
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Errorf("%s.json: %v", area, err)
			continue
		}
		if d.UID != "bazaar-"+area {
			t.Errorf("%s.json: uid %q, want bazaar-%s", area, d.UID, area)
		}
		if len(d.Panels) == 0 {
			t.Errorf("%s.json: no panels, want some", area)
		}
		for _, panel := range d.Panels {
			if !uids[panel.Datasource.UID] {
				t.Errorf("%s.json panel %q uses data source %q, which is not provisioned", area, panel.Title, panel.Datasource.UID)
			}
			for _, tg := range panel.Targets {
				if !uids[tg.Datasource.UID] {
					t.Errorf("%s.json panel %q queries data source %q, which is not provisioned", area, panel.Title, tg.Datasource.UID)
				}
			}
		}
	}
}

// obsMounts reports whether s bind-mounts the repository's deploy/<source> (a file or
// directory) at target, read-only.
func obsMounts(s types.ServiceConfig, source, target string) bool {
	return slices.ContainsFunc(s.Volumes, func(v types.ServiceVolumeConfig) bool {
		return v.Type == types.VolumeTypeBind && v.ReadOnly && v.Target == target &&
			strings.HasSuffix(filepath.ToSlash(v.Source), "/deploy/"+source)
	})
}

// obsReadYAML decodes the YAML file at path (relative to deploy/) into v; fields v
// does not name are left out.
func obsReadYAML(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.NewDecoder(bytes.NewReader(raw)).Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
