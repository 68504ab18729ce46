package httpjson

import (
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
			r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, 1024)
			var b body
			err := Decode(r, &b)
			if c.want == "" {
				if err != nil || b.Email != "a@b.c" || b.Age != 3 {
					t.Fatalf("Decode = %v, %+v", err, b)
				}
				return
			}
			if apperr.CodeOf(err) != c.want {
				t.Fatalf("Decode error = %v, want code %s", err, c.want)
			}
		})
	}
}

func TestDecodeRefusesOtherContentTypes(t *testing.T) {
	t.Parallel()
	r := httptest.NewRequest("POST", "/", strings.NewReader(`{}`))
	r.Header.Set("Content-Type", "text/plain")
	if apperr.CodeOf(Decode(r, &body{})) != apperr.Malformed {
		t.Fatal("want malformed")
	}
}
