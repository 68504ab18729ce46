package e2e

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// A search of the catalogue (?q=) through the gateway: every word matches somewhere in
// a product, letter case ignored and wildcards literal; pages go on with the same q;
// answers always come from inventory (X-Cache: MISS), since the gateway never keeps a
// search; a q over 100 characters is 422 naming it.
func TestProductSearchPagesWithItsQueryAndIsNeverCached(t *testing.T) {
	setup(t)
	type page struct {
		Items      []productDoc `json:"items"`
		NextCursor *string      `json:"next_cursor"`
	}
	search := func(t *testing.T, query string) page {
		t.Helper()
		r := do(t, request{Method: "GET", Path: "/api/v1/products?" + query})
		var p page
		decode(t, r, http.StatusOK, &p)
		if x := r.Header.Get("X-Cache"); x != "MISS" {
			t.Errorf("?%s: X-Cache %q; a search is never kept", query, x)
		}
		return p
	}
	// contains reports whether every word of q is in p's name, SKU or description.
	contains := func(p productDoc, q string) bool {
		text := strings.ToLower(p.Name + " " + p.SKU + " " + p.Description)
		for _, w := range strings.Fields(strings.ToLower(q)) {
			if !strings.Contains(text, w) {
				return false
			}
		}
		return true
	}
	ids := func(ps []productDoc) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.ID)
		}
		return out
	}

	// Every seeded SKU begins BZR-; the products other tests make do not have it.
	whole := search(t, "limit=100&q=bzr")
	if len(whole.Items) < 20 || whole.NextCursor != nil {
		t.Fatalf("?q=bzr found %d products (next_cursor %v); want the seeded catalogue, at least 20, on one page", len(whole.Items), whole.NextCursor)
	}
	for _, p := range whole.Items {
		if !contains(p, "bzr") {
			t.Errorf("?q=bzr found %s %q", p.SKU, p.Name)
		}
	}
	if again := search(t, "limit=100&q=BZR"); !slices.Equal(ids(again.Items), ids(whole.Items)) {
		t.Errorf("?q=BZR found %d products, ?q=bzr %d: letter case counts", len(again.Items), len(whole.Items))
	}

	var paged []productDoc
	next := search(t, "limit=7&q=bzr")
	for pages := 1; ; pages++ {
		if pages > 20 {
			t.Fatal("the pages of ?q=bzr do not end")
		}
		paged = append(paged, next.Items...)
		if next.NextCursor == nil {
			break
		}
		next = search(t, "limit=7&q=bzr&cursor="+url.QueryEscape(*next.NextCursor))
	}
	if !slices.Equal(ids(paged), ids(whole.Items)) {
		t.Errorf("pages of 7 of ?q=bzr listed %d products, one page %d, or in another order", len(paged), len(whole.Items))
	}

	for _, q := range []string{"organic COTTON", "100%"} {
		found := search(t, "limit=100&q="+url.QueryEscape(q))
		if !slices.ContainsFunc(found.Items, func(p productDoc) bool { return p.SKU == "BZR-TEE-002" }) {
			t.Errorf("?q=%s did not find BZR-TEE-002, the organic cotton tee in 100%% cotton", q)
		}
		for _, p := range found.Items {
			if !contains(p, q) {
				t.Errorf("?q=%s found %s %q, which lacks a word of it", q, p.SKU, p.Name)
			}
		}
	}

	p := problem(t, do(t, request{Method: "GET", Path: "/api/v1/products?q=" + strings.Repeat("x", 101)}), http.StatusUnprocessableEntity)
	if !slices.Equal(p.fields(), []string{"q"}) {
		t.Errorf("a 101-character q: the problem names %v; want q", p.fields())
	}
}
