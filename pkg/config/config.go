// Package config reads a program's settings from its environment. Each read names a
// variable and its default; a bad value is remembered, and Err reports every bad
// variable at once so that start-up stops with a message naming them.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Env reads variables through getenv, the function run() was handed (os.Getenv in
// production, a map in tests).
type Env struct {
	getenv func(string) string
	errs   []error
}

// New reads from getenv.
func New(getenv func(string) string) *Env { return &Env{getenv: getenv} }

func (e *Env) lookup(name, def string) string {
	if v := strings.TrimSpace(e.getenv(name)); v != "" {
		return v
	}
	return def
}

func (e *Env) fail(name, value, want string) {
	e.errs = append(e.errs, fmt.Errorf("%s=%q: %s", name, value, want))
}

// String is the variable's value, or def when unset or empty.
func (e *Env) String(name, def string) string { return e.lookup(name, def) }

// Secret is like String; it exists so that the call site says the value must not be
// logged (see Mask).
func (e *Env) Secret(name, def string) string { return e.lookup(name, def) }

// SecretOrFile reads a secret given either in the variable name or in the file whose
// path is in name+"_FILE", the way a mounted secret (Docker's, Kubernetes') or one an
// init container generated is handed over, so that it need not sit in the environment
// where process listings and inspect commands show it. Setting both is an error. Only
// the file's line ends at its end (what echo and editors add) are trimmed: its other
// characters are the secret. It returns the secret and the variable it came from, or
// "" and "" when neither is set. A bad setting (both set, a file that cannot be read
// or holds nothing) is left for Err, and it returns "" and the variable at fault, so
// that the caller can tell a secret missing from one set wrongly. Errors name the file
// but never show what it holds.
func (e *Env) SecretOrFile(name string) (value, from string) {
	fileVar := name + "_FILE"
	value, path := e.lookup(name, ""), e.lookup(fileVar, "")
	switch {
	case value != "" && path != "":
		e.errs = append(e.errs, fmt.Errorf("%s and %s are both set; set one", name, fileVar))
		return "", name
	case value != "":
		return value, name
	case path == "":
		return "", ""
	}
	b, err := os.ReadFile(path)
	if err != nil {
		e.fail(fileVar, path, "cannot read it: "+err.Error())
		return "", fileVar
	}
	if value = strings.TrimRight(string(b), "\r\n"); value == "" {
		e.fail(fileVar, path, "the file is empty")
		return "", fileVar
	}
	return value, fileVar
}

// OneOf is the variable, case-insensitively one of allowed (returned lower-case).
func (e *Env) OneOf(name, def string, allowed ...string) string {
	v := strings.ToLower(e.lookup(name, def))
	if !contains(allowed, v) {
		e.fail(name, v, "want one of "+strings.Join(allowed, ", "))
		return def
	}
	return v
}

// Int is the variable as an integer within [min, max].
func (e *Env) Int(name string, def, min, max int) int {
	v := e.lookup(name, strconv.Itoa(def))
	n, err := strconv.Atoi(v)
	if err != nil || n < min || n > max {
		e.fail(name, v, fmt.Sprintf("want an integer from %d to %d", min, max))
		return def
	}
	return n
}

// Duration is the variable as a positive Go duration ("15s", "2m").
func (e *Env) Duration(name string, def time.Duration) time.Duration {
	v := e.lookup(name, def.String())
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		e.fail(name, v, "want a positive duration such as 15s or 2m")
		return def
	}
	return d
}

// Bool is the variable as true/false (1/0, yes/no).
func (e *Env) Bool(name string, def bool) bool {
	v := strings.ToLower(e.lookup(name, strconv.FormatBool(def)))
	switch v {
	case "1", "true", "yes", "on":
		return true
	case "0", "false", "no", "off":
		return false
	}
	e.fail(name, v, "want true or false")
	return def
}

// Addr is the variable as a listen or dial address host:port (the host may be empty).
func (e *Env) Addr(name, def string) string {
	v := e.lookup(name, def)
	if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
		e.fail(name, v, "want host:port, such as :8080 or 127.0.0.1:8080")
		return def
	}
	return v
}

// URL is the variable as an absolute URL whose scheme is one of schemes.
func (e *Env) URL(name, def string, schemes ...string) string {
	v := e.lookup(name, def)
	u, err := url.Parse(v)
	if err != nil || u.Host == "" || !contains(schemes, u.Scheme) {
		e.fail(name, Mask(v), "want a URL with scheme "+strings.Join(schemes, " or ")+" and a host")
		return def
	}
	return v
}

// OptionalURL is like URL but may be empty (a feature left off).
func (e *Env) OptionalURL(name string, schemes ...string) string {
	if e.lookup(name, "") == "" {
		return ""
	}
	return e.URL(name, "", schemes...)
}

// KeyValues is a list of key=value pairs, comma-separated, each value URL-encoded (the
// W3C baggage form OpenTelemetry's header variables use): nil when unset.
func (e *Env) KeyValues(name string) map[string]string {
	raw := e.lookup(name, "")
	if raw == "" {
		return nil
	}
	out := map[string]string{}
	for _, pair := range strings.Split(raw, ",") {
		k, v, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		decoded, err := url.PathUnescape(strings.TrimSpace(v)) // percent-encoding; a + stays a +
		if !ok || k == "" || err != nil {
			// Not the value: header values are often credentials.
			e.fail(name, "(hidden)", "want key=value pairs, comma-separated, values URL-encoded")
			return nil
		}
		out[k] = decoded
	}
	return out
}

// Valid is the variable's value (or def when unset) when valid accepts it. Otherwise
// the error is left for Err under the variable's name, and def is returned. valid's
// error must not show the value when it may hold a password.
func (e *Env) Valid(name, def string, valid func(string) error) string {
	v := e.lookup(name, def)
	if err := valid(v); err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s: %w", name, err))
		return def
	}
	return v
}

// Err is nil when every variable read so far was valid; otherwise it names each bad one.
func (e *Env) Err() error {
	if len(e.errs) == 0 {
		return nil
	}
	return fmt.Errorf("bad configuration: %w", errors.Join(e.errs...))
}

// Mask hides the password of a URL (postgres://u:secret@h → postgres://u:xxxxx@h) so
// that a configuration can be logged.
func Mask(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)" // it may hold a password we cannot find
	}
	if u.User == nil {
		return raw
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
