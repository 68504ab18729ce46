// Package eventcontract is what tests use to hold producers and consumers to the
// published event contracts (userevents, inventoryevents, paymentevents, orderevents).
//
// Each contract package keeps, in testdata/<type>.json, one example of every event
// type's data with every field set. Three kinds of test share those files, so that
// a producer and its consumers cannot drift apart unnoticed although neither may
// import the other's internal code:
//
//   - this package's own test decodes every example strictly into its payload type
//     and encodes it back unchanged;
//   - each producer's store test writes the event through its real write path and
//     checks the outbox row's data is the example (SameJSON);
//   - each consumer's test hands every example on the streams it reads to its
//     handler (ExamplesOn).
package eventcontract

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/bazaar-shop/bazaar/services/inventory/inventoryevents"
	"github.com/bazaar-shop/bazaar/services/orders/orderevents"
	"github.com/bazaar-shop/bazaar/services/payments/paymentevents"
	"github.com/bazaar-shop/bazaar/services/users/userevents"
)

// Contract is one stream and the package, relative to the repository root, that
// declares what travels on it.
type Contract struct {
	Stream string
	Dir    string
}

// Contracts are every producer's published contract, one per stream.
var Contracts = []Contract{
	{userevents.Stream, "services/users/userevents"},
	{inventoryevents.Stream, "services/inventory/inventoryevents"},
	{paymentevents.Stream, "services/payments/paymentevents"},
	{orderevents.Stream, "services/orders/orderevents"},
}

// Example is the example data of event type typ, from its contract package's
// testdata. A type without an example fails the test: every type must have one.
func Example(t testing.TB, typ string) []byte {
	t.Helper()
	root := repoRoot(t)
	for _, c := range Contracts {
		b, err := os.ReadFile(filepath.Join(root, c.Dir, "testdata", typ+".json"))
		if err == nil {
			return b
		}
		if !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	t.Fatalf("no contract package has an example of %s (testdata/%s.json)", typ, typ)
	return nil
}

// ExamplesOn are the examples of every event type on stream, by type; a stream with
// no contract package, or one without examples, fails the test.
func ExamplesOn(t testing.TB, stream string) map[string][]byte {
	t.Helper()
	i := slices.IndexFunc(Contracts, func(c Contract) bool { return c.Stream == stream })
	if i < 0 {
		t.Fatalf("no contract package for stream %s", stream)
	}
	files, err := filepath.Glob(filepath.Join(repoRoot(t), Contracts[i].Dir, "testdata", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples for %s in %s/testdata: %v", stream, Contracts[i].Dir, err)
	}
	out := make(map[string][]byte, len(files))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".json")] = b
	}
	return out
}

// SameJSON fails the test unless got and want are the same JSON value (object keys
// in any order, as jsonb stores them): what the producer wrote is the example.
func SameJSON(t testing.TB, what string, got, want []byte) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: %v in %s", what, err, got)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("%s: the example: %v", what, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s:\n got %s\nwant %s", what, compact(got), compact(want))
	}
}

// CheckPayload fails the test unless raw decodes into v (a pointer to a payload
// struct) with no field v lacks, sets every field of v but those named in nullable
// (the ones the contract documents as null), and encodes back to the same JSON.
func CheckPayload(t testing.TB, what string, raw []byte, v any, nullable ...string) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Errorf("%s: does not decode strictly into %T: %v", what, v, err)
		return
	}
	var unset []string
	zeroFields(reflect.ValueOf(v).Elem(), "", &unset)
	unset = slices.DeleteFunc(unset, func(f string) bool { return slices.Contains(nullable, f) })
	if len(unset) > 0 {
		t.Errorf("%s: %T left %v unset: an example must set every field, or consumers' tests never see it", what, v, unset)
	}
	back, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	SameJSON(t, what+" encoded back", back, raw)
}

// zeroFields appends the paths of the fields of v that are zero, looking into structs
// and the first element of slices.
func zeroFields(v reflect.Value, path string, out *[]string) {
	switch v.Kind() {
	case reflect.Struct:
		if v.Type().PkgPath() != "" && v.Type().Name() != "" && v.NumField() > 0 && !v.Type().Field(0).IsExported() {
			// An opaque value (time.Time): zero or not as a whole.
			if v.IsZero() {
				*out = append(*out, path)
			}
			return
		}
		for i := range v.NumField() {
			f := v.Type().Field(i)
			name := f.Name
			if path != "" && !f.Anonymous {
				name = path + "." + f.Name
			} else if f.Anonymous {
				name = path
			}
			zeroFields(v.Field(i), name, out)
		}
	case reflect.Slice:
		if v.Len() == 0 {
			*out = append(*out, path)
			return
		}
		zeroFields(v.Index(0), path+"[0]", out)
	default:
		if v.IsZero() {
			*out = append(*out, path)
		}
	}
}

func compact(b []byte) string {
	var buf bytes.Buffer
	if json.Compact(&buf, b) != nil {
		return string(b)
	}
	return buf.String()
}

// repoRoot is the directory holding go.mod, above the test's working directory.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("eventcontract: no go.mod above the working directory")
		}
		dir = parent
	}
}
