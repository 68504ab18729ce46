package httpserver

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestETagIsTheBodysStrongTag(t *testing.T) {
	t.Parallel()
	a, b := ETag([]byte(`{"id":1}`)), ETag([]byte(`{"id":2}`))
	if a == b {
		t.Fatalf("two bodies share the tag %s", a)
	}
	if a != ETag([]byte(`{"id":1}`)) {
		t.Error("the same body has two tags")
	}
	if !strings.HasPrefix(a, `"`) || !strings.HasSuffix(a, `"`) || strings.HasPrefix(a, "W/") || len(a) != 45 {
		t.Errorf("ETag = %s; want a strong, quoted tag of the SHA-256", a)
	}
}

func TestNoneMatch(t *testing.T) {
	t.Parallel()
	etag := ETag([]byte("body"))
	other := ETag([]byte("other"))
	for _, c := range []struct {
		header []string
		want   bool
	}{
		{nil, false},
		{[]string{etag}, true},
		{[]string{other}, false},
		{[]string{"W/" + etag}, true}, // weak comparison
		{[]string{"*"}, true},
		{[]string{other + ", " + etag}, true},
		{[]string{other + ",W/" + etag}, true},
		{[]string{other, etag}, true},              // two header lines
		{[]string{strings.Trim(etag, `"`)}, false}, // unquoted: not a tag
		{[]string{`"a,b", ` + etag}, true},         // a comma inside a tag
		{[]string{`"unterminated, ` + etag}, false},
		{[]string{""}, false},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		for _, h := range c.header {
			r.Header.Add("If-None-Match", h)
		}
		if got := NoneMatch(r, etag); got != c.want {
			t.Errorf("If-None-Match %q against %s = %t; want %t", c.header, etag, got, c.want)
		}
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("If-None-Match", "*")
	if NoneMatch(r, "not a tag") {
		t.Error("* matched a value that is not an entity tag")
	}
}
