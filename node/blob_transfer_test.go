package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kilnml/kiln/raftfsm/structs"
	"github.com/kilnml/kiln/transport"
)

// testPair starts two agents in one cluster: a bootstraps, b joins it. Blob
// transfers need gossip to find holders; they do not need b to be a voter.
func testPair(t *testing.T) (a, b *Agent) {
	t.Helper()
	a = testNode(t)
	b = testNode(t, func(c *Config) { c.RetryJoin = []string{a.cfg.BindAddr}; c.BootstrapExpect = 0 })
	waitFor(t, 15*time.Second, "both agents to see each other alive", func() bool {
		return len(a.gossip.alive()) == 2 && len(b.gossip.alive()) == 2
	})
	// Once the leader adds b, both gossip their new state and wait up to 5 s
	// for the broadcast; a Shutdown meanwhile waits for it. Let it finish
	// first so the test ends promptly.
	waitFor(t, 20*time.Second, "both agents to gossip that they have Raft state", func() bool {
		return hasStateGossiped(a) && hasStateGossiped(b) && goroutinesIn("node.(*gossip).setHasState(") == 0
	})
	return a, b
}

func hasStateGossiped(a *Agent) bool {
	a.gossip.mu.Lock()
	defer a.gossip.mu.Unlock()
	return a.gossip.meta.HasState
}

// countCalls wraps the handler of method on agent a and counts its calls
// until the test ends, when h is registered again.
func countCalls(t *testing.T, a *Agent, method string, h transport.Handler) *atomic.Int64 {
	n := new(atomic.Int64)
	a.trans.Register(method, func(ctx context.Context, dec transport.Decoder) (any, error) {
		n.Add(1)
		return h(ctx, dec)
	})
	t.Cleanup(func() { a.trans.Register(method, h) })
	return n
}

// remoteCode is the error code of an RPC's failure.
func remoteCode(err error) string {
	var re *transport.RemoteError
	if errors.As(err, &re) {
		return re.Code
	}
	return structs.ErrorCode(err)
}

func checkBlobFile(t *testing.T, a *Agent, digest string, want []byte) {
	t.Helper()
	size, ok := a.blobs.has(digest)
	if !ok || size != int64(len(want)) {
		t.Fatalf("%s: has %.12s = %d %v, want %d bytes", a.cfg.NodeName, digest, size, ok, len(want))
	}
	got, err := os.ReadFile(a.blobs.path(digest))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s: stored blob differs from the original (err %v)", a.cfg.NodeName, err)
	}
}

// TestBlobTransfers_BetweenTwoAgents runs pushes and fetches between two
// real agents over their transports; one cluster serves every subtest.
func TestBlobTransfers_BetweenTwoAgents(t *testing.T) {
	a, b := testPair(t)
	t.Run("push arrives intact", func(t *testing.T) { testPush(t, a, b) })
	t.Run("put rejects", func(t *testing.T) { testPutRejects(t, a, b) })
	t.Run("put caps concurrent transfers", func(t *testing.T) { testPutCapsTransfers(t, a, b) })
	t.Run("get rejects a bad offset", func(t *testing.T) { testGetRejectsBadOffset(t, a, b) })
	t.Run("ensure fetches from a holder", func(t *testing.T) { testEnsureFetchesFromHolder(t, a, b) })
	t.Run("ensure finds an unlisted holder", func(t *testing.T) { testEnsureFindsUnlistedHolder(t, a, b) })
	t.Run("ensure verifies the checksum", func(t *testing.T) { testEnsureVerifiesChecksum(t, a, b) })
	t.Run("concurrent ensures fetch once", func(t *testing.T) { testConcurrentEnsureFetchesOnce(t, a, b) })
	t.Run("ensure without a holder", func(t *testing.T) { testEnsureWithoutHolder(t, a, b) })
}

func testPush(t *testing.T, a, b *Agent) {
	puts := countCalls(t, b, rpcBlobPut, b.xfer.handlePut)
	ctx := context.Background()
	cases := []struct {
		name   string
		size   int
		chunks int64
	}{
		{"empty", 0, 1},
		{"one chunk", 1000, 1},
		{"exactly one chunk", blobChunkBytes, 1},
		{"three chunks", 9 << 20, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data := randomBytes(t, tc.size)
			digest := storeBlob(t, a.blobs, data)
			before := puts.Load()
			if err := a.xfer.push(ctx, b.trans.Addr(), digest); err != nil {
				t.Fatalf("push: %v", err)
			}
			if n := puts.Load() - before; n != tc.chunks {
				t.Errorf("push took %d blob.put calls, want %d", n, tc.chunks)
			}
			checkBlobFile(t, b, digest, data)
			if names := dirNames(t, b.blobs.tmpDir()); len(names) != 0 {
				t.Errorf("receiver left temporary files: %v", names)
			}
		})
	}
}

func testPutRejects(t *testing.T, a, b *Agent) {
	ctx := context.Background()
	put := func(args *blobPutArgs) error {
		return a.trans.Call(ctx, b.trans.Addr(), rpcBlobPut, args, nil)
	}
	data := randomBytes(t, 10)
	digest := sha256Hex(data)
	other := sha256Hex(randomBytes(t, 10))
	cases := []struct {
		name string
		// chunks are sent in order; all but the last must succeed.
		chunks []blobPutArgs
		code   string
		msg    string
	}{
		{"digest does not match the data", []blobPutArgs{
			{Size: 10, Transfer: "t1", Digest: other, Data: data, Last: true},
		}, structs.CodeInvalid, "digest"},
		{"digest mismatch over two chunks", []blobPutArgs{
			{Size: 10, Transfer: "t2", Digest: digest, Data: data[:5]},
			{Size: 10, Transfer: "t2", Digest: digest, Offset: 5, Data: []byte("XXXXX"), Last: true},
		}, structs.CodeInvalid, "digest"},
		{"chunk skips ahead", []blobPutArgs{
			{Size: 10, Transfer: "t3", Digest: digest, Data: data[:5]},
			{Size: 10, Transfer: "t3", Digest: digest, Offset: 7, Data: data[7:], Last: true},
		}, structs.CodeInvalid, "offset 7"},
		{"chunk repeats", []blobPutArgs{
			{Size: 10, Transfer: "t4", Digest: digest, Data: data[:5]},
			{Size: 10, Transfer: "t4", Digest: digest, Offset: 0, Data: data[:5]},
		}, structs.CodeInvalid, "does not continue"},
		{"digest changes mid transfer", []blobPutArgs{
			{Size: 10, Transfer: "t5", Digest: digest, Data: data[:5]},
			{Size: 10, Transfer: "t5", Digest: other, Offset: 5, Data: data[5:], Last: true},
		}, structs.CodeInvalid, "does not continue"},
		{"unknown transfer past offset 0", []blobPutArgs{
			{Size: 10, Transfer: "t6", Digest: digest, Offset: 5, Data: data[5:], Last: true},
		}, structs.CodeNotFound, "unknown"},
		{"invalid digest", []blobPutArgs{
			{Size: 10, Transfer: "t7", Digest: "../x", Data: data, Last: true},
		}, structs.CodeInvalid, "digest"},
		{"no transfer id", []blobPutArgs{
			{Size: 10, Digest: digest, Data: data, Last: true},
		}, structs.CodeInvalid, "transfer"},
		{"chunk past the declared size", []blobPutArgs{
			{Size: 6, Transfer: "t8", Digest: digest, Data: data[:5]},
			{Size: 6, Transfer: "t8", Digest: digest, Offset: 5, Data: data[5:], Last: true},
		}, structs.CodeInvalid, "declared size"},
		{"last chunk short of the declared size", []blobPutArgs{
			{Size: 20, Transfer: "t9", Digest: digest, Data: data[:5]},
			{Size: 20, Transfer: "t9", Digest: digest, Offset: 5, Data: data[5:], Last: true},
		}, structs.CodeInvalid, "declared size"},
		{"declared size over the limit", []blobPutArgs{
			{Size: maxBlobBytes + 1, Transfer: "t10", Digest: digest, Data: data, Last: true},
		}, structs.CodeTooLarge, "size"},
		{"transfer id too long", []blobPutArgs{
			{Size: 10, Transfer: strings.Repeat("t", 65), Digest: digest, Data: data, Last: true},
		}, structs.CodeInvalid, "transfer"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			last := len(tc.chunks) - 1
			for i := range last {
				if err := put(&tc.chunks[i]); err != nil {
					t.Fatalf("chunk %d: %v", i, err)
				}
			}
			err := put(&tc.chunks[last])
			if remoteCode(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("last chunk: err %v, want code %s mentioning %q", err, tc.code, tc.msg)
			}
			// A failed transfer is gone: a chunk continuing it is unknown.
			if last > 0 {
				next := tc.chunks[last]
				next.Offset, next.Data = 5, data[5:]
				if err := put(&next); remoteCode(err) != structs.CodeNotFound {
					t.Errorf("continuing a failed transfer: err %v, want not_found", err)
				}
			}
			for _, d := range []string{digest, other} {
				if _, ok := b.blobs.has(d); ok {
					t.Errorf("receiver stored %.12s", d)
				}
			}
			if names := dirNames(t, b.blobs.tmpDir()); len(names) != 0 {
				t.Errorf("receiver left temporary files %v", names)
			}
			b.xfer.mu.Lock()
			n := len(b.xfer.incoming) + b.xfer.active
			b.xfer.mu.Unlock()
			if n != 0 {
				t.Errorf("receiver still tracks %d transfers", n)
			}
		})
	}
}

func testGetRejectsBadOffset(t *testing.T, a, b *Agent) {
	digest := storeBlob(t, a.blobs, randomBytes(t, 10))
	for _, off := range []int64{-1, 11} {
		var reply blobGetReply
		err := b.trans.Call(context.Background(), a.trans.Addr(), rpcBlobGet, &blobGetArgs{Digest: digest, Offset: off}, &reply)
		if remoteCode(err) != structs.CodeInvalid {
			t.Errorf("offset %d: err %v, want invalid", off, err)
		}
	}
	var reply blobHasReply
	if err := b.trans.Call(context.Background(), a.trans.Addr(), rpcBlobHas, &blobHasArgs{Digest: digest}, &reply); err != nil || !reply.Has || reply.Size != 10 {
		t.Errorf("blob.has: %+v %v", reply, err)
	}
}

func testEnsureFetchesFromHolder(t *testing.T, a, b *Agent) {
	ctx := context.Background()
	data := randomBytes(t, 9<<20)
	digest := storeBlob(t, a.blobs, data)
	gets := countCalls(t, a, rpcBlobGet, a.xfer.handleGet)

	p, err := b.xfer.ensure(ctx, digest, []string{a.ID()})
	if err != nil {
		t.Fatalf("ensure: %v", err)
	}
	if p != b.blobs.path(digest) {
		t.Errorf("ensure returned %s, want %s", p, b.blobs.path(digest))
	}
	checkBlobFile(t, b, digest, data)
	if n := gets.Load(); n != 3 {
		t.Errorf("fetch took %d blob.get calls, want 3 chunks", n)
	}
	// Already here: no more calls.
	if _, err := b.xfer.ensure(ctx, digest, []string{a.ID()}); err != nil {
		t.Fatal(err)
	}
	if n := gets.Load(); n != 3 {
		t.Errorf("ensure of a stored blob fetched again (%d calls)", n)
	}
}

func testEnsureFindsUnlistedHolder(t *testing.T, a, b *Agent) {
	data := randomBytes(t, 1000)
	digest := storeBlob(t, a.blobs, data)
	// The recorded holder is unknown; any alive member is asked next.
	if _, err := b.xfer.ensure(context.Background(), digest, []string{"no-such-node"}); err != nil {
		t.Fatalf("ensure: %v", err)
	}
	checkBlobFile(t, b, digest, data)
}

func testEnsureVerifiesChecksum(t *testing.T, a, b *Agent) {
	data := randomBytes(t, 14)
	digest := storeBlob(t, a.blobs, data)
	// The holder's copy rots on disk.
	if err := os.WriteFile(a.blobs.path(digest), []byte("rotten bytes!!"), 0o640); err != nil {
		t.Fatal(err)
	}
	_, err := b.xfer.ensure(context.Background(), digest, []string{a.ID()})
	if structs.ErrorCode(err) != structs.CodeUnavailable || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("err %v, want unavailable naming the checksum", err)
	}
	if _, ok := b.blobs.has(digest); ok {
		t.Error("a blob that failed its checksum was stored")
	}
	if names := dirNames(t, b.blobs.tmpDir()); len(names) != 0 {
		t.Errorf("failed fetch left temporary files %v", names)
	}
}

// goroutinesIn counts goroutines whose stack has the frame fn and none of
// the frames in without.
func goroutinesIn(fn string, without ...string) int {
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

func testConcurrentEnsureFetchesOnce(t *testing.T, a, b *Agent) {
	data := randomBytes(t, blobChunkBytes+1) // two chunks
	digest := storeBlob(t, a.blobs, data)

	// The holder answers the first chunk only once every caller is waiting.
	release := make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce) // also when the test fails while callers wait
	var gets atomic.Int64
	a.trans.Register(rpcBlobGet, func(ctx context.Context, dec transport.Decoder) (any, error) {
		if gets.Add(1) == 1 {
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return a.xfer.handleGet(ctx, dec)
	})
	t.Cleanup(func() { a.trans.Register(rpcBlobGet, a.xfer.handleGet) })

	const callers = 5
	var wg sync.WaitGroup
	paths := make([]string, callers)
	errs := make([]error, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			paths[i], errs[i] = b.xfer.ensure(context.Background(), digest, []string{a.ID()})
		}()
	}
	waitFor(t, 10*time.Second, "one fetch in flight and the other callers waiting for it", func() bool {
		return gets.Load() == 1 &&
			goroutinesIn("node.(*blobTransfers).ensure(", "fetchFromAny") == callers-1
	})
	releaseOnce()
	wg.Wait()
	for i := range callers {
		if errs[i] != nil || paths[i] != b.blobs.path(digest) {
			t.Errorf("caller %d: %q %v", i, paths[i], errs[i])
		}
	}
	if n := gets.Load(); n != 2 {
		t.Errorf("%d blob.get calls for a two-chunk blob, want 2 (one fetch)", n)
	}
	checkBlobFile(t, b, digest, data)
}

func testEnsureWithoutHolder(t *testing.T, a, b *Agent) {
	missing := sha256Hex(randomBytes(t, 16))
	cases := []struct {
		name    string
		agent   *Agent
		holders []string
	}{
		{"holder lacks it", b, []string{a.ID()}},
		{"no holders recorded", b, nil},
		{"self the only holder", a, []string{a.ID()}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.agent.xfer.ensure(context.Background(), missing, tc.holders)
			if structs.ErrorCode(err) != structs.CodeUnavailable || !strings.Contains(err.Error(), "could not be fetched") {
				t.Fatalf("err %v, want unavailable: could not be fetched", err)
			}
			if names := dirNames(t, tc.agent.blobs.tmpDir()); len(names) != 0 {
				t.Errorf("failed fetch left temporary files %v", names)
			}
		})
	}
	if _, err := b.xfer.ensure(context.Background(), "../../node-id", nil); structs.ErrorCode(err) != structs.CodeInvalid {
		t.Errorf("invalid digest: err %v, want invalid", err)
	}
}

func TestBlobTransfers_EnsureAlone(t *testing.T) {
	a := testNode(t)
	_, err := a.xfer.ensure(context.Background(), sha256Hex([]byte("x")), []string{a.ID()})
	if structs.ErrorCode(err) != structs.CodeUnavailable || !strings.Contains(err.Error(), "no other node") {
		t.Fatalf("err %v, want unavailable: no other node", err)
	}
}

// A receiver holds at most maxIncomingTransfers pushes at once; one more is
// refused as overloaded, and a slot frees when a transfer ends.
func testPutCapsTransfers(t *testing.T, a, b *Agent) {
	ctx := context.Background()
	data := randomBytes(t, 10)
	digest := sha256Hex(data)
	put := func(args *blobPutArgs) error {
		return a.trans.Call(ctx, b.trans.Addr(), rpcBlobPut, args, nil)
	}
	for i := range maxIncomingTransfers {
		if err := put(&blobPutArgs{Size: 10, Transfer: fmt.Sprintf("cap%d", i), Digest: digest, Data: data[:5]}); err != nil {
			t.Fatalf("transfer %d: %v", i, err)
		}
	}
	err := put(&blobPutArgs{Size: 10, Transfer: "one-more", Digest: digest, Data: data[:5]})
	if remoteCode(err) != structs.CodeOverloaded {
		t.Fatalf("transfer %d: err %v, want overloaded", maxIncomingTransfers+1, err)
	}
	if err := put(&blobPutArgs{Size: 10, Transfer: "cap0", Digest: digest, Offset: 5, Data: data[5:], Last: true}); err != nil {
		t.Fatalf("finishing transfer 0: %v", err)
	}
	if err := put(&blobPutArgs{Size: 10, Transfer: "one-more", Digest: digest, Data: data, Last: true}); err != nil {
		t.Fatalf("a transfer after one ended: %v", err)
	}
	b.xfer.closeAll()
	b.xfer.mu.Lock()
	defer b.xfer.mu.Unlock()
	if b.xfer.active != 0 {
		t.Fatalf("%d transfers counted active after closeAll", b.xfer.active)
	}
}
