package httpapi

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"regexp"
	"strings"
)

// opsPolicy is the Content-Security-Policy of every /ops answer that sets none of its
// own (redirects, problems): nothing may load, and nobody may frame it. The sign-in
// page sets a policy of its own (opsauth), the task monitor its own (monitorPolicy).
const opsPolicy = "default-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// withPolicy sets policy as the Content-Security-Policy of next's answers, unless
// next sets its own.
func withPolicy(policy string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Security-Policy", policy)
			next.ServeHTTP(w, r)
		})
	}
}

// inlineScript matches a script element with a body and no attributes, as asynqmon's
// page has them (its configuration, and webpack's loader).
var inlineScript = regexp.MustCompile(`(?s)<script>(.*?)</script>`)

// monitorPolicy is the Content-Security-Policy of the task monitor (asynqmon), built
// from the page monitor serves at TaskMonitorPath, so that it follows asynqmon's page
// as it is and not as it was when this was written. What the page needs:
//
//   - its scripts: two bundles from the gateway, and two inline scripts (its settings
//     and webpack's loader), allowed by their SHA-256 rather than 'unsafe-inline', so
//     that an injected script does not run. Nothing in it needs eval.
//   - inline styles: Material-UI styles the page by injecting <style> elements (JSS)
//     and style attributes; that is 'unsafe-inline' for styles only, which cannot run
//     code.
//   - its icons and manifest, and its API calls, all on the gateway.
//
// It also links two stylesheets from Google Fonts (Roboto and icons it does not use);
// they are refused, so the operator's browser tells no third party that it is
// looking at the monitor, and no stylesheet from elsewhere applies to a page that can
// delete tasks. The page falls back to the system's fonts.
//
// It fails when the page cannot be rendered, which is a bug or a changed asynqmon.
func monitorPolicy(monitor http.Handler) (string, error) {
	req, err := http.NewRequest(http.MethodGet, TaskMonitorPath, nil)
	if err != nil {
		return "", err
	}
	page := &pageRecorder{header: http.Header{}}
	monitor.ServeHTTP(page, req)
	if page.status != http.StatusOK && page.status != 0 {
		return "", fmt.Errorf("task monitor page: status %d", page.status)
	}
	scripts := []string{"'self'"}
	for _, m := range inlineScript.FindAllSubmatch(page.body.Bytes(), -1) {
		sum := sha256.Sum256(m[1])
		scripts = append(scripts, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'")
	}
	return strings.Join([]string{
		"default-src 'none'",
		"script-src " + strings.Join(scripts, " "),
		"style-src 'self' 'unsafe-inline'",
		"img-src 'self'",
		"font-src 'self'",
		"connect-src 'self'",
		"manifest-src 'self'",
		"base-uri 'none'",
		"form-action 'self'",
		"frame-ancestors 'none'",
	}, "; "), nil
}

// pageRecorder keeps a page a handler renders.
type pageRecorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (p *pageRecorder) Header() http.Header { return p.header }

func (p *pageRecorder) WriteHeader(code int) {
	if p.status == 0 {
		p.status = code
	}
}

func (p *pageRecorder) Write(b []byte) (int, error) { return p.body.Write(b) }
