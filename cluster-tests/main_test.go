package clustertest

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// kilnBin is the kiln binary TestMain builds once for the whole package; tests
// get its path from kilnBinary.
var kilnBin string

// moduleRoot is the directory of the module's go.mod.
var moduleRoot string

var recordSourcesOnce sync.Once

// kilnBinary returns the path of the kiln binary. The first call, from inside a
// test, reads every source file of the module outside this package: the tests
// run a binary built from them that the test binary does not link, and reading
// them during a test puts them in the test log that `go test` checks before it
// serves a cached result. Without this, a change to node/ would be answered with
// the cached pass of the previous build.
func kilnBinary() string {
	recordSourcesOnce.Do(func() {
		_ = filepath.WalkDir(moduleRoot, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if d.IsDir() {
				switch d.Name() {
				case ".git", "cluster-tests", "testdata", "bin":
					return filepath.SkipDir
				}
				return nil
			}
			if strings.HasSuffix(path, ".go") || d.Name() == "go.mod" || d.Name() == "go.sum" {
				_, _ = os.ReadFile(path)
			}
			return nil
		})
	})
	return kilnBin
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "kiln-clustertest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "clustertest:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	kilnBin = filepath.Join(dir, "kiln")
	if err := buildKiln(kilnBin); err != nil {
		fmt.Fprintln(os.Stderr, "clustertest: build kiln:", err)
		return 1
	}
	stopSpawner := startSpawner()
	code := m.Run()
	if left := killLeftovers(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "clustertest: processes outlived their test (killed now): %s\n", strings.Join(left, ", "))
		code = 1
	}
	stopSpawner()
	if leaked := leakedGoroutines(); leaked != "" {
		fmt.Fprintf(os.Stderr, "clustertest: goroutines outlived their test:\n%s\n", leaked)
		code = 1
	}
	return code
}

// buildKiln builds ./cmd/kiln from the module root into out.
func buildKiln(out string) error {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if root == "." || root == "" {
		return fmt.Errorf("not inside a Go module")
	}
	moduleRoot = root
	cmd := exec.Command("go", "build", "-o", out, "./cmd/kiln")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%w\n%s", err, b)
	}
	return nil
}

// leakedGoroutines returns the stacks of goroutines still running harness code,
// after giving them a moment to finish.
func leakedGoroutines() string {
	var leaked []string
	for deadline := time.Now().Add(3 * time.Second); ; {
		leaked = leaked[:0]
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "kiln/cluster-tests.") && !strings.Contains(g, "kiln/cluster-tests.runMain") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
