package syncbuf

import (
	"strings"
	"sync"
	"testing"
)

// Lines written from many goroutines while another reads all arrive whole (run with
// -race, as make test does, to catch an unguarded access).
func TestConcurrentWritesArriveWhole(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				b.Write([]byte("line\n"))
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if got := strings.Count(b.String(), "line\n"); got != 800 {
		t.Errorf("%d whole lines, want 800", got)
	}
	if strings.ReplaceAll(b.String(), "line\n", "") != "" {
		t.Errorf("something else was written: %q", strings.ReplaceAll(b.String(), "line\n", ""))
	}
}
