package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/internal/testkit/syncbuf"
	"github.com/bazaar-shop/bazaar/pkg/events"
)

// process is the service's binary running as a real process.
type process struct {
	cmd    *exec.Cmd
	logs   *syncbuf.Buffer
	exited chan struct{} // closed when it has exited; err is then set
	err    error
}

var listeningLine = regexp.MustCompile(`"msg":"listening"`)

// startProcess runs bin with env and waits until it listens.
func startProcess(t *testing.T, bin string, env map[string]string) *process {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &process{cmd: cmd, logs: &syncbuf.Buffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // fails harmlessly once it has exited
		<-p.exited
		if t.Failed() {
			t.Logf("process %d logs:\n%s", cmd.Process.Pid, p.logs.String())
		}
	})
	eventually(t, 2*time.Minute, "the process to listen", func() bool {
		select {
		case <-p.exited:
			t.Fatalf("the process exited before listening: %v\n%s", p.err, p.logs.String())
		default:
		}
		return listeningLine.MatchString(p.logs.String())
	})
	return p
}

// The process is killed (SIGKILL: no graceful stop) while it consumes events and
// sends e-mails, then started again. Every event must end as exactly one sent
// notification with at least one e-mail. A second copy of an e-mail is possible only
// in the window between the SMTP server's acceptance and the row being marked sent
// (notification.Sender.Send explains it); the fake server widens that window by
// answering slowly, so some duplicates are expected, and each carries its original's
// Message-ID.
func TestCrashedProcessLosesNoEmail(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped by -short")
	}
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "notifications")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	s := newStack(t, map[string]string{
		"HTTP_ADDR":     "127.0.0.1:0",
		"CONSUMER_NAME": "crash-test", // the same after the restart: it takes its entries back at once
		"LOG_LEVEL":     "info",
	})
	s.smtp.SetDelay(100 * time.Millisecond)
	first := startProcess(t, bin, s.env)

	const n = 30
	users := make([]user, n)
	for i := range users {
		users[i] = newUser(fmt.Sprintf("Crash %d", i))
	}
	published := make(chan error, 1)
	go func() { // publishing goes on through the crash and the restart
		for _, u := range users {
			data, _ := json.Marshal(map[string]any{"user_id": u.id, "email": u.email, "name": u.name})
			e := events.Envelope{ID: uuid.New(), Type: "user.registered", Source: "test", Subject: u.id.String(), Time: time.Now(), Data: data}
			if err := s.redis.XAdd(context.Background(), &redis.XAddArgs{Stream: "events.users", Values: e.Fields()}).Err(); err != nil {
				published <- err
				return
			}
			time.Sleep(50 * time.Millisecond) // the pace of sign-ups, not synchronisation
		}
		published <- nil
	}()
	// Kill it while it works: some e-mails sent and marked, others in flight, events
	// still arriving.
	eventually(t, 2*time.Minute, "the first e-mails sent", func() bool {
		return s.count(t, `SELECT count(*) FROM notifications WHERE status = 'sent'`) >= 3
	})
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-first.exited
	t.Logf("killed the process after %d e-mails, %d marked sent, %d notifications written",
		len(s.smtp.Messages()), s.count(t, `SELECT count(*) FROM notifications WHERE status = 'sent'`),
		s.count(t, `SELECT count(*) FROM notifications`))

	second := startProcess(t, bin, s.env)
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	// Tasks the dead worker held are handed back by asynq's recoverer once their
	// lease has been expired 30 s, which it checks every minute: up to ~2 minutes.
	eventually(t, 4*time.Minute, "every notification sent", func() bool {
		return s.count(t, `SELECT count(*) FROM notifications WHERE status = 'sent'`) == n
	})
	if got := s.count(t, `SELECT count(*) FROM notifications`); got != n {
		t.Errorf("%d notifications for %d events", got, n)
	}
	for _, u := range users {
		if got := s.count(t, `SELECT count(*) FROM notifications WHERE user_id = $1 AND status = 'sent'`, u.id); got != 1 {
			t.Errorf("%s has %d sent notifications, want 1", u.email, got)
		}
		msgs := s.smtp.To(u.email)
		if len(msgs) == 0 {
			t.Errorf("%s got no e-mail", u.email)
			continue
		}
		for _, m := range msgs[1:] {
			if m.Header.Get("Message-ID") != msgs[0].Header.Get("Message-ID") {
				t.Errorf("%s got copies with different Message-IDs: %q, %q", u.email, msgs[0].Header.Get("Message-ID"), m.Header.Get("Message-ID"))
			}
		}
	}
	total := len(s.smtp.Messages())
	t.Logf("%d e-mails for %d notifications: %d duplicates from the send/mark window", total, n, total-n)

	// The restarted process stops gracefully.
	if err := second.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-second.exited:
		if second.err != nil {
			t.Errorf("graceful stop: %v", second.err)
		}
	case <-time.After(time.Minute):
		t.Error("the process did not stop within a minute of SIGTERM")
	}
}
