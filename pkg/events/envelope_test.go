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
	if out.ID != in.ID {
		t.Errorf("round trip: id %s, want %s", out.ID, in.ID)
	}
	if out.Type != in.Type {
		t.Errorf("round trip: type %q, want %q", out.Type, in.Type)
	}
	if out.Source != in.Source {
		t.Errorf("round trip: source %q, want %q", out.Source, in.Source)
	}
	if out.Subject != in.Subject {
		t.Errorf("round trip: subject %q, want %q", out.Subject, in.Subject)
	}
	if !out.Time.Equal(in.Time) {
		t.Errorf("round trip: time %v, want %v", out.Time, in.Time)
	}
	if string(out.Data) != string(in.Data) {
		t.Errorf("round trip: data %s, want %s", out.Data, in.Data)
	}
	if out.TraceParent != in.TraceParent {
		t.Errorf("round trip: traceparent %q, want %q", out.TraceParent, in.TraceParent)
	}
	var data struct{ Email string }
	if err := out.Decode(&data); err != nil {
		t.Fatalf("Decode = %v", err)
	}
	if data.Email != "a@b.c" {
		t.Errorf("Decode: email %q, want a@b.c", data.Email)
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
