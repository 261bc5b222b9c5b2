package testutil

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// recorder is a testing.TB that records a Fatalf instead of stopping.
type recorder struct {
	testing.TB
	failed atomic.Value
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed.Store(format)
	panic(r) // stop the poller as Fatalf would
}

func run(f func(tb testing.TB)) (msg string) {
	r := &recorder{}
	func() {
		defer func() {
			if p := recover(); p != nil && p != r {
				panic(p)
			}
		}()
		f(r)
	}()
	if v := r.failed.Load(); v != nil {
		return v.(string)
	}
	return ""
}

func TestWaitFor(t *testing.T) {
	n := 0
	if msg := run(func(tb testing.TB) {
		WaitFor(tb, time.Second, func() error {
			if n++; n < 3 {
				return errors.New("not yet")
			}
			return nil
		})
	}); msg != "" || n != 3 {
		t.Fatalf("WaitFor on a condition met at the third poll: failed=%q polls=%d", msg, n)
	}
	if msg := run(func(tb testing.TB) {
		WaitFor(tb, 30*time.Millisecond, func() error { return errors.New("never") })
	}); !strings.Contains(msg, "still not true") {
		t.Fatalf("WaitFor on a condition never met did not fail: %q", msg)
	}
}

func TestUntil(t *testing.T) {
	if msg := run(func(tb testing.TB) { Until(tb, time.Second, "x", func() bool { return true }) }); msg != "" {
		t.Fatalf("Until on a met condition failed: %q", msg)
	}
	if msg := run(func(tb testing.TB) { Until(tb, 30*time.Millisecond, "x", func() bool { return false }) }); !strings.Contains(msg, "waiting for") {
		t.Fatalf("Until on a condition never met did not fail: %q", msg)
	}
}

func TestDirNamesAndRandomBytes(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"b", "a"} {
		if err := os.WriteFile(filepath.Join(dir, name), RandomBytes(t, 8), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if got := DirNames(t, dir); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("DirNames = %v, want [a b]", got)
	}
	if bytes.Equal(RandomBytes(t, 16), RandomBytes(t, 16)) {
		t.Fatal("two RandomBytes calls gave the same 16 bytes")
	}
}

func TestGoroutinesIn(t *testing.T) {
	release := make(chan struct{})
	done := make(chan struct{})
	go func() { blockedHere(release); close(done) }()
	Until(t, 5*time.Second, "the goroutine to block", func() bool { return GoroutinesIn("testutil.blockedHere(") == 1 })
	if n := GoroutinesIn("testutil.blockedHere(", "testutil.TestGoroutinesIn.func1"); n != 0 {
		t.Fatalf("GoroutinesIn with its caller excluded = %d, want 0", n)
	}
	close(release)
	<-done
}

//go:noinline
func blockedHere(ch chan struct{}) { <-ch }
