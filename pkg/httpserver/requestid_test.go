package httpserver

import (
	"regexp"
	"strings"
	"testing"
)

// saneID accepts exactly what the pattern it replaced accepted.
func TestSaneIDIsThePattern(t *testing.T) {
	t.Parallel()
	pattern := regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)
	for _, id := range []string{
		"", "a", "abc-123", "A.b_c:d-e", strings.Repeat("x", 128), strings.Repeat("x", 129),
		"<script>", "a b", "a/b", "ä", "id\n", "0123456789abcdef0123456789abcdef", "a+b", "a@b",
	} {
		if got, want := saneID(id), pattern.MatchString(id); got != want {
			t.Errorf("saneID(%q) = %v, want %v", id, got, want)
		}
	}
}
