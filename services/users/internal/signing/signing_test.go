package signing_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/services/users/internal/signing"
)

// The key of RFC 8037 Appendix A.1 and its thumbprint from Appendix A.3.
func TestThumbprintMatchesRFC8037(t *testing.T) {
	t.Parallel()
	seed, _ := hex.DecodeString("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
	k, err := signing.FromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	if x := base64.RawURLEncoding.EncodeToString(k.Public()); x != "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" {
		t.Errorf("x = %s", x)
	}
	if k.ID != "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k" {
		t.Errorf("kid = %s", k.ID)
	}
}

func TestRingPublishesAndVerifiesEveryKey(t *testing.T) {
	t.Parallel()
	newer, _ := signing.Generate()
	older, _ := signing.Generate()
	ring := signing.Ring{newer, older}
	if ring.Current().ID != newer.ID {
		t.Error("Current is not the newest key")
	}
	set := ring.KeySet()
	if len(set.Keys) != 2 {
		t.Fatalf("key set = %+v, want 2 keys", set)
	}
	if set.Keys[0].Kid != newer.ID {
		t.Errorf("first key kid %s, want the newest %s", set.Keys[0].Kid, newer.ID)
	}
	if set.Keys[0].Alg != "EdDSA" {
		t.Errorf("first key alg %q, want EdDSA", set.Keys[0].Alg)
	}
	if set.Keys[0].Kty != "OKP" {
		t.Errorf("first key kty %q, want OKP", set.Keys[0].Kty)
	}
	// The published document reads back to the very keys that verify.
	back := set.StaticKeys()
	for _, k := range ring {
		if !ed25519.PublicKey(back[k.ID]).Equal(k.Public()) {
			t.Errorf("key %s does not round-trip through the key set: %x, want %x", k.ID, back[k.ID], k.Public())
		}
		if !ring.Verification()[k.ID].Equal(k.Public()) {
			t.Errorf("key %s does not round-trip through Verification: %x, want %x", k.ID, ring.Verification()[k.ID], k.Public())
		}
	}
	if _, err := signing.FromSeed([]byte("short")); err == nil {
		t.Error("FromSeed accepted a short seed")
	}
}

func testKEK(t *testing.T, fill byte) *signing.KEK {
	t.Helper()
	kek, err := signing.NewKEK(bytes.Repeat([]byte{fill}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return kek
}

func TestKEKSealsSeedsBoundToTheirKid(t *testing.T) {
	t.Parallel()
	k, _ := signing.Generate()
	seed := k.Private.Seed()
	kek := testKEK(t, 1)
	sealed := kek.Seal(k.ID, seed)
	if bytes.Contains(sealed, seed) {
		t.Fatal("the sealed form contains the seed")
	}
	if again := kek.Seal(k.ID, seed); bytes.Equal(again, sealed) {
		t.Error("two seals of the same seed are equal: the nonce is not fresh")
	}
	opened, err := kek.Open(k.ID, sealed)
	if err != nil {
		t.Fatalf("Open: %v, want no error", err)
	}
	if !bytes.Equal(opened, seed) {
		t.Fatalf("Open = %x, want the seed %x", opened, seed)
	}

	// The kid is authenticated: a sealed seed copied to another key's row does not open.
	other, _ := signing.Generate()
	if _, err := kek.Open(other.ID, sealed); err == nil {
		t.Error("opened under another kid")
	}
	if _, err := testKEK(t, 2).Open(k.ID, sealed); err == nil {
		t.Error("opened with another KEK")
	}
	for i := range sealed {
		tampered := bytes.Clone(sealed)
		tampered[i] ^= 1
		if _, err := kek.Open(k.ID, tampered); err == nil {
			t.Fatalf("opened with byte %d flipped", i)
		}
	}
	if _, err := kek.Open(k.ID, sealed[:10]); err == nil {
		t.Error("opened a truncated seal")
	}
}

func TestParseKEK(t *testing.T) {
	t.Parallel()
	key := bytes.Repeat([]byte{7}, 32)
	for _, s := range []string{
		base64.StdEncoding.EncodeToString(key),
		base64.RawStdEncoding.EncodeToString(key),
		base64.URLEncoding.EncodeToString(key),
		base64.RawURLEncoding.EncodeToString(key),
		" " + base64.StdEncoding.EncodeToString(key) + "\n", // as a file has it
	} {
		kek, err := signing.ParseKEK(s)
		if err != nil {
			t.Errorf("ParseKEK(%q): %v", s, err)
			continue
		}
		sealed := testKEK(t, 7).Seal("k", []byte("0123456789abcdef0123456789abcdef"))
		if _, err := kek.Open("k", sealed); err != nil {
			t.Errorf("ParseKEK(%q) is not the key: %v", s, err)
		}
	}
	for _, s := range []string{"", "not base64!", base64.StdEncoding.EncodeToString(key[:16]), base64.StdEncoding.EncodeToString(append(key, 1))} {
		_, err := signing.ParseKEK(s)
		if err == nil {
			t.Errorf("ParseKEK(%q) accepted it", s)
		} else if s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("the error %q shows the value", err)
		}
	}
}

// A token signed with a key that a rotation has superseded still verifies with the ring
// while it lives, and not after.
func TestATokenSignedBeforeARotationVerifiesUntilItExpires(t *testing.T) {
	t.Parallel()
	older, _ := signing.Generate()
	issued := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tok, err := auth.NewSigner(older.ID, older.Private, 15*time.Minute).WithClock(func() time.Time { return issued }).
		Sign(auth.Principal{UserID: uuid.New(), Role: auth.RoleCustomer})
	if err != nil {
		t.Fatal(err)
	}
	newer, _ := signing.Generate()
	ring := signing.Ring{newer, older} // rotated: the newer key signs from now on
	if ring.Current().ID != newer.ID {
		t.Fatal("the rotation did not take")
	}
	at := func(d time.Duration) error {
		_, err := auth.NewVerifier(ring.Verification()).WithClock(func() time.Time { return issued.Add(d) }).Verify(context.Background(), tok)
		return err
	}
	if err := at(14 * time.Minute); err != nil {
		t.Errorf("before it expires: %v", err)
	}
	if err := at(15*time.Minute + auth.Leeway + time.Second); err == nil {
		t.Error("verified after it expired")
	}
	// The published set carries the older key too, for the other verifiers.
	if _, ok := ring.KeySet().StaticKeys()[older.ID]; !ok {
		t.Error("the key set dropped the superseded key")
	}
}
