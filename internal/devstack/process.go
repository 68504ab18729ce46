package devstack

import (
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// process is one running child: a program or Mailpit.
type process struct {
	name string
	// path, args and env are what it was started with, so that it can be started
	// again the same way (Stack.RestartProgram).
	path      string
	args, env []string
	cmd       *exec.Cmd
	tail      tail

	// listen receives the address from the program's {"msg":"listening","addr":...}
	// log line: programs started on port 0 say there which port they got.
	listen     chan string
	listenOnce sync.Once
	// internal receives the address of a service's internal listener, from its
	// {"msg":"internal listening","addr":...} line, or of the gateway's operations
	// listener (its metrics and probes), from {"msg":"ops listening",...}.
	internal     chan string
	internalOnce sync.Once

	done       chan struct{} // closed once the child has exited and its output is drained
	waitErr    error         // valid after done
	signalled  bool          // we sent SIGTERM; guarded by mu
	terminated bool          // we had to SIGKILL it; guarded by mu
	// intended says that its exit was asked for (Stack.StopProgram, KillProgram):
	// the watchdog then lets it go. Guarded by mu.
	intended bool
	// watched is closed once the stack's watchdog has seen the exit and decided
	// what it means (see Stack.watch).
	watched chan struct{}
	mu      sync.Mutex
}

// startProcess starts path with args and env (and nothing of this process's own
// environment), its output going line by line to out under name.
func startProcess(name, path string, args, env []string, out *sink) (*process, error) {
	p := &process{name: name, path: path, args: args, env: env,
		listen: make(chan string, 1), internal: make(chan string, 1), done: make(chan struct{}), watched: make(chan struct{})}
	stdout := &lineWriter{sink: out, name: name, onLine: p.onLine}
	stderr := &lineWriter{sink: out, name: name, onLine: p.onLine}
	p.cmd = exec.Command(path, args...)
	p.cmd.Env = env
	p.cmd.Stdout = stdout
	p.cmd.Stderr = stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own process group, so that Ctrl-C in the terminal reaches only the runner,
		// which then stops the children in order instead of them dying all at once.
		Setpgid: true,
		// If the runner is killed outright, the kernel sends the child SIGTERM: a killed
		// runner leaves no orphans holding the ports.
		Pdeathsig: syscall.SIGTERM,
	}
	// Output pipes stay open if the child ever leaves a grandchild holding them; do not
	// let that hang Wait.
	p.cmd.WaitDelay = 5 * time.Second

	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the *thread* that forked the child exits, not the process.
		// Keep this goroutine on its own thread until the child is gone, so that the Go
		// runtime can never retire that thread under a running child. (Returning while
		// locked ends the thread, which by then is harmless.)
		runtime.LockOSThread()
		if err := p.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		err := p.cmd.Wait()
		stdout.flush()
		stderr.flush()
		p.waitErr = err
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return p, nil
}

func (p *process) onLine(line string) {
	p.tail.add(line)
	if !strings.Contains(line, ` listening"`) && !strings.Contains(line, `"listening"`) {
		return
	}
	var l struct{ Msg, Addr string }
	if json.Unmarshal([]byte(line), &l) != nil || l.Addr == "" {
		return
	}
	switch l.Msg {
	case "listening":
		p.listenOnce.Do(func() { p.listen <- l.Addr })
	case "internal listening", "ops listening":
		p.internalOnce.Do(func() { p.internal <- l.Addr })
	}
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// expectExit marks the coming exit as asked for, so the watchdog lets it go.
func (p *process) expectExit() {
	p.mu.Lock()
	p.intended = true
	p.mu.Unlock()
}

func (p *process) exitExpected() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.intended
}

// kill sends SIGKILL to the child's process group and waits for it to exit: a crash,
// with no chance to clean up.
func (p *process) kill() {
	if p.exited() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM to the child's process group and waits for it to exit, killing it
// after timeout. It returns at once for a child that has already exited.
func (p *process) stop(timeout time.Duration) {
	if p.exited() {
		return
	}
	p.mu.Lock()
	p.signalled = true
	p.mu.Unlock()
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(timeout):
	}
	p.mu.Lock()
	p.terminated = true
	p.mu.Unlock()
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// exitStatus describes how the child ended, and whether that was a clean stop: exit
// code 0, or death by the SIGTERM we sent (Mailpit may do either).
func (p *process) exitStatus() (desc string, clean bool) {
	p.mu.Lock()
	signalled, killed := p.signalled, p.terminated
	p.mu.Unlock()
	if killed {
		return "killed: it did not stop within the timeout after SIGTERM", false
	}
	var exit *exec.ExitError
	switch {
	case p.waitErr == nil:
		return "exit code 0", true
	case errors.As(p.waitErr, &exit):
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return fmt.Sprintf("killed by signal %d (%s)", int(ws.Signal()), ws.Signal()), signalled && ws.Signal() == syscall.SIGTERM
		}
		return fmt.Sprintf("exit code %d", exit.ExitCode()), false
	default:
		return p.waitErr.Error(), false
	}
}
