package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/bazaar-shop/bazaar/docs"
	"github.com/bazaar-shop/bazaar/internal/testkit/testhttp"
)

// The contract: every answer the suite gets from a gateway's public listener is
// checked against docs/openapi.yaml (the copy the gateway embeds and serves), with
// kin-openapi's openapi3filter: its status must be one the operation documents, its
// documented headers present when required and valid, its body valid against the
// schema of its content type. Objects in answers are closed for the check: a member
// the schema does not name is a mismatch, so the document cannot fall behind what
// the services send. A mismatch fails the test that got the answer (do, origin.send)
// or is the error send returns (contractError).
//
// What the document does not cover is still held to what it says of it: an unknown
// path or method must be one of the answers of components NotFound,
// MethodNotAllowed, TooManyRequests and the 5xx problems; the gateway's probes,
// metrics and operations pages (not part of the public API) are checked only when
// they answer a problem, against the Problem schema.

// contractError is an answer that breaks the contract.
type contractError struct {
	method, url string
	status      int
	body        []byte
	err         error
}

func (e *contractError) Error() string {
	return fmt.Sprintf("the answer breaks docs/openapi.yaml: %s %s → %d: %v\nbody: %.300s", e.method, e.url, e.status, e.err, e.body)
}

func (e *contractError) Unwrap() error { return e.err }

// contract is the document as the checks use it.
type contract struct {
	doc    *openapi3.T
	router routers.Router
	// unrouted is what a path or method the document does not have may answer.
	unrouted *openapi3.Operation
	problem  *openapi3.Schema
	opts     *openapi3filter.Options
}

// theContract is loaded once, at the first answer.
var theContract = sync.OnceValues(loadContract)

// outsideTheAPI reports the gateway's paths the document leaves out (its description
// says so): the probes, the metrics, the operations pages and the storefront's pages.
func outsideTheAPI(path string) bool {
	switch path {
	case "/healthz", "/readyz", "/metrics":
		return true
	}
	return path == "/ops" || strings.HasPrefix(path, "/ops/") || shopPage(path)
}

// shopPage reports whether path is one of the storefront's (gateway/internal/storefront).
func shopPage(path string) bool {
	for _, p := range []string{"/", "/cart", "/cart/update", "/checkout", "/signup", "/login", "/logout", "/orders", "/inbox", "/admin"} {
		if path == p {
			return true
		}
	}
	for _, prefix := range []string{"/products/", "/orders/", "/admin/", "/static/"} {
		if strings.HasPrefix(path, prefix) {
			return true
		}
	}
	return false
}

func loadContract() (*contract, error) {
	// The page and the order status stream are text; their schemas say only that.
	openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
	openapi3filter.RegisterBodyDecoder("text/event-stream", openapi3filter.PlainBodyDecoder)

	doc, err := openapi3.NewLoader().LoadFromData(docs.OpenAPI)
	if err != nil {
		return nil, fmt.Errorf("load docs/openapi.yaml: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("docs/openapi.yaml is not valid: %w", err)
	}
	closeObjects(doc)
	doc.Servers = nil // any host: the suite's gateways listen on free ports
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("route docs/openapi.yaml: %w", err)
	}
	unrouted := &openapi3.Operation{Responses: openapi3.NewResponses()}
	for status, name := range map[string]string{
		"404": "NotFound", "405": "MethodNotAllowed", "429": "TooManyRequests",
		"500": "InternalError", "502": "BadGateway", "503": "ServiceUnavailable", "504": "GatewayTimeout",
	} {
		ref := doc.Components.Responses[name]
		if ref == nil {
			return nil, fmt.Errorf("docs/openapi.yaml has no response %s", name)
		}
		unrouted.Responses.Set(status, ref)
	}
	problem := doc.Components.Schemas["Problem"]
	if problem == nil {
		return nil, errors.New("docs/openapi.yaml has no Problem schema")
	}
	return &contract{
		doc: doc, router: router, unrouted: unrouted, problem: problem.Value,
		opts: &openapi3filter.Options{
			IncludeResponseStatus: true,
			MultiError:            true,
			SchemaValidationOptions: []openapi3.SchemaValidationOption{
				openapi3.WithStringFormatValidator("uuid", openapi3.NewRegexpFormatValidator(openapi3.FormatOfStringForUUIDOfRFC9562)),
				openapi3.DisableSchemaErrorDetails(), // the path and the reason; the body is in the message
			},
		},
	}, nil
}

// closeObjects makes every object schema with members and nothing said of others
// refuse members it does not name. Only answers are checked, so requests' schemas
// are not the worse for it.
func closeObjects(doc *openapi3.T) {
	seen := map[*openapi3.Schema]bool{}
	var walk func(ref *openapi3.SchemaRef)
	walk = func(ref *openapi3.SchemaRef) {
		if ref == nil || ref.Value == nil || seen[ref.Value] {
			return
		}
		s := ref.Value
		seen[s] = true
		if len(s.Properties) > 0 && s.AdditionalProperties.Has == nil && s.AdditionalProperties.Schema == nil {
			no := false
			s.AdditionalProperties.Has = &no
		}
		for _, p := range s.Properties {
			walk(p)
		}
		walk(s.Items)
		walk(s.AdditionalProperties.Schema)
		for _, list := range []openapi3.SchemaRefs{s.AllOf, s.OneOf, s.AnyOf} {
			for _, r := range list {
				walk(r)
			}
		}
	}
	for _, s := range doc.Components.Schemas {
		walk(s)
	}
	for _, r := range doc.Components.Responses {
		for _, mt := range r.Value.Content {
			walk(mt.Schema)
		}
	}
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			for _, r := range op.Responses.Map() {
				for _, mt := range r.Value.Content {
					walk(mt.Schema)
				}
			}
		}
	}
}

// apiBases remembers which base URLs are a gateway's public listener: the stack's,
// and any other that serves this very document at /openapi.yaml (the gateways tests
// start of their own). Services' ports and gateways' operations listeners do not.
var apiBases sync.Map // base URL → *baseKind

// baseKind is what a base URL was found to be; the first request to it asks.
type baseKind struct {
	mu      sync.Mutex
	decided bool
	api     bool
}

// probe is the client that asks a base for its document; its answers are not checked.
var probe = &http.Client{Transport: testhttp.Transport, Timeout: 10 * time.Second}

func isAPI(base string) bool {
	if base == baseURL {
		return true
	}
	v, _ := apiBases.LoadOrStore(base, &baseKind{})
	k := v.(*baseKind)
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.decided {
		return k.api
	}
	resp, err := probe.Get(base + "/openapi.yaml")
	if err != nil {
		return false // not decided: asked again next time
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode == http.StatusTooManyRequests {
		return false
	}
	k.decided, k.api = true, resp.StatusCode == http.StatusOK && bytes.Equal(b, docs.OpenAPI)
	return k.api
}

// contractTransport checks the answers its requests get from a gateway (the API's
// bases) against the document, for the tests that use client directly: an answer
// that breaks it is the error of the request, a *contractError. Requests whose
// caller checks the answer itself (checkedByCaller) pass through, and so do event
// streams, which last.
type contractTransport struct{ next http.RoundTripper }

// callerChecks marks a request whose caller checks its answer.
type callerChecks struct{}

// checkedByCaller marks the requests made with ctx as checked by their caller.
func checkedByCaller(ctx context.Context) context.Context {
	return context.WithValue(ctx, callerChecks{}, true)
}

func (c contractTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(req)
	if err != nil || req.Context().Value(callerChecks{}) != nil || !isAPI(req.URL.Scheme+"://"+req.URL.Host) {
		return resp, err
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "text/event-stream" {
		return resp, nil
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err := checkContract(req, resp, body); err != nil {
		return nil, err
	}
	return resp, nil
}

// checkContract checks resp, the answer to req with its body read, against the
// document when it comes from a gateway's public listener. It returns a
// *contractError for an answer that breaks it.
func checkContract(req *http.Request, resp *http.Response, body []byte) error {
	if req.Method == http.MethodHead || !isAPI(req.URL.Scheme+"://"+req.URL.Host) {
		return nil
	}
	c, err := theContract()
	if err != nil {
		return err
	}
	if err := c.check(req, resp, body); err != nil {
		return &contractError{method: req.Method, url: req.URL.RequestURI(), status: resp.StatusCode, body: body, err: err}
	}
	return nil
}

func (c *contract) check(req *http.Request, resp *http.Response, body []byte) error {
	if outsideTheAPI(req.URL.Path) {
		if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "application/problem+json" {
			return c.checkProblem(resp, body)
		}
		return nil
	}
	route, params, err := c.router.FindRoute(req)
	switch {
	case errors.Is(err, routers.ErrPathNotFound), errors.Is(err, routers.ErrMethodNotAllowed):
		route = &routers.Route{Spec: c.doc, Path: req.URL.Path, Method: req.Method, Operation: c.unrouted}
	case err != nil:
		return err
	}
	if resp.StatusCode == http.StatusNotModified {
		// openapi3filter leaves 304 out; it is checked here.
		return c.checkNotModified(route.Operation, resp, body)
	}
	input := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: c.opts},
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Options:                c.opts,
	}
	input.SetBodyBytes(body)
	return openapi3filter.ValidateResponse(req.Context(), input)
}

// checkProblem checks a problem answer outside the documented paths.
func (c *contract) checkProblem(resp *http.Response, body []byte) error {
	if resp.StatusCode < 400 {
		return fmt.Errorf("a problem with status %d", resp.StatusCode)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("a problem that is not JSON: %w", err)
	}
	return c.problem.VisitJSON(v, append([]openapi3.SchemaValidationOption{openapi3.MultiErrors()}, c.opts.SchemaValidationOptions...)...)
}

// checkNotModified checks a 304: one the operation documents, no body, and the
// headers it requires.
func (c *contract) checkNotModified(op *openapi3.Operation, resp *http.Response, body []byte) error {
	ref := op.Responses.Status(http.StatusNotModified)
	if ref == nil {
		return errors.New("304 is not an answer of this operation")
	}
	if len(body) != 0 {
		return fmt.Errorf("a 304 with a body of %d bytes", len(body))
	}
	for name, h := range ref.Value.Headers {
		v := resp.Header.Get(name)
		if v == "" {
			if h.Value.Required {
				return fmt.Errorf("a 304 without %s", name)
			}
			continue
		}
		if s := h.Value.Schema; s != nil {
			if err := s.Value.VisitJSON(v); err != nil {
				return fmt.Errorf("a 304's %s: %w", name, err)
			}
		}
	}
	return nil
}

// The check itself, against a server of the test's own that serves this document (so
// that its answers are checked) and answers what each case says: what breaks the
// document is caught, what keeps it is let through. It needs no stack.
func TestContractCatchesAnswersThatBreakTheDocument(t *testing.T) {
	t.Parallel()
	product := `{"id":"0197a3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b","sku":"MUG-1","name":"Mug","description":"","price_cents":1299,"currency":"USD","stock":3,"created_at":"2026-03-01T12:00:00Z","updated_at":"2026-03-01T12:00:00Z"}`
	problem := `{"type":"urn:bazaar:problem:not_found","title":"Not Found","status":404,"instance":"/x","request_id":"abc"}`
	type answer struct {
		status int
		header map[string]string
		body   string
	}
	var mu sync.Mutex
	answers := map[string]answer{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/openapi.yaml" {
			w.Write(docs.OpenAPI)
			return
		}
		mu.Lock()
		a := answers[r.Method+" "+r.URL.Path]
		mu.Unlock()
		w.Header().Set("X-Request-ID", "abc")
		for k, v := range a.header {
			if v == "-" {
				w.Header().Del(k)
				continue
			}
			w.Header().Set(k, v)
		}
		w.WriteHeader(a.status)
		io.WriteString(w, a.body)
	}))
	t.Cleanup(srv.Close)
	js := map[string]string{"Content-Type": "application/json"}
	pj := map[string]string{"Content-Type": "application/problem+json"}
	tagged := map[string]string{"Content-Type": "application/json", "ETag": `"abc"`, "X-Cache": "MISS"}
	id := "/api/v1/products/0197a3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b"
	for _, c := range []struct {
		name, method, path string
		answer
		breaks string // what the error must say; "" for an answer that keeps the document
	}{
		{"a product", "GET", id, answer{200, tagged, product}, ""},
		{"a 304", "GET", id, answer{304, map[string]string{"ETag": `"abc"`, "X-Cache": "HIT"}, ""}, ""},
		{"a 304 without its ETag", "GET", id, answer{304, nil, ""}, "without ETag"},
		{"a 304 where there is none", "GET", "/api/v1/users/me", answer{304, nil, ""}, "not an answer"},
		{"a member the schema does not name", "GET", id, answer{200, tagged, strings.Replace(product, `"stock":3`, `"stock":3,"secret":1`, 1)}, "secret"},
		{"a member of the wrong type", "GET", id, answer{200, tagged, strings.Replace(product, `"stock":3`, `"stock":"3"`, 1)}, "stock"},
		{"a missing member", "GET", id, answer{200, tagged, strings.Replace(product, `"sku":"MUG-1",`, "", 1)}, "sku"},
		{"an id that is not a UUID", "GET", id, answer{200, tagged, strings.Replace(product, `0197a3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b`, `42`, 1)}, "uuid"},
		{"a bad X-Cache", "GET", id, answer{200, map[string]string{"Content-Type": "application/json", "X-Cache": "MAYBE"}, product}, "X-Cache"},
		{"an undocumented status", "GET", id, answer{418, pj, problem}, "status"},
		{"an error that is not a problem", "GET", id, answer{404, js, `{}`}, "Content-Type"},
		{"a 429", "GET", id, answer{429, map[string]string{"Content-Type": "application/problem+json", "Retry-After": "1"}, problem}, ""},
		{"a 429 without Retry-After", "GET", id, answer{429, pj, problem}, "Retry-After"},
		{"an answer without X-Request-ID", "GET", id, answer{200, map[string]string{"Content-Type": "application/json", "X-Request-ID": "-"}, product}, "X-Request-ID"},
		{"an unknown path's 404", "GET", "/no/such/thing", answer{404, pj, problem}, ""},
		{"an unknown path's 200", "GET", "/no/such/thing", answer{200, js, `{}`}, "status"},
		{"an unknown method's 405", "DELETE", "/api/v1/users/me", answer{405, pj, problem}, ""},
		{"a probe (not the API's)", "GET", "/healthz", answer{200, map[string]string{"Content-Type": "text/plain"}, "ok"}, ""},
		{"a bad problem outside the API", "GET", "/ops/nothing", answer{404, pj, `{"title":1}`}, "type"},
	} {
		t.Run(c.name, func(t *testing.T) {
			mu.Lock()
			answers[c.method+" "+c.path] = c.answer
			mu.Unlock()
			req, err := http.NewRequestWithContext(t.Context(), c.method, srv.URL+c.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := probe.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			err = checkContract(req, resp, body)
			// The same through client, whose transport checks answers for the tests
			// that use it directly.
			if r, terr := client.Do(req.Clone(t.Context())); (terr == nil) != (err == nil) {
				t.Errorf("through client: %v; checked by hand: %v", terr, err)
			} else if terr == nil {
				if b, _ := io.ReadAll(r.Body); string(b) != string(body) {
					t.Errorf("through client the body is %q; want %q", b, body)
				}
				r.Body.Close()
			}
			var ce *contractError
			switch {
			case c.breaks == "" && err != nil:
				t.Errorf("an answer that keeps the document was refused: %v", err)
			case c.breaks != "" && !errors.As(err, &ce):
				t.Errorf("an answer that breaks the document was let through (%v)", err)
			case c.breaks != "" && !strings.Contains(err.Error(), c.breaks):
				t.Errorf("the error does not say %q: %v", c.breaks, err)
			}
		})
	}
}
