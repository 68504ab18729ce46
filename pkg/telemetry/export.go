package telemetry

import (
	"slices"
	"strings"

	"github.com/bazaar-shop/bazaar/pkg/config"
)

// Export is where a program's spans go: an OTLP/HTTP traces URL ("" for nowhere) and
// the headers sent with each export.
type Export struct {
	URL     string
	Headers map[string]string
}

// ExportFromEnv reads the OpenTelemetry SDK's standard variables, with the meaning the
// OpenTelemetry specification gives them, so that a Collector, Jaeger or a hosted
// backend is configured for Bazaar as for any other program:
//
//   - OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is the traces URL, used as it is;
//   - else OTEL_EXPORTER_OTLP_ENDPOINT is a base URL (http://collector:4318), to
//     which /v1/traces is appended after any path it has;
//   - OTEL_EXPORTER_OTLP_HEADERS and OTEL_EXPORTER_OTLP_TRACES_HEADERS (which wins,
//     key by key) are key=value pairs, comma-separated, values URL-encoded;
//   - OTEL_TRACES_EXPORTER=none or OTEL_SDK_DISABLED=true turn the export off
//     whatever the rest says.
//
// Bad values are errors in env.
func ExportFromEnv(env *config.Env) Export {
	traces := env.OptionalURL("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http", "https")
	base := env.OptionalURL("OTEL_EXPORTER_OTLP_ENDPOINT", "http", "https")
	headers := env.KeyValues("OTEL_EXPORTER_OTLP_HEADERS")
	for k, v := range env.KeyValues("OTEL_EXPORTER_OTLP_TRACES_HEADERS") {
		if headers == nil {
			headers = map[string]string{}
		}
		headers[k] = v
	}
	exporter := env.OneOf("OTEL_TRACES_EXPORTER", "otlp", "otlp", "none")
	if exporter == "none" || env.Bool("OTEL_SDK_DISABLED", false) {
		return Export{}
	}
	switch {
	case traces != "":
		return Export{URL: traces, Headers: headers}
	case base != "":
		return Export{URL: strings.TrimSuffix(base, "/") + "/v1/traces", Headers: headers}
	}
	return Export{}
}

// String is the export for a log: its URL and the names of its headers, whose values
// may be credentials.
func (e Export) String() string {
	if e.URL == "" {
		return "none"
	}
	var names []string
	for k := range e.Headers {
		names = append(names, k)
	}
	slices.Sort(names)
	if len(names) == 0 {
		return config.Mask(e.URL)
	}
	return config.Mask(e.URL) + " (headers " + strings.Join(names, ", ") + ")"
}
