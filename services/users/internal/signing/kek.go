package signing

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// KEKSize is the length of a key-encryption key: AES-256.
const KEKSize = 32

// The errors of loading sealed keys, so that start-up can say which setting is wrong.
var (
	// ErrNoKEK means stored keys are sealed but no key-encryption key was given.
	ErrNoKEK = errors.New("the signing keys are encrypted and no key-encryption key is configured")
	// ErrWrongKEK means a sealed key does not open with the key-encryption key given:
	// another key, or a damaged row.
	ErrWrongKEK = errors.New("a signing key cannot be decrypted with the key-encryption key configured (another key, or a damaged row)")
)

// sealVersion is the first byte of a sealed seed: the format (AES-256-GCM, 12-byte
// random nonce, the kid as associated data), so that another can follow it.
const sealVersion byte = 1

// aadPrefix starts the associated data: it names what is sealed, so that nothing else
// sealed with the same KEK can pass for a signing key's seed.
const aadPrefix = "bazaar/users/signing-key/v1:"

// KEK is a key-encryption key: it seals the signing keys' seeds for storage, so that a
// copy of the users database (a backup, a replica, a leaked dump) does not hand out the
// key that mints every access token. It lives outside the database, in the environment
// or a file. It is safe for concurrent use.
type KEK struct{ aead cipher.AEAD }

// NewKEK uses key, which must be KEKSize bytes.
func NewKEK(key []byte) (*KEK, error) {
	if len(key) != KEKSize {
		return nil, fmt.Errorf("a key-encryption key must be %d bytes, not %d", KEKSize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &KEK{aead: aead}, nil
}

// ParseKEK reads a key-encryption key written in base64 (standard or URL alphabet,
// padded or not; surrounding space, such as a file's last newline, is ignored), as
// `openssl rand -base64 32` makes one. Its errors never contain the value.
func ParseKEK(s string) (*KEK, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("the key-encryption key is empty")
	}
	var key []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if key, err = enc.DecodeString(s); err == nil {
			break
		}
	}
	if err != nil {
		return nil, errors.New("the key-encryption key is not base64")
	}
	return NewKEK(key)
}

// Seal encrypts the seed of the key kid. The kid is bound to the result: it opens only
// as that key's seed.
func (k *KEK) Seal(kid string, seed []byte) []byte {
	nonce := make([]byte, k.aead.NonceSize())
	_, _ = rand.Read(nonce) // crypto/rand.Read never fails (Go 1.24+)
	out := append([]byte{sealVersion}, nonce...)
	return k.aead.Seal(out, nonce, seed, []byte(aadPrefix+kid))
}

// Open decrypts what Seal made for kid. Anything else, a sealed seed of another kid
// or one sealed with another KEK included, is ErrWrongKEK.
func (k *KEK) Open(kid string, sealed []byte) ([]byte, error) {
	n := k.aead.NonceSize()
	if len(sealed) < 1+n+k.aead.Overhead() || sealed[0] != sealVersion {
		return nil, fmt.Errorf("signing key %s: %w", kid, ErrWrongKEK)
	}
	seed, err := k.aead.Open(nil, sealed[1:1+n], sealed[1+n:], []byte(aadPrefix+kid))
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", kid, ErrWrongKEK)
	}
	return seed, nil
}
