package testutil

import (
	"crypto/rand"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// RandomBytes returns n random bytes.
func RandomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// DirNames lists the names in dir, sorted.
func DirNames(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names
}

// GoroutinesIn counts the goroutines whose stack has the frame fn and none
// of the frames in without: how a test sees that callers are blocked where
// it expects, without sleeping.
func GoroutinesIn(fn string, without ...string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
next:
	for _, g := range strings.Split(string(buf), "\n\n") {
		if !strings.Contains(g, fn) {
			continue
		}
		for _, w := range without {
			if strings.Contains(g, w) {
				continue next
			}
		}
		count++
	}
	return count
}
