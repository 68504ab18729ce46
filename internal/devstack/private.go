package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// Private servers: a Postgres cluster and a Redis of a run's own, on free ports, in a
// temporary directory, as children of this process. A chaos run restarts them under
// load; it must never restart the machine's shared servers, which other tests use at
// the same time. Each is stopped with its runner: a runner that dies leaves no server
// behind (the kernel signals the child, see Pdeathsig).

// privateProc is one run of a private server's process.
type privateProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited
}

// startPrivate starts path with args as a child in its own process group, its output
// going to out under name; cred, when set, runs it as another user (Postgres refuses
// to run as root). pdeath is the signal it gets if this process dies.
func startPrivate(name, path string, args []string, cred *syscall.Credential, pdeath syscall.Signal, out *sink) (*privateProc, error) {
	w := &lineWriter{sink: out, name: name}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = w, w
	cmd.Env = []string{"LC_ALL=C", "PATH=/usr/bin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: pdeath, Credential: cred}
	cmd.WaitDelay = 5 * time.Second
	p := &privateProc{cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// Pdeathsig follows the thread that forked (see startProcess).
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
		w.flush()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return p, nil
}

func (p *privateProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the process (not its group) and waits up to timeout for it to
// exit, then kills the whole group.
func (p *privateProc) signal(sig syscall.Signal, timeout time.Duration) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return
	case <-time.After(timeout):
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// runAs is the credential to run a server as: the postgres OS user when this process
// is root (initdb and postgres refuse root), else nil (as ourselves).
func runAs(username string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(username)
	if err != nil {
		return nil, fmt.Errorf("running as root, Postgres needs the %q OS user: %w", username, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// PostgresBinDir finds the directory of Postgres's server binaries (initdb, postgres):
// the newest /usr/lib/postgresql/*/bin, else wherever initdb is on PATH.
func PostgresBinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return vb - va
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("no Postgres server binaries (initdb) under /usr/lib/postgresql/*/bin or on PATH")
}

// PrivatePostgres is a Postgres cluster of its own: initdb'd into a temporary
// directory (owned by the postgres OS user when running as root), trust
// authentication on 127.0.0.1, listening on a free port. fsync is off: it is thrown
// away at the end, and a crash of the machine is not one of the faults. Commits stay
// synchronous: a commit's WAL is written (to the OS) before it is acknowledged, so a
// crash of Postgres itself (Stop with crash) loses no acknowledged transaction, as
// with a real server.
type PrivatePostgres struct {
	bin, dir, data string
	port           int
	hold           portHolds // the port, kept across restarts
	cred           *syscall.Credential
	out            *sink

	mu   sync.Mutex
	proc *privateProc
}

// StartPrivatePostgres creates a cluster and starts it; Close stops it and removes its
// files. Its output (Postgres's log) goes to out, lines prefixed "postgres".
func StartPrivatePostgres(ctx context.Context, out io.Writer) (*PrivatePostgres, error) {
	if out == nil {
		out = io.Discard
	}
	bin, err := PostgresBinDir()
	if err != nil {
		return nil, err
	}
	cred, err := runAs("postgres")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "bazaar-pg-")
	if err != nil {
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	pg := &PrivatePostgres{bin: bin, dir: dir, data: filepath.Join(dir, "data"), cred: cred, out: &sink{w: out}}
	if pg.port, err = pg.hold.hold(0, "postgres"); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", pg.data, "-U", "postgres",
		"--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
	initdb.Env = []string{"LC_ALL=C", "PATH=/usr/bin:/bin"}
	initdb.Dir = dir
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if b, err := initdb.CombinedOutput(); err != nil {
		pg.Close()
		return nil, fmt.Errorf("initdb: %w\n%s", err, b)
	}
	if err := pg.Start(ctx); err != nil {
		pg.Close()
		return nil, err
	}
	return pg, nil
}

// AdminURL is the superuser's URL, for devstack's Options.AdminDatabaseURL.
func (pg *PrivatePostgres) AdminURL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", pg.port)
}

// Port is where it listens.
func (pg *PrivatePostgres) Port() int { return pg.port }

// Start starts the server (again) and returns once it accepts connections. Starting
// one that runs is no error.
func (pg *PrivatePostgres) Start(ctx context.Context) error {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	if pg.proc != nil && !pg.proc.exited() {
		return nil
	}
	args := []string{"-D", pg.data, "-p", strconv.Itoa(pg.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=" + pg.dir,
		"-c", "fsync=off", "-c", "full_page_writes=off",
		"-c", "max_connections=400", "-c", "shared_buffers=128MB",
		"-c", "log_min_messages=warning", "-c", "log_line_prefix=%m [%p] "}
	// SIGINT on our death: a fast shutdown, which does not wait for clients.
	p, err := startPrivate("postgres", filepath.Join(pg.bin, "postgres"), args, pg.cred, syscall.SIGINT, pg.out)
	if err != nil {
		return err
	}
	pg.proc = p
	deadline := time.Now().Add(time.Minute)
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(cctx, pg.AdminURL())
		cancel()
		if err == nil {
			conn.Close(context.WithoutCancel(ctx))
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("postgres exited at start: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres did not accept connections within a minute: %w", err)
		}
	}
}

// Stop shuts the server down: fast (SIGINT: every connection dropped, a clean
// checkpoint) or, with crash, immediate (SIGQUIT: as a crash, recovery from the WAL on
// the next start). It returns once the server has exited.
func (pg *PrivatePostgres) Stop(crash bool) {
	pg.mu.Lock()
	p := pg.proc
	pg.mu.Unlock()
	if p == nil {
		return
	}
	sig := syscall.SIGINT
	if crash {
		sig = syscall.SIGQUIT
	}
	p.signal(sig, 30*time.Second)
}

// Close stops the server, gives its port back and removes its files.
func (pg *PrivatePostgres) Close() error {
	pg.Stop(false)
	pg.hold.releaseAll()
	return os.RemoveAll(pg.dir)
}

// PrivateRedis is a Redis of its own on a free port. With Persistent it keeps an
// append-only file in its own directory (appendfsync everysec), so that a restart
// keeps its streams, groups and queues; without, it keeps nothing ("save" off,
// appendonly off), and every restart loses all of it.
type PrivateRedis struct {
	dir        string
	port       int
	hold       portHolds // the port, kept across restarts
	persistent bool
	out        *sink

	mu   sync.Mutex
	proc *privateProc
}

// StartPrivateRedis starts a Redis; Close stops it and removes its files. Its output
// goes to out, lines prefixed "redis".
func StartPrivateRedis(ctx context.Context, persistent bool, out io.Writer) (*PrivateRedis, error) {
	if out == nil {
		out = io.Discard
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, errors.New("redis-server is not on PATH")
	}
	dir, err := os.MkdirTemp("", "bazaar-redis-")
	if err != nil {
		return nil, err
	}
	r := &PrivateRedis{dir: dir, persistent: persistent, out: &sink{w: out}}
	if r.port, err = r.hold.hold(0, "redis"); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := r.Start(ctx); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// URL is its redis:// URL, for devstack's Options.RedisURL.
func (r *PrivateRedis) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

// Start starts Redis (again) and returns once it answers PING (after loading its
// data). Starting one that runs is no error.
func (r *PrivateRedis) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc != nil && !r.proc.exited() {
		return nil
	}
	appendonly := "no"
	if r.persistent {
		appendonly = "yes"
	}
	path, _ := exec.LookPath("redis-server")
	args := []string{"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--dir", r.dir,
		"--save", "", "--appendonly", appendonly, "--appendfsync", "everysec",
		"--maxmemory-policy", "noeviction", "--loglevel", "warning", "--daemonize", "no"}
	p, err := startPrivate("redis", path, args, nil, syscall.SIGTERM, r.out)
	if err != nil {
		return err
	}
	r.proc = p
	opt, _ := redis.ParseURL(r.URL())
	opt.MaxRetries = -1
	client := redis.NewClient(opt)
	defer client.Close()
	deadline := time.Now().Add(time.Minute)
	for {
		err := client.Ping(ctx).Err()
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("redis-server exited at start: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis did not answer within a minute: %w", err)
		}
	}
}

// Stop shuts Redis down: SIGTERM (it writes out its append-only file, if any, and
// exits), or with crash SIGKILL (the last second of writes may be lost even when
// persistent). It returns once Redis has exited.
func (r *PrivateRedis) Stop(crash bool) {
	r.mu.Lock()
	p := r.proc
	r.mu.Unlock()
	if p == nil {
		return
	}
	if crash {
		p.signal(syscall.SIGKILL, 10*time.Second)
		return
	}
	p.signal(syscall.SIGTERM, 30*time.Second)
}

// Wipe deletes Redis's files: started again after it, Redis comes back empty (no
// streams, groups or queues), as one without persistence does after any restart.
// Call it while Redis is stopped.
func (r *PrivateRedis) Wipe() error {
	entries, err := os.ReadDir(r.dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		errs = append(errs, os.RemoveAll(filepath.Join(r.dir, e.Name())))
	}
	return errors.Join(errs...)
}

// Close stops Redis, gives its port back and removes its files.
func (r *PrivateRedis) Close() error {
	r.Stop(false)
	r.hold.releaseAll()
	return os.RemoveAll(r.dir)
}
