package testutil

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// StartRedis starts a redis-server for t on 127.0.0.1, keeping nothing on
// disk, and stops it when t ends. It returns the server's host:port, and
// skips t when redis-server is not installed.
func StartRedis(t testing.TB) (addr string) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed; .ci/run installs the redis-server package")
	}
	dir := t.TempDir()
	port := freePort(t)
	addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	// SIGTERM is redis's shutdown; with nothing to save it is immediate.
	exited := startServer(t, nil, dir, syscall.SIGTERM, bin,
		"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", "")
	waitReady(t, exited, dir, "redis-server", func() (struct{}, error) { return struct{}{}, pingRedis(addr) })
	return addr
}

// redisDialTimeout bounds one readiness check.
const redisDialTimeout = time.Second

// pingRedis sends PING in the inline protocol and expects PONG.
func pingRedis(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, redisDialTimeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(redisDialTimeout))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("redis answered PING with %q", line)
	}
	return nil
}
