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
	if err != nil {
		t.Fatalf("stored password: %v", err)
	}
	if strings.TrimSpace(string(stored)) != m[1] {
		t.Fatalf("stored password %q, want the one printed, %q", stored, m[1])
	}
	if len(m[1]) < 20 {
		t.Fatalf("printed password %q has %d characters, want at least 20", m[1], len(m[1]))
	}
	kek, err := os.ReadFile(filepath.Join(dir, kekFile))
	if err != nil {
		t.Fatalf("KEK file: %v", err)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(kek)))
	if err != nil {
		t.Fatalf("KEK file %q is not base64: %v", kek, err)
	}
	if len(raw) != 32 {
		t.Fatalf("KEK file %q is the base64 of %d bytes, want 32", kek, len(raw))
	}
	for _, f := range []string{adminPassFile, kekFile, "keys/orders/service.key"} {
		info, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if perm := info.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s: mode %v; want 0600", f, perm)
		}
	}

	// Every later start keeps what exists and shows no secret.
	second := ctl("secrets", "init", "-dir", dir)
	if strings.Contains(second, m[1]) {
		t.Errorf("a second start printed %q, with the admin password in it; want it shown only once", second)
	}
	if strings.Contains(second, "created") {
		t.Errorf("a second start printed %q, saying something was created; want nothing created", second)
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
	caller, err := v.Verify(tok)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if caller != "orders" {
		t.Fatalf("Verify = %q, want orders", caller)
	}
}

func TestSecretsInitWantsADirectory(t *testing.T) {
	t.Parallel()
	err := run(context.Background(), []string{"bazaarctl", "secrets", "init"}, func(string) string { return "" }, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "-dir") {
		t.Fatalf("secrets init without -dir = %v", err)
	}
}
