package user_test

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/services/users/internal/user"
)

var errInvalid = apperr.E(apperr.Invalid, "")

func TestParseEmail(t *testing.T) {
	t.Parallel()
	good := map[string]user.Email{
		"ann@example.com":          "ann@example.com",
		"  Ann@Example.COM \n":     "ann@example.com",
		"a.b+tag@mail.example.org": "a.b+tag@mail.example.org",
		"admin@bazaar.local":       "admin@bazaar.local",
		"ÅSA@exämple.se":           "åsa@exämple.se",
	}
	for in, want := range good {
		got, err := user.ParseEmail(in)
		if err != nil || got != want {
			t.Errorf("ParseEmail(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	bad := []string{
		"", "   ", "ann", "ann@", "@example.com", "ann@example", "ann@@example.com",
		"Ann <ann@example.com>", "ann@example.com (Ann)", "ann@[127.0.0.1]",
		"ann example@example.com", "ann@exa\nmple.com",
		strings.Repeat("a", 65) + "@example.com",
		"a@" + strings.Repeat("b", 250) + ".com",
	}
	for _, in := range bad {
		if got, err := user.ParseEmail(in); !errors.Is(err, errInvalid) {
			t.Errorf("ParseEmail(%q) = %q, %v; want an invalid error", in, got, err)
		}
	}
}

func TestParsePassword(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"12345678", "        ", " correct horse ", strings.Repeat("ü", 128)} {
		if _, err := user.ParsePassword(in); err != nil {
			t.Errorf("ParsePassword(%q): %v", in, err)
		}
	}
	for in, msg := range map[string]string{
		"":                       "is required",
		"1234567":                "at least 8",
		"üüüüüüü":                "at least 8", // 14 bytes but 7 characters
		strings.Repeat("x", 129): "at most 128",
	} {
		_, err := user.ParsePassword(in)
		if !errors.Is(err, errInvalid) || !strings.Contains(err.Error(), msg) {
			t.Errorf("ParsePassword(%q) = %v; want invalid, %q", in, err, msg)
		}
	}
}

func TestPasswordNeverPrints(t *testing.T) {
	t.Parallel()
	p, err := user.ParsePassword("hunter2hunter2")
	if err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	slog.New(slog.NewJSONHandler(&log, nil)).Info("x", "password", p)
	for _, s := range []string{fmt.Sprint(p), fmt.Sprintf("%v %+v %s", p, p, p), log.String()} {
		if strings.Contains(s, "hunter2") {
			t.Errorf("password leaked: %s", s)
		}
	}
}

func TestParseName(t *testing.T) {
	t.Parallel()
	if got, err := user.ParseName("  Ann Lee  "); err != nil {
		t.Errorf("ParseName: %v, want no error", err)
	} else if got != "Ann Lee" {
		t.Errorf("ParseName = %q, want %q", got, "Ann Lee")
	}
	if _, err := user.ParseName(strings.Repeat("é", 100)); err != nil {
		t.Errorf("100 characters: %v", err)
	}
	for _, in := range []string{"", "  \t ", strings.Repeat("n", 101), "Ann\r\nBcc: x@example.com", "nul\x00"} {
		if _, err := user.ParseName(in); !errors.Is(err, errInvalid) {
			t.Errorf("ParseName(%q) = %v; want invalid", in, err)
		}
	}
}
