package devstack

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
)

// ANSI colors for the name column, one per program, so that interleaved logs can be
// told apart at a glance.
var colors = map[string]string{
	"devstack":      "1",  // bold
	"mailpit":       "90", // grey
	"users":         "32", // green
	"inventory":     "33", // yellow
	"payments":      "35", // magenta
	"orders":        "34", // blue
	"notifications": "36", // cyan
	"gateway":       "91", // bright red
}

// nameWidth pads the name column to the longest program name.
const nameWidth = len("notifications")

// sink writes whole lines from every program to one writer, each prefixed with the
// program's name. A line is written in one call under a lock, so lines from different
// programs interleave but never mix.
type sink struct {
	mu    sync.Mutex
	w     io.Writer
	color bool
}

func (s *sink) line(name, text string) {
	prefix := fmt.Sprintf("%-*s |", nameWidth, name)
	if c, ok := colors[name]; ok && s.color {
		prefix = "\x1b[" + c + "m" + prefix + "\x1b[0m"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _ = io.WriteString(s.w, prefix+" "+text+"\n")
}

// printf writes one of the stack's own progress lines.
func (s *sink) printf(format string, args ...any) {
	for _, l := range strings.Split(strings.TrimRight(fmt.Sprintf(format, args...), "\n"), "\n") {
		s.line("devstack", l)
	}
}

// maxLine bounds a line held back while waiting for its newline, so that a program
// writing without newlines cannot grow the buffer without end.
const maxLine = 64 << 10

// lineWriter is a child's stdout or stderr: it splits what the child writes into lines,
// hands each to onLine and to the sink. exec.Cmd copies into it from one goroutine.
type lineWriter struct {
	sink   *sink
	name   string
	onLine func(string)
	buf    []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.emit(string(bytes.TrimRight(w.buf[:i], "\r")))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > maxLine {
		w.flush()
	}
	return len(p), nil
}

// flush emits a last line that had no newline; call it once the child has exited.
func (w *lineWriter) flush() {
	if len(w.buf) > 0 {
		w.emit(string(w.buf))
		w.buf = nil
	}
}

func (w *lineWriter) emit(line string) {
	if w.onLine != nil {
		w.onLine(line)
	}
	w.sink.line(w.name, line)
}

// tail keeps the last few lines a program wrote, to quote when it dies.
type tail struct {
	mu    sync.Mutex
	lines []string
}

const tailLines = 15

func (t *tail) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, line)
	if len(t.lines) > tailLines {
		t.lines = t.lines[len(t.lines)-tailLines:]
	}
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == 0 {
		return "    (no output)"
	}
	return "    " + strings.Join(t.lines, "\n    ")
}
