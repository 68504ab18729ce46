package httpserver

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"
)

// ETag is the strong entity tag of body (RFC 9110 §8.8.3): its SHA-256, quoted. Two
// bodies have the same tag exactly when they are the same bytes, whichever process
// computed it, so replicas and cached copies agree without sharing anything.
func ETag(body []byte) string {
	sum := sha256.Sum256(body)
	return `"` + base64.RawURLEncoding.EncodeToString(sum[:]) + `"`
}

// NoneMatch reports whether r's If-None-Match header matches etag, the current tag of
// the representation r asks for: then a GET is answered 304 Not Modified (RFC 9110
// §13.1.2). It uses the weak comparison that header calls for (W/"x" matches "x"),
// and "*" matches any representation. A header that does not parse matches nothing,
// and so is answered in full.
func NoneMatch(r *http.Request, etag string) bool {
	want := opaqueTag(etag)
	if want == "" {
		return false
	}
	for _, line := range r.Header.Values("If-None-Match") {
		s := line
		for {
			s = strings.TrimLeft(s, " \t,")
			if s == "" {
				break
			}
			if s[0] == '*' {
				return true
			}
			var tag string
			tag, s = scanETag(s)
			if tag == "" {
				break // malformed: the rest of this line cannot be read
			}
			if tag == want {
				return true
			}
		}
	}
	return false
}

// opaqueTag is etag without a weak prefix, quotes included; "" when it is not an
// entity tag.
func opaqueTag(etag string) string {
	tag, rest := scanETag(etag)
	if rest != "" {
		return ""
	}
	return tag
}

// scanETag reads one entity tag at the start of s (W/"..." or "..."), and returns its
// opaque part, quotes included, and what follows it; "" when s does not start with one.
func scanETag(s string) (tag, rest string) {
	s = strings.TrimPrefix(s, "W/")
	if len(s) < 2 || s[0] != '"' {
		return "", s
	}
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			return s[:i+1], s[i+1:]
		// etagc: %x21 / %x23-7E / obs-text
		case c == 0x21 || (c >= 0x23 && c != 0x7f):
		default:
			return "", s
		}
	}
	return "", s
}
