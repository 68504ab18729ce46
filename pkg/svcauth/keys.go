// Package svcauth proves to a Bazaar service which other service is calling it.
//
// Every service that calls another holds an Ed25519 private key of its own (its
// SERVICE_KEY_FILE); every service that is called trusts a directory of the callers'
// public keys (its SERVICE_TRUST_DIR), one file per service, named after it. A call
// carries a short-lived token, a JWT typed svc+jwt, naming the caller (iss and sub)
// and the one service it is for (aud). The callee checks the signature against the
// keys published under the caller's name, the audience against its own name, the
// lifetime, and then whether the route lets that caller in. So a token stolen from one
// callee's logs cannot be replayed at another, a shopper's access token grants nothing
// on an internal route, and a service can only do what its routes allow it.
//
// Keys are files, so that the same code serves make run (a directory it creates), the
// compose file (an init container writing to a volume) and Kubernetes (a Secret and a
// ConfigMap). Both sides read their files again while running, so that a key can be
// rotated without a restart: see Rotate.
package svcauth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/bazaar-shop/bazaar/pkg/auth"
)

// The layout EnsureKeys and Rotate keep under a keys directory: each service's private
// key in a directory of its own (so that it can be mounted alone into that service's
// container), and every public key in one shared directory.
const (
	// PublicDir is the trust directory under a keys directory: <service>.pub files.
	PublicDir = "public"
	// KeyFileName is a service's private key in <keys>/<service>/.
	KeyFileName = "service.key"
	publicExt   = ".pub"
)

// KeyFile is where EnsureKeys keeps service's private key under dir.
func KeyFile(dir, service string) string { return filepath.Join(dir, service, KeyFileName) }

// TrustDir is where EnsureKeys keeps the public keys under dir.
func TrustDir(dir string) string { return filepath.Join(dir, PublicDir) }

// validName is what a service name may be: it names files and appears in tokens.
var validName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

func checkName(service string) error {
	if !validName.MatchString(service) {
		return fmt.Errorf("svcauth: %q is not a service name (lowercase letters, digits and dashes)", service)
	}
	return nil
}

// EnsureKeys makes sure dir holds a private key for each service and the public keys
// of all of them, creating what is missing and leaving what exists alone: it is what
// make run and the compose file's init container run on every start. It returns the
// services whose keys it created. Private keys are written 0600, atomically.
func EnsureKeys(dir string, services ...string) (created []string, err error) {
	for _, s := range services {
		if err := checkName(s); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(TrustDir(dir), 0o755); err != nil {
		return nil, fmt.Errorf("svcauth: %w", err)
	}
	for _, s := range services {
		keyFile := KeyFile(dir, s)
		if _, err := os.Stat(keyFile); err == nil {
			// The key exists; make sure its public half is trusted (a directory
			// copied without its public part, or a public file deleted by hand).
			key, err := ReadPrivateKey(keyFile)
			if err != nil {
				return created, err
			}
			if err := addPublic(dir, s, key.Public().(ed25519.PublicKey), 0); err != nil {
				return created, err
			}
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return created, fmt.Errorf("svcauth: %w", err)
		}
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return created, fmt.Errorf("svcauth: generate a key for %s: %w", s, err)
		}
		// The public half first: a callee must never see a caller's key before it
		// can trust it.
		if err := addPublic(dir, s, key.Public().(ed25519.PublicKey), 0); err != nil {
			return created, err
		}
		if err := writePrivateKey(keyFile, key); err != nil {
			return created, err
		}
		created = append(created, s)
	}
	return created, nil
}

// Rotate gives service a new private key, in two steps so that no call is refused on
// the way. First its new public key is added to the trust directory beside the current
// one (keeping at most keep public keys for the service, oldest dropped; at least 2),
// then wait runs, and only then is the private key replaced. wait must last at least
// ReloadEvery, so that every callee has read the new public key before the first token
// signed with it arrives. The previous public key stays trusted, so tokens signed
// before the switch stay valid until they expire, until the next rotation drops it.
// It returns the new key's id.
func Rotate(dir, service string, keep int, wait func()) (string, error) {
	if err := checkName(service); err != nil {
		return "", err
	}
	keep = max(keep, 2)
	if _, err := ReadPrivateKey(KeyFile(dir, service)); err != nil {
		return "", err
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", fmt.Errorf("svcauth: generate a key for %s: %w", service, err)
	}
	pub := key.Public().(ed25519.PublicKey)
	if err := addPublic(dir, service, pub, keep); err != nil {
		return "", err
	}
	wait()
	if err := writePrivateKey(KeyFile(dir, service), key); err != nil {
		return "", err
	}
	return auth.Thumbprint(pub), nil
}

// addPublic adds pub to service's public key file unless it is there already, keeping
// the newest keep keys (0: all).
func addPublic(dir, service string, pub ed25519.PublicKey, keep int) error {
	file := filepath.Join(TrustDir(dir), service+publicExt)
	keys, err := readPublicKeys(file)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if slices.ContainsFunc(keys, func(k ed25519.PublicKey) bool { return k.Equal(pub) }) {
		return nil
	}
	keys = append(keys, pub)
	if keep > 0 && len(keys) > keep {
		keys = keys[len(keys)-keep:]
	}
	var out []byte
	for _, k := range keys {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			return fmt.Errorf("svcauth: %w", err)
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})...)
	}
	return writeAtomically(file, out, 0o644)
}

func writePrivateKey(file string, key ed25519.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("svcauth: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return fmt.Errorf("svcauth: %w", err)
	}
	return writeAtomically(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// writeAtomically replaces file with data, so that a reader never sees half a key.
func writeAtomically(file string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(file), ".tmp-"+filepath.Base(file)+"-")
	if err != nil {
		return fmt.Errorf("svcauth: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("svcauth: write %s: %w", file, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("svcauth: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("svcauth: write %s: %w", file, err)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return fmt.Errorf("svcauth: %w", err)
	}
	return nil
}

// ReadPrivateKey reads an Ed25519 private key from a PEM file (PKCS #8, "PRIVATE KEY",
// as openssl genpkey -algorithm ed25519 writes).
func ReadPrivateKey(file string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("svcauth: read the service key: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("svcauth: %s holds no PEM PRIVATE KEY", file)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("svcauth: %s: %w", file, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("svcauth: %s is not an Ed25519 key", file)
	}
	return key, nil
}

// readPublicKeys reads every PEM PUBLIC KEY block of a file (a service's keys, during
// a rotation more than one); anything else in it is an error, so that a damaged file is
// noticed rather than half-read.
func readPublicKeys(file string) ([]ed25519.PublicKey, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var keys []ed25519.PublicKey
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("svcauth: %s: unexpected PEM block %q", file, block.Type)
		}
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("svcauth: %s: %w", file, err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("svcauth: %s: not an Ed25519 key", file)
		}
		keys = append(keys, pub)
	}
	if strings.TrimSpace(string(b)) != "" {
		return nil, fmt.Errorf("svcauth: %s: trailing data that is not a PEM block", file)
	}
	return keys, nil
}

// trusted is a trust directory's keys by key id.
type trusted map[string]trustedKey

type trustedKey struct {
	service string
	key     ed25519.PublicKey
}

// readTrustDir reads every <service>.pub file of dir. Files of other names are
// ignored (Kubernetes puts ..data links beside a ConfigMap's files).
func readTrustDir(dir string) (trusted, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("svcauth: read the trust directory: %w", err)
	}
	out := trusted{}
	for _, e := range entries {
		service, ok := strings.CutSuffix(e.Name(), publicExt)
		if !ok || checkName(service) != nil {
			continue
		}
		keys, err := readPublicKeys(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			out[auth.Thumbprint(k)] = trustedKey{service: service, key: k}
		}
	}
	return out, nil
}
