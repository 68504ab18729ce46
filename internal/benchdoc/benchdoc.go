// Package benchdoc lets a benchmark write its latest results into docs/benchmarks.md:
// each benchmark owns a section between two marks, and the prose around the marks is
// written by hand.
package benchdoc

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strings"
)

// Marks are the lines around the section named name.
func Marks(name string) (begin, end string) {
	return "<!-- BEGIN " + name + ": written by the benchmark, do not edit by hand -->", "<!-- END " + name + " -->"
}

// WriteSection replaces what lies between name's marks in file with body; the marks
// must be there already.
func WriteSection(file, name, body string) error {
	doc, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	begin, end := Marks(name)
	s := string(doc)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		return fmt.Errorf("no section marked %q … %q in %s", begin, end, file)
	}
	out := s[:i+len(begin)] + "\n" + body + s[j:]
	return os.WriteFile(file, []byte(out), 0o644)
}

// Machine names the CPU and how many cores there are, for the line under a table.
func Machine() string {
	model := "unknown CPU"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%d × %s", runtime.NumCPU(), model)
}
