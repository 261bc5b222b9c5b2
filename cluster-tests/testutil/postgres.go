package testutil

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Postgres is a PostgreSQL server started for one test from the binaries
// of the system's postgresql package. Over TCP it asks for a password
// (SCRAM); over its unix socket the superuser gets in without one, which is
// how the test sets up tables and roles.
type Postgres struct {
	// Host and Port are where it listens for TCP connections.
	Host string
	Port int
	// User, with Password, owns Database; it is the role a source reads as.
	User     string
	Password string
	Database string

	socketDir string
}

// postgresSuperuser is the superuser initdb creates.
const postgresSuperuser = "postgres"

// serverStartTimeout bounds a server's start, initdb included.
const serverStartTimeout = 60 * time.Second

// StartPostgres starts a PostgreSQL server for t and stops it, with every
// process it started, when t ends. It skips t when the binaries are not
// installed. The server keeps nothing safe on disk (fsync is off): it lives
// as long as the test.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	bin := postgresBinaries()
	if bin == "" {
		t.Skip("PostgreSQL is not installed (no initdb and postgres in PATH or /usr/lib/postgresql/*/bin); .ci/run installs the postgresql package")
	}
	as, err := serverUser()
	if err != nil {
		t.Skip(err.Error())
	}
	// Not t.TempDir(): its parents are private to the user running the
	// test, and the server may run as another; and a unix socket's path
	// must stay under about 100 bytes.
	dir, err := os.MkdirTemp("", "kiln-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if as != nil {
		if err := os.Chown(dir, as.uid, as.gid); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(dir, "data")
	initdb := commandAs(as, filepath.Join(bin, "initdb"), "-D", data, "-U", postgresSuperuser,
		"--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8", "--no-locale", "--no-sync")
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}

	p := &Postgres{Host: "127.0.0.1", Port: freePort(t), User: "kiln", Password: "pw-" + randomHex(t, 8), Database: "kiln", socketDir: dir}
	exited := startServer(t, as, dir, syscall.SIGQUIT, filepath.Join(bin, "postgres"), "-D", data, "-k", dir,
		"-h", p.Host, "-p", strconv.Itoa(p.Port),
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")

	admin := waitReady(t, exited, dir, "postgres", func() (*pgx.Conn, error) {
		return p.connectSuperuser(context.Background(), "postgres")
	})
	defer admin.Close(context.Background())
	for _, sql := range []string{
		fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD %s", pgx.Identifier{p.User}.Sanitize(), quoteLiteral(p.Password)),
		fmt.Sprintf("CREATE DATABASE %s OWNER %s", pgx.Identifier{p.Database}.Sanitize(), pgx.Identifier{p.User}.Sanitize()),
	} {
		if _, err := admin.Exec(context.Background(), sql); err != nil {
			t.Fatalf("postgres: %s: %v", sql, err)
		}
	}
	return p
}

// ConnString is the URL to reach the test database as User over TCP,
// without the password, as a source's conn must be written.
func (p *Postgres) ConnString() string {
	u := url.URL{Scheme: "postgres", User: url.User(p.User), Host: net.JoinHostPort(p.Host, strconv.Itoa(p.Port)),
		Path: "/" + p.Database, RawQuery: "sslmode=disable"}
	return u.String()
}

// URL is ConnString with the password.
func (p *Postgres) URL() string {
	u, _ := url.Parse(p.ConnString())
	u.User = url.UserPassword(p.User, p.Password)
	return u.String()
}

// Superuser connects to database as the superuser over the unix socket;
// the connection is closed when t ends.
func (p *Postgres) Superuser(t testing.TB, database string) *pgx.Conn {
	t.Helper()
	conn, err := p.connectSuperuser(context.Background(), database)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func (p *Postgres) connectSuperuser(ctx context.Context, database string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", p.socketDir, p.Port, postgresSuperuser, database))
	if err != nil {
		return nil, err
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// Exec runs sql in the test database as the superuser.
func (p *Postgres) Exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	conn, err := p.connectSuperuser(context.Background(), p.Database)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("postgres: %s: %v", sql, err)
	}
}

// SetPassword changes role's password, as an operator rotating it would.
// Connections already made keep working; new ones need the new password.
func (p *Postgres) SetPassword(t testing.TB, role, password string) {
	t.Helper()
	p.Exec(t, fmt.Sprintf("ALTER ROLE %s PASSWORD %s", pgx.Identifier{role}.Sanitize(), quoteLiteral(password)))
}

// quoteLiteral quotes s as an SQL string literal (ALTER ROLE ... PASSWORD
// takes no parameter).
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// postgresBinaries is the directory holding initdb and postgres: the one
// PATH's initdb is in, else the newest /usr/lib/postgresql/*/bin (Debian
// keeps them off PATH); "" when there is none.
func postgresBinaries() string {
	var dirs []string
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			dirs = append(dirs, filepath.Dir(real))
		}
		dirs = append(dirs, filepath.Dir(p))
	}
	versions, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(versions, func(a, b string) int { return versionOf(b) - versionOf(a) })
	dirs = append(dirs, versions...)
	for _, d := range dirs {
		if isExecutable(filepath.Join(d, "initdb")) && isExecutable(filepath.Join(d, "postgres")) {
			return d
		}
	}
	return ""
}

// versionOf reads the major version out of /usr/lib/postgresql/<v>/bin.
func versionOf(dir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return v
}

func isExecutable(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.Mode().IsRegular() && info.Mode()&0o111 != 0
}

// osUser is who a server runs as.
type osUser struct{ uid, gid int }

// serverUser is the user a server that refuses root (postgres) runs as:
// nil when the test does not run as root, else the postgres user, or
// nobody. Switching needs setpriv (util-linux).
func serverUser() (*osUser, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		return nil, fmt.Errorf("tests run as root and postgres refuses root, but setpriv (util-linux) is not installed to run it as another user")
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.Atoi(u.Uid)
		gid, err2 := strconv.Atoi(u.Gid)
		if err1 == nil && err2 == nil {
			return &osUser{uid: uid, gid: gid}, nil
		}
	}
	return nil, fmt.Errorf("tests run as root and postgres refuses root, but there is neither a postgres nor a nobody user to run it as")
}

// commandAs is a command of path run as the user as (nil: this process's),
// through setpriv where there is one. setpriv also sets the parent-death
// signal, so that a server dies with the test binary even when a timeout
// or a crash skips the test's cleanups; it then execs the command, which so
// keeps its pid.
func commandAs(as *osUser, path string, args ...string) *exec.Cmd {
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		return exec.Command(path, args...)
	}
	pre := []string{"--pdeathsig", "KILL"}
	if as != nil {
		pre = append(pre, "--reuid", strconv.Itoa(as.uid), "--regid", strconv.Itoa(as.gid), "--clear-groups")
	}
	cmd := exec.Command(setpriv, append(append(pre, "--", path), args...)...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	return cmd
}

// serverStopTimeout is how long a server gets to exit on its stop signal
// before it is killed.
const serverStopTimeout = 10 * time.Second

// startServer starts a server process whose output goes to dir/server.log,
// and stops it when t ends: stop (the server's own fast shutdown, which
// also ends its children), then SIGKILL if it is still there after
// serverStopTimeout. The cleanup returns only once the process is reaped.
func startServer(t testing.TB, as *osUser, dir string, stop os.Signal, path string, args ...string) (exited <-chan struct{}) {
	t.Helper()
	log, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close() // the child holds its own copy
	cmd := commandAs(as, path, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = log, log
	started := make(chan error, 1)
	reaped := make(chan struct{})
	go func() {
		// The parent-death signal fires when the thread that forked the
		// child ends, and Go ends a thread whose goroutine returns
		// locked: this one stays locked until the child is reaped.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		cmd.Wait()
		close(reaped)
	}()
	if err := <-started; err != nil {
		t.Fatalf("starting %s: %v", filepath.Base(path), err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(stop)
		select {
		case <-reaped:
			return
		case <-time.After(serverStopTimeout):
		}
		cmd.Process.Kill()
		<-reaped
	})
	return reaped
}

// waitReady polls connect until it succeeds and returns what it gives, or
// fails t when the server exits first or serverStartTimeout passes, showing
// the server's output.
func waitReady[C any](t testing.TB, exited <-chan struct{}, dir, what string, connect func() (C, error)) C {
	t.Helper()
	deadline := time.Now().Add(serverStartTimeout)
	for wait := firstPoll; ; wait = backoff(wait) {
		c, err := connect()
		if err == nil {
			return c
		}
		select {
		case <-exited:
			t.Fatalf("%s exited before it accepted connections: %v\n%s", what, err, readLog(dir))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not accept connections within %s: %v\n%s", what, serverStartTimeout, err, readLog(dir))
		}
		time.Sleep(wait)
	}
}

// readLog is a server's output, for a failure's message.
func readLog(dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, "server.log"))
	return string(b)
}

// freePort is a TCP port on 127.0.0.1 that nothing listens on now. Another
// process may take it before the server does; the server then fails to
// start, and says so.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// randomHex is n random bytes in hex.
func randomHex(t testing.TB, n int) string {
	return fmt.Sprintf("%x", RandomBytes(t, n))
}
