package devstack

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// The per-program controls below are for fault tests: stop, crash or restart one
// program while the rest of the stack runs on. A program stopped or killed this way is
// not a failure of the stack (Done stays open); Stop reports it as already exited.

// ErrStopping is returned by the per-program controls once the stack is stopping.
var ErrStopping = errors.New("devstack: the stack is stopping")

// StopProgram stops one program ("payments", or "mailpit") the way Stop stops them
// all: SIGTERM to its process group, SIGKILL after Options.StopTimeout. It returns when
// the program has exited, or with ctx's error (having killed it) when ctx ends first.
// A program already stopped is no error. It fails for an unknown name or a stack that
// is stopping.
func (s *Stack) StopProgram(ctx context.Context, name string) error {
	p, err := s.current(name)
	if err != nil {
		return err
	}
	p.expectExit()
	stopped := make(chan struct{})
	go func() {
		p.stop(s.opts.StopTimeout)
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-ctx.Done():
		p.kill()
		<-stopped
		return ctx.Err()
	}
	desc, _ := p.exitStatus()
	s.out.printf("%s stopped on request (%s)", name, desc)
	return nil
}

// KillProgram kills one program with SIGKILL (its whole process group), as a crash
// would, and returns once it has exited. A program already stopped is no error. It
// fails for an unknown name or a stack that is stopping.
func (s *Stack) KillProgram(name string) error {
	p, err := s.current(name)
	if err != nil {
		return err
	}
	p.expectExit()
	p.kill()
	s.out.printf("%s killed on request (SIGKILL)", name)
	return nil
}

// RestartProgram starts one program again with the environment and arguments it had
// and on the same address, so that everything pointed at it finds it again, and
// returns once it is ready (its /readyz answers healthy or degraded). A program still
// running is stopped first (StopProgram). From then on the new process is watched like
// the first: if it dies on its own, the stack fails. It fails for an unknown name, a
// stack that is stopping, or a program that does not start, listen elsewhere, or get
// ready within Options.ReadyTimeout.
func (s *Stack) RestartProgram(ctx context.Context, name string) error {
	old, err := s.current(name)
	if err != nil {
		return err
	}
	if !old.exited() {
		if err := s.StopProgram(ctx, name); err != nil {
			return err
		}
	}
	// Its addresses are in its environment (Mailpit's in its arguments), and the
	// stack has held them while it was down (see portHolds).
	p, err := startProcess(name, old.path, old.args, old.env, s.out)
	if err != nil {
		return err
	}
	s.mu.Lock()
	i := slices.Index(s.procs, old)
	if s.stopping || i < 0 {
		s.mu.Unlock()
		p.expectExit()
		p.stop(s.opts.StopTimeout)
		if i < 0 {
			return fmt.Errorf("devstack: %s was restarted by another call at the same time", name)
		}
		return ErrStopping
	}
	s.procs[i] = p
	s.mu.Unlock()
	s.watch(p)
	s.out.printf("%s restarted", name)

	readyURL := s.urls.Mailpit + "/readyz"
	if name != "mailpit" {
		addr, err := s.waitListening(ctx, p, p.listen)
		if err != nil {
			return err
		}
		if want := strings.TrimPrefix(s.urls.Programs[name], "http://"); addr != want {
			return fmt.Errorf("devstack: %s came back on %s, not %s", name, addr, want)
		}
		in, ok := s.urls.Internal[name]
		if name == "gateway" {
			in, ok = s.urls.GatewayOps, true
		}
		if ok {
			if addr, err = s.waitListening(ctx, p, p.internal); err != nil {
				return err
			}
			if want := strings.TrimPrefix(in, "http://"); addr != want {
				return fmt.Errorf("devstack: %s's internal listener came back on %s, not %s", name, addr, want)
			}
		}
		readyURL = s.readyURL(name)
	}
	return s.waitReady(ctx, map[string]string{name: readyURL})
}

// current is the live process of the named program (the latest, after restarts).
func (s *Stack) current(name string) (*process, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return nil, ErrStopping
	}
	for _, p := range s.procs {
		if p.name == name {
			return p, nil
		}
	}
	return nil, fmt.Errorf("devstack: no program %q in this stack", name)
}

// HoldPorts picks n distinct free loopback ports, for Options.Ports: a test that must
// know where a program will listen before the stack starts (to point a proxy at it)
// picks its ports here. They stay held (see portHolds) until release, so that nothing
// else takes them before the stack holds them too; release once the stack has
// started, or at the end.
func HoldPorts(n int) (ports []int, release func(), err error) {
	holds := &portHolds{}
	ports = make([]int, n)
	for i := range ports {
		if ports[i], err = holds.hold(0, "a port picked up front"); err != nil {
			holds.releaseAll()
			return nil, nil, err
		}
	}
	return ports, holds.releaseAll, nil
}

// checkProgramEnv rejects Options.ProgramEnv entries for programs that do not exist: a
// misspelt name would otherwise silently change nothing.
func checkProgramEnv(env map[string]map[string]string) error {
	var errs []error
	for name := range env {
		if !slices.ContainsFunc(Programs, func(p struct{ Name, Package string }) bool { return p.Name == name }) {
			errs = append(errs, fmt.Errorf("devstack: Options.ProgramEnv names %q, which is not a program", name))
		}
	}
	return errors.Join(errs...)
}
