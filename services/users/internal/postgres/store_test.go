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
	if got, err := store.UserByEmail(ctx, "ann@example.com"); err != nil || got.ID != u.ID {
		t.Errorf("UserByEmail = %+v, %v", got, err)
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
	if stream != "events.users" || typ != "user.registered" || source != "users" || subject != u.ID.String() ||
		!at.Equal(created) || published != nil {
		t.Errorf("outbox row: %s %s %s %s %v %v", stream, typ, source, subject, at, published)
	}
	var payload map[string]string
	if err := json.Unmarshal(data, &payload); err != nil {
		t.Fatal(err)
	}
	if payload["user_id"] != u.ID.String() || payload["email"] != "ann@example.com" || payload["name"] != "Ann" || len(payload) != 3 {
		t.Errorf("event data = %s", data)
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
			if err != nil || got.Role != auth.RoleAdmin || got.Email != "admin@bazaar.local" {
				t.Errorf("EnsureAdmin = %+v, %v", got, err)
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
	if err != nil || created || got.ID != u.ID || got.Role != auth.RoleAdmin || got.PasswordHash != u.PasswordHash {
		t.Errorf("EnsureAdmin = %+v, %v, %v", got, created, err)
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
	if child.ParentID != root.ID || child.FamilyID != root.FamilyID || child.UserID != root.UserID {
		t.Errorf("child = %+v, root = %+v", child, root)
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
	if reused.FamilyID != root.FamilyID || reused.UserID != root.UserID {
		t.Errorf("reuse reported %+v, want the family %s", reused, root.FamilyID)
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
	if !child.ExpiresAt.Equal(end) || !child.SessionStartedAt.Equal(root.SessionStartedAt) {
		t.Errorf("child expires %v (want the session's end %v), session started %v", child.ExpiresAt, end, child.SessionStartedAt)
	}
	// The stored child says the same, so that the next rotation sees it.
	grandchild, err := store.RotateRefreshToken(ctx, child.Hash, next(now.Add(30*24*time.Hour)), now.Add(time.Minute), maxAge)
	if err != nil || !grandchild.SessionStartedAt.Equal(created) || !grandchild.ExpiresAt.Equal(end) {
		t.Fatalf("grandchild %+v, %v", grandchild, err)
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
	if err != nil || got.FamilyID != root.FamilyID || got.UserID != root.UserID {
		t.Fatalf("RevokeRefreshTokenFamily = %+v, %v", got, err)
	}
	if _, err := store.RotateRefreshToken(ctx, child.Hash, next(later), now, forever); !errors.Is(err, user.ErrRefreshTokenInvalid) {
		t.Errorf("the live child after logout: %v, want ErrRefreshTokenInvalid", err)
	}
	if again, err := store.RevokeRefreshTokenFamily(ctx, child.Hash, now.Add(time.Minute)); err != nil || again.FamilyID != root.FamilyID {
		t.Errorf("a second logout: %+v, %v", again, err)
	}
	var revokedAt time.Time
	if err := pool.QueryRow(ctx, `SELECT max(revoked_at) FROM refresh_tokens WHERE family_id = $1`, root.FamilyID).Scan(&revokedAt); err != nil || !revokedAt.Equal(now) {
		t.Errorf("revoked_at %v (%v); a second logout must not move it", revokedAt, err)
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
			if err != nil || len(ring) != 1 {
				t.Errorf("SigningKeys = %v, %v", ring, err)
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
	if err != nil || ring.Current().ID != first || ring.Current().CreatedAt.IsZero() {
		t.Errorf("reload = %v, %v", ring, err)
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
	if plain != nil || len(sealed) == 0 || bytes.Contains(sealed, k.Private.Seed()) {
		t.Fatalf("stored seed %x, sealed %x: the seed is readable", plain, sealed)
	}
	again, _, err := store.SigningKeys(ctx, mustNotGenerate, kek(t, 1), 0)
	if err != nil || again.Current().ID != k.ID || !again.Current().Private.Equal(k.Private) {
		t.Fatalf("reload = %v, %v", again, err)
	}
	if _, _, err := store.SigningKeys(ctx, mustNotGenerate, nil, 0); !errors.Is(err, signing.ErrNoKEK) {
		t.Errorf("reload without a KEK: %v, want ErrNoKEK", err)
	}
	if _, _, err := store.SigningKeys(ctx, mustNotGenerate, kek(t, 2), 0); !errors.Is(err, signing.ErrWrongKEK) {
		t.Errorf("reload with another KEK: %v, want ErrWrongKEK", err)
	}
	// Nothing was sealed twice or rewritten by the failed loads.
	if p2, s2 := storedSeed(t, pool, k.ID); p2 != nil || !bytes.Equal(s2, sealed) {
		t.Errorf("the row changed: %x %x", p2, s2)
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
	if plain, sealed := storedSeed(t, pool, k.ID); !bytes.Equal(plain, k.Private.Seed()) || sealed != nil {
		t.Fatalf("without a KEK: seed %x, sealed %x", plain, sealed)
	}
	n, resealed, err := store.SealSigningKeys(ctx, kek(t, 1), nil)
	if err != nil || n != 1 || resealed != 0 {
		t.Fatalf("SealSigningKeys = %d, %d, %v; want 1 sealed", n, resealed, err)
	}
	if plain, sealed := storedSeed(t, pool, k.ID); plain != nil || len(sealed) == 0 {
		t.Fatalf("after sealing: seed %x, sealed %x", plain, sealed)
	}
	sealedRing, _, err := store.SigningKeys(ctx, mustNotGenerate, kek(t, 1), 0)
	if err != nil || sealedRing.Current().ID != k.ID || !sealedRing.Current().Private.Equal(k.Private) ||
		!sealedRing.Current().CreatedAt.Equal(k.CreatedAt) {
		t.Fatalf("after sealing: %v, %v", sealedRing, err)
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
		if err != nil || added || len(ring) != 1 || ring.Current().ID != old.ID {
			t.Errorf("with a maximum age of %v: %v, %v, %v; want the old key alone", maxAge, ring, added, err)
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
	if current.ID == old.ID || !current.CreatedAt.After(old.CreatedAt) {
		t.Errorf("the current key %s (made %v) is not a new one", current.ID, current.CreatedAt)
	}
	if plain, sealed := storedSeed(t, pool, current.ID); plain != nil || len(sealed) == 0 {
		t.Errorf("the new key is not sealed: seed %x", plain)
	}
	// It is young: the next start keeps it.
	if ring, added, err := store.SigningKeys(ctx, mustNotGenerate, kek(t, 1), time.Hour); err != nil || added || ring.Current().ID != current.ID {
		t.Errorf("a start after the rotation: %v, %v, %v", ring, added, err)
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
		if _, err := kek(t, 1).Open(k.ID, s); p != nil || err == nil {
			t.Errorf("key %s: seed %x, and it still opens with the previous KEK (%v)", k.ID, p, err)
		}
		if seed, err := kek(t, 2).Open(k.ID, s); err != nil || !bytes.Equal(seed, k.Private.Seed()) {
			t.Errorf("key %s does not open with the new KEK to itself: %v", k.ID, err)
		}
	}
	after, _, err := store.SigningKeys(ctx, mustNotGenerate, kek(t, 2), 0)
	if err != nil || len(after) != len(before) {
		t.Fatalf("with the new KEK alone: %v, %v", after, err)
	}
	for i := range before {
		if after[i].ID != before[i].ID || !after[i].Private.Equal(before[i].Private) || !after[i].CreatedAt.Equal(before[i].CreatedAt) {
			t.Errorf("key %d changed: %s %v, was %s %v", i, after[i].ID, after[i].CreatedAt, before[i].ID, before[i].CreatedAt)
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
		if !errors.Is(err, signing.ErrWrongKEK) || s != 0 || r != 0 {
			t.Errorf("%s: SealSigningKeys = %d, %d, %v; want ErrWrongKEK", c.name, s, r, err)
		}
		for kid, got := range rows() {
			if !bytes.Equal(got[0], want[kid][0]) || !bytes.Equal(got[1], want[kid][1]) {
				t.Errorf("%s: key %s changed", c.name, kid)
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
	if n, err := store.DeleteDeadRefreshTokens(ctx, 7*24*time.Hour); err != nil || n != 0 {
		t.Errorf("a second run deleted %d (%v): the session revoked just now is kept", n, err)
	}
}
