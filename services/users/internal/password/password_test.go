package password_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/bazaar-shop/bazaar/services/users/internal/password"
)

var phc = regexp.MustCompile(`^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)

func TestHashIsOWASPArgon2idInPHCFormat(t *testing.T) {
	t.Parallel()
	h := password.New(password.OWASP)
	a, err := h.Hash("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !phc.MatchString(a) {
		t.Errorf("hash %q is not $argon2id$v=19$m=19456,t=2,p=1$<16-byte salt>$<32-byte key>", a)
	}
	b, _ := h.Hash("correct horse")
	if a == b {
		t.Error("two hashes of one password are equal: the salt is not random")
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	h := password.New(password.OWASP)
	enc, err := h.Hash("correct horse ü")
	if err != nil {
		t.Fatal(err)
	}
	for plain, want := range map[string]bool{
		"correct horse ü": true,
		"correct horse u": false,
		"correct horse":   false,
		"":                false,
	} {
		if ok, err := h.Verify(plain, enc); err != nil || ok != want {
			t.Errorf("Verify(%q) = %v, %v; want %v", plain, ok, err, want)
		}
	}
}

func TestVerifyUsesTheParametersInTheHash(t *testing.T) {
	t.Parallel()
	// A hash made with cheaper parameters (as after a future change of OWASP's
	// advice) still verifies with a hasher set to today's.
	old, err := password.New(password.Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 8, KeyLen: 16}).Hash("pw-from-2020")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(old, "$m=64,t=1,p=1$") {
		t.Fatalf("hash %q", old)
	}
	if ok, err := password.New(password.OWASP).Verify("pw-from-2020", old); err != nil {
		t.Errorf("Verify: %v, want no error", err)
	} else if !ok {
		t.Error("Verify = false, want true")
	}
}

func TestVerifyRejectsMalformedHashes(t *testing.T) {
	t.Parallel()
	h := password.New(password.OWASP)
	good, _ := h.Hash("pw")
	parts := strings.Split(good, "$")
	with := func(i int, v string) string {
		p := append([]string(nil), parts...)
		p[i] = v
		return strings.Join(p, "$")
	}
	for name, enc := range map[string]string{
		"empty":             "",
		"bcrypt":            "$2a$10$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyzABCDE",
		"argon2i":           with(1, "argon2i"),
		"old version":       with(2, "v=16"),
		"trailing garbage":  with(3, "m=19456,t=2,p=1,x=1"),
		"huge memory":       with(3, "m=99999999,t=2,p=1"),
		"zero time":         with(3, "m=19456,t=0,p=1"),
		"bad salt":          with(4, "!!!"),
		"short key":         with(5, "AAAA"),
		"too few sections":  strings.Join(parts[:5], "$"),
		"too many sections": good + "$x",
	} {
		ok, err := h.Verify("pw", enc)
		if !errors.Is(err, password.ErrMalformed) {
			t.Errorf("%s: Verify(%q): %v, want ErrMalformed", name, enc, err)
		}
		if ok {
			t.Errorf("%s: Verify(%q) = true, want false", name, enc)
		}
	}
}
