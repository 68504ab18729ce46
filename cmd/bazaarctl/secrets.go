package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/bazaar-shop/bazaar/internal/programs"
	"github.com/bazaar-shop/bazaar/pkg/svcauth"
)

// services are the programs that get a service key: every service (the gateway calls
// no internal route).
var services = programs.Services()

// The layout of a secrets directory (secrets init): what the compose file mounts into
// each container, a part each.
const (
	keysSubdir    = "keys"                 // svcauth's layout: <service>/service.key, public/<service>.pub
	kekFile       = "users/signing-kek"    // users' SIGNING_KEK_FILE
	adminPassFile = "users/admin-password" // users' BOOTSTRAP_ADMIN_PASSWORD_FILE
)

// secretsInit creates, on a stack's first start, what it must not share with any other
// stack: a key for each service's internal calls, the key-encryption key of the users
// service's signing keys, and the bootstrap admin's password, which it prints once.
// What exists is kept, so it runs on every start (the compose file's init container).
func secretsInit(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("secrets init", flag.ContinueOnError)
	dir := fs.String("dir", "", "the secrets directory (required)")
	owner := fs.String("owner", "", "uid:gid to give the files to (the services' user in their containers)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("secrets init: -dir is required")
	}
	uid, gid, err := parseOwner(*owner)
	if err != nil {
		return err
	}
	created, err := svcauth.EnsureKeys(filepath.Join(*dir, keysSubdir), services...)
	if err != nil {
		return err
	}
	if len(created) > 0 {
		fmt.Fprintf(out, "service keys created for %s\n", strings.Join(created, ", "))
	}
	kek := make([]byte, 32)
	_, _ = rand.Read(kek)
	if made, err := createSecret(filepath.Join(*dir, kekFile), base64.StdEncoding.EncodeToString(kek)); err != nil {
		return err
	} else if made {
		fmt.Fprintln(out, "users' signing-key encryption key created")
	}
	pass := make([]byte, 18)
	_, _ = rand.Read(pass)
	password := base64.RawURLEncoding.EncodeToString(pass)
	if made, err := createSecret(filepath.Join(*dir, adminPassFile), password); err != nil {
		return err
	} else if made {
		// Printed this once, for the operator reading the first start's output; it is
		// kept only in the secrets directory.
		fmt.Fprintf(out, "the bootstrap admin's password, generated now and shown only this once: %s\n", password)
	}
	if uid >= 0 {
		return chownAll(*dir, uid, gid)
	}
	return nil
}

// createSecret writes value to file (0600) unless the file exists, and reports whether
// it did.
func createSecret(file, value string) (bool, error) {
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return false, err
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if _, err := io.WriteString(f, value+"\n"); err != nil {
		f.Close()
		os.Remove(file)
		return false, err
	}
	return true, f.Close()
}

func parseOwner(s string) (uid, gid int, err error) {
	if s == "" {
		return -1, -1, nil
	}
	u, g, ok := strings.Cut(s, ":")
	uid, err1 := strconv.Atoi(u)
	gid, err2 := strconv.Atoi(g)
	if !ok || err1 != nil || err2 != nil || uid < 0 || gid < 0 {
		return 0, 0, fmt.Errorf("-owner %q: want uid:gid, numbers", s)
	}
	return uid, gid, nil
}

// chownAll gives everything under dir to uid:gid: the init container runs as root to
// write to a fresh volume, the services read as their own user.
func chownAll(dir string, uid, gid int) error {
	return filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
}

// keysRotate rotates a service's key in a running stack (svcauth.Rotate): the new
// public key is published, the callees given time to read it, then the private key
// replaced; the service signs with the new key within svcauth.ReloadEvery, and the old
// key stays trusted until the next rotation.
func keysRotate(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("keys rotate", flag.ContinueOnError)
	dir := fs.String("dir", "", "the keys directory (make run: var/keys; compose: the secrets volume's keys/)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || fs.NArg() != 1 {
		return errors.New("usage: bazaarctl keys rotate -dir DIR SERVICE")
	}
	service := fs.Arg(0)
	wait := svcauth.ReloadEvery + time.Second
	kid, err := svcauth.Rotate(*dir, service, 2, func() {
		fmt.Fprintf(out, "%s's new public key is published; waiting %s for every service to read it\n", service, wait)
		time.Sleep(wait) // the documented wait between the two steps, not a synchronisation
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s signs with key %s from now on; its previous key stays trusted until the next rotation\n", service, kid)
	return nil
}
