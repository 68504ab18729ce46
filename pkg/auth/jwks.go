package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
)

// JWK is one public key in a JWKS document (RFC 7517, OKP keys of RFC 8037).
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

// KeySet is a JWKS document.
type KeySet struct {
	Keys []JWK `json:"keys"`
}

// PublicJWK describes an Ed25519 public key for publication.
func PublicJWK(kid string, pub ed25519.PublicKey) JWK {
	return JWK{Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(pub), Kid: kid, Alg: Algorithm, Use: "sig"}
}

// Thumbprint is the RFC 7638 thumbprint of an Ed25519 public key, base64url: the key
// id Bazaar gives its keys, derived from the key itself so that two parties always
// agree on it.
func Thumbprint(pub ed25519.PublicKey) string {
	canonical := `{"crv":"Ed25519","kty":"OKP","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `"}`
	sum := sha256.Sum256([]byte(canonical))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// StaticKeys returns the usable keys of the set: Ed25519 signing keys only.
func (s KeySet) StaticKeys() StaticKeys {
	out := StaticKeys{}
	for _, k := range s.Keys {
		if k.Kty != "OKP" || k.Crv != "Ed25519" || (k.Alg != "" && k.Alg != Algorithm) || (k.Use != "" && k.Use != "sig") {
			continue
		}
		x, err := base64.RawURLEncoding.DecodeString(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			continue
		}
		out[k.Kid] = ed25519.PublicKey(x)
	}
	return out
}

// JWKS is a remote key set fetched from a URL. It is cached for MaxAge and fetched again
// on an unknown kid (a rotated key), but at most once per MinRefresh so that tokens with
// made-up kids cannot turn into a flood of fetches. While the URL is unreachable the
// cached keys keep working.
type JWKS struct {
	url        string
	client     *http.Client
	MaxAge     time.Duration
	MinRefresh time.Duration

	mu        sync.Mutex
	keys      StaticKeys
	fetchedAt time.Time
	triedAt   time.Time
}

// NewJWKS fetches keys from url with client (nil: a client with a 5 s timeout).
func NewJWKS(url string, client *http.Client) *JWKS {
	if client == nil {
		// Not http.DefaultTransport: it reads HTTP_PROXY from the environment, and
		// the keys are fetched from inside the system.
		client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			MaxIdleConnsPerHost: 2, IdleConnTimeout: 90 * time.Second, ResponseHeaderTimeout: 5 * time.Second,
		}}
	}
	return &JWKS{url: url, client: client, MaxAge: 5 * time.Minute, MinRefresh: 10 * time.Second}
}

// Key implements Keys.
func (j *JWKS) Key(ctx context.Context, kid string) (ed25519.PublicKey, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	now := time.Now()
	k, known := j.keys[kid]
	stale := now.Sub(j.fetchedAt) > j.MaxAge
	if known && !stale {
		return k, nil
	}
	if now.Sub(j.triedAt) >= j.MinRefresh || j.keys == nil {
		j.triedAt = now
		keys, err := j.fetch(ctx)
		switch {
		case err == nil:
			j.keys, j.fetchedAt = keys, now
		case j.keys == nil:
			return nil, apperr.Wrap(err, apperr.Unavailable, "the users service's signing keys cannot be fetched")
		}
	}
	if k, ok := j.keys[kid]; ok {
		return k, nil
	}
	return nil, ErrUnknownKey
}

func (j *JWKS) fetch(ctx context.Context) (StaticKeys, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := j.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch jwks: status %d", resp.StatusCode)
	}
	var set KeySet
	if err := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 1<<20)).Decode(&set); err != nil {
		return nil, fmt.Errorf("decode jwks: %w", err)
	}
	keys := set.StaticKeys()
	if len(keys) == 0 {
		return nil, errors.New("jwks has no Ed25519 signing keys")
	}
	return keys, nil
}
