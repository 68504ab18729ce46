package eventcontract_test

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/bazaar-shop/bazaar/internal/eventcontract"
	"github.com/bazaar-shop/bazaar/services/inventory/inventoryevents"
	"github.com/bazaar-shop/bazaar/services/orders/orderevents"
	"github.com/bazaar-shop/bazaar/services/payments/paymentevents"
	"github.com/bazaar-shop/bazaar/services/users/userevents"
)

// payload is an event type's payload struct, and the fields its contract says are
// null in it.
type payload struct {
	new      func() any
	nullable []string
}

// payloads are every event type of every contract, by stream.
var payloads = map[string]map[string]payload{
	userevents.Stream: {
		string(userevents.TypeRegistered): {new: func() any { return new(userevents.Registered) }},
	},
	inventoryevents.Stream: {
		string(inventoryevents.TypeProductCreated): {new: func() any { return new(inventoryevents.ProductCreated) }},
		string(inventoryevents.TypeProductUpdated): {new: func() any { return new(inventoryevents.ProductUpdated) }},
		string(inventoryevents.TypeStockReserved):  {new: func() any { return new(inventoryevents.StockReserved) }},
		string(inventoryevents.TypeStockReleased):  {new: func() any { return new(inventoryevents.StockReleased) }},
	},
	paymentevents.Stream: {
		string(paymentevents.TypeCaptured): {new: func() any { return new(paymentevents.Captured) }, nullable: []string{"DeclineCode"}},
		string(paymentevents.TypeDeclined): {new: func() any { return new(paymentevents.Declined) }},
		string(paymentevents.TypeRefunded): {new: func() any { return new(paymentevents.Refunded) }},
	},
	orderevents.Stream: {
		string(orderevents.TypeCreated):    {new: func() any { return new(orderevents.Created) }},
		string(orderevents.TypeConfirmed):  {new: func() any { return new(orderevents.Confirmed) }},
		string(orderevents.TypeCancelled):  {new: func() any { return new(orderevents.Cancelled) }},
		string(orderevents.TypeDailySales): {new: func() any { return new(orderevents.DailySales) }},
	},
}

func TestEveryExampleIsItsPayloadTypeWithEveryFieldSetAndEncodesBackUnchanged(t *testing.T) {
	for _, c := range eventcontract.Contracts {
		types, ok := payloads[c.Stream]
		if !ok {
			t.Errorf("%s: no payload types listed in this test", c.Stream)
			continue
		}
		examples := eventcontract.ExamplesOn(t, c.Stream)
		for typ := range examples {
			if _, ok := types[typ]; !ok {
				t.Errorf("%s/testdata/%s.json: no such event type on %s", c.Dir, typ, c.Stream)
			}
		}
		for typ, p := range types {
			raw, ok := examples[typ]
			if !ok {
				t.Errorf("%s: no example of %s (testdata/%s.json)", c.Dir, typ, typ)
				continue
			}
			eventcontract.CheckPayload(t, typ, raw, p.new(), p.nullable...)
		}
	}
}

// A new Type constant is a new event type: it must get a payload in payloads and an
// example in testdata, or the other tests never check it. This reads the constants
// from the source, so a type nobody listed is caught too.
func TestEveryDeclaredTypeHasAPayloadAndAnExample(t *testing.T) {
	root := eventcontract.RepoRoot(t)
	for _, c := range eventcontract.Contracts {
		consts := declaredTypes(t, root, c.Dir)
		if len(consts) == 0 {
			// Finding nothing means the parse missed them, not that all is well.
			t.Errorf("%s: declares no constant of type Type", c.Dir)
			continue
		}
		for _, k := range consts {
			if _, ok := payloads[c.Stream][k.value]; !ok {
				t.Errorf("%s: %s = %q on %s has no entry in payloads in eventcontract_test.go", k.pos, k.name, k.value, c.Stream)
			}
			example := filepath.Join(c.Dir, "testdata", k.value+".json")
			if _, err := os.Stat(filepath.Join(root, example)); errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s: %s = %q has no example %s", k.pos, k.name, k.value, example)
			} else if err != nil {
				t.Fatal(err)
			}
		}
	}
}

// typeConst is a constant of type Type in a contract package's source.
type typeConst struct {
	name, value string
	pos         token.Position // the file, relative to the repository root, and line
}

// declaredTypes parses the non-test Go files in dir (relative to root) and returns
// every constant of type Type, whether the type is on its spec, on an earlier spec of
// the same block it repeats, or a conversion Type("...").
func declaredTypes(t *testing.T, root, dir string) []typeConst {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, dir))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var out []typeConst
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), readFile(t, filepath.Join(root, dir, name)), 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			// A spec with neither type nor values repeats the one before it.
			var typ ast.Expr
			var values []ast.Expr
			for _, s := range gd.Specs {
				vs := s.(*ast.ValueSpec)
				if vs.Type != nil || len(vs.Values) > 0 {
					typ, values = vs.Type, vs.Values
				}
				for i, n := range vs.Names {
					if n.Name == "_" || i >= len(values) {
						continue
					}
					v := values[i]
					isType := isIdent(typ, "Type")
					if call, ok := v.(*ast.CallExpr); ok && typ == nil && isIdent(call.Fun, "Type") && len(call.Args) == 1 {
						isType, v = true, call.Args[0]
					}
					if !isType {
						continue
					}
					k := typeConst{name: n.Name, pos: fset.Position(n.Pos())}
					lit, ok := v.(*ast.BasicLit)
					if ok && lit.Kind == token.STRING {
						k.value, err = strconv.Unquote(lit.Value)
					}
					if !ok || lit.Kind != token.STRING || err != nil {
						t.Errorf("%s: %s is not a string literal; this test cannot read its value", k.pos, n.Name)
						continue
					}
					out = append(out, k)
				}
			}
		}
	}
	return out
}

func isIdent(e ast.Expr, name string) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == name
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEveryStreamHasOneContractPackageNamedAfterItsService(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range eventcontract.Contracts {
		if seen[c.Stream] {
			t.Errorf("%s has two contract packages", c.Stream)
		}
		seen[c.Stream] = true
		service := strings.TrimPrefix(c.Stream, "events.")
		if want := filepath.Join("services", service); !strings.HasPrefix(c.Dir, want+"/") {
			t.Errorf("%s's contract is in %s, not under %s", c.Stream, c.Dir, want)
		}
	}
	if want := []string{"events.inventory", "events.orders", "events.payments", "events.users"}; !slices.Equal(slices.Sorted(maps.Keys(seen)), want) {
		t.Errorf("streams with a contract: %v, want %v", seen, want)
	}
}

// A check that cannot fail proves nothing: each way an example can be wrong is caught.
func TestCheckPayloadRejectsUnknownMissingAndUnsetFields(t *testing.T) {
	for name, raw := range map[string]string{
		"an unknown field": `{"user_id":"0a000000-0000-4000-8000-000000000001","email":"a@example.com","name":"A","extra":1}`,
		"a missing field":  `{"user_id":"0a000000-0000-4000-8000-000000000001","email":"a@example.com"}`,
		"a zero field":     `{"user_id":"00000000-0000-0000-0000-000000000000","email":"a@example.com","name":"A"}`,
		"a retyped field":  `{"user_id":"0a000000-0000-4000-8000-000000000001","email":"a@example.com","name":7}`,
	} {
		ft := &fakeT{TB: t}
		eventcontract.CheckPayload(ft, name, []byte(raw), new(userevents.Registered))
		if !ft.failed {
			t.Errorf("%s passed CheckPayload", name)
		}
	}
	ft := &fakeT{TB: t}
	eventcontract.SameJSON(ft, "reordered", []byte(`{"a":1,"b":[1,2]}`), []byte(`{"b":[1,2],"a":1}`))
	eventcontract.CheckPayload(ft, "nested unset", []byte(`{"order_id":"0b000000-0000-4000-8000-0000000000a1","items":[]}`), new(inventoryevents.StockReserved))
	if !ft.failed {
		t.Error("SameJSON on reordered keys and CheckPayload on empty items did not fail the test, want it failed (the empty items)")
	}
	if ft.errors != 1 {
		t.Errorf("SameJSON on reordered keys and CheckPayload on empty items: %d errors, want 1 (the empty items)", ft.errors)
	}
}

// fakeT records failures instead of failing the test.
type fakeT struct {
	testing.TB
	failed bool
	errors int
}

func (f *fakeT) Helper()               {}
func (f *fakeT) Errorf(string, ...any) { f.failed = true; f.errors++ }
func (f *fakeT) Fatalf(string, ...any) { f.failed = true; f.errors++ }
