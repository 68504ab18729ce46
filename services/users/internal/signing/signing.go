// Package signing holds the users service's Ed25519 token-signing keys: it makes new
// ones, names each by its RFC 7638 thumbprint, and presents a key ring as what the
// rest of the program needs (the key to sign with, the keys to verify with, the JWKS
// document to publish).
package signing

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/bazaar-shop/bazaar/pkg/auth"
)

// Key is one signing key.
type Key struct {
	ID        string // kid: the thumbprint of the public key
	Private   ed25519.PrivateKey
	CreatedAt time.Time
}

// Public is the key's public half.
func (k Key) Public() ed25519.PublicKey { return k.Private.Public().(ed25519.PublicKey) }

// Generate makes a new key.
func Generate() (Key, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Key{}, fmt.Errorf("generate signing key: %w", err)
	}
	return FromSeed(priv.Seed())
}

// FromSeed rebuilds a key from its 32-byte seed (what is stored).
func FromSeed(seed []byte) (Key, error) {
	if len(seed) != ed25519.SeedSize {
		return Key{}, fmt.Errorf("signing key seed has %d bytes, want %d", len(seed), ed25519.SeedSize)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	// The kid is the key's RFC 7638 thumbprint: derived from the key, a kid can never
	// name two different keys.
	return Key{ID: auth.Thumbprint(priv.Public().(ed25519.PublicKey)), Private: priv}, nil
}

// Ring is the set of keys, newest first. It is never empty once loaded.
type Ring []Key

// Current is the key new tokens are signed with: the newest.
func (r Ring) Current() Key { return r[0] }

// Verification is every key's public half, for verifying tokens signed by any of them
// (older keys stay until the tokens they signed have expired).
func (r Ring) Verification() auth.StaticKeys {
	keys := make(auth.StaticKeys, len(r))
	for _, k := range r {
		keys[k.ID] = k.Public()
	}
	return keys
}

// KeySet is the JWKS document publishing every key's public half.
func (r Ring) KeySet() auth.KeySet {
	set := auth.KeySet{Keys: make([]auth.JWK, 0, len(r))}
	for _, k := range r {
		set.Keys = append(set.Keys, auth.PublicJWK(k.ID, k.Public()))
	}
	return set
}
