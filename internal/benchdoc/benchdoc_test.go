package benchdoc_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bazaar-shop/bazaar/internal/benchdoc"
)

// A section is replaced between its marks, the prose around them and other sections
// kept; a file without the marks is an error and is left alone.
func TestWriteSectionReplacesOnlyBetweenItsMarks(t *testing.T) {
	t.Parallel()
	b1, e1 := benchdoc.Marks("BenchmarkOne")
	b2, e2 := benchdoc.Marks("BenchmarkTwo")
	doc := "# Prose\n\n" + b1 + "\nold one\n" + e1 + "\n\nmore prose\n\n" + b2 + "\nold two\n" + e2 + "\n"
	file := filepath.Join(t.TempDir(), "benchmarks.md")
	if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := benchdoc.WriteSection(file, "BenchmarkOne", "new one\n"); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(file)
	want := strings.Replace(doc, "old one\n", "new one\n", 1)
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}

	if err := benchdoc.WriteSection(file, "BenchmarkThree", "x\n"); err == nil {
		t.Error("wrote a section whose marks are not in the file")
	}
	if again, _ := os.ReadFile(file); string(again) != want {
		t.Error("a failed write changed the file")
	}
}
