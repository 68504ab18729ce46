package httpjson

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
)

type body struct {
	Email string `json:"email"`
	Age   int    `json:"age"`
}

func TestDecode(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, in string
		want     apperr.Code
	}{
		{"ok", `{"email":"a@b.c","age":3}`, ""},
		{"empty", ``, apperr.Malformed},
		{"syntax", `{"email":`, apperr.Malformed},
		{"bad syntax", `{"email" 1}`, apperr.Malformed},
		{"unknown field", `{"email":"a","admin":true}`, apperr.Malformed},
		{"wrong type", `{"age":"three"}`, apperr.Malformed},
		{"trailing", `{"email":"a"} {}`, apperr.Malformed},
		{"too large", `{"email":"` + strings.Repeat("x", 2000) + `"}`, apperr.TooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest("POST", "/", strings.NewReader(c.in))
			r.Header.Set("Content-Type", "application/json")
			r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, 1024)
			var b body
			err := Decode(r, &b)
			if c.want == "" {
				if err != nil {
					t.Fatalf("Decode = %v, want no error", err)
				}
				if b.Email != "a@b.c" {
					t.Errorf("Decode: email %q, want a@b.c", b.Email)
				}
				if b.Age != 3 {
					t.Errorf("Decode: age %d, want 3", b.Age)
				}
				return
			}
			if apperr.CodeOf(err) != c.want {
				t.Fatalf("Decode error = %v, want code %s", err, c.want)
			}
		})
	}
}

// countingReader counts the bytes read from it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestDecodeWantsApplicationJSON(t *testing.T) {
	t.Parallel()
	const in = `{"email":"a@b.c","age":3}`
	for _, tc := range []struct {
		contentType string // "" sends none
		ok          bool
	}{
		{"application/json", true},
		{"application/json; charset=utf-8", true},
		{"application/json;charset=UTF-8", true},
		{"Application/JSON", true}, // media types are case-insensitive
		{"", false},
		{"application/jsonfoo", false},
		{"application/json-patch+json", false},
		{"text/plain", false},
		{"text/plain; charset=utf-8", false},
		{"application/x-www-form-urlencoded", false},
		{"multipart/form-data; boundary=x", false},
		{"application/json; charset", false}, // not a media type
		{"json", false},
	} {
		src := &countingReader{r: strings.NewReader(in)}
		r := httptest.NewRequest("POST", "/", src)
		if tc.contentType != "" {
			r.Header.Set("Content-Type", tc.contentType)
		}
		var b body
		err := Decode(r, &b)
		if tc.ok {
			if err != nil {
				t.Errorf("%q: Decode = %v; want it decoded", tc.contentType, err)
			} else if b.Email != "a@b.c" {
				t.Errorf("%q: decoded email %q, want a@b.c", tc.contentType, b.Email)
			}
			continue
		}
		if apperr.CodeOf(err) != apperr.UnsupportedMediaType {
			t.Errorf("%q: Decode = %v, want unsupported_media_type", tc.contentType, err)
		}
		if s := apperr.UnsupportedMediaType.Status(); s != http.StatusUnsupportedMediaType {
			t.Errorf("unsupported_media_type answers %d, want 415", s)
		}
		// Refused before anything is read: the body is not looked at, let alone used.
		if src.n != 0 || b != (body{}) {
			t.Errorf("%q: read %d bytes, decoded %+v; want nothing read", tc.contentType, src.n, b)
		}
	}
}

func TestDecodeWithoutABody(t *testing.T) {
	t.Parallel()
	// No body at all and no type: there is no body whose type could be wrong, so the
	// answer says what is missing, like any empty body.
	r := httptest.NewRequest("POST", "/", nil)
	if err := Decode(r, &body{}); apperr.CodeOf(err) != apperr.Malformed {
		t.Errorf("no body, no type: Decode = %v, want malformed", err)
	} else if !strings.Contains(err.Error(), "empty") {
		t.Errorf("no body, no type: Decode = %v, want it to say empty", err)
	}
	// A declared type is checked even on an empty body.
	r = httptest.NewRequest("POST", "/", nil)
	r.Header.Set("Content-Type", "text/plain")
	if err := Decode(r, &body{}); apperr.CodeOf(err) != apperr.UnsupportedMediaType {
		t.Errorf("no body, text/plain: Decode = %v, want unsupported_media_type", err)
	}
	// A body of unknown length (chunked) with no type is refused unread.
	src := &countingReader{r: strings.NewReader(`{"email":"a@b.c"}`)}
	r = httptest.NewRequest("POST", "/", src)
	r.ContentLength = -1
	if err := Decode(r, &body{}); apperr.CodeOf(err) != apperr.UnsupportedMediaType {
		t.Errorf("chunked body, no type: Decode = %v, want unsupported_media_type", err)
	}
	if src.n != 0 {
		t.Errorf("chunked body, no type: read %d bytes, want it refused unread", src.n)
	}
}
