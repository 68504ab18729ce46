package docs_test

// These tests keep docs/openapi.yaml honest: it must be a valid OpenAPI 3.0 document,
// and its paths and methods must be exactly the public routes the gateway registers in
// gateway/internal/httpapi/routes.go, read from the source so that the two cannot
// drift apart.

import (
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

const (
	specFile = "openapi.yaml"
	// gatewayDir holds routes.go (the routes) and the constants its paths may use.
	gatewayDir = "../gateway/internal/httpapi"
	// serviceRoutes are the services' route lists: a gateway route that forwards a
	// whole subtree (r.Handle("/api/v1/auth/*", ...)) stands for the routes the
	// service registers under it.
	serviceRoutes = "../services/*/internal/httpapi/routes.go"
)

// route is one method and path a router registers. access says who may call it at
// the gateway: "public", "user" (a bearer token) or "admin" (a bearer token with the
// admin role); the gateway's routes.go hangs them on routers of those names.
type route struct {
	method, path, access string
	pos                  string // where it is registered, for messages
}

func (r route) key() string { return r.method + " " + r.path }

// notPublic reports the gateway's routes that the public API leaves out: its own
// probes and metrics, and the operations pages.
func notPublic(path string) bool {
	switch path {
	case "/healthz", "/readyz", "/metrics":
		return true
	}
	return path == "/ops" || strings.HasPrefix(path, "/ops/")
}

func TestOpenAPIIsValid(t *testing.T) {
	doc := loadSpec(t)
	if doc.OpenAPI != "3.0.3" {
		t.Errorf("openapi is %q, want 3.0.3", doc.OpenAPI)
	}
}

func TestOpenAPIMatchesGatewayRoutes(t *testing.T) {
	doc := loadSpec(t)

	documented := map[string]*openapi3.Operation{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			documented[method+" "+path] = op
		}
	}

	registered := map[string]route{}
	for _, r := range publicRoutes(t) {
		registered[r.key()] = r
	}

	for _, key := range sortedKeys(registered) {
		r := registered[key]
		op, ok := documented[key]
		if !ok {
			t.Errorf("%s: route %s is not in %s", r.pos, key, specFile)
			continue
		}
		checkAccess(t, doc, r, op)
	}
	for _, key := range sortedKeys(documented) {
		if _, ok := registered[key]; !ok {
			t.Errorf("%s documents %s, which the gateway does not route", specFile, key)
		}
	}
}

// checkAccess compares who may call a route with what its operation says: security,
// the 401 and 403 answers, and "Admin only" in the description.
func checkAccess(t *testing.T, doc *openapi3.T, r route, op *openapi3.Operation) {
	t.Helper()
	security := doc.Security
	if op.Security != nil {
		security = *op.Security
	}
	bearer := slices.ContainsFunc(security, func(req openapi3.SecurityRequirement) bool {
		_, ok := req["bearerAuth"]
		return ok
	})
	switch r.access {
	case "public":
		if len(security) != 0 {
			t.Errorf("%s is public at the gateway but the document asks for %v", r.key(), security)
		}
	case "user", "admin":
		if !bearer {
			t.Errorf("%s needs a bearer token at the gateway but the document has no bearerAuth", r.key())
		}
		if op.Responses.Status(http.StatusUnauthorized) == nil {
			t.Errorf("%s needs a bearer token but documents no 401", r.key())
		}
	}
	admin := r.access == "admin"
	if documentsAdmin := strings.Contains(op.Description, "Admin only"); documentsAdmin != admin {
		t.Errorf("%s: admin-only at the gateway is %t, but its description says %t", r.key(), admin, documentsAdmin)
	}
	if has403 := op.Responses.Status(http.StatusForbidden) != nil; has403 != admin {
		t.Errorf("%s: admin-only at the gateway is %t, but it documents a 403: %t", r.key(), admin, has403)
	}
}

// TestOpenAPIResponsesFollowConventions checks the HTTP conventions every operation
// shares (docs/contract.md): X-Request-ID on every response, errors as problem+json, and no
// 402, which only the internal payments API answers.
func TestOpenAPIResponsesFollowConventions(t *testing.T) {
	doc := loadSpec(t)
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			for status, ref := range op.Responses.Map() {
				where := method + " " + path + " " + status
				resp := ref.Value
				if resp.Headers["X-Request-ID"] == nil {
					t.Errorf("%s: no X-Request-ID header", where)
				}
				code, _ := strconv.Atoi(status)
				if code == http.StatusPaymentRequired {
					t.Errorf("%s: 402 is internal only", where)
				}
				// GET /health answers its 503 with the health report, not a problem.
				if code >= 400 && path != "/health" && resp.Content.Get("application/problem+json") == nil {
					t.Errorf("%s: an error that is not application/problem+json", where)
				}
			}
		}
	}
}

func loadSpec(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(specFile)
	if err != nil {
		t.Fatalf("load %s: %v", specFile, err)
	}
	if err := doc.Validate(t.Context()); err != nil {
		t.Fatalf("%s is not valid: %v", specFile, err)
	}
	return doc
}

// publicRoutes are the gateway's routes minus the ones the public API leaves out,
// with each forwarded subtree replaced by the service routes under it and chi's path
// parameters in OpenAPI's spelling.
func publicRoutes(t *testing.T) []route {
	t.Helper()
	gateway := parseRoutes(t, filepath.Join(gatewayDir, "routes.go"), packageConsts(t, gatewayDir))
	if len(gateway) == 0 {
		t.Fatal("found no routes in the gateway's routes.go; has the way routes are registered changed?")
	}
	files, err := filepath.Glob(serviceRoutes)
	if err != nil || len(files) == 0 {
		t.Fatalf("no service routes at %s (%v)", serviceRoutes, err)
	}
	var services []route
	for _, f := range files {
		services = append(services, parseRoutes(t, f, nil)...)
	}

	var out []route
	for _, r := range gateway {
		if notPublic(r.path) {
			continue
		}
		if r.access == "" {
			t.Errorf("%s: %s %s is registered on a router this test does not know; teach parseRoutes its access",
				r.pos, r.method, r.path)
		}
		prefix, subtree := strings.CutSuffix(r.path, "*")
		switch {
		case subtree:
			n := 0
			for _, s := range services {
				if strings.HasPrefix(s.path, prefix) && (r.method == "*" || r.method == s.method) {
					out = append(out, route{method: s.method, path: openAPIPath(s.path), access: r.access, pos: s.pos})
					n++
				}
			}
			if n == 0 {
				t.Errorf("%s: %s forwards %s, but no service registers a route under it", r.pos, r.method, r.path)
			}
		case r.method == "*" || strings.Contains(r.path, "*"):
			t.Errorf("%s: cannot document %s %s (any method, or a wildcard inside the path)", r.pos, r.method, r.path)
		default:
			r.path = openAPIPath(r.path)
			out = append(out, r)
		}
	}
	return out
}

// chiParam is a chi path parameter, {name} or {name:regexp}.
var chiParam = regexp.MustCompile(`\{([^}:]+)(?::[^}]*)?\}`)

// openAPIPath turns a chi pattern into an OpenAPI path: {id:[0-9]+} becomes {id}.
func openAPIPath(p string) string { return chiParam.ReplaceAllString(p, "{$1}") }

// parseRoutes reads the calls that register routes in a Go file: r.Get/Post/Put/
// Patch/Delete(path, h), r.Method(method, path, h) and r.Handle(path, h) (any method),
// on any router value. consts resolves named string constants in paths.
func parseRoutes(t *testing.T, file string, consts map[string]string) []route {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, nil, 0)
	if err != nil {
		t.Fatalf("parse %s: %v", file, err)
	}
	var routes []route
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		var method string
		var pathArg ast.Expr
		switch name := sel.Sel.Name; {
		case len(call.Args) < 2:
			return true // a route has at least a path and a handler
		case slices.Contains([]string{"Get", "Post", "Put", "Patch", "Delete", "Head", "Options"}, name):
			method, pathArg = strings.ToUpper(name), call.Args[0]
		case name == "Method" || name == "MethodFunc":
			if len(call.Args) < 3 {
				return true
			}
			m, ok := stringOf(call.Args[0], consts)
			if !ok {
				t.Errorf("%s: cannot read the method", fset.Position(call.Pos()))
				return true
			}
			method, pathArg = strings.ToUpper(m), call.Args[1]
		case name == "Handle" || name == "HandleFunc":
			method, pathArg = "*", call.Args[0]
		default:
			return true
		}
		path, ok := stringOf(pathArg, consts)
		if !ok {
			t.Errorf("%s: cannot read the path of a route; use a literal or a constant", fset.Position(call.Pos()))
			return true
		}
		if !strings.HasPrefix(path, "/") {
			return true // not a route: some other Get or Handle
		}
		routes = append(routes, route{method: method, path: path, access: accessOf(sel.X), pos: fset.Position(call.Pos()).String()})
		return true
	})
	return routes
}

// accessOf names who may call routes registered on the router x, by the names
// routes.go gives its routers; "" for one it does not know.
func accessOf(x ast.Expr) string {
	id, ok := x.(*ast.Ident)
	if !ok {
		return ""
	}
	switch id.Name {
	case "r":
		return "public"
	case "user":
		return "user"
	case "admin":
		return "admin"
	}
	return ""
}

// stringOf evaluates a string literal, a constant, http.MethodX, or a sum of them.
func stringOf(e ast.Expr, consts map[string]string) (string, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(e.Value)
		return s, err == nil
	case *ast.Ident:
		s, ok := consts[e.Name]
		return s, ok
	case *ast.SelectorExpr:
		if pkg, ok := e.X.(*ast.Ident); ok && pkg.Name == "http" && strings.HasPrefix(e.Sel.Name, "Method") {
			return strings.TrimPrefix(e.Sel.Name, "Method"), true
		}
	case *ast.BinaryExpr:
		if e.Op != token.ADD {
			return "", false
		}
		a, okA := stringOf(e.X, consts)
		b, okB := stringOf(e.Y, consts)
		return a + b, okA && okB
	case *ast.ParenExpr:
		return stringOf(e.X, consts)
	}
	return "", false
}

// packageConsts are the string constants declared in the non-test files of dir.
func packageConsts(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	consts := map[string]string{}
	fset := token.NewFileSet()
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, 0)
		if err != nil {
			t.Fatalf("parse %s: %v", name, err)
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, id := range vs.Names {
					if i < len(vs.Values) {
						if s, ok := stringOf(vs.Values[i], consts); ok {
							consts[id.Name] = s
						}
					}
				}
			}
		}
	}
	return consts
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
