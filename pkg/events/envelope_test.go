package events

import (
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	t.Parallel()
	in := Envelope{ID: uuid.New(), Type: "user.registered", Source: "users", Subject: "u1",
		Time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), Data: []byte(`{"email":"a@b.c"}`), TraceParent: "00-x-y-01"}
	out, err := Parse(in.Fields())
	if err != nil {
		t.Fatal(err)
	}
	if out.ID != in.ID || out.Type != in.Type || out.Source != in.Source || out.Subject != in.Subject ||
		!out.Time.Equal(in.Time) || string(out.Data) != string(in.Data) || out.TraceParent != in.TraceParent {
		t.Fatalf("round trip: %+v != %+v", out, in)
	}
	var data struct{ Email string }
	if err := out.Decode(&data); err != nil || data.Email != "a@b.c" {
		t.Fatalf("Decode = %v, %+v", err, data)
	}
}

func TestParseRefusesPoison(t *testing.T) {
	t.Parallel()
	good := Envelope{ID: uuid.New(), Type: "t", Source: "s", Time: time.Now(), Data: []byte(`{}`)}.Fields()
	for name, mutate := range map[string]func(map[string]any){
		"no id":     func(f map[string]any) { delete(f, "id") },
		"bad id":    func(f map[string]any) { f["id"] = "x" },
		"no type":   func(f map[string]any) { f["type"] = "" },
		"bad time":  func(f map[string]any) { f["time"] = "yesterday" },
		"bad data":  func(f map[string]any) { f["data"] = "{not json" },
		"data type": func(f map[string]any) { f["data"] = 42 },
	} {
		f := map[string]any{}
		for k, v := range good {
			f[k] = v
		}
		mutate(f)
		if _, err := Parse(f); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Parse = %v, want ErrMalformed", name, err)
		}
	}
}
