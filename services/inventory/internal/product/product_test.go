package product

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/page"
)

// isInvalid reports whether err is a 422 with a message.
func isInvalid(err error) bool {
	var ae *apperr.Error
	return errors.As(err, &ae) && ae.Code == apperr.Invalid && ae.Message != ""
}

func TestParseSKU(t *testing.T) {
	t.Parallel()
	good := map[string]SKU{
		"BZR-MUG-001":              "BZR-MUG-001",
		"  abc_123  ":              "abc_123",
		"a":                        "a",
		strings.Repeat("x", 64):    SKU(strings.Repeat("x", 64)),
		"\tMixed-Case_sku-9\n":     "Mixed-Case_sku-9",
		"0123456789-_ABCxyz":       "0123456789-_ABCxyz",
		"-":                        "-",
		"UPPER":                    "UPPER",
		"lower":                    "lower",
		"with-dash_and_underscore": "with-dash_and_underscore",
	}
	for in, want := range good {
		if got, err := ParseSKU(in); err != nil || got != want {
			t.Errorf("ParseSKU(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "   ", strings.Repeat("x", 65), "has space", "dot.ted", "slash/", "ümlaut", "emoji🙂", "semi;colon"} {
		if got, err := ParseSKU(in); !isInvalid(err) {
			t.Errorf("ParseSKU(%q) = %q, %v; want invalid", in, got, err)
		}
	}
}

func TestParseName(t *testing.T) {
	t.Parallel()
	if got, err := ParseName("  Stoneware Mug  "); err != nil {
		t.Errorf("ParseName trims: %v, want no error", err)
	} else if got != "Stoneware Mug" {
		t.Errorf("ParseName trims: %q, want %q", got, "Stoneware Mug")
	}
	if got, err := ParseName(strings.Repeat("é", 200)); err != nil {
		t.Errorf("200 characters (400 bytes) is allowed: %v, want no error", err)
	} else if got.String() != strings.Repeat("é", 200) {
		t.Errorf("200 characters (400 bytes): %q, want them as they were", got)
	}
	for _, in := range []string{"", "  ", strings.Repeat("a", 201), "two\nlines", "bell\a"} {
		if _, err := ParseName(in); !isInvalid(err) {
			t.Errorf("ParseName(%q) = %v; want invalid", in, err)
		}
	}
}

func TestParseDescription(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]Description{
		"":                        "",
		"  ":                      "",
		" Line one\nLine two\t ":  "Line one\nLine two",
		strings.Repeat("ü", 2000): Description(strings.Repeat("ü", 2000)),
	} {
		if got, err := ParseDescription(in); err != nil || got != want {
			t.Errorf("ParseDescription(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{strings.Repeat("a", 2001), "nul\x00", "escape\x1b[31m"} {
		if _, err := ParseDescription(in); !isInvalid(err) {
			t.Errorf("ParseDescription(%q) = %v; want invalid", in, err)
		}
	}
}

func TestParsePriceCurrencyStock(t *testing.T) {
	t.Parallel()
	if p, err := ParsePrice(1); err != nil {
		t.Errorf("ParsePrice(1): %v, want no error", err)
	} else if p != 1 {
		t.Errorf("ParsePrice(1) = %d, want 1", p)
	}
	if p, err := ParsePrice(int64(MaxPrice)); err != nil {
		t.Errorf("ParsePrice(max): %v, want no error", err)
	} else if p != MaxPrice {
		t.Errorf("ParsePrice(max) = %d, want %d", p, MaxPrice)
	}
	for _, in := range []int64{0, -1, int64(MaxPrice) + 1} {
		if _, err := ParsePrice(in); !isInvalid(err) {
			t.Errorf("ParsePrice(%d) = %v; want invalid", in, err)
		}
	}

	if c, err := ParseCurrency("USD"); err != nil {
		t.Errorf("ParseCurrency(USD): %v, want no error", err)
	} else if c != "USD" {
		t.Errorf("ParseCurrency(USD) = %q, want USD", c)
	}
	for _, in := range []string{"", "usd", "US", "USDD", "U$D", " USD", "ÜSD"} {
		if _, err := ParseCurrency(in); !isInvalid(err) {
			t.Errorf("ParseCurrency(%q) = %v; want invalid", in, err)
		}
	}

	for _, in := range []int{0, 1, int(MaxStock)} {
		if s, err := ParseStock(in); err != nil {
			t.Errorf("ParseStock(%d): %v, want no error", in, err)
		} else if int(s) != in {
			t.Errorf("ParseStock(%d) = %d, want %d", in, s, in)
		}
	}
	for _, in := range []int{-1, int(MaxStock) + 1} {
		if _, err := ParseStock(in); !isInvalid(err) {
			t.Errorf("ParseStock(%d) = %v; want invalid", in, err)
		}
	}
}

func TestPatchApply(t *testing.T) {
	t.Parallel()
	p := Product{ID: uuid.New(), SKU: "A", Name: "Old", Description: "old", Price: 100, Currency: "USD", Stock: 5}
	if !(Patch{}).IsEmpty() {
		t.Error("an empty patch: IsEmpty false, want true")
	}
	if (Patch{Stock: new(Stock(0))}).IsEmpty() {
		t.Error("a patch of the stock to 0: IsEmpty true, want false")
	}
	if (Patch{SKU: new(SKU("B"))}).IsEmpty() {
		t.Error("a patch of the SKU: IsEmpty true, want false")
	}
	if got := (Patch{}).Apply(p); got != p {
		t.Errorf("an empty patch changed %+v to %+v", p, got)
	}
	name, price, sku := Name("New"), Price(250), SKU("B")
	got := Patch{SKU: &sku, Name: &name, Price: &price, Stock: new(Stock(0))}.Apply(p)
	want := p
	want.SKU, want.Name, want.Price, want.Stock = "B", "New", 250, 0
	if got != want {
		t.Errorf("Apply = %+v, want %+v", got, want)
	}
}

func TestParseSearch(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]Search{
		"":                       "",
		" \t ":                   "",
		"  blue  mug ":           "blue  mug",
		"100%_off\\":             "100%_off\\",
		strings.Repeat("ü", 100): Search(strings.Repeat("ü", 100)),
	} {
		if got, err := ParseSearch(in); err != nil || got != want {
			t.Errorf("ParseSearch(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{strings.Repeat("a", 101), "nul\x00", "two\nlines", "bad\xffutf8"} {
		if _, err := ParseSearch(in); !isInvalid(err) {
			t.Errorf("ParseSearch(%q) = %v; want invalid", in, err)
		}
	}
	if got := Search("  blue \t mug ").Words(); !slices.Equal(got, []string{"blue", "mug"}) {
		t.Errorf("Words = %q", got)
	}
	if got := Search("").Words(); len(got) != 0 {
		t.Errorf("the zero Search has words %q", got)
	}
}

// fakeStore records what the service hands the store.
type fakeStore struct {
	created []Product
	seeded  []Product
	updated int
	got     int
}

var _ Store = (*fakeStore)(nil)

func (f *fakeStore) CreateProduct(_ context.Context, p Product) error {
	f.created = append(f.created, p)
	return nil
}

func (f *fakeStore) UpdateProduct(_ context.Context, id uuid.UUID, patch Patch, now time.Time) (Product, error) {
	f.updated++
	return patch.Apply(Product{ID: id, UpdatedAt: now}), nil
}

func (f *fakeStore) Product(_ context.Context, id uuid.UUID) (Product, error) {
	f.got++
	return Product{ID: id}, nil
}

func (f *fakeStore) Products(context.Context, Search, page.Request) ([]Product, error) {
	return nil, nil
}

func (f *fakeStore) SeedProducts(_ context.Context, ps []Product) (int, error) {
	f.seeded = ps
	return len(ps), nil
}

func TestServiceStampsTimesAndOrdersTheSeed(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.FixedZone("x", 3600))
	store := &fakeStore{}
	s := NewService(store, func() time.Time { return at })
	ctx := context.Background()

	p, err := s.Create(ctx, New{SKU: "A", Name: "A", Price: 1, Currency: "USD", Stock: 1})
	if err != nil {
		t.Fatal(err)
	}
	want := at.UTC().Truncate(time.Microsecond)
	if v := p.ID.Version(); v != 7 {
		t.Errorf("created id %s of version %d, want 7", p.ID, v)
	}
	if !p.CreatedAt.Equal(want) {
		t.Errorf("created at %v, want %v", p.CreatedAt, want)
	}
	if loc := p.CreatedAt.Location(); loc != time.UTC {
		t.Errorf("created at in %v, want UTC", loc)
	}
	if p.UpdatedAt != p.CreatedAt {
		t.Errorf("updated at %v, want the creation time %v", p.UpdatedAt, p.CreatedAt)
	}
	if len(store.created) != 1 {
		t.Errorf("stored %+v, want the one product", store.created)
	} else if store.created[0] != p {
		t.Errorf("stored %+v, want %+v", store.created[0], p)
	}

	// An empty patch reads instead of writing (no product.updated for nothing).
	if _, err := s.Update(ctx, p.ID, Patch{}); err != nil {
		t.Errorf("empty patch: %v, want no error", err)
	}
	if store.updated != 0 {
		t.Errorf("empty patch: %d updates, want 0", store.updated)
	}
	if store.got != 1 {
		t.Errorf("empty patch: %d reads, want 1", store.got)
	}
	if _, err := s.Update(ctx, p.ID, Patch{Stock: new(Stock(3))}); err != nil {
		t.Errorf("patch: %v, want no error", err)
	}
	if store.updated != 1 {
		t.Errorf("patch: %d updates in all, want 1", store.updated)
	}
	// A patch of the SKU alone is a change too.
	if _, err := s.Update(ctx, p.ID, Patch{SKU: new(SKU("B"))}); err != nil {
		t.Errorf("sku patch: %v, want no error", err)
	}
	if store.updated != 2 {
		t.Errorf("sku patch: %d updates in all, want 2", store.updated)
	}

	n, err := s.Seed(ctx, []New{{SKU: "A"}, {SKU: "B"}, {SKU: "C"}})
	if err != nil {
		t.Fatalf("Seed: %v, want no error", err)
	}
	if n != 3 {
		t.Fatalf("Seed = %d, want 3", n)
	}
	for i := 1; i < len(store.seeded); i++ {
		a, b := store.seeded[i-1], store.seeded[i]
		if !a.CreatedAt.Before(b.CreatedAt) {
			t.Errorf("seeded products %d and %d are not in order: made %v, then %v", i-1, i, a.CreatedAt, b.CreatedAt)
		}
		if a.ID == b.ID {
			t.Errorf("seeded products %d and %d share the id %s, want their own", i-1, i, a.ID)
		}
	}
}
