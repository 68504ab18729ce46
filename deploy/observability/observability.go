// Package observability holds the compose stack's observability profile (Prometheus
// and its alerts, Grafana's provisioning and dashboards, the OpenTelemetry
// Collector's configuration; docs/observability.md) and reads the PromQL in it for
// the tests that hold it to the programs: every query of every dashboard and every
// alert's expression, and the metric names each one selects.
//
// The names come from Prometheus's own PromQL parser, so that a name is found
// wherever PromQL allows one (inside functions, aggregations, binary operations,
// subqueries) and nothing else is taken for one (function names, label names,
// durations, strings).
package observability

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

//go:embed prometheus/alerts.yml grafana/dashboards/*.json
var files embed.FS

// DashboardsDir and AlertsFile are where the dashboards and the alerting rules are,
// in this package's directory.
const (
	DashboardsDir = "grafana/dashboards"
	AlertsFile    = "prometheus/alerts.yml"
)

// Query is one PromQL expression of a dashboard's panel or of an alerting rule.
type Query struct {
	Where string // "grafana/dashboards/saga.json: panel \"Saga duration\" A", "prometheus/alerts.yml: BazaarSagasStuck"
	Expr  string
}

// Queries are every PromQL expression of the dashboards and the alerting rules.
func Queries() ([]Query, error) {
	var out []Query
	dashboards, err := fs.Glob(files, DashboardsDir+"/*.json")
	if err != nil {
		return nil, err
	}
	if len(dashboards) == 0 {
		return nil, fmt.Errorf("no dashboard in %s", DashboardsDir)
	}
	for _, name := range dashboards {
		qs, err := dashboardQueries(name)
		if err != nil {
			return nil, err
		}
		out = append(out, qs...)
	}
	qs, err := alertQueries()
	if err != nil {
		return nil, err
	}
	return append(out, qs...), nil
}

// panel is what a dashboard's panel holds of interest here; rows nest their panels.
type panel struct {
	Title   string  `json:"title"`
	Panels  []panel `json:"panels"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

func dashboardQueries(name string) ([]Query, error) {
	raw, err := files.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var d struct {
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var out []Query
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, t := range p.Targets {
				out = append(out, Query{Where: fmt.Sprintf("%s: panel %q %s", name, p.Title, t.RefID), Expr: t.Expr})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out, nil
}

func alertQueries() ([]Query, error) {
	raw, err := files.ReadFile(AlertsFile)
	if err != nil {
		return nil, err
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert  string `yaml:"alert"`
				Record string `yaml:"record"`
				Expr   string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		return nil, fmt.Errorf("%s: %w", AlertsFile, err)
	}
	var out []Query
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			out = append(out, Query{Where: AlertsFile + ": " + r.Alert + r.Record, Expr: r.Expr})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s has no rule", AlertsFile)
	}
	return out, nil
}

// grafanaIntervals are the interval variables Grafana replaces in a query before
// Prometheus sees it, each by a duration the parser accepts. Another variable would
// parse inside a label matcher's string and fail the parse anywhere else; the
// dashboards use none.
var grafanaIntervals = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")

// MetricNames are the metric names expr selects, sorted, each once. A selector that
// names no metric (by a regular expression on __name__, say) is an error: nothing
// could check what it selects.
func MetricNames(expr string) ([]string, error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(grafanaIntervals.Replace(expr))
	if err != nil {
		return nil, err
	}
	var names []string
	var bad error
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
				name = m.Value
			}
		}
		if name == "" {
			bad = fmt.Errorf("%q selects series without naming their metric", vs.String())
			return nil
		}
		names = append(names, name)
		return nil
	})
	if bad != nil {
		return nil, bad
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}
