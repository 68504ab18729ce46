package config

import (
	"errors"
	"os"
	"path/filepath"
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

func TestSecretOrFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		name       string
		env        map[string]string
		value, src string
	}{
		{"neither", map[string]string{}, "", ""},
		{"the variable", map[string]string{"PASS": " hunter2 "}, "hunter2", "PASS"},
		// What echo, an editor or a generator leaves at the end goes; the secret's own
		// spaces stay.
		{"a file with a newline", map[string]string{"PASS_FILE": file("nl", " hunter 2 \n")}, " hunter 2 ", "PASS_FILE"},
		{"a file with CRLF", map[string]string{"PASS_FILE": file("crlf", "hunter2\r\n")}, "hunter2", "PASS_FILE"},
		{"a file without a newline", map[string]string{"PASS_FILE": file("bare", "hunter2")}, "hunter2", "PASS_FILE"},
	} {
		e := New(env(c.env))
		value, src := e.SecretOrFile("PASS")
		if value != c.value || src != c.src || e.Err() != nil {
			t.Errorf("%s: SecretOrFile = %q from %q, %v; want %q from %q", c.name, value, src, e.Err(), c.value, c.src)
		}
	}

	secret := file("secret", "hunter2\n")
	for _, c := range []struct {
		name, src string
		env       map[string]string
		want      []string // in the error
	}{
		{"both", "PASS", map[string]string{"PASS": "hunter2", "PASS_FILE": secret}, []string{"PASS and PASS_FILE are both set"}},
		{"a missing file", "PASS_FILE", map[string]string{"PASS_FILE": filepath.Join(dir, "missing")}, []string{"PASS_FILE=", "missing"}},
		{"a directory", "PASS_FILE", map[string]string{"PASS_FILE": dir}, []string{"PASS_FILE="}},
		{"an empty file", "PASS_FILE", map[string]string{"PASS_FILE": file("blank", "\n")}, []string{"PASS_FILE=", "is empty"}},
	} {
		e := New(env(c.env))
		value, src := e.SecretOrFile("PASS")
		err := e.Err()
		if value != "" || src != c.src || err == nil {
			t.Errorf("%s: SecretOrFile = %q from %q, %v; want nothing from %q and an error", c.name, value, src, err, c.src)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", c.name, err, w)
			}
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: error %q shows the secret", c.name, err)
		}
	}
}

func TestValidChecksWithTheCallersRule(t *testing.T) {
	t.Parallel()
	vars := map[string]string{"GOOD": "a,b", "BAD": "a,,b"}
	env := New(func(k string) string { return vars[k] })
	noEmpty := func(v string) error {
		for _, part := range strings.Split(v, ",") {
			if part == "" {
				return errors.New("an empty entry")
			}
		}
		return nil
	}
	if got := env.Valid("GOOD", "d", noEmpty); got != "a,b" {
		t.Errorf("GOOD = %q, want a,b", got)
	}
	if got := env.Valid("UNSET", "d", noEmpty); got != "d" {
		t.Errorf("UNSET = %q, want the default", got)
	}
	if got := env.Valid("BAD", "d", noEmpty); got != "d" {
		t.Errorf("BAD = %q, want the default", got)
	}
	err := env.Err()
	if err == nil {
		t.Fatal("Err = nil after a bad value")
	}
	if !strings.Contains(err.Error(), "BAD: an empty entry") {
		t.Errorf("Err = %v, want BAD named with the rule's error", err)
	}
	if strings.Contains(err.Error(), "GOOD") || strings.Contains(err.Error(), "a,,b") {
		t.Errorf("Err = %v, names a good variable or shows the bad value", err)
	}
}
