package balancer

import (
	"testing"
	"time"
)

func TestEjectionsInARowDoubleUpToTheCap(t *testing.T) {
	t.Parallel()
	b := &Balancer{s: Settings{EjectBackoff: time.Second, EjectBackoffMax: 10 * time.Second}}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
	for i, w := range want {
		if got := b.backoff(i + 1); got != w {
			t.Errorf("ejection %d lasts %s; want %s", i+1, got, w)
		}
	}
	if got := b.backoff(1000); got != 10*time.Second {
		t.Errorf("ejection 1000 lasts %s; want the cap", got)
	}
}
