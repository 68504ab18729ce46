package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/bazaar-shop/bazaar/pkg/svcauth"
)

func TestSecretsInitCreatesOnceAndPrintsThePasswordOnce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctl := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		if err := run(context.Background(), append([]string{"bazaarctl"}, args...), func(string) string { return "" }, &out); err != nil {
			t.Fatalf("bazaarctl %v: %v", args, err)
		}
		return out.String()
	}
	owner := strconv.Itoa(os.Getuid()) + ":" + strconv.Itoa(os.Getgid())
	first := ctl("secrets", "init", "-dir", dir, "-owner", owner)
	m := regexp.MustCompile(`shown only this once: (\S+)`).FindStringSubmatch(first)
	if m == nil {
		t.Fatalf("the first start printed no admin password:\n%s", first)
	}
	stored, err := os.ReadFile(filepath.Join(dir, adminPassFile))
	if err != nil || strings.TrimSpace(string(stored)) != m[1] || len(m[1]) < 20 {
		t.Fatalf("stored password %q (%v), printed %q", stored, err, m[1])
	}
	kek, err := os.ReadFile(filepath.Join(dir, kekFile))
	if raw, derr := base64.StdEncoding.DecodeString(strings.TrimSpace(string(kek))); err != nil || derr != nil || len(raw) != 32 {
		t.Fatalf("KEK file %q is not the base64 of 32 bytes (%v, %v)", kek, err, derr)
	}
	for _, f := range []string{adminPassFile, kekFile, "keys/orders/service.key"} {
		if info, err := os.Stat(filepath.Join(dir, f)); err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; want 0600", f, err, info.Mode().Perm())
		}
	}

	// Every later start keeps what exists and shows no secret.
	second := ctl("secrets", "init", "-dir", dir)
	if strings.Contains(second, m[1]) || strings.Contains(second, "created") {
		t.Errorf("a second start printed %q", second)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, kekFile)); !bytes.Equal(again, kek) {
		t.Error("the KEK changed on a second start: the signing keys sealed under it would no longer open")
	}

	// The keys work: orders proves itself to payments.
	keys := filepath.Join(dir, keysSubdir)
	s, err := svcauth.NewSigner("orders", svcauth.KeyFile(keys, "orders"))
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := s.Token("payments")
	v, err := svcauth.NewVerifier("payments", svcauth.TrustDir(keys))
	if err != nil {
		t.Fatal(err)
	}
	if caller, err := v.Verify(tok); err != nil || caller != "orders" {
		t.Fatalf("Verify = %q, %v", caller, err)
	}
}

func TestSecretsInitWantsADirectory(t *testing.T) {
	t.Parallel()
	err := run(context.Background(), []string{"bazaarctl", "secrets", "init"}, func(string) string { return "" }, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "-dir") {
		t.Fatalf("secrets init without -dir = %v", err)
	}
}
