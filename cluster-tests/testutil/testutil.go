// Package testutil holds what the test suites of every package share: the
// check that no goroutine outlives a package's tests (STYLE.md rule 6) and
// polling for a condition (tests wait by polling, never by sleeping a fixed
// time). Only _test.go files import it.
package testutil

import (
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// leakWait is how long goroutines of a component that was just shut down get
// to end: goleak alone waits well under a second, too little on a loaded
// machine.
const leakWait = 10 * time.Second

// Main runs a package's tests and fails the run if goroutines started by
// them outlive them. Goroutines running before the tests (package init,
// libraries' globals) are not counted. Call it from TestMain:
//
//	func TestMain(m *testing.M) { testutil.Main(m) }
func Main(m *testing.M, ignore ...goleak.Option) {
	opts := append([]goleak.Option{goleak.IgnoreCurrent(), goleak.IgnoreTopFunction("os/signal.signal_recv")}, ignore...)
	code := m.Run()
	// The fuzzing engine keeps goroutines of its own.
	fuzzing := flag.Lookup("test.fuzz") != nil && flag.Lookup("test.fuzz").Value.String() != ""
	if code == 0 && !fuzzing {
		if err := findLeaks(opts); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines outlived the tests:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func findLeaks(opts []goleak.Option) error {
	err := goleak.Find(opts...)
	for deadline := time.Now().Add(leakWait); err != nil && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		err = goleak.Find(opts...)
	}
	return err
}

// Conditions are checked every 10 ms at first, backing off to every 100 ms,
// so a quick condition is seen quickly and a slow one (a cluster's, over
// HTTP) is not polled hard.
const (
	firstPoll = 10 * time.Millisecond
	maxPoll   = 100 * time.Millisecond
)

// backoff returns the wait after d.
func backoff(d time.Duration) time.Duration { return min(2*d, maxPoll) }

// WaitFor polls cond until it returns nil, and fails t with cond's last
// error when timeout passes first.
func WaitFor(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for wait := firstPoll; ; wait = backoff(wait) {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still not true after %s: %v", timeout, err)
		}
		time.Sleep(wait)
	}
}

// Until polls cond until it holds, and fails t naming what (when not "")
// when timeout passes first.
func Until(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if what == "" {
		what = "the condition"
	}
	deadline := time.Now().Add(timeout)
	for wait := firstPoll; !cond(); wait = backoff(wait) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(wait)
	}
}
