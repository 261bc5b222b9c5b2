//go:build linux

package clustertest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kilnml/kiln/cluster-tests/testutil"
)

// The README's shell blocks, run as a new user would run them, so that the
// README cannot drift from the product: each block is taken out of
// README.md and run line by line in one bash, from a copy of the
// repository's root (symbolic links to its entries, so that the block's
// `go build -o kiln` and its data stay out of the checkout), and the test
// fails on the first line that fails.

// readmeBlock returns the lines of the first ```sh block after the
// heading, and the command of the README's first block that starts with
// prefix when prefix is given.
func readmeBlock(t *testing.T, heading string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(moduleRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	state := 0 // 0: before the heading, 1: before the block, 2: in it
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case state == 0 && line == "## "+heading:
			state = 1
		case state == 1 && line == "```sh":
			state = 2
		case state == 2 && line == "```":
			return lines
		case state == 2 && strings.TrimSpace(line) != "":
			lines = append(lines, line)
		}
	}
	t.Fatalf("README.md has no ```sh block under ## %s", heading)
	return nil
}

// readmeWorkdir makes a directory whose entries are links to the
// repository root's, less the binary the blocks build.
func readmeWorkdir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	entries, err := os.ReadDir(moduleRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "kiln" || e.Name() == ".git" {
			continue
		}
		if err := os.Symlink(filepath.Join(moduleRoot, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// shellGroup is a bash and everything it starts, in one process group.
type shellGroup struct {
	cmd *exec.Cmd
	out string // the file its stdout and stderr go to
}

// startShell runs script in dir with bash, its output to a file; a
// cleanup stops the whole group (agents started with & included).
func startShell(t *testing.T, dir, script string) *shellGroup {
	t.Helper()
	out := filepath.Join(t.TempDir(), "output.txt")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, f, f
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KILN_") {
			env = append(env, kv)
		}
	}
	// go run's work directory (its binary) goes here, so that it is removed
	// even when the go command is stopped by a signal and cannot.
	cmd.Env = append(env, "GOTMPDIR="+t.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g := &shellGroup{cmd: cmd, out: out}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		// SIGTERM first: agents shut down and remove their -dev data dirs.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) && syscall.Kill(-cmd.Process.Pid, 0) == nil {
			time.Sleep(100 * time.Millisecond)
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	})
	return g
}

func (g *shellGroup) output() string {
	b, _ := os.ReadFile(g.out)
	return string(b)
}

// runLines runs the lines one after another in one bash, stopping at the
// first that exits non-zero, and returns the output; the test fails naming
// that line.
func runLines(t *testing.T, dir string, lines []string, timeout time.Duration) string {
	t.Helper()
	var script strings.Builder
	for i, line := range lines {
		fmt.Fprintf(&script, "echo %q\n%s\nrc=$?; if [ $rc -ne 0 ]; then echo \"README line %d failed with exit $rc\"; exit 97; fi\n",
			"$ "+line, line, i+1)
	}
	script.WriteString("echo README-BLOCK-DONE\nwait\n")
	g := startShell(t, dir, script.String())
	for deadline := time.Now().Add(timeout); ; time.Sleep(200 * time.Millisecond) {
		out := g.output()
		switch {
		case strings.Contains(out, "README-BLOCK-DONE"):
			return out
		case strings.Contains(out, "failed with exit"):
			t.Fatalf("a README line failed:\n%s", out)
		case time.Now().After(deadline):
			t.Fatalf("the block did not finish in %s:\n%s", timeout, out)
		}
	}
}

// requireFree fails unless nothing listens on the addresses the README
// uses, naming what does: the test runs the README as written, on its
// ports.
func requireFree(t *testing.T, addrs ...string) {
	t.Helper()
	for _, a := range addrs {
		if c, err := net.DialTimeout("tcp", a, 200*time.Millisecond); err == nil {
			c.Close()
			t.Fatalf("%s is in use: stop what listens there (another kiln agent?) to run the README's blocks", a)
		}
	}
}

// TestReadme_Quickstart: the README's first command starts a dev agent,
// and its Quickstart block, run line by line beside it, ends with
// predictions, latency per version, and the canary rolled back.
func TestReadme_Quickstart(t *testing.T) {
	requireFree(t, "127.0.0.1:7070", "127.0.0.1:7071", "127.0.0.1:7072")
	dir := readmeWorkdir(t)
	var start string
	for _, line := range readmeBlock(t, "Two commands") {
		if strings.HasPrefix(line, "go run ") {
			start, _, _ = strings.Cut(line, "#")
		}
	}
	if start == "" {
		t.Fatal("the README's Two commands block has no go run line")
	}
	agent := startShell(t, dir, "exec "+strings.TrimSpace(start))
	testutil.WaitFor(t, 4*time.Minute, func() error {
		resp, err := http.Get("http://127.0.0.1:7070/v1/status")
		if err != nil {
			return fmt.Errorf("%v\n%s", err, agent.output())
		}
		resp.Body.Close()
		return nil
	})
	out := runLines(t, dir, readmeBlock(t, "Quickstart"), 4*time.Minute)
	for _, want := range []string{
		"Created model iris", "iris   2        onnx", "iris  1:90,2:10", `"model":"iris","predictions":[`,
		"INSTANCE  VERSION  PREDICTION", "VERSION  REQUESTS  ERRORS  P50_MS", "$ ./kiln deployments rollback iris\nNAME  TRAFFIC  SHADOW",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the quickstart's output lacks %q:\n%s", want, out)
		}
	}
	if i := strings.Index(out, "$ ./kiln deployments rollback iris"); i < 0 || !strings.Contains(out[i:], "iris  1:100") {
		t.Errorf("the rollback did not restore 1:100:\n%s", out)
	}
}

// TestReadme_ThreeNodes: the README's 3-node block, as written: three
// agents on 127.0.0.11-13 with configs/node*.hcl, then the CLI through
// each of them.
func TestReadme_ThreeNodes(t *testing.T) {
	var addrs []string
	for _, ip := range []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"} {
		for _, port := range []string{"7070", "7071", "7072"} {
			addrs = append(addrs, ip+":"+port)
		}
	}
	requireFree(t, addrs...)
	for i := 1; i <= 3; i++ {
		data := fmt.Sprintf("/tmp/kiln-node%d", i) // configs/node*.hcl's data_dir
		if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s exists: the README's 3-node cluster keeps its data there; remove it (it may be a cluster of yours) to run this test", data)
		}
		t.Cleanup(func() { os.RemoveAll(data) })
	}
	out := runLines(t, readmeWorkdir(t), readmeBlock(t, "A 3-node cluster on one machine"), 4*time.Minute)
	for _, want := range []string{"node1", "node2", "node3", "m1", "OPS/S"} {
		if !strings.Contains(out, want) {
			t.Errorf("the 3-node block's output lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "alive"); n < 3 {
		t.Errorf("members shows %d alive, want 3:\n%s", n, out)
	}
}
