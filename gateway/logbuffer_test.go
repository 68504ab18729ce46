package main

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// lockedBuffer is an output written from the buffer's goroutine and read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A warning is written as soon as it is logged, after every line logged before it,
// in order; Close writes whatever is left; a buffer that fills up is written then.
func TestLogBufferWritesWarningsAtOnceAndTheRestInOrder(t *testing.T) {
	t.Parallel()
	out := &lockedBuffer{}
	buf := newLogBuffer(out)
	log := slog.New(urgentLines{slog.NewTextHandler(buf, nil), buf}).With("service", "gateway")

	log.Info("first")
	log.Info("second")
	log.Warn("trouble")
	got := out.String()
	if i, j, k := strings.Index(got, "msg=first"), strings.Index(got, "msg=second"), strings.Index(got, "msg=trouble"); i < 0 || j < i || k < j {
		t.Fatalf("right after a warning the output is %q; want first, second, trouble in that order", got)
	}
	if !strings.Contains(got, "service=gateway") {
		t.Errorf("attributes lost: %q", got)
	}

	log.Info("last")
	if err := buf.Close(); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.HasSuffix(strings.TrimSpace(got), "msg=last service=gateway") {
		t.Fatalf("after Close the output ends %q; want the last line", got[max(0, len(got)-80):])
	}

	// More than the buffer holds is written without waiting.
	out2 := &lockedBuffer{}
	buf2 := newLogBuffer(out2)
	defer buf2.Close()
	line := strings.Repeat("x", 1023) + "\n"
	for range 2 * maxLogBuffer / len(line) {
		if _, err := buf2.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(out2.String()); n < maxLogBuffer/2 {
		t.Fatalf("%d bytes written after twice the buffer's size was logged", n)
	}
}
