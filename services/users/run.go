package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/pkg/config"
	"github.com/bazaar-shop/bazaar/pkg/platform"
	"github.com/bazaar-shop/bazaar/pkg/redisclient"
	"github.com/bazaar-shop/bazaar/services/users/internal/httpapi"
	"github.com/bazaar-shop/bazaar/services/users/internal/jobs"
	"github.com/bazaar-shop/bazaar/services/users/internal/password"
	"github.com/bazaar-shop/bazaar/services/users/internal/postgres"
	"github.com/bazaar-shop/bazaar/services/users/internal/postgres/migrations"
	"github.com/bazaar-shop/bazaar/services/users/internal/signing"
	"github.com/bazaar-shop/bazaar/services/users/internal/throttle"
	"github.com/bazaar-shop/bazaar/services/users/internal/user"
)

// settings is the users service's configuration: the platform's shared settings plus
// its own.
type settings struct {
	platform.Config
	AccessTokenTTL  time.Duration // ACCESS_TOKEN_TTL, at most auth.DefaultMaxLifetime
	RefreshTokenTTL time.Duration // REFRESH_TOKEN_TTL
	// SessionMaxAge (SESSION_MAX_AGE) is the longest a session lives from its log-in,
	// however often it is refreshed.
	SessionMaxAge time.Duration
	// RefreshTokenRetention is how long a dead session's refresh tokens are kept
	// (REFRESH_TOKEN_RETENTION).
	RefreshTokenRetention time.Duration
	// LoginPolicy is how failed log-ins slow down further ones (LOGIN_EMAIL_FAILURES,
	// LOGIN_ADDRESS_FAILURES, LOGIN_FRESH_BUDGET, LOGIN_FAILURE_WINDOW,
	// LOGIN_BASE_DELAY, LOGIN_MAX_DELAY).
	LoginPolicy throttle.Policy
	// LoginRedisTimeout (LOGIN_REDIS_TIMEOUT) bounds the log-in throttle's call to
	// Redis; past it the failures are counted in the process, which does not know
	// those Redis holds.
	LoginRedisTimeout time.Duration
	// TrustedProxies (TRUSTED_PROXIES) may say the client's address in X-Forwarded-For.
	TrustedProxies httpapi.TrustedProxies
	// SigningKEK seals the signing keys in the database (SIGNING_KEK, or the file
	// SIGNING_KEK_FILE); nil keeps them in plain, which only SIGNING_KEYS_PLAINTEXT
	// allows.
	SigningKEK *signing.KEK
	// SigningKEKSource is the variable SigningKEK came from, for the log and errors.
	SigningKEKSource string
	// PreviousKEK is the key-encryption key before a rotation (SIGNING_KEK_PREVIOUS, or
	// the file SIGNING_KEK_PREVIOUS_FILE): keys still sealed under it are sealed again
	// under SigningKEK at start. Nil when there is none.
	PreviousKEK *signing.KEK
	// PreviousKEKSource is the variable PreviousKEK came from.
	PreviousKEKSource string
	// SigningKeyMaxAge (SIGNING_KEY_MAX_AGE) is how old the newest signing key may be
	// at a start before that start adds a new one to sign with: a rotation. 0, the
	// default, never rotates. Older keys stay in the ring and the JWKS (none is ever
	// dropped), so the tokens they signed verify until they expire.
	SigningKeyMaxAge time.Duration
	// Admin, when set, is an admin account ensured at start (BOOTSTRAP_ADMIN_EMAIL,
	// BOOTSTRAP_ADMIN_PASSWORD or the file BOOTSTRAP_ADMIN_PASSWORD_FILE,
	// BOOTSTRAP_ADMIN_NAME); the local stack seeds its demo admin with it.
	Admin *user.Registration
}

// loadSettings reads the configuration; the error names every bad variable.
func loadSettings(getenv func(string) string) (settings, error) {
	env := config.New(getenv)
	s := settings{
		Config:                platform.LoadConfig(env, "users", ":8081", ":9081"),
		AccessTokenTTL:        env.Duration("ACCESS_TOKEN_TTL", 15*time.Minute),
		RefreshTokenTTL:       env.Duration("REFRESH_TOKEN_TTL", 30*24*time.Hour),
		SessionMaxAge:         env.Duration("SESSION_MAX_AGE", 30*24*time.Hour),
		RefreshTokenRetention: env.Duration("REFRESH_TOKEN_RETENTION", jobs.DefaultRefreshTokenRetention),
		LoginPolicy: throttle.Policy{
			EmailFailures:   env.Int("LOGIN_EMAIL_FAILURES", throttle.DefaultPolicy.EmailFailures, 1, 1000),
			AddressFailures: env.Int("LOGIN_ADDRESS_FAILURES", throttle.DefaultPolicy.AddressFailures, 1, 1_000_000),
			FreshBudget:     env.Int("LOGIN_FRESH_BUDGET", throttle.DefaultPolicy.FreshBudget, 0, 1000),
			Window:          env.Duration("LOGIN_FAILURE_WINDOW", throttle.DefaultPolicy.Window),
			BaseDelay:       env.Duration("LOGIN_BASE_DELAY", throttle.DefaultPolicy.BaseDelay),
			MaxDelay:        env.Duration("LOGIN_MAX_DELAY", throttle.DefaultPolicy.MaxDelay),
		},
		LoginRedisTimeout: env.Duration("LOGIN_REDIS_TIMEOUT", throttle.DefaultTimeout),
	}
	var proxiesErr error
	s.TrustedProxies, proxiesErr = httpapi.ParseTrustedProxies(env.String("TRUSTED_PROXIES", httpapi.DefaultTrustedProxies))
	if proxiesErr != nil {
		proxiesErr = fmt.Errorf("bad configuration: TRUSTED_PROXIES: %w", proxiesErr)
	}
	var ttlErr error
	if s.AccessTokenTTL > auth.DefaultMaxLifetime {
		// Every verifier (the gateway's, each service's) refuses a longer-lived token.
		ttlErr = fmt.Errorf("bad configuration: ACCESS_TOKEN_TTL=%s: want at most %s, the longest lifetime token verifiers accept",
			s.AccessTokenTTL, auth.DefaultMaxLifetime)
	}
	if env.String("SIGNING_KEY_MAX_AGE", "") != "" {
		s.SigningKeyMaxAge = env.Duration("SIGNING_KEY_MAX_AGE", 0)
	}
	kekErr := s.loadKEK(env)
	adminErr := s.loadAdmin(env)
	if err := errors.Join(env.Err(), ttlErr, proxiesErr, kekErr, adminErr); err != nil {
		return settings{}, err
	}
	return s, nil
}

// kekHelp says how to configure a key-encryption key, for start-up errors.
const kekHelp = "set SIGNING_KEK or SIGNING_KEK_FILE (the path of a file holding it) to a key-encryption key: " +
	"the base64 of 32 random bytes, as openssl rand -base64 32 makes"

// loadKEK reads the key-encryption key of the signing keys: from SIGNING_KEK or the
// file SIGNING_KEK_FILE (one, not both). Without one users refuses to start unless
// SIGNING_KEYS_PLAINTEXT=true is set explicitly, so that a deployment that forgets the
// KEK stops rather than storing the key that mints every token in plain. The KEK
// before a rotation, if any, is read the same way from SIGNING_KEK_PREVIOUS or
// SIGNING_KEK_PREVIOUS_FILE. Errors name the variables and never show a key.
func (s *settings) loadKEK(env *config.Env) error {
	value, from := env.SecretOrFile("SIGNING_KEK")
	previous, previousFrom := env.SecretOrFile("SIGNING_KEK_PREVIOUS")
	plain := env.Bool("SIGNING_KEYS_PLAINTEXT", false)
	switch {
	case from == "" && previousFrom != "":
		// Keys cannot go from a KEK back to plain: the previous KEK only opens keys to
		// seal them again under the current one.
		return fmt.Errorf("bad configuration: %s is set without SIGNING_KEK or SIGNING_KEK_FILE: "+
			"the previous key-encryption key opens the signing keys only to seal them again under the current one", previousFrom)
	case from == "" && !plain:
		return errors.New("bad configuration: no key-encryption key for the signing keys: " + kekHelp +
			" (or SIGNING_KEYS_PLAINTEXT=true to keep them unencrypted, for local development only)")
	case from == "" || value == "":
		return nil // none, as SIGNING_KEYS_PLAINTEXT allows; or set wrongly, which env reports
	}
	var errs []error
	var err error
	s.SigningKEKSource = from
	if s.SigningKEK, err = signing.ParseKEK(value); err != nil {
		errs = append(errs, fmt.Errorf("bad configuration: %s: %w", from, err))
	}
	if plain {
		errs = append(errs, fmt.Errorf("bad configuration: SIGNING_KEYS_PLAINTEXT=true contradicts %s; unset one", from))
	}
	if previous != "" {
		s.PreviousKEKSource = previousFrom
		if s.PreviousKEK, err = signing.ParseKEK(previous); err != nil {
			errs = append(errs, fmt.Errorf("bad configuration: %s: %w", previousFrom, err))
		}
	}
	return errors.Join(errs...)
}

// loadAdmin reads the bootstrap admin: all or nothing, so that a half-set pair is a
// mistake reported at start rather than an admin silently missing. The password is in
// BOOTSTRAP_ADMIN_PASSWORD or the file BOOTSTRAP_ADMIN_PASSWORD_FILE, so that a
// deployment can hand over one generated on its first start rather than a known one.
func (s *settings) loadAdmin(env *config.Env) error {
	email := env.String("BOOTSTRAP_ADMIN_EMAIL", "")
	pass, passFrom := env.SecretOrFile("BOOTSTRAP_ADMIN_PASSWORD")
	name := env.String("BOOTSTRAP_ADMIN_NAME", "Bazaar Admin")
	switch {
	case email == "" && passFrom == "":
		return nil
	case email == "":
		return fmt.Errorf("bad configuration: BOOTSTRAP_ADMIN_EMAIL must be set with %s", passFrom)
	case passFrom == "":
		return errors.New("bad configuration: BOOTSTRAP_ADMIN_PASSWORD or BOOTSTRAP_ADMIN_PASSWORD_FILE must be set with BOOTSTRAP_ADMIN_EMAIL")
	case pass == "":
		return nil // set wrongly, which env reports
	}
	var errs []error
	check := func(variable string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("bad configuration: %s: %w", variable, err))
		}
	}
	reg := user.Registration{}
	var err error
	reg.Email, err = user.ParseEmail(email)
	check("BOOTSTRAP_ADMIN_EMAIL", err)
	reg.Password, err = user.ParsePassword(pass)
	check(passFrom, err)
	reg.Name, err = user.ParseName(name)
	check("BOOTSTRAP_ADMIN_NAME", err)
	s.Admin = &reg
	return errors.Join(errs...)
}

// run starts the users service: accounts, logins and the signing keys every other
// program verifies access tokens with.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cfg, err := loadSettings(getenv)
	if err != nil {
		return err
	}
	if platform.Probing(args) {
		return platform.Probe(ctx, cfg.InternalAddr)
	}
	p, err := platform.Start(ctx, cfg.Config, migrations.FS, stdout)
	if err != nil {
		return err
	}
	defer p.Close()
	adminEmail := ""
	if cfg.Admin != nil {
		adminEmail = cfg.Admin.Email.String()
	}
	p.Log.Info("users settings", "access_token_ttl", cfg.AccessTokenTTL.String(),
		"refresh_token_ttl", cfg.RefreshTokenTTL.String(), "session_max_age", cfg.SessionMaxAge.String(),
		"refresh_token_retention", cfg.RefreshTokenRetention.String(), "signing_kek_from", cmp.Or(cfg.SigningKEKSource, "none"),
		"signing_kek_previous_from", cmp.Or(cfg.PreviousKEKSource, "none"), "signing_key_max_age", maxAge(cfg.SigningKeyMaxAge),
		"bootstrap_admin_email", adminEmail, "login_policy", cfg.LoginPolicy.String(),
		"login_redis_timeout", cfg.LoginRedisTimeout.String(),
		"trusted_proxies", fmt.Sprint(cfg.TrustedProxies))

	// Session revocations and log-in throttling have a Redis client of their own that
	// gives up quickly: a request must not hang on a Redis that does.
	fastRedis, err := redisclient.OpenBounded(cfg.RedisURL)
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	defer fastRedis.Close()
	revocations := auth.RedisRevocations(fastRedis)

	store := postgres.NewStore(p.Pool)
	keys, err := loadSigningKeys(ctx, p, store, cfg)
	if err != nil {
		return err
	}
	signer := auth.NewSigner(keys.Current().ID, keys.Current().Private, cfg.AccessTokenTTL)
	// Failed log-ins are counted in Redis, in this process while Redis is down.
	guard := throttle.New(fastRedis, cfg.LoginPolicy, throttle.Options{Log: p.Log, Timeout: cfg.LoginRedisTimeout})
	users, err := user.NewService(store, password.New(password.OWASP), signer, time.Now, guard, user.Sessions{
		RefreshTTL: cfg.RefreshTokenTTL,
		MaxAge:     cfg.SessionMaxAge,
		Revoker:    revocations,
	})
	if err != nil {
		return err
	}
	if cfg.Admin != nil {
		admin, created, err := users.EnsureAdmin(ctx, *cfg.Admin)
		if err != nil {
			return fmt.Errorf("bootstrap admin: %w", err)
		}
		p.Log.Info("bootstrap admin ensured", "user_id", admin.ID, "created", created)
	}

	// user.registered and later events leave through the outbox relay; while Redis is
	// down they wait in the outbox and registration carries on.
	if err := p.RelayOutbox(); err != nil {
		return err
	}
	queue, err := p.Tasks()
	if err != nil {
		return err
	}
	if err := jobs.RegisterRefreshTokenCleanup(queue.Worker, queue.Scheduler, store, cfg.RefreshTokenRetention, p.Log); err != nil {
		return err
	}

	r := p.Router()
	httpapi.Mount(r, httpapi.Deps{
		Log:      p.Log,
		Users:    users,
		Verifier: auth.NewVerifier(keys.Verification()).WithRevocations(revocations).WithLogger(p.Log),
		KeySet:   keys.KeySet(),
		Proxies:  cfg.TrustedProxies,
	})
	return p.Serve(ctx, r, p.InternalRouter())
}

// loadSigningKeys seals any plain signing key when there is a key-encryption key, and
// any still sealed under the previous one (after a KEK rotation) again under it, and
// loads the keys. Every replica loads the same keys from the database, so any of them
// verifies what another signed, and a restart does not log anybody out.
func loadSigningKeys(ctx context.Context, p *platform.Platform, store *postgres.Store, cfg settings) (signing.Ring, error) {
	if cfg.SigningKEK == nil {
		p.Log.Warn("SIGNING KEYS ARE STORED UNENCRYPTED: anyone who reads the users database (a backup, a dump) can mint " +
			"access tokens for any user; " + kekHelp)
	} else {
		sealed, resealed, err := store.SealSigningKeys(ctx, cfg.SigningKEK, cfg.PreviousKEK)
		if err != nil {
			return nil, signingKeysError("seal the signing keys", err, cfg)
		}
		if sealed > 0 {
			p.Log.Info("signing keys encrypted in place", "keys", sealed, "kek_from", cfg.SigningKEKSource)
		}
		switch {
		case resealed > 0:
			p.Log.Info("signing keys sealed again under the new key-encryption key", "keys", resealed,
				"kek_from", cfg.SigningKEKSource, "previous_kek_from", cfg.PreviousKEKSource,
				"then", cfg.PreviousKEKSource+" can be removed; a replica given the old key-encryption key alone no longer starts")
		case cfg.PreviousKEK != nil:
			// Another replica sealed them, or an earlier start did.
			p.Log.Info("every signing key opens with the key-encryption key: "+cfg.PreviousKEKSource+" is no longer needed and can be removed",
				"kek_from", cfg.SigningKEKSource)
		}
	}
	keys, added, err := store.SigningKeys(ctx, signing.Generate, cfg.SigningKEK, cfg.SigningKeyMaxAge)
	if err != nil {
		return nil, signingKeysError("load signing keys", err, cfg)
	}
	if added && len(keys) > 1 {
		// Replicas that started before this one sign with the old key and know nothing
		// of the new one until they restart.
		p.Log.Info("signing key rotated", "kid", keys.Current().ID, "previous_kid", keys[1].ID,
			"keys", len(keys), "signing_key_max_age", cfg.SigningKeyMaxAge.String())
	}
	return keys, nil
}

// maxAge is SIGNING_KEY_MAX_AGE for the log.
func maxAge(d time.Duration) string {
	if d <= 0 {
		return "never"
	}
	return d.String()
}

// signingKeysError says which setting to fix when the signing keys do not open.
func signingKeysError(op string, err error, cfg settings) error {
	switch {
	case errors.Is(err, signing.ErrNoKEK):
		return fmt.Errorf("%s: %w: %s", op, err, kekHelp)
	case errors.Is(err, signing.ErrWrongKEK) && cfg.PreviousKEK != nil:
		return fmt.Errorf("%s: %w: neither %s nor %s opens it; check both", op, err, cfg.SigningKEKSource, cfg.PreviousKEKSource)
	case errors.Is(err, signing.ErrWrongKEK):
		return fmt.Errorf("%s: %w: check %s; if the key-encryption key was changed on purpose, "+
			"set the one before in SIGNING_KEK_PREVIOUS or SIGNING_KEK_PREVIOUS_FILE for a start, which seals the keys again under the new one",
			op, err, cfg.SigningKEKSource)
	}
	return fmt.Errorf("%s: %w", op, err)
}
