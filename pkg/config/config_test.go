package config

import (
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaultsAndValues(t *testing.T) {
	t.Parallel()
	e := New(env(map[string]string{"PORT_N": "42", "WAIT": "3s", "ON": "yes", "DB": "postgres://u:p@h:5432/d"}))
	if got := e.Int("PORT_N", 1, 0, 100); got != 42 {
		t.Errorf("Int = %d", got)
	}
	if got := e.Int("MISSING", 7, 0, 100); got != 7 {
		t.Errorf("Int default = %d", got)
	}
	if got := e.Duration("WAIT", time.Second); got != 3*time.Second {
		t.Errorf("Duration = %v", got)
	}
	if !e.Bool("ON", false) {
		t.Error("Bool = false")
	}
	if got := e.URL("DB", "", "postgres"); got != "postgres://u:p@h:5432/d" {
		t.Errorf("URL = %q", got)
	}
	if got := e.Addr("HTTP_ADDR", ":8081"); got != ":8081" {
		t.Errorf("Addr = %q", got)
	}
	if got := e.OptionalURL("OTEL", "http"); got != "" {
		t.Errorf("OptionalURL = %q", got)
	}
	if err := e.Err(); err != nil {
		t.Fatal(err)
	}
}

func TestBadValuesAreNamed(t *testing.T) {
	t.Parallel()
	e := New(env(map[string]string{"N": "many", "LEVEL": "loud", "WAIT": "-1s", "ADDR": "8080", "DB": "mysql://u:secret@h/d", "ON": "maybe"}))
	e.Int("N", 1, 0, 10)
	e.Duration("WAIT", time.Second)
	e.Addr("ADDR", ":1")
	e.URL("DB", "postgres://x/y", "postgres", "postgresql")
	e.Bool("ON", true)
	e.OneOf("LEVEL", "info", "debug", "info")
	err := e.Err()
	if err == nil {
		t.Fatal("want an error")
	}
	for _, name := range []string{"N=", "WAIT=", "ADDR=", "DB=", "ON=", "LEVEL="} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("error leaks a password: %v", err)
	}
}

func TestMask(t *testing.T) {
	t.Parallel()
	if got := Mask("postgres://bazaar:hunter2@db/x"); strings.Contains(got, "hunter2") {
		t.Errorf("Mask = %q", got)
	}
	if got := Mask("postgres://u:p%zz@h/x"); strings.Contains(got, "p%zz") {
		t.Errorf("Mask of an unparsable URL = %q", got)
	}
	if got := Mask("redis://localhost:6379/0"); got != "redis://localhost:6379/0" {
		t.Errorf("Mask = %q", got)
	}
}
