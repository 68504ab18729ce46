package loadgen

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// refreshBefore is how long before its expiry an access token is refreshed.
const refreshBefore = time.Minute

// errRejected is a log-in or refresh the users service refused (401).
var errRejected = errors.New("rejected")

// tokens are an account's token pair.
type tokens struct {
	Access  string    `json:"access_token"`
	Refresh string    `json:"refresh_token"`
	Expires time.Time `json:"expires_at"` // of the access token
}

// account is one of the shared accounts. Its tokens are read by every shopper using
// it; signing in (refresh, log-in, sign-up) is done by one at a time.
type account struct {
	n        int
	email    string
	password string
	key      string        // its token cache key
	lock     chan struct{} // held while signing in
	noSignUp bool          // never register it (the admin)

	mu    sync.Mutex
	tok   tokens
	known bool // the account is believed to exist: skip straight to log-in
}

func (a *account) current() tokens {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.tok
}

func (a *account) set(t tokens) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.tok, a.known = t, true
}

// invalidate forgets access, a token the gateway refused (401), unless it has been
// replaced already; the next token call refreshes it.
func (a *account) invalidate(access string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.tok.Access == access {
		a.tok.Access = ""
	}
}

// pool is the accounts the shoppers share. It signs them in one after another at the
// start (warm), pacing log-ins and sign-ups, and hands out those ready in turn, so that
// orders start as soon as one account is ready.
type pool struct {
	cfg      Config
	cl       *client
	clock    clock
	signIns  *bucket // log-ins and sign-ups (limited per IP and e-mail by the gateway)
	anon     *bucket // refreshes (limited per IP by the gateway)
	cache    *tokenCache
	accounts []*account

	mu      sync.Mutex
	ready   []*account
	readyCh chan struct{} // closed when the first account is ready
	doneCh  chan struct{} // closed when warm has finished
	warmErr error         // why accounts could not sign in, once warm has finished
	failed  []string      // the accounts that could not, and why
	next    atomic.Uint64
}

func newPool(cfg Config, cl *client, signIns, anon *bucket, cache *tokenCache) *pool {
	p := &pool{cfg: cfg, cl: cl, clock: cfg.clock, signIns: signIns, anon: anon, cache: cache,
		readyCh: make(chan struct{}), doneCh: make(chan struct{})}
	for n := 1; n <= cfg.Accounts; n++ {
		a := &account{n: n, email: cfg.email(n), password: cfg.Password, lock: make(chan struct{}, 1)}
		a.key = cfg.BaseURL + " " + a.email
		if t, ok := cache.get(a.key); ok {
			a.tok, a.known = t, true
		}
		p.accounts = append(p.accounts, a)
	}
	return p
}

// warm signs every account in: first those whose cached access token is still good
// (no request), then those with a refresh token (a refresh each), then the rest
// (log-in, or sign-up and log-in). An account that fails is tried again twice, after
// a pause, unless it was refused; one that still fails is not used.
func (p *pool) warm(ctx context.Context) {
	defer close(p.doneCh)
	now := p.clock.Now()
	order := slices.Clone(p.accounts)
	rank := func(a *account) int {
		switch t := a.current(); {
		case t.Access != "" && t.Expires.Sub(now) > refreshBefore:
			return 0
		case t.Refresh != "":
			return 1
		}
		return 2
	}
	slices.SortStableFunc(order, func(a, b *account) int { return cmp.Compare(rank(a), rank(b)) })
	var errs []error
	defer func() {
		p.mu.Lock()
		p.warmErr = errors.Join(errs...)
		p.mu.Unlock()
	}()
	for _, a := range order {
		var err error
		for try := range 3 {
			if _, err = p.token(ctx, a); err == nil || !transient(err) || ctx.Err() != nil {
				break
			}
			if p.clock.Sleep(ctx, time.Duration(try+1)*time.Second) != nil {
				break
			}
		}
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			return
		}
		p.mu.Lock()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a.email, err))
			p.failed = append(p.failed, fmt.Sprintf("account %s was not used: %v", a.email, err))
		} else {
			p.ready = append(p.ready, a)
			if len(p.ready) == 1 {
				close(p.readyCh)
			}
		}
		p.mu.Unlock()
	}
}

// failures describes the accounts that could not sign in so far.
func (p *pool) failures() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.failed)
}

// waitReady waits until an account is ready, and fails when none will be.
func (p *pool) waitReady(ctx context.Context) error {
	select {
	case <-p.readyCh:
		return nil
	case <-p.doneCh:
	case <-ctx.Done():
		return ctx.Err()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.ready) > 0 {
		return nil
	}
	return &requestError{ErrAuth, 0, fmt.Errorf("no account could sign in: %w", p.warmErr)}
}

// pick hands out the ready accounts in turn.
func (p *pool) pick(ctx context.Context) (*account, error) {
	if err := p.waitReady(ctx); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ready[int(p.next.Add(1)-1)%len(p.ready)], nil
}

// token is a's access token, refreshed or signed in anew when it has expired, is about
// to, or was refused.
func (p *pool) token(ctx context.Context, a *account) (string, error) {
	valid := func() (string, bool) {
		t := a.current()
		return t.Access, t.Access != "" && t.Expires.Sub(p.clock.Now()) > refreshBefore
	}
	if tok, ok := valid(); ok {
		return tok, nil
	}
	select {
	case a.lock <- struct{}{}:
	case <-ctx.Done():
		return "", &requestError{ErrInterrupted, 0, ctx.Err()}
	}
	defer func() { <-a.lock }()
	if tok, ok := valid(); ok { // another shopper did it meanwhile
		return tok, nil
	}
	if err := p.signIn(ctx, a); err != nil {
		return "", err
	}
	return a.current().Access, nil
}

// signIn gets a new token pair for a: a refresh when it has a refresh token; else a
// log-in, with a sign-up first when the account is not known to exist, or after the
// log-in was refused (a stack whose database was reset).
func (p *pool) signIn(ctx context.Context, a *account) error {
	if a.current().Refresh != "" {
		err := p.refresh(ctx, a)
		if !errors.Is(err, errRejected) {
			return err
		}
	}
	a.mu.Lock()
	known := a.known
	a.mu.Unlock()
	if !known {
		if err := p.register(ctx, a); err != nil {
			return err
		}
	}
	err := p.login(ctx, a)
	if errors.Is(err, errRejected) && known && !a.noSignUp {
		if err = p.register(ctx, a); err == nil {
			err = p.login(ctx, a)
		}
	}
	if errors.Is(err, errRejected) {
		p.cl.stats.error(ErrAuth)
		return &requestError{ErrAuth, http.StatusUnauthorized, fmt.Errorf("%s cannot log in with the password given", a.email)}
	}
	return err
}

type tokenAnswer struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int    `json:"expires_in"`
}

// store keeps the token pair of a 200 answer in a and in the cache.
func (p *pool) store(a *account, c call, ans answer) error {
	var t tokenAnswer
	if err := ans.decode(c, &t); err != nil {
		p.cl.stats.error(ErrProtocol)
		return err
	}
	if t.AccessToken == "" || t.RefreshToken == "" || t.ExpiresIn <= 0 {
		p.cl.stats.error(ErrProtocol)
		return &requestError{ErrProtocol, ans.status, fmt.Errorf("%s %s: the answer lacks a token or expires_in", c.method, c.path)}
	}
	tok := tokens{Access: t.AccessToken, Refresh: t.RefreshToken,
		Expires: p.clock.Now().Add(time.Duration(t.ExpiresIn) * time.Second)}
	a.set(tok)
	p.cache.put(a.key, tok)
	return nil
}

func (p *pool) refresh(ctx context.Context, a *account) error {
	if err := p.anon.wait(ctx); err != nil {
		return &requestError{ErrInterrupted, 0, err}
	}
	c := call{endpoint: "refresh", method: http.MethodPost, path: "/api/v1/auth/refresh",
		body: map[string]string{"refresh_token": a.current().Refresh}}
	ans, err := p.cl.do(ctx, c)
	switch {
	case err != nil:
		return err
	case ans.status == http.StatusOK:
		return p.store(a, c, ans)
	case ans.status == http.StatusUnauthorized:
		// Used or expired (another run may have used it): forget it and log in.
		a.mu.Lock()
		a.tok = tokens{}
		a.mu.Unlock()
		return errRejected
	}
	return ans.unexpected(p.cl.stats, c)
}

func (p *pool) login(ctx context.Context, a *account) error {
	if err := p.signIns.wait(ctx); err != nil {
		return &requestError{ErrInterrupted, 0, err}
	}
	c := call{endpoint: "login", method: http.MethodPost, path: "/api/v1/auth/login",
		body: map[string]string{"email": a.email, "password": a.password}}
	ans, err := p.cl.do(ctx, c)
	switch {
	case err != nil:
		return err
	case ans.status == http.StatusOK:
		return p.store(a, c, ans)
	case ans.status == http.StatusUnauthorized:
		return errRejected
	}
	return ans.unexpected(p.cl.stats, c)
}

// register signs a up; an account that exists already (409) is as good.
func (p *pool) register(ctx context.Context, a *account) error {
	if err := p.signIns.wait(ctx); err != nil {
		return &requestError{ErrInterrupted, 0, err}
	}
	c := call{endpoint: "register", method: http.MethodPost, path: "/api/v1/auth/register",
		body: map[string]string{"email": a.email, "password": a.password, "name": fmt.Sprintf("Load Generator %d", a.n)}}
	ans, err := p.cl.do(ctx, c)
	switch {
	case err != nil:
		return err
	case ans.status == http.StatusCreated, ans.status == http.StatusConflict:
		a.mu.Lock()
		a.known = true
		a.mu.Unlock()
		return nil
	}
	return ans.unexpected(p.cl.stats, c)
}

// DefaultTokenCache is where the command keeps tokens between runs:
// loadgen-tokens.json under bazaar/ in the user's cache directory
// (os.UserCacheDir); "" when there is none.
func DefaultTokenCache() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "bazaar", "loadgen-tokens.json")
}

// tokenCache is the token file: one entry per gateway and account. A nil cache keeps
// nothing. Runs that share the file at the same time may each use a refresh token the
// other already used; the users service then ends that token's family and the account
// logs in again (a sign-in more, nothing worse).
type tokenCache struct {
	path string

	mu      sync.Mutex
	entries map[string]tokens
	err     error // the last failure to write, reported once at the end
}

type tokenFile struct {
	Version int               `json:"version"`
	Tokens  map[string]tokens `json:"tokens"`
}

// openTokenCache reads the file at path; a missing or unreadable one is an empty
// cache (it is only a cache). An empty path is no cache.
func openTokenCache(path string) *tokenCache {
	if path == "" {
		return nil
	}
	return &tokenCache{path: path, entries: readTokenFile(path)}
}

func readTokenFile(path string) map[string]tokens {
	var f tokenFile
	if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, &f) == nil && f.Version == 1 && f.Tokens != nil {
		return f.Tokens
	}
	return map[string]tokens{}
}

func (c *tokenCache) get(key string) (tokens, bool) {
	if c == nil {
		return tokens{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.entries[key]
	return t, ok
}

// put stores t under key and writes the file (owner-only: tokens are credentials),
// merged with what another run may have written meanwhile, and replaced atomically.
func (c *tokenCache) put(key string, t tokens) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries[key] = t
	merged := readTokenFile(c.path)
	for k, v := range c.entries {
		merged[k] = v
	}
	if err := writeTokenFile(c.path, merged); err != nil {
		c.err = err
	}
}

// Err is the last failure to write the file, if any.
func (c *tokenCache) Err() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func writeTokenFile(path string, entries map[string]tokens) error {
	b, err := json.MarshalIndent(tokenFile{Version: 1, Tokens: entries}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".loadgen-tokens-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
