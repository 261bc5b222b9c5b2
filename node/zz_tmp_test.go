package node

import (
	"context"
	"os"
	"runtime/pprof"
	"testing"
	"time"
)

func TestZZPushTiming(t *testing.T) {
	a, b := testPair(t)
	data := randomBytes(t, 9<<20)
	digest := storeBlob(t, a.blobs, data)
	start := time.Now()
	if err := a.xfer.push(context.Background(), b.trans.Addr(), digest); err != nil {
		t.Fatal(err)
	}
	t.Logf("push took %s", time.Since(start))
	start = time.Now()
	go func() {
		time.Sleep(2 * time.Second)
		pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
	}()
	a.Shutdown()
	t.Logf("a shutdown %s", time.Since(start))
	b.Shutdown()
	t.Logf("b shutdown %s", time.Since(start))
}
