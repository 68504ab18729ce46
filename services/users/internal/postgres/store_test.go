package postgres_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/bazaar-shop/bazaar/internal/testkit/pgtest"
	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/auth"
	"github.com/bazaar-shop/bazaar/pkg/pgdb"
	"github.com/bazaar-shop/bazaar/services/users/internal/postgres"
	"github.com/bazaar-shop/bazaar/services/users/internal/postgres/migrations"
	"github.com/bazaar-shop/bazaar/services/users/internal/signing"
	"github.com/bazaar-shop/bazaar/services/users/internal/user"
)

func newStore(t *testing.T) (*postgres.Store, *pgxpool.Pool) {
	t.Helper()
	pool := pgtest.New(t, migrations.FS)
	return postgres.NewStore(pool), pool
}

func count(t *testing.T, pool *pgxpool.Pool, table string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

var created = time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)

func newUser(t *testing.T, email string) user.User {
	t.Helper()
	e, err := user.ParseEmail(email)
	if err != nil {
		t.Fatal(err)
	}
	return user.User{ID: uuid.New(), Email: e, Name: "Ann", Role: auth.RoleCustomer, PasswordHash: "$argon2id$x", CreatedAt: created}
}

func TestCreateUserWritesTheUserAndItsEvent(t *testing.T) {
	t.Parallel()
	store, pool := newStore(t)
	ctx := context.Background()
	u := newUser(t, "ann@example.com")
	if err := store.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	got, err := store.UserByID(ctx, u.ID)
	if err != nil || got != u {
		t.Errorf("UserByID = %+v, %v; want %+v", got, err, u)
	}
	if got, err := store.UserByEmail(ctx, "ann@example.com"); err != nil {
		t.Errorf("UserByEmail: %v, want no error", err)
	} else if got.ID != u.ID {
		t.Errorf("UserByEmail = user %s, want %s", got.ID, u.ID)
	}

	var stream, typ, source, subject string
	var at time.Time
	var data []byte
	var published *time.Time
	err = pool.QueryRow(ctx, `SELECT stream, type, source, subject, time, data, published_at FROM outbox`).
		Scan(&stream, &typ, &source, &subject, &at, &data, &published)
	if err != nil {
		t.Fatal(err)
	}
	if stream != "events.users" {
		t.Errorf("outbox row stream %q, want events.users", stream)
	}
	if typ != "user.registered" {
		t.Errorf("outbox row type %q, want user.registered", typ)
	}
	if source != "users" {
		t.Errorf("outbox row source %q, want users", source)
	}
	if subject != u.ID.String() {
		t.Errorf("outbox row subject %q, want the user %s", subject, u.ID)
	}
	if !at.Equal(created) {
		t.Errorf("outbox row time %v, want the user's creation %v", at, created)
	}
	if published != nil {
		t.Errorf("outbox row published_at %v, want NULL", *published)
	}
	var payload map[string]string
	if err := json.Unmarshal(data, &payload); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"user_id": u.ID.String(), "email": "ann@example.com", "name": "Ann"} {
		if payload[k] != v {
			t.Errorf("event data %s = %q, want %q", k, payload[k], v)
		}
	}
	if len(payload) != 3 {
		t.Errorf("event data %s has %d fields, want 3", data, len(payload))
	}
}

func TestEmailIsUniqueWhateverTheCaseAndAFailedInsertWritesNoEvent(t *testing.T) {
	t.Parallel()
	store, pool := newStore(t)
	ctx := context.Background()
	if err := store.CreateUser(ctx, newUser(t, "ann@example.com")); err != nil {
		t.Fatal(err)
	}
	if err := store.CreateUser(ctx, newUser(t, "ANN@Example.COM")); !errors.Is(err, user.ErrEmailTaken) {
		t.Errorf("same e-mail in other case: %v, want ErrEmailTaken", err)
	}
	// Even a row that skipped ParseEmail's case folding cannot slip past the index.
	raw := newUser(t, "x@example.com")
	raw.Email = "Ann@example.com"
	if err := store.CreateUser(ctx, raw); err == nil {
		t.Error("stored a mixed-case duplicate")
	}
	if n := count(t, pool, "users"); n != 1 {
		t.Errorf("%d users, want 1", n)
	}
	if n := count(t, pool, "outbox"); n != 1 {
		t.Errorf("%d outbox rows, want 1: a failed insert wrote its event", n)
	}
	if _, err := store.UserByEmail(ctx, "nobody@example.com"); !errors.Is(err, user.ErrNotFound) {
		t.Errorf("unknown e-mail: %v", err)
	}
	if _, err := store.UserByID(ctx, uuid.New()); !errors.Is(err, user.ErrNotFound) {
		t.Errorf("unknown id: %v", err)
	}
}

func TestEnsureAdminIsIdempotentUnderConcurrency(t *testing.T) {
	t.Parallel()
	store, pool := newStore(t)
	ctx := context.Background()

	const replicas = 8
	var wg sync.WaitGroup
	results := make(chan bool, replicas)
	for range replicas {
		wg.Go(func() {
			a := newUser(t, "admin@bazaar.local")
			a.Role = auth.RoleAdmin
			got, created, err := store.EnsureAdmin(ctx, a)
			if err != nil {
				t.Errorf("EnsureAdmin: %v, want no error", err)
			} else {
				if got.Role != auth.RoleAdmin {
					t.Errorf("EnsureAdmin: role %s, want %s", got.Role, auth.RoleAdmin)
				}
				if got.Email != "admin@bazaar.local" {
					t.Errorf("EnsureAdmin: e-mail %q, want admin@bazaar.local", got.Email)
				}
			}
			results <- created
		})
	}
	wg.Wait()
	close(results)
	creations := 0
	for c := range results {
		if c {
			creations++
		}
	}
	if creations != 1 || count(t, pool, "users") != 1 || count(t, pool, "outbox") != 1 {
		t.Errorf("%d creations, %d users, %d events; want 1 each", creations, count(t, pool, "users"), count(t, pool, "outbox"))
	}
}

func TestEnsureAdminPromotesAnExistingUserAndKeepsTheirPassword(t *testing.T) {
	t.Parallel()
	store, pool := newStore(t)
	ctx := context.Background()
	u := newUser(t, "boss@example.com")
	if err := store.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	a := newUser(t, "Boss@example.com")
	a.Role, a.PasswordHash = auth.RoleAdmin, "$argon2id$other"
	got, created, err := store.EnsureAdmin(ctx, a)
	if err != nil {
		t.Fatalf("EnsureAdmin: %v, want no error", err)
	}
	if created {
		t.Error("EnsureAdmin created a user, want the existing one promoted")
	}
	if got.ID != u.ID {
		t.Errorf("EnsureAdmin: user %s, want the existing %s", got.ID, u.ID)
	}
	if got.Role != auth.RoleAdmin {
		t.Errorf("EnsureAdmin: role %s, want %s", got.Role, auth.RoleAdmin)
	}
	if got.PasswordHash != u.PasswordHash {
		t.Errorf("EnsureAdmin: password hash %q, want the user's own %q", got.PasswordHash, u.PasswordHash)
	}
	if n := count(t, pool, "outbox"); n != 1 {
		t.Errorf("%d events; promotion is not a registration", n)
	}
}

// session stores the first refresh token of a new family for a new user.
func session(t *testing.T, store *postgres.Store, expires time.Time) ([]byte, user.RefreshToken) {
	t.Helper()
	ctx := context.Background()
	u := newUser(t, rand.Text()[:10]+"@example.com")
	if err := store.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	hash := randomHash()
	id := uuid.New()
	tok := user.RefreshToken{ID: id, Hash: hash, UserID: u.ID, FamilyID: id, SessionStartedAt: created, CreatedAt: created, ExpiresAt: expires}
	if err := store.CreateRefreshToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	return hash, tok
}

// forever is a session age limit that none of these tests reaches.
const forever = 100 * 365 * 24 * time.Hour

func randomHash() []byte {
	sum := sha256.Sum256([]byte(rand.Text()))
	return sum[:]
}

func next(expires time.Time) user.RefreshToken {
	return user.RefreshToken{ID: uuid.New(), Hash: randomHash(), CreatedAt: created, ExpiresAt: expires}
}

func TestRotationAndFamilyRevocation(t *testing.T) {
	t.Parallel()
	store, _ := newStore(t)
	ctx := context.Background()
	now := created.Add(time.Minute)
	later := now.Add(time.Hour)
	rootHash, root := session(t, store, later)

	child, err := store.RotateRefreshToken(ctx, rootHash, next(later), now, forever)
	if err != nil {
		t.Fatal(err)
	}
	if child.ParentID != root.ID {
		t.Errorf("child's parent %s, want the root %s", child.ParentID, root.ID)
	}
	if child.FamilyID != root.FamilyID {
		t.Errorf("child's family %s, want the root's %s", child.FamilyID, root.FamilyID)
	}
	if child.UserID != root.UserID {
		t.Errorf("child's user %s, want the root's %s", child.UserID, root.UserID)
	}
	grandchild, err := store.RotateRefreshToken(ctx, child.Hash, next(later), now, forever)
	if err != nil {
		t.Fatal(err)
	}

	// The root again: reuse. It ends the family, the live grandchild included, and
	// names the family (the session to end everywhere else too).
	reused, err := store.RotateRefreshToken(ctx, rootHash, next(later), now, forever)
	if !errors.Is(err, user.ErrRefreshTokenReused) {
		t.Fatalf("reuse: %v, want ErrRefreshTokenReused", err)
	}
	if reused.FamilyID != root.FamilyID {
		t.Errorf("reuse reported the family %s, want %s", reused.FamilyID, root.FamilyID)
	}
	if reused.UserID != root.UserID {
		t.Errorf("reuse reported the user %s, want %s", reused.UserID, root.UserID)
	}
	if _, err := store.RotateRefreshToken(ctx, grandchild.Hash, next(later), now, forever); !errors.Is(err, user.ErrRefreshTokenInvalid) {
		t.Errorf("grandchild after reuse: %v, want ErrRefreshTokenInvalid", err)
	}

	// Another family of the same kind is untouched by it.
	otherHash, _ := session(t, store, later)
	if _, err := store.RotateRefreshToken(ctx, otherHash, next(later), now, forever); err != nil {
		t.Errorf("unrelated family: %v", err)
	}
	if _, err := store.RotateRefreshToken(ctx, randomHash(), next(later), now, forever); !errors.Is(err, user.ErrRefreshTokenInvalid) {
		t.Errorf("unknown token: %v", err)
	}
}

// A session lives at most maxAge from its log-in, however often it is refreshed: a
// refresh never gives a token that outlives it, and past it the session cannot refresh.
func TestSessionsHaveAMaximumAge(t *testing.T) {
	t.Parallel()
	store, _ := newStore(t)
	ctx := context.Background()
	const maxAge = 10 * time.Hour
	end := created.Add(maxAge)
	rootHash, root := session(t, store, created.Add(30*24*time.Hour))

	now := created.Add(9 * time.Hour)
	child, err := store.RotateRefreshToken(ctx, rootHash, next(now.Add(30*24*time.Hour)), now, maxAge)
	if err != nil {
		t.Fatal(err)
	}
	if !child.ExpiresAt.Equal(end) {
		t.Errorf("child expires %v, want the session's end %v", child.ExpiresAt, end)
	}
	if !child.SessionStartedAt.Equal(root.SessionStartedAt) {
		t.Errorf("child's session started %v, want the root's %v", child.SessionStartedAt, root.SessionStartedAt)
	}
	// The stored child says the same, so that the next rotation sees it.
	grandchild, err := store.RotateRefreshToken(ctx, child.Hash, next(now.Add(30*24*time.Hour)), now.Add(time.Minute), maxAge)
	if err != nil {
		t.Fatalf("grandchild: %v, want no error", err)
	}
	if !grandchild.SessionStartedAt.Equal(created) {
		t.Fatalf("grandchild's session started %v, want %v", grandchild.SessionStartedAt, created)
	}
	if !grandchild.ExpiresAt.Equal(end) {
		t.Fatalf("grandchild expires %v, want the session's end %v", grandchild.ExpiresAt, end)
	}
	// At its end a session's live token is refused, and so it is under a limit lowered
	// since the log-in.
	otherHash, _ := session(t, store, created.Add(30*24*time.Hour))
	if _, err := store.RotateRefreshToken(ctx, otherHash, next(end.Add(time.Hour)), end, maxAge); !errors.Is(err, user.ErrSessionExpired) {
		t.Errorf("at the session's end: %v, want ErrSessionExpired", err)
	}
	if _, err := store.RotateRefreshToken(ctx, otherHash, next(end.Add(time.Hour)), created.Add(time.Hour), time.Minute); !errors.Is(err, user.ErrSessionExpired) {
		t.Errorf("with the limit lowered since the log-in: %v, want ErrSessionExpired", err)
	}
}

// Logging out ends a family from any of its tokens, used or not; doing it again, or with
// a token nobody issued, changes nothing.
func TestRevokeRefreshTokenFamily(t *testing.T) {
	t.Parallel()
	store, pool := newStore(t)
	ctx := context.Background()
	now := created.Add(time.Minute)
	later := now.Add(time.Hour)
	rootHash, root := session(t, store, later)
	child, err := store.RotateRefreshToken(ctx, rootHash, next(later), now, forever)
	if err != nil {
		t.Fatal(err)
	}
	otherHash, other := session(t, store, later)

	got, err := store.RevokeRefreshTokenFamily(ctx, rootHash, now) // the used root
	if err != nil {
		t.Fatalf("RevokeRefreshTokenFamily: %v, want no error", err)
	}
	if got.FamilyID != root.FamilyID {
		t.Fatalf("RevokeRefreshTokenFamily: family %s, want %s", got.FamilyID, root.FamilyID)
	}
	if got.UserID != root.UserID {
		t.Fatalf("RevokeRefreshTokenFamily: user %s, want %s", got.UserID, root.UserID)
	}
	if _, err := store.RotateRefreshToken(ctx, child.Hash, next(later), now, forever); !errors.Is(err, user.ErrRefreshTokenInvalid) {
		t.Errorf("the live child after logout: %v, want ErrRefreshTokenInvalid", err)
	}
	if again, err := store.RevokeRefreshTokenFamily(ctx, child.Hash, now.Add(time.Minute)); err != nil {
		t.Errorf("a second logout: %v, want no error", err)
	} else if again.FamilyID != root.FamilyID {
		t.Errorf("a second logout: family %s, want %s", again.FamilyID, root.FamilyID)
	}
	var revokedAt time.Time
	if err := pool.QueryRow(ctx, `SELECT max(revoked_at) FROM refresh_tokens WHERE family_id = $1`, root.FamilyID).Scan(&revokedAt); err != nil {
		t.Errorf("revoked_at: %v", err)
	} else if !revokedAt.Equal(now) {
		t.Errorf("revoked_at %v, want the first logout's %v: a second logout must not move it", revokedAt, now)
	}
	if _, err := store.RevokeRefreshTokenFamily(ctx, randomHash(), now); !errors.Is(err, user.ErrRefreshTokenInvalid) {
		t.Errorf("an unknown token: %v, want ErrRefreshTokenInvalid", err)
	}
	// Another session is untouched.
	if _, err := store.RotateRefreshToken(ctx, otherHash, next(later), now, forever); err != nil {
		t.Errorf("another session (%s): %v", other.FamilyID, err)
	}
}

func TestAnExpiredRefreshTokenIsInvalid(t *testing.T) {
	t.Parallel()
	store, pool := newStore(t)
	ctx := context.Background()
	now := created.Add(time.Hour)
	hash, _ := session(t, store, now) // expires exactly now
	if _, err := store.RotateRefreshToken(ctx, hash, next(now.Add(time.Hour)), now, forever); !errors.Is(err, user.ErrRefreshTokenInvalid) {
		t.Errorf("expired token: %v, want ErrRefreshTokenInvalid", err)
	}
	if n := count(t, pool, "refresh_tokens"); n != 1 {
		t.Errorf("%d refresh tokens: an expired one got a child", n)
	}
}

func TestConcurrentRefreshesExactlyOneWins(t *testing.T) {
	t.Parallel()
	store, pool := newStore(t)
	ctx := context.Background()
	now := created.Add(time.Minute)
	hash, _ := session(t, store, now.Add(time.Hour))

	const racers = 10
	errs := make(chan error, racers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range racers {
		wg.Go(func() {
			<-start
			_, err := store.RotateRefreshToken(ctx, hash, next(now.Add(time.Hour)), now, forever)
			errs <- err
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	wins := 0
	for err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, user.ErrRefreshTokenReused):
			t.Errorf("loser: %v, want ErrRefreshTokenReused", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d refreshes succeeded, want exactly 1", wins)
	}
	// One child only; and since the losers are reuses, the family is revoked.
	if n := count(t, pool, "refresh_tokens"); n != 2 {
		t.Errorf("%d refresh tokens, want the root and one child", n)
	}
	var live int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NULL`).Scan(&live); err != nil || live != 0 {
		t.Errorf("%d live tokens after concurrent reuse (%v), want 0", live, err)
	}
}

func TestSigningKeysAreMadeOnceAndShared(t *testing.T) {
	t.Parallel()
	store, pool := newStore(t)
	ctx := context.Background()

	const replicas = 6
	kids := make(chan string, replicas)
	var wg sync.WaitGroup
	for range replicas {
		wg.Go(func() {
			ring, _, err := store.SigningKeys(ctx, signing.Generate, nil, 0)
			if err != nil {
				t.Errorf("SigningKeys: %v, want no error", err)
				return
			}
			if len(ring) != 1 {
				t.Errorf("SigningKeys = %v, want one key", ring)
				return
			}
			kids <- ring.Current().ID
		})
	}
	wg.Wait()
	close(kids)
	first := <-kids
	for k := range kids {
		if k != first {
			t.Errorf("replicas got different keys: %s and %s", first, k)
		}
	}
	if n := count(t, pool, "signing_keys"); n != 1 {
		t.Errorf("%d signing keys, want 1", n)
	}
	// A restart loads the same key rather than making one.
	ring, _, err := store.SigningKeys(ctx, mustNotGenerate, nil, 0)
	if err != nil {
		t.Fatalf("reload: %v, want no error", err)
	}
	if id := ring.Current().ID; id != first {
		t.Errorf("reload: current key %s, want %s", id, first)
	}
	if ring.Current().CreatedAt.IsZero() {
		t.Error("reload: current key's creation time zero, want one")
	}
}

func mustNotGenerate() (signing.Key, error) { return signing.Key{}, errors.New("must not generate") }

func kek(t *testing.T, fill byte) *signing.KEK {
	t.Helper()
	k, err := signing.NewKEK(bytes.Repeat([]byte{fill}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// storedSeed is what the row of kid holds: the plaintext seed, the sealed one.
func storedSeed(t *testing.T, pool *pgxpool.Pool, kid string) (plain, sealed []byte) {
	t.Helper()
	if err := pool.QueryRow(context.Background(), `SELECT seed, sealed_seed FROM signing_keys WHERE kid = $1`, kid).Scan(&plain, &sealed); err != nil {
		t.Fatal(err)
	}
	return plain, sealed
}

func TestSigningKeysAreSealedWithAKEK(t *testing.T) {
	t.Parallel()
	store, pool := newStore(t)
	ctx := context.Background()
	ring, _, err := store.SigningKeys(ctx, signing.Generate, kek(t, 1), 0)
	if err != nil {
		t.Fatal(err)
	}
	k := ring.Current()
	plain, sealed := storedSeed(t, pool, k.ID)
	if plain != nil {
		t.Fatalf("stored seed %x, want NULL: the seed is readable", plain)
	}
	if len(sealed) == 0 {
		t.Fatal("stored sealed seed empty, want the sealed seed")
	}
	if bytes.Contains(sealed, k.Private.Seed()) {
		t.Fatalf("stored sealed seed %x holds the plain seed, want it sealed: the seed is readable", sealed)
	}
	again, _, err := store.SigningKeys(ctx, mustNotGenerate, kek(t, 1), 0)
	if err != nil {
		t.Fatalf("reload: %v, want no error", err)
	}
	if id := again.Current().ID; id != k.ID {
		t.Fatalf("reload: current key %s, want %s", id, k.ID)
	}
	if !again.Current().Private.Equal(k.Private) {
		t.Fatalf("reload: key %s opened to another private key, want the same", k.ID)
	}
	if _, _, err := store.SigningKeys(ctx, mustNotGenerate, nil, 0); !errors.Is(err, signing.ErrNoKEK) {
		t.Errorf("reload without a KEK: %v, want ErrNoKEK", err)
	}
	if _, _, err := store.SigningKeys(ctx, mustNotGenerate, kek(t, 2), 0); !errors.Is(err, signing.ErrWrongKEK) {
		t.Errorf("reload with another KEK: %v, want ErrWrongKEK", err)
	}
	// Nothing was sealed twice or rewritten by the failed loads.
	p2, s2 := storedSeed(t, pool, k.ID)
	if p2 != nil {
		t.Errorf("the row changed: seed %x, want NULL", p2)
	}
	if !bytes.Equal(s2, sealed) {
		t.Errorf("the row changed: sealed seed %x, want %x", s2, sealed)
	}
}

// Keys stored before there was a KEK are sealed in place once one is configured, and
// stay the same keys (tokens signed with them still verify).
func TestPlaintextSigningKeysAreSealedInPlace(t *testing.T) {
	t.Parallel()
	store, pool := newStore(t)
	ctx := context.Background()
	ring, _, err := store.SigningKeys(ctx, signing.Generate, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	k := ring.Current()
	if plain, sealed := storedSeed(t, pool, k.ID); !bytes.Equal(plain, k.Private.Seed()) {
		t.Fatalf("without a KEK: seed %x, want the key's %x", plain, k.Private.Seed())
	} else if sealed != nil {
		t.Fatalf("without a KEK: sealed seed %x, want NULL", sealed)
	}
	n, resealed, err := store.SealSigningKeys(ctx, kek(t, 1), nil)
	if err != nil {
		t.Fatalf("SealSigningKeys: %v, want no error", err)
	}
	if n != 1 {
		t.Fatalf("SealSigningKeys sealed %d, want 1", n)
	}
	if resealed != 0 {
		t.Fatalf("SealSigningKeys sealed again %d, want 0", resealed)
	}
	if plain, sealed := storedSeed(t, pool, k.ID); plain != nil {
		t.Fatalf("after sealing: seed %x, want NULL", plain)
	} else if len(sealed) == 0 {
		t.Fatal("after sealing: sealed seed empty, want the sealed seed")
	}
	sealedRing, _, err := store.SigningKeys(ctx, mustNotGenerate, kek(t, 1), 0)
	if err != nil {
		t.Fatalf("after sealing: %v, want no error", err)
	}
	if id := sealedRing.Current().ID; id != k.ID {
		t.Fatalf("after sealing: current key %s, want %s", id, k.ID)
	}
	if !sealedRing.Current().Private.Equal(k.Private) {
		t.Fatalf("after sealing: key %s opened to another private key, want the same", k.ID)
	}
	if at := sealedRing.Current().CreatedAt; !at.Equal(k.CreatedAt) {
		t.Fatalf("after sealing: key made %v, want %v", at, k.CreatedAt)
	}
	if n, resealed, err := store.SealSigningKeys(ctx, kek(t, 1), nil); err != nil || n != 0 || resealed != 0 {
		t.Errorf("a second SealSigningKeys = %d, %d, %v; want 0, 0", n, resealed, err)
	}
	// The table itself refuses a row with both forms, or neither.
	if _, err := pool.Exec(ctx, `UPDATE signing_keys SET seed = $1`, k.Private.Seed()); err == nil {
		t.Error("stored a key with both a plaintext and a sealed seed")
	}
	if _, err := pool.Exec(ctx, `UPDATE signing_keys SET sealed_seed = NULL`); err == nil {
		t.Error("stored a key with no seed at all")
	}
}

// With a maximum age, a start that finds the newest key older than that adds a new key,
// which signs from then on; the older keys stay in the ring, so what they signed still
// verifies. Replicas starting together add one key, not one each.
func TestAnOldSigningKeyIsSupersededOnce(t *testing.T) {
	t.Parallel()
	store, pool := newStore(t)
	ctx := context.Background()
	old := addKey(t, pool, kek(t, 1), 2*time.Hour)
	for _, maxAge := range []time.Duration{0, 3 * time.Hour} {
		ring, added, err := store.SigningKeys(ctx, mustNotGenerate, kek(t, 1), maxAge)
		if err != nil {
			t.Errorf("with a maximum age of %v: %v, want no error", maxAge, err)
			continue
		}
		if added {
			t.Errorf("with a maximum age of %v: a key added, want none", maxAge)
		}
		if len(ring) != 1 {
			t.Errorf("with a maximum age of %v: ring %v, want the old key alone", maxAge, ring)
		} else if ring.Current().ID != old.ID {
			t.Errorf("with a maximum age of %v: current key %s, want the old %s", maxAge, ring.Current().ID, old.ID)
		}
	}

	const replicas = 4
	var mu sync.Mutex
	var rings []signing.Ring
	var wg sync.WaitGroup
	for range replicas {
		wg.Go(func() {
			ring, added, err := store.SigningKeys(ctx, signing.Generate, kek(t, 1), time.Hour)
			if err != nil {
				t.Errorf("SigningKeys: %v", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if added {
				rings = append([]signing.Ring{ring}, rings...) // the adder's first
			} else {
				rings = append(rings, ring)
			}
		})
	}
	wg.Wait()
	if len(rings) != replicas || count(t, pool, "signing_keys") != 2 {
		t.Fatalf("%d rings, %d keys; want %d and 2", len(rings), count(t, pool, "signing_keys"), replicas)
	}
	current := rings[0].Current()
	for _, ring := range rings {
		if len(ring) != 2 || ring.Current().ID != current.ID || ring[1].ID != old.ID {
			t.Errorf("ring %v; want the new key %s, then the old %s", ring, current.ID, old.ID)
		}
	}
	if current.ID == old.ID {
		t.Errorf("the current key is the old one %s, want a new one", current.ID)
	}
	if !current.CreatedAt.After(old.CreatedAt) {
		t.Errorf("the current key %s was made %v, want after the old one's %v", current.ID, current.CreatedAt, old.CreatedAt)
	}
	if plain, sealed := storedSeed(t, pool, current.ID); plain != nil {
		t.Errorf("the new key is not sealed: seed %x, want NULL", plain)
	} else if len(sealed) == 0 {
		t.Error("the new key is not sealed: sealed seed empty, want one")
	}
	// It is young: the next start keeps it.
	if ring, added, err := store.SigningKeys(ctx, mustNotGenerate, kek(t, 1), time.Hour); err != nil {
		t.Errorf("a start after the rotation: %v, want no error", err)
	} else {
		if added {
			t.Error("a start after the rotation added a key, want none")
		}
		if ring.Current().ID != current.ID {
			t.Errorf("a start after the rotation: current key %s, want %s", ring.Current().ID, current.ID)
		}
	}
}

// addKey stores a new signing key made createdAgo, sealed with k, or in plain when k is
// nil, as an older start of the service would have; it returns the key.
func addKey(t *testing.T, pool *pgxpool.Pool, k *signing.KEK, createdAgo time.Duration) signing.Key {
	t.Helper()
	key, err := signing.Generate()
	if err != nil {
		t.Fatal(err)
	}
	var plain, sealed []byte
	if k == nil {
		plain = key.Private.Seed()
	} else {
		sealed = k.Seal(key.ID, key.Private.Seed())
	}
	if _, err := pool.Exec(context.Background(),
		`INSERT INTO signing_keys (kid, seed, sealed_seed, created_at) VALUES ($1, $2, $3, now() - make_interval(secs => $4))`,
		key.ID, plain, sealed, createdAgo.Seconds()); err != nil {
		t.Fatal(err)
	}
	return key
}

// After a KEK rotation, keys sealed under the previous KEK are sealed again under the
// new one (and plain ones sealed), once, however many replicas start together; then
// they open with the new KEK alone and are the same keys.
func TestSigningKeysUnderThePreviousKEKAreSealedAgain(t *testing.T) {
	t.Parallel()
	store, pool := newStore(t)
	ctx := context.Background()
	older, newer := addKey(t, pool, kek(t, 1), 2*time.Hour), addKey(t, pool, kek(t, 1), time.Hour)
	plain := addKey(t, pool, nil, 3*time.Hour)
	before, _, err := store.SigningKeys(ctx, mustNotGenerate, kek(t, 1), 0)
	if err != nil {
		t.Fatal(err)
	}

	const replicas = 4
	var mu sync.Mutex
	var sealed, resealed int
	var wg sync.WaitGroup
	for range replicas {
		wg.Go(func() {
			s, r, err := store.SealSigningKeys(ctx, kek(t, 2), kek(t, 1))
			if err != nil {
				t.Errorf("SealSigningKeys: %v", err)
			}
			mu.Lock()
			sealed, resealed = sealed+s, resealed+r
			mu.Unlock()
		})
	}
	wg.Wait()
	if sealed != 1 || resealed != 2 {
		t.Errorf("%d replicas sealed %d keys and sealed again %d; want 1 and 2 in all", replicas, sealed, resealed)
	}
	for _, k := range []signing.Key{older, newer, plain} {
		p, s := storedSeed(t, pool, k.ID)
		if p != nil {
			t.Errorf("key %s: seed %x, want NULL", k.ID, p)
		}
		if _, err := kek(t, 1).Open(k.ID, s); err == nil {
			t.Errorf("key %s still opens with the previous KEK, want it not to", k.ID)
		}
		if seed, err := kek(t, 2).Open(k.ID, s); err != nil {
			t.Errorf("key %s does not open with the new KEK: %v", k.ID, err)
		} else if !bytes.Equal(seed, k.Private.Seed()) {
			t.Errorf("key %s opens with the new KEK to seed %x, want itself %x", k.ID, seed, k.Private.Seed())
		}
	}
	after, _, err := store.SigningKeys(ctx, mustNotGenerate, kek(t, 2), 0)
	if err != nil {
		t.Fatalf("with the new KEK alone: %v, want no error", err)
	}
	if len(after) != len(before) {
		t.Fatalf("with the new KEK alone: ring %v, want %d keys as before", after, len(before))
	}
	for i := range before {
		if after[i].ID != before[i].ID {
			t.Errorf("key %d changed: id %s, was %s", i, after[i].ID, before[i].ID)
		}
		if !after[i].Private.Equal(before[i].Private) {
			t.Errorf("key %d (%s) changed: another private key, want the same", i, after[i].ID)
		}
		if !after[i].CreatedAt.Equal(before[i].CreatedAt) {
			t.Errorf("key %d (%s) changed: made %v, was %v", i, after[i].ID, after[i].CreatedAt, before[i].CreatedAt)
		}
	}
	if s, r, err := store.SealSigningKeys(ctx, kek(t, 2), kek(t, 1)); s != 0 || r != 0 || err != nil {
		t.Errorf("again: %d, %d, %v; want nothing to do", s, r, err)
	}
}

// A sealed key that opens with neither KEK refuses the whole sealing: no plain key is
// sealed under what may be a mistaken KEK, and no other key is sealed again.
func TestSealingWithTheWrongKEKsChangesNothing(t *testing.T) {
	t.Parallel()
	store, pool := newStore(t)
	ctx := context.Background()
	underOne, underTwo := addKey(t, pool, kek(t, 1), time.Hour), addKey(t, pool, kek(t, 2), 2*time.Hour)
	plain := addKey(t, pool, nil, 3*time.Hour)
	rows := func() map[string][2][]byte {
		m := map[string][2][]byte{}
		for _, k := range []signing.Key{underOne, underTwo, plain} {
			p, s := storedSeed(t, pool, k.ID)
			m[k.ID] = [2][]byte{p, s}
		}
		return m
	}
	want := rows()
	for _, c := range []struct {
		name          string
		kek, previous *signing.KEK
	}{
		{"another KEK", kek(t, 3), nil},
		{"another KEK and another previous", kek(t, 3), kek(t, 4)},
		{"a KEK that opens some keys", kek(t, 1), nil},
		{"a previous KEK that opens some keys", kek(t, 3), kek(t, 2)},
	} {
		s, r, err := store.SealSigningKeys(ctx, c.kek, c.previous)
		if !errors.Is(err, signing.ErrWrongKEK) {
			t.Errorf("%s: SealSigningKeys: %v, want ErrWrongKEK", c.name, err)
		}
		if s != 0 {
			t.Errorf("%s: SealSigningKeys sealed %d, want 0", c.name, s)
		}
		if r != 0 {
			t.Errorf("%s: SealSigningKeys sealed again %d, want 0", c.name, r)
		}
		for kid, got := range rows() {
			if !bytes.Equal(got[0], want[kid][0]) {
				t.Errorf("%s: key %s changed: seed %x, was %x", c.name, kid, got[0], want[kid][0])
			}
			if !bytes.Equal(got[1], want[kid][1]) {
				t.Errorf("%s: key %s changed: sealed seed %x, was %x", c.name, kid, got[1], want[kid][1])
			}
		}
	}
}

func TestAnUnreachableDatabaseIsUnavailable(t *testing.T) {
	t.Parallel()
	pool, err := pgdb.Open(context.Background(), "postgres://nobody@127.0.0.1:1/none?connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	store := postgres.NewStore(pool)
	_, err = store.UserByEmail(context.Background(), "ann@example.com")
	if apperr.CodeOf(err) != apperr.Unavailable {
		t.Errorf("err = %v, want an unavailable error", err)
	}
}

// A session's tokens go only when all of them are long dead; a live session keeps its
// used tokens, however old, so that a stolen one presented later still ends it.
func TestDeleteDeadRefreshTokensKeepsLiveSessionsWhole(t *testing.T) {
	t.Parallel()
	store, pool := newStore(t)
	ctx := context.Background()
	now := time.Now()
	age := func(id uuid.UUID, set string) {
		t.Helper()
		if _, err := pool.Exec(ctx, `UPDATE refresh_tokens SET `+set+` WHERE id = $1`, id); err != nil {
			t.Fatal(err)
		}
	}

	// A live session whose first token was used long ago and has expired since.
	rootHash, root := session(t, store, now.Add(time.Hour))
	child, err := store.RotateRefreshToken(ctx, rootHash, next(now.Add(30*24*time.Hour)), now, forever)
	if err != nil {
		t.Fatal(err)
	}
	age(root.ID, `expires_at = now() - interval '20 days'`)
	// A session that expired 10 days ago, one revoked 10 days ago (with a token that
	// has not expired), one revoked yesterday.
	_, expired := session(t, store, now.Add(-10*24*time.Hour))
	_, revoked := session(t, store, now.Add(24*time.Hour))
	age(revoked.ID, `revoked_at = now() - interval '10 days'`)
	_, recent := session(t, store, now.Add(24*time.Hour))
	age(recent.ID, `revoked_at = now() - interval '1 day'`)

	n, err := store.DeleteDeadRefreshTokens(ctx, 7*24*time.Hour)
	if err != nil || n != 2 {
		t.Fatalf("deleted %d (%v), want the 2 long-dead sessions' tokens", n, err)
	}
	var left []uuid.UUID
	rows, err := pool.Query(ctx, `SELECT id FROM refresh_tokens ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id uuid.UUID
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		left = append(left, id)
	}
	if rows.Err() != nil || len(left) != 3 {
		t.Fatalf("left %v (%v), want the live session's 2 and the recently revoked 1", left, rows.Err())
	}
	for _, gone := range []uuid.UUID{expired.ID, revoked.ID} {
		for _, id := range left {
			if id == gone {
				t.Errorf("token %s of a dead session is still there", gone)
			}
		}
	}

	// The old used token is still recognised: presented again, it ends its session.
	if _, err := store.RotateRefreshToken(ctx, rootHash, next(now.Add(time.Hour)), now, forever); !errors.Is(err, user.ErrRefreshTokenReused) {
		t.Fatalf("reuse of the old token after cleanup: %v, want ErrRefreshTokenReused", err)
	}
	if _, err := store.RotateRefreshToken(ctx, child.Hash, next(now.Add(time.Hour)), now, forever); !errors.Is(err, user.ErrRefreshTokenInvalid) {
		t.Errorf("the live token after the reuse: %v, want ErrRefreshTokenInvalid", err)
	}
	if n, err := store.DeleteDeadRefreshTokens(ctx, 7*24*time.Hour); err != nil {
		t.Errorf("a second run: %v, want no error", err)
	} else if n != 0 {
		t.Errorf("a second run deleted %d, want 0: the session revoked just now is kept", n)
	}
}
