package signing_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"testing"

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
	if len(set.Keys) != 2 || set.Keys[0].Kid != newer.ID || set.Keys[0].Alg != "EdDSA" || set.Keys[0].Kty != "OKP" {
		t.Fatalf("key set = %+v", set)
	}
	// The published document reads back to the very keys that verify.
	back := set.StaticKeys()
	for _, k := range ring {
		if !ed25519.PublicKey(back[k.ID]).Equal(k.Public()) || !ring.Verification()[k.ID].Equal(k.Public()) {
			t.Errorf("key %s does not round-trip", k.ID)
		}
	}
	if _, err := signing.FromSeed([]byte("short")); err == nil {
		t.Error("FromSeed accepted a short seed")
	}
}
