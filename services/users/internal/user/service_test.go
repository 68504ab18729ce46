package user_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/internal/testkit/testclock"
	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/pkg/redisclient"
	"github.com/bazaar-shop/bazaar/services/users/internal/throttle"
	"github.com/bazaar-shop/bazaar/services/users/internal/user"
)

// fakeStore keeps users and tokens in memory; the SQL store has its own tests.
type fakeStore struct {
	mu      sync.Mutex
	users   map[uuid.UUID]user.User
	tokens  []user.RefreshToken
	rotated [][]byte        // the old hashes RotateRefreshToken was asked for
	maxAges []time.Duration // the session ages it was given
	used    map[uuid.UUID]bool
	revoked map[uuid.UUID]bool // families
	err     error              // when set, every call fails with it
}

var _ user.Store = (*fakeStore)(nil)

func newFakeStore() *fakeStore {
	return &fakeStore{users: map[uuid.UUID]user.User{}, used: map[uuid.UUID]bool{}, revoked: map[uuid.UUID]bool{}}
}

func (s *fakeStore) CreateUser(_ context.Context, u user.User) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	for _, o := range s.users {
		if o.Email == u.Email {
			return user.ErrEmailTaken
		}
	}
	s.users[u.ID] = u
	return nil
}

func (s *fakeStore) EnsureAdmin(ctx context.Context, u user.User) (user.User, bool, error) {
	if err := s.CreateUser(ctx, u); err != nil && !errors.Is(err, user.ErrEmailTaken) {
		return user.User{}, false, err
	}
	got, err := s.UserByEmail(ctx, u.Email)
	return got, got.ID == u.ID, err
}

func (s *fakeStore) UserByID(_ context.Context, id uuid.UUID) (user.User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return user.User{}, s.err
	}
	if u, ok := s.users[id]; ok {
		return u, nil
	}
	return user.User{}, user.ErrNotFound
}

func (s *fakeStore) UserByEmail(_ context.Context, email user.Email) (user.User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return user.User{}, s.err
	}
	for _, u := range s.users {
		if u.Email == email {
			return u, nil
		}
	}
	return user.User{}, user.ErrNotFound
}

func (s *fakeStore) CreateRefreshToken(_ context.Context, t user.RefreshToken) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens = append(s.tokens, t)
	return s.err
}

// RotateRefreshToken keeps the rules of user.Store's contract that the service relies
// on (use once, reuse revokes the family, revoked is invalid, the session's age); the
// SQL store's tests hold it to the rest.
func (s *fakeStore) RotateRefreshToken(_ context.Context, old []byte, next user.RefreshToken, now time.Time, maxAge time.Duration) (user.RefreshToken, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rotated = append(s.rotated, old)
	s.maxAges = append(s.maxAges, maxAge)
	for _, t := range s.tokens {
		if !bytes.Equal(t.Hash, old) {
			continue
		}
		switch {
		case s.used[t.ID]:
			s.revoked[t.FamilyID] = true
			return user.RefreshToken{ID: t.ID, UserID: t.UserID, FamilyID: t.FamilyID}, user.ErrRefreshTokenReused
		case s.revoked[t.FamilyID]:
			return user.RefreshToken{}, user.ErrRefreshTokenInvalid
		case !now.Before(t.SessionStartedAt.Add(maxAge)):
			return user.RefreshToken{}, user.ErrSessionExpired
		}
		s.used[t.ID] = true
		next.UserID, next.FamilyID, next.ParentID, next.SessionStartedAt = t.UserID, t.FamilyID, t.ID, t.SessionStartedAt
		s.tokens = append(s.tokens, next)
		return next, nil
	}
	return user.RefreshToken{}, user.ErrRefreshTokenInvalid
}

func (s *fakeStore) RevokeRefreshTokenFamily(_ context.Context, token []byte, _ time.Time) (user.RefreshToken, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return user.RefreshToken{}, s.err
	}
	for _, t := range s.tokens {
		if bytes.Equal(t.Hash, token) {
			s.revoked[t.FamilyID] = true
			return t, nil
		}
	}
	return user.RefreshToken{}, user.ErrRefreshTokenInvalid
}

// fakeRevoker records the sessions it ended, or fails.
type fakeRevoker struct {
	mu      sync.Mutex
	revoked map[string]time.Duration // sid: ttl
	err     error
}

var _ user.SessionRevoker = (*fakeRevoker)(nil)

func (r *fakeRevoker) Revoke(_ context.Context, sid string, ttl time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	r.revoked[sid] = ttl
	return nil
}

func (r *fakeRevoker) ttl(sid string) (time.Duration, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ttl, ok := r.revoked[sid]
	return ttl, ok
}

// fakeHasher "hashes" by prefixing, and records what it was asked to verify against.
type fakeHasher struct {
	mu       sync.Mutex
	verified []string
}

var _ user.Hasher = (*fakeHasher)(nil)

func (h *fakeHasher) Hash(plain string) (string, error) { return "hashed:" + plain, nil }

func (h *fakeHasher) Verify(plain, encoded string) (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.verified = append(h.verified, encoded)
	return encoded == "hashed:"+plain, nil
}

type fakeSigner struct{}

var _ user.TokenSigner = fakeSigner{}

func (fakeSigner) Sign(p auth.Principal) (string, error) {
	return "access:" + p.UserID.String() + ":" + string(p.Role) + ":" + p.SessionID, nil
}
func (fakeSigner) TTL() time.Duration { return 15 * time.Minute }

var now = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)

// fixedNow is a clock stopped at now.
func fixedNow() time.Time { return now }

func newService(t *testing.T) (*user.Service, *fakeStore, *fakeHasher) {
	t.Helper()
	svc, store, hasher, _ := newServiceWith(t, fixedNow, 90*24*time.Hour)
	return svc, store, hasher
}

// home is the client address of the tests' log-ins.
var home = netip.MustParseAddr("203.0.113.1")

// newServiceWith is a service whose clock is clock and whose sessions last at most
// maxAge, throttling log-ins by the default policy in a fresh Redis.
func newServiceWith(t *testing.T, clock func() time.Time, maxAge time.Duration) (*user.Service, *fakeStore, *fakeHasher, *fakeRevoker) {
	t.Helper()
	store, hasher, revoker := newFakeStore(), &fakeHasher{}, &fakeRevoker{revoked: map[string]time.Duration{}}
	rdb, err := redisclient.Open(redistest.New(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	guard := throttle.New(rdb, throttle.DefaultPolicy, throttle.Options{Now: clock})
	svc, err := user.NewService(store, hasher, fakeSigner{}, clock, guard, user.Sessions{
		RefreshTTL: 720 * time.Hour, MaxAge: maxAge, Revoker: revoker,
	})
	if err != nil {
		t.Fatal(err)
	}
	return svc, store, hasher, revoker
}

func registration(t *testing.T, email, password, name string) user.Registration {
	t.Helper()
	e, err1 := user.ParseEmail(email)
	p, err2 := user.ParsePassword(password)
	n, err3 := user.ParseName(name)
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatal(err)
	}
	return user.Registration{Email: e, Password: p, Name: n}
}

func TestRegisterStoresACustomerWithAHashedPassword(t *testing.T) {
	t.Parallel()
	svc, store, _ := newService(t)
	u, err := svc.Register(context.Background(), registration(t, "Ann@Example.com", "correct horse", "Ann"))
	if err != nil {
		t.Fatal(err)
	}
	if u.Role != auth.RoleCustomer {
		t.Errorf("role = %q, want customer", u.Role)
	}
	if u.Email != "ann@example.com" {
		t.Errorf("e-mail = %q, want it in lower case: ann@example.com", u.Email)
	}
	if u.Name != "Ann" {
		t.Errorf("name = %q, want Ann", u.Name)
	}
	if u.ID == uuid.Nil {
		t.Error("the user has no id")
	}
	if u.PasswordHash != "hashed:correct horse" {
		t.Errorf("password hash = %q", u.PasswordHash)
	}
	if want := now.Truncate(time.Microsecond); !u.CreatedAt.Equal(want) {
		t.Errorf("created_at = %v, want %v", u.CreatedAt, want)
	}
	if stored, _ := store.UserByID(context.Background(), u.ID); stored != u {
		t.Errorf("stored %+v, returned %+v", stored, u)
	}
	_, err = svc.Register(context.Background(), registration(t, "ann@example.com", "another one", "Ann 2"))
	if !errors.Is(err, user.ErrEmailTaken) {
		t.Errorf("second registration: %v, want ErrEmailTaken", err)
	}
}

func TestLoginFailsTheSameWayForUnknownEmailAndWrongPassword(t *testing.T) {
	t.Parallel()
	svc, _, hasher := newService(t)
	ctx := context.Background()
	if _, err := svc.Register(ctx, registration(t, "ann@example.com", "correct horse", "Ann")); err != nil {
		t.Fatal(err)
	}
	cases := map[string][2]string{
		"wrong password":   {"ann@example.com", "wrong horse"},
		"unknown e-mail":   {"bob@example.com", "correct horse"},
		"invalid e-mail":   {"not an e-mail", "correct horse"},
		"short password":   {"ann@example.com", "x"},
		"over-long passwd": {"ann@example.com", strings.Repeat("x", user.MaxPasswordLen+1)},
	}
	for name, c := range cases {
		_, err := svc.Login(ctx, c[0], c[1], home)
		if err != user.ErrBadCredentials { //nolint:errorlint // the very same error value, not just the same code
			t.Errorf("%s: %v, want ErrBadCredentials", name, err)
		}
	}
	// Every login that got as far as a password check ran one, the unknown e-mails
	// against the dummy hash, so timing does not tell them apart.
	if n := len(hasher.verified); n != len(cases)-1 {
		t.Errorf("%d verifications, want %d", n, len(cases)-1)
	}
	dummy := 0
	for _, h := range hasher.verified {
		if h != "hashed:correct horse" {
			dummy++
		}
	}
	if dummy != 2 {
		t.Errorf("%d verifications against the dummy hash, want 2 (unknown and invalid e-mail)", dummy)
	}
}

func TestLoginIssuesTokensAndStoresOnlyTheRefreshTokensHash(t *testing.T) {
	t.Parallel()
	svc, store, _ := newService(t)
	ctx := context.Background()
	u, err := svc.Register(ctx, registration(t, "ann@example.com", "correct horse", "Ann"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := svc.Login(ctx, " ANN@example.com", "correct horse", home)
	if err != nil {
		t.Fatal(err)
	}
	// The sid is the session's family id.
	if want := "access:" + u.ID.String() + ":customer:" + store.tokens[0].FamilyID.String(); tok.AccessToken != want {
		t.Errorf("access token = %q, want %q", tok.AccessToken, want)
	}
	if tok.ExpiresIn != 15*time.Minute {
		t.Errorf("expires in %v, want the signer's 15m", tok.ExpiresIn)
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok.RefreshToken)
	if err != nil {
		t.Fatalf("refresh token %q is not base64url: %v", tok.RefreshToken, err)
	}
	if len(raw) != 32 {
		t.Fatalf("refresh token %q holds %d bytes, want 32", tok.RefreshToken, len(raw))
	}
	if len(store.tokens) != 1 {
		t.Fatalf("stored %d tokens", len(store.tokens))
	}
	st, sum := store.tokens[0], sha256.Sum256(raw)
	if !bytes.Equal(st.Hash, sum[:]) {
		t.Errorf("stored hash %x, want the refresh token's SHA-256 %x", st.Hash, sum)
	}
	if st.UserID != u.ID {
		t.Errorf("stored token's user = %s, want %s", st.UserID, u.ID)
	}
	if st.FamilyID != st.ID {
		t.Errorf("stored token's family = %s, want its own id %s: it starts the session", st.FamilyID, st.ID)
	}
	if st.ParentID != uuid.Nil {
		t.Errorf("stored token's parent = %s, want none", st.ParentID)
	}
	if want := now.Truncate(time.Microsecond); !st.SessionStartedAt.Equal(want) {
		t.Errorf("session started at %v, want %v", st.SessionStartedAt, want)
	}
	if !st.ExpiresAt.Equal(now.Truncate(time.Microsecond).Add(720 * time.Hour)) {
		t.Errorf("expires_at = %v", st.ExpiresAt)
	}
}

func TestRefreshRotatesAndReadsTheCurrentRole(t *testing.T) {
	t.Parallel()
	svc, store, _ := newService(t)
	ctx := context.Background()
	u, err := svc.Register(ctx, registration(t, "ann@example.com", "correct horse", "Ann"))
	if err != nil {
		t.Fatal(err)
	}
	first, err := svc.Login(ctx, "ann@example.com", "correct horse", home)
	if err != nil {
		t.Fatal(err)
	}
	// A promotion after login shows in the next refreshed access token.
	store.mu.Lock()
	promoted := store.users[u.ID]
	promoted.Role = auth.RoleAdmin
	store.users[u.ID] = promoted
	store.mu.Unlock()

	next, err := svc.Refresh(ctx, first.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if next.RefreshToken == first.RefreshToken {
		t.Error("the refresh token was not rotated")
	}
	// Same session, so the same sid.
	if want := "access:" + u.ID.String() + ":admin:" + store.tokens[0].FamilyID.String(); next.AccessToken != want {
		t.Errorf("refreshed access token = %q, want %q", next.AccessToken, want)
	}
	child := store.tokens[len(store.tokens)-1]
	if child.ParentID != store.tokens[0].ID {
		t.Errorf("child token's parent = %s, want the first token %s", child.ParentID, store.tokens[0].ID)
	}
	if child.FamilyID != store.tokens[0].FamilyID {
		t.Errorf("child token's family = %s, want the session's %s", child.FamilyID, store.tokens[0].FamilyID)
	}
}

func TestRefreshRejectsMalformedTokensWithoutAskingTheStore(t *testing.T) {
	t.Parallel()
	svc, store, _ := newService(t)
	for _, tok := range []string{"x", "not base64 !!", base64.RawURLEncoding.EncodeToString(make([]byte, 31))} {
		if _, err := svc.Refresh(context.Background(), tok); !errors.Is(err, user.ErrRefreshTokenInvalid) {
			t.Errorf("Refresh(%q) = %v", tok, err)
		}
	}
	if len(store.rotated) != 0 {
		t.Errorf("store asked %d times", len(store.rotated))
	}
}

func TestStoreFailuresPassThrough(t *testing.T) {
	t.Parallel()
	svc, store, _ := newService(t)
	down := apperr.E(apperr.Unavailable, "the users database is unavailable")
	store.err = down
	ctx := context.Background()
	if _, err := svc.Register(ctx, registration(t, "ann@example.com", "correct horse", "Ann")); !errors.Is(err, down) {
		t.Errorf("register: %v", err)
	}
	// A database outage must not pass for bad credentials.
	if _, err := svc.Login(ctx, "ann@example.com", "correct horse", home); !errors.Is(err, down) {
		t.Errorf("login: %v", err)
	}
}

func TestLogoutEndsTheSessionAndItsAccessTokens(t *testing.T) {
	t.Parallel()
	svc, store, _, revoker := newServiceWith(t, fixedNow, 30*24*time.Hour)
	ctx := context.Background()
	if _, err := svc.Register(ctx, registration(t, "ann@example.com", "correct horse", "Ann")); err != nil {
		t.Fatal(err)
	}
	first, err := svc.Login(ctx, "ann@example.com", "correct horse", home)
	if err != nil {
		t.Fatal(err)
	}
	other, err := svc.Login(ctx, "ann@example.com", "correct horse", home)
	if err != nil {
		t.Fatal(err)
	}
	sid := store.tokens[0].FamilyID.String()
	second, err := svc.Refresh(ctx, first.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}

	// The used first token still names the session: logging out with it ends it.
	if err := svc.Logout(ctx, first.RefreshToken); err != nil {
		t.Fatal(err)
	}
	switch ttl, ok := revoker.ttl(sid); {
	case !ok:
		t.Errorf("session %s was not revoked", sid)
	case ttl != 16*time.Minute:
		t.Errorf("session %s revoked for %v; want for the access-token lifetime and a minute, 16m", sid, ttl)
	}
	if _, err := svc.Refresh(ctx, second.RefreshToken); !errors.Is(err, user.ErrRefreshTokenInvalid) {
		t.Errorf("refresh after logout: %v, want ErrRefreshTokenInvalid", err)
	}
	// The other session carries on.
	if _, err := svc.Refresh(ctx, other.RefreshToken); err != nil {
		t.Errorf("the other session: %v", err)
	}
	// Logging out again, or with something that is no token of ours, is no error.
	for _, tok := range []string{second.RefreshToken, "junk", base64.RawURLEncoding.EncodeToString(make([]byte, 32))} {
		if err := svc.Logout(ctx, tok); err != nil {
			t.Errorf("Logout(%q) = %v", tok, err)
		}
	}
}

func TestLogoutSaysWhenAccessTokensCannotBeRevoked(t *testing.T) {
	t.Parallel()
	svc, _, _, revoker := newServiceWith(t, fixedNow, 30*24*time.Hour)
	ctx := context.Background()
	if _, err := svc.Register(ctx, registration(t, "ann@example.com", "correct horse", "Ann")); err != nil {
		t.Fatal(err)
	}
	tok, err := svc.Login(ctx, "ann@example.com", "correct horse", home)
	if err != nil {
		t.Fatal(err)
	}
	revoker.err = errors.New("redis: connection refused")
	if err := svc.Logout(ctx, tok.RefreshToken); apperr.CodeOf(err) != apperr.Unavailable {
		t.Errorf("Logout = %v, want unavailable", err)
	}
	// The refresh tokens are ended all the same, and a second try finishes the job.
	if _, err := svc.Refresh(ctx, tok.RefreshToken); !errors.Is(err, user.ErrRefreshTokenInvalid) {
		t.Errorf("refresh after a half-done logout: %v", err)
	}
	revoker.err = nil
	if err := svc.Logout(ctx, tok.RefreshToken); err != nil {
		t.Errorf("the second logout: %v", err)
	}
	if len(revoker.revoked) != 1 {
		t.Errorf("revoked %v", revoker.revoked)
	}
}

func TestReuseEndsTheSessionsAccessTokens(t *testing.T) {
	t.Parallel()
	svc, store, _, revoker := newServiceWith(t, fixedNow, 30*24*time.Hour)
	ctx := context.Background()
	if _, err := svc.Register(ctx, registration(t, "ann@example.com", "correct horse", "Ann")); err != nil {
		t.Fatal(err)
	}
	first, err := svc.Login(ctx, "ann@example.com", "correct horse", home)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Refresh(ctx, first.RefreshToken); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Refresh(ctx, first.RefreshToken); !errors.Is(err, user.ErrRefreshTokenReused) {
		t.Fatalf("reuse: %v", err)
	}
	if _, ok := revoker.ttl(store.tokens[0].FamilyID.String()); !ok {
		t.Error("reuse did not revoke the session's access tokens")
	}
	// When that revocation fails the answer is still the reuse's 401, with the cause.
	second, err := svc.Login(ctx, "ann@example.com", "correct horse", home)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Refresh(ctx, second.RefreshToken); err != nil {
		t.Fatal(err)
	}
	revoker.err = errors.New("redis: connection refused")
	_, err = svc.Refresh(ctx, second.RefreshToken)
	if !errors.Is(err, user.ErrRefreshTokenReused) {
		t.Errorf("reuse with revocation failing: %v, want ErrRefreshTokenReused", err)
	}
	if code := apperr.CodeOf(err); code != apperr.Unauthorized {
		t.Errorf("reuse with revocation failing: code %q, want %q (the reuse's 401)", code, apperr.Unauthorized)
	}
	if !strings.Contains(fmt.Sprint(err), "connection refused") {
		t.Errorf("reuse with revocation failing: %v; want it to say why the revocation failed", err)
	}
}

func TestSessionsEndAtTheirMaximumAge(t *testing.T) {
	t.Parallel()
	clock := testclock.New(now)
	svc, store, _, _ := newServiceWith(t, clock.Now, 10*time.Hour)
	ctx := context.Background()
	if _, err := svc.Register(ctx, registration(t, "ann@example.com", "correct horse", "Ann")); err != nil {
		t.Fatal(err)
	}
	tok, err := svc.Login(ctx, "ann@example.com", "correct horse", home)
	if err != nil {
		t.Fatal(err)
	}
	// The first refresh token does not outlive the session either.
	if end := now.Truncate(time.Microsecond).Add(10 * time.Hour); !store.tokens[0].ExpiresAt.Equal(end) {
		t.Errorf("the first refresh token expires %v, want the session's end %v", store.tokens[0].ExpiresAt, end)
	}
	clock.Advance(9 * time.Hour)
	if tok, err = svc.Refresh(ctx, tok.RefreshToken); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour)
	if _, err := svc.Refresh(ctx, tok.RefreshToken); !errors.Is(err, user.ErrSessionExpired) {
		t.Errorf("a refresh at the session's end: %v, want ErrSessionExpired", err)
	}
	for _, age := range store.maxAges {
		if age != 10*time.Hour {
			t.Errorf("the store was given a session age of %v", age)
		}
	}
}

// After failures from an address, even the right password from it waits out the delay
// (its password is not even checked meanwhile), and gets in once the delay has passed.
func TestACorrectPasswordAfterFailuresWaitsForTheDelay(t *testing.T) {
	t.Parallel()
	clock := testclock.New(now)
	svc, _, hasher, _ := newServiceWith(t, clock.Now, 30*24*time.Hour)
	ctx := context.Background()
	if _, err := svc.Register(ctx, registration(t, "ann@example.com", "correct horse", "Ann")); err != nil {
		t.Fatal(err)
	}
	for range throttle.DefaultPolicy.EmailFailures {
		if _, err := svc.Login(ctx, "ann@example.com", "wrong horse", home); !errors.Is(err, user.ErrBadCredentials) {
			t.Fatalf("a wrong password: %v", err)
		}
	}
	checked := len(hasher.verified)
	_, err := svc.Login(ctx, "ann@example.com", "correct horse", home)
	var tma *user.TooManyAttemptsError
	if !errors.As(err, &tma) {
		t.Fatalf("the right password at once: %v, want too many attempts", err)
	}
	if tma.RetryAfter != time.Second {
		t.Errorf("the right password at once: retry after %v, want 1s", tma.RetryAfter)
	}
	if code := apperr.CodeOf(err); code != apperr.RateLimited {
		t.Errorf("the right password at once: code %q, want %q", code, apperr.RateLimited)
	}
	clock.Advance(time.Second - time.Millisecond)
	if _, err := svc.Login(ctx, "ann@example.com", "correct horse", home); !errors.As(err, &tma) {
		t.Fatalf("a millisecond early: %v, want too many attempts", err)
	}
	if len(hasher.verified) != checked {
		t.Error("a refused attempt's password was checked")
	}
	clock.Advance(time.Millisecond)
	if _, err := svc.Login(ctx, "ann@example.com", "correct horse", home); err != nil {
		t.Fatalf("once the delay has passed: %v", err)
	}
}

// A log-in that fails because the database is down is not a wrong guess: it does not
// count towards a delay.
func TestOutagesDoNotCountAsFailures(t *testing.T) {
	t.Parallel()
	svc, store, _, _ := newServiceWith(t, fixedNow, 30*24*time.Hour)
	ctx := context.Background()
	if _, err := svc.Register(ctx, registration(t, "ann@example.com", "correct horse", "Ann")); err != nil {
		t.Fatal(err)
	}
	store.mu.Lock()
	store.err = apperr.E(apperr.Unavailable, "the users database is unavailable")
	store.mu.Unlock()
	for range 3 * throttle.DefaultPolicy.EmailFailures {
		if _, err := svc.Login(ctx, "ann@example.com", "correct horse", home); apperr.CodeOf(err) != apperr.Unavailable {
			t.Fatalf("login during the outage: %v", err)
		}
	}
	store.mu.Lock()
	store.err = nil
	store.mu.Unlock()
	if _, err := svc.Login(ctx, "ann@example.com", "correct horse", home); err != nil {
		t.Errorf("login after the outage: %v", err)
	}
}
