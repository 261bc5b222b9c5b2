package blobs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kilnml/kiln/cluster-tests/testutil"
	"github.com/kilnml/kiln/raftfsm/structs"
	"github.com/kilnml/kiln/transport"
)

// testNode is one node of a test cluster: a real transport serving the blob
// RPCs of its own Store and Transfers.
type testNode struct {
	id    string
	tr    *transport.Transport
	store *Store
	xfer  *Transfers
	// calls counts, by method, the calls that reached this node's handlers.
	calls map[string]*atomic.Int64

	mu    sync.Mutex
	hooks map[string]func(ctx context.Context, call int64) error // guarded by mu; by method
}

// testCluster is nodes that reach each other over loopback. Alive lists the
// members set alive, every node at first (a node's gossip lists itself too).
type testCluster struct {
	nodes map[string]*testNode

	mu    sync.Mutex
	alive []string // guarded by mu
}

// newTestCluster starts a node for each ID and shuts them down when the test
// ends.
func newTestCluster(t *testing.T, ids ...string) *testCluster {
	t.Helper()
	c := &testCluster{nodes: map[string]*testNode{}, alive: ids}
	for _, id := range ids {
		tr, err := transport.New(transport.Config{BindAddr: "127.0.0.1:0", DialTimeout: 2 * time.Second})
		if err != nil {
			t.Fatalf("transport.New: %v", err)
		}
		t.Cleanup(func() { tr.Shutdown() })
		store, err := NewStore(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		n := &testNode{id: id, tr: tr, store: store, calls: map[string]*atomic.Int64{}, hooks: map[string]func(context.Context, int64) error{}}
		n.xfer = NewTransfers(Config{Store: store, Caller: tr, Self: id, Resolve: c.resolve, Alive: c.aliveMembers})
		t.Cleanup(n.xfer.CloseAll)
		for method, h := range n.xfer.Handlers() {
			count := new(atomic.Int64)
			n.calls[method] = count
			tr.Register(method, func(ctx context.Context, dec transport.Decoder) (any, error) {
				call := count.Add(1)
				n.mu.Lock()
				hook := n.hooks[method]
				n.mu.Unlock()
				if hook != nil {
					if err := hook(ctx, call); err != nil {
						return nil, err
					}
				}
				return h(ctx, dec)
			})
		}
		c.nodes[id] = n
	}
	return c
}

func (c *testCluster) resolve(id string) (string, error) {
	n, ok := c.nodes[id]
	if !ok {
		return "", fmt.Errorf("no node %q", id)
	}
	return n.tr.Addr(), nil
}

func (c *testCluster) aliveMembers() []Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ms []Member
	for _, id := range c.alive {
		ms = append(ms, Member{ID: id, Addr: c.nodes[id].tr.Addr()})
	}
	return ms
}

// setAlive makes Alive list just ids until the test ends.
func (c *testCluster) setAlive(t *testing.T, ids ...string) {
	c.mu.Lock()
	prev := c.alive
	c.alive = ids
	c.mu.Unlock()
	t.Cleanup(func() {
		c.mu.Lock()
		c.alive = prev
		c.mu.Unlock()
	})
}

// hook runs f before the handler of method on each call, until the test
// ends; an error f returns is the call's answer. call counts from 1 over the
// node's life.
func (n *testNode) hook(t *testing.T, method string, f func(ctx context.Context, call int64) error) {
	n.mu.Lock()
	n.hooks[method] = f
	n.mu.Unlock()
	t.Cleanup(func() {
		n.mu.Lock()
		delete(n.hooks, method)
		n.mu.Unlock()
	})
}

// tracked is how many incoming transfers the node's Transfers counts.
func (n *testNode) tracked() int {
	n.xfer.mu.Lock()
	defer n.xfer.mu.Unlock()
	return len(n.xfer.incoming) + n.xfer.active
}

// putTo sends one blob.put from n to node to.
func (n *testNode) putTo(ctx context.Context, to *testNode, args *putArgs) error {
	return n.tr.Call(ctx, to.tr.Addr(), MethodPut, args, nil)
}

// remoteCode is the error code of an RPC's failure.
func remoteCode(err error) string {
	var re *transport.RemoteError
	if errors.As(err, &re) {
		return re.Code
	}
	return structs.ErrorCode(err)
}

func checkBlobFile(t *testing.T, n *testNode, digest string, want []byte) {
	t.Helper()
	size, ok := n.store.Has(digest)
	if !ok || size != int64(len(want)) {
		t.Fatalf("%s: Has %.12s = %d %v, want %d bytes", n.id, digest, size, ok, len(want))
	}
	got, err := os.ReadFile(n.store.Path(digest))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s: stored blob differs from the original (err %v)", n.id, err)
	}
}

func TestTransfers_PushArrivesIntact(t *testing.T) {
	c := newTestCluster(t, "a", "b")
	a, b := c.nodes["a"], c.nodes["b"]
	puts := b.calls[MethodPut]
	ctx := context.Background()
	cases := []struct {
		name   string
		size   int
		chunks int64
	}{
		{"empty", 0, 1},
		{"one chunk", 1000, 1},
		{"exactly one chunk", ChunkBytes, 1},
		{"three chunks", 9 << 20, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data := testutil.RandomBytes(t, tc.size)
			digest := storeBlob(t, a.store, data)
			before := puts.Load()
			if err := a.xfer.Push(ctx, b.tr.Addr(), digest); err != nil {
				t.Fatalf("Push: %v", err)
			}
			if n := puts.Load() - before; n != tc.chunks {
				t.Errorf("Push took %d blob.put calls, want %d", n, tc.chunks)
			}
			checkBlobFile(t, b, digest, data)
			if names := testutil.DirNames(t, b.store.TmpDir()); len(names) != 0 {
				t.Errorf("receiver left temporary files: %v", names)
			}
			if n := b.tracked(); n != 0 {
				t.Errorf("receiver still tracks %d transfers", n)
			}
		})
	}
}

func TestTransfers_PutRejects(t *testing.T) {
	c := newTestCluster(t, "a", "b")
	a, b := c.nodes["a"], c.nodes["b"]
	ctx := context.Background()
	put := func(args *putArgs) error { return a.putTo(ctx, b, args) }
	data := testutil.RandomBytes(t, 10)
	digest := sha256Hex(data)
	other := sha256Hex(testutil.RandomBytes(t, 10))
	cases := []struct {
		name string
		// chunks are sent in order; all but the last must succeed.
		chunks []putArgs
		code   string
		msg    string
	}{
		{"digest does not match the data", []putArgs{
			{Size: 10, Transfer: "t1", Digest: other, Data: data, Last: true},
		}, structs.CodeInvalid, "digest"},
		{"digest mismatch over two chunks", []putArgs{
			{Size: 10, Transfer: "t2", Digest: digest, Data: data[:5]},
			{Size: 10, Transfer: "t2", Digest: digest, Offset: 5, Data: []byte("XXXXX"), Last: true},
		}, structs.CodeInvalid, "digest"},
		{"chunk skips ahead", []putArgs{
			{Size: 10, Transfer: "t3", Digest: digest, Data: data[:5]},
			{Size: 10, Transfer: "t3", Digest: digest, Offset: 7, Data: data[7:], Last: true},
		}, structs.CodeInvalid, "offset 7"},
		{"chunk repeats", []putArgs{
			{Size: 10, Transfer: "t4", Digest: digest, Data: data[:5]},
			{Size: 10, Transfer: "t4", Digest: digest, Offset: 0, Data: data[:5]},
		}, structs.CodeInvalid, "does not continue"},
		{"digest changes mid transfer", []putArgs{
			{Size: 10, Transfer: "t5", Digest: digest, Data: data[:5]},
			{Size: 10, Transfer: "t5", Digest: other, Offset: 5, Data: data[5:], Last: true},
		}, structs.CodeInvalid, "does not continue"},
		{"unknown transfer past offset 0", []putArgs{
			{Size: 10, Transfer: "t6", Digest: digest, Offset: 5, Data: data[5:], Last: true},
		}, structs.CodeNotFound, "unknown"},
		{"invalid digest", []putArgs{
			{Size: 10, Transfer: "t7", Digest: "../x", Data: data, Last: true},
		}, structs.CodeInvalid, "digest"},
		{"no transfer id", []putArgs{
			{Size: 10, Digest: digest, Data: data, Last: true},
		}, structs.CodeInvalid, "transfer"},
		{"chunk past the declared size", []putArgs{
			{Size: 6, Transfer: "t8", Digest: digest, Data: data[:5]},
			{Size: 6, Transfer: "t8", Digest: digest, Offset: 5, Data: data[5:], Last: true},
		}, structs.CodeInvalid, "declared size"},
		{"last chunk short of the declared size", []putArgs{
			{Size: 20, Transfer: "t9", Digest: digest, Data: data[:5]},
			{Size: 20, Transfer: "t9", Digest: digest, Offset: 5, Data: data[5:], Last: true},
		}, structs.CodeInvalid, "declared size"},
		{"declared size over the limit", []putArgs{
			{Size: MaxBlobBytes + 1, Transfer: "t10", Digest: digest, Data: data, Last: true},
		}, structs.CodeTooLarge, "size"},
		{"transfer id too long", []putArgs{
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
				if _, ok := b.store.Has(d); ok {
					t.Errorf("receiver stored %.12s", d)
				}
			}
			if names := testutil.DirNames(t, b.store.TmpDir()); len(names) != 0 {
				t.Errorf("receiver left temporary files %v", names)
			}
			if n := b.tracked(); n != 0 {
				t.Errorf("receiver still tracks %d transfers", n)
			}
		})
	}
}

// A receiver holds at most MaxIncoming pushes at once; one more is refused as
// overloaded, and a slot frees when a transfer ends.
func TestTransfers_PutCapsIncoming(t *testing.T) {
	c := newTestCluster(t, "a", "b")
	a, b := c.nodes["a"], c.nodes["b"]
	ctx := context.Background()
	data := testutil.RandomBytes(t, 10)
	digest := sha256Hex(data)
	put := func(args *putArgs) error { return a.putTo(ctx, b, args) }
	for i := range MaxIncoming {
		if err := put(&putArgs{Size: 10, Transfer: fmt.Sprintf("cap%d", i), Digest: digest, Data: data[:5]}); err != nil {
			t.Fatalf("transfer %d: %v", i, err)
		}
	}
	err := put(&putArgs{Size: 10, Transfer: "one-more", Digest: digest, Data: data[:5]})
	if remoteCode(err) != structs.CodeOverloaded {
		t.Fatalf("transfer %d: err %v, want overloaded", MaxIncoming+1, err)
	}
	if err := put(&putArgs{Size: 10, Transfer: "cap0", Digest: digest, Offset: 5, Data: data[5:], Last: true}); err != nil {
		t.Fatalf("finishing transfer 0: %v", err)
	}
	if err := put(&putArgs{Size: 10, Transfer: "one-more", Digest: digest, Data: data, Last: true}); err != nil {
		t.Fatalf("a transfer after one ended: %v", err)
	}
	b.xfer.CloseAll()
	b.xfer.mu.Lock()
	active := b.xfer.active
	b.xfer.mu.Unlock()
	if active != 0 {
		t.Fatalf("%d transfers counted active after CloseAll", active)
	}
	if names := testutil.DirNames(t, b.store.TmpDir()); len(names) != 0 {
		t.Errorf("CloseAll left temporary files %v", names)
	}
}

// DropStale abandons the incoming transfers idle for longer than
// StaleTransferAge, frees their slots and removes their files; the others go
// on.
func TestTransfers_DropStaleAbandonsIdle(t *testing.T) {
	c := newTestCluster(t, "a", "b")
	a, b := c.nodes["a"], c.nodes["b"]
	ctx := context.Background()
	data := testutil.RandomBytes(t, 10)
	digest := sha256Hex(data)
	put := func(args *putArgs) error { return a.putTo(ctx, b, args) }
	for _, id := range []string{"idle", "busy"} {
		if err := put(&putArgs{Size: 10, Transfer: id, Digest: digest, Data: data[:5]}); err != nil {
			t.Fatalf("transfer %s: %v", id, err)
		}
	}
	b.xfer.mu.Lock()
	idle := b.xfer.incoming["idle"]
	idle.touched = time.Now().Add(-StaleTransferAge - time.Minute)
	b.xfer.mu.Unlock()

	b.xfer.DropStale()
	if _, err := os.Stat(idle.f.Name()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the idle transfer's file is still there: %v", err)
	}
	if n := b.tracked(); n != 2 { // busy: in the map and counted active
		t.Errorf("receiver tracks %d after DropStale, want the busy transfer only", n)
	}
	err := put(&putArgs{Size: 10, Transfer: "idle", Digest: digest, Offset: 5, Data: data[5:], Last: true})
	if remoteCode(err) != structs.CodeNotFound {
		t.Errorf("continuing the dropped transfer: err %v, want not_found", err)
	}
	if err := put(&putArgs{Size: 10, Transfer: "busy", Digest: digest, Offset: 5, Data: data[5:], Last: true}); err != nil {
		t.Fatalf("finishing the busy transfer: %v", err)
	}
	checkBlobFile(t, b, digest, data)
	if n := b.tracked(); n != 0 {
		t.Errorf("receiver still tracks %d transfers", n)
	}
}

func TestTransfers_GetRejectsBadOffset(t *testing.T) {
	c := newTestCluster(t, "a", "b")
	a, b := c.nodes["a"], c.nodes["b"]
	ctx := context.Background()
	digest := storeBlob(t, a.store, testutil.RandomBytes(t, 10))
	for _, off := range []int64{-1, 11} {
		var reply getReply
		err := b.tr.Call(ctx, a.tr.Addr(), MethodGet, &getArgs{Digest: digest, Offset: off}, &reply)
		if remoteCode(err) != structs.CodeInvalid {
			t.Errorf("offset %d: err %v, want invalid", off, err)
		}
	}
	var reply hasReply
	if err := b.tr.Call(ctx, a.tr.Addr(), MethodHas, &hasArgs{Digest: digest}, &reply); err != nil || !reply.Has || reply.Size != 10 {
		t.Errorf("blob.has: %+v %v", reply, err)
	}
	var missing hasReply
	if err := b.tr.Call(ctx, a.tr.Addr(), MethodHas, &hasArgs{Digest: sha256Hex([]byte("never stored"))}, &missing); err != nil || missing.Has {
		t.Errorf("blob.has of a blob never stored: %+v %v", missing, err)
	}
}

func TestTransfers_EnsureFetchesFromHolder(t *testing.T) {
	c := newTestCluster(t, "a", "b")
	a, b := c.nodes["a"], c.nodes["b"]
	ctx := context.Background()
	data := testutil.RandomBytes(t, 9<<20)
	digest := storeBlob(t, a.store, data)
	gets := a.calls[MethodGet]

	p, err := b.xfer.Ensure(ctx, digest, []string{a.id})
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if p != b.store.Path(digest) {
		t.Errorf("Ensure returned %s, want %s", p, b.store.Path(digest))
	}
	checkBlobFile(t, b, digest, data)
	if n := gets.Load(); n != 3 {
		t.Errorf("fetch took %d blob.get calls, want 3 chunks", n)
	}
	// Already here: no more calls.
	if _, err := b.xfer.Ensure(ctx, digest, []string{a.id}); err != nil {
		t.Fatal(err)
	}
	if n := gets.Load(); n != 3 {
		t.Errorf("Ensure of a stored blob fetched again (%d calls)", n)
	}
}

func TestTransfers_EnsureFindsUnlistedHolder(t *testing.T) {
	c := newTestCluster(t, "a", "b")
	a, b := c.nodes["a"], c.nodes["b"]
	data := testutil.RandomBytes(t, 1000)
	digest := storeBlob(t, a.store, data)
	// The recorded holder is unknown; any alive member is asked next.
	if _, err := b.xfer.Ensure(context.Background(), digest, []string{"no-such-node"}); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	checkBlobFile(t, b, digest, data)
}

func TestTransfers_EnsureVerifiesChecksum(t *testing.T) {
	c := newTestCluster(t, "a", "b")
	a, b := c.nodes["a"], c.nodes["b"]
	data := testutil.RandomBytes(t, 14)
	digest := storeBlob(t, a.store, data)
	// The holder's copy rots on disk.
	if err := os.WriteFile(a.store.Path(digest), []byte("rotten bytes!!"), 0o640); err != nil {
		t.Fatal(err)
	}
	_, err := b.xfer.Ensure(context.Background(), digest, []string{a.id})
	if structs.ErrorCode(err) != structs.CodeUnavailable || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("err %v, want unavailable naming the checksum", err)
	}
	if _, ok := b.store.Has(digest); ok {
		t.Error("a blob that failed its checksum was stored")
	}
	if names := testutil.DirNames(t, b.store.TmpDir()); len(names) != 0 {
		t.Errorf("failed fetch left temporary files %v", names)
	}
}

// concurrentEnsures has n callers on b ensure digest, listing a as its
// holder, while a holds its first blob.get until all of them are waiting:
// one fetching, the others waiting for that fetch. It returns each
// caller's path and error, and a's blob.get count.
func concurrentEnsures(t *testing.T, a, b *testNode, digest string, n int) ([]string, []error, *atomic.Int64) {
	t.Helper()
	release := make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce) // also when the test fails while callers wait
	gets := a.calls[MethodGet]
	a.hook(t, MethodGet, func(ctx context.Context, call int64) error {
		if call == 1 {
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	var wg sync.WaitGroup
	paths := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			paths[i], errs[i] = b.xfer.Ensure(context.Background(), digest, []string{a.id})
		}()
	}
	testutil.Until(t, 10*time.Second, "one fetch in flight and the other callers waiting for it", func() bool {
		return gets.Load() == 1 && testutil.GoroutinesIn("blobs.(*Transfers).Ensure(", "fetchFromAny") == n-1
	})
	releaseOnce()
	wg.Wait()
	return paths, errs, gets
}

func TestTransfers_ConcurrentEnsuresFetchOnce(t *testing.T) {
	c := newTestCluster(t, "a", "b")
	a, b := c.nodes["a"], c.nodes["b"]
	data := testutil.RandomBytes(t, ChunkBytes+1) // two chunks
	digest := storeBlob(t, a.store, data)

	const callers = 5
	paths, errs, gets := concurrentEnsures(t, a, b, digest, callers)
	for i := range callers {
		if errs[i] != nil || paths[i] != b.store.Path(digest) {
			t.Errorf("caller %d: %q %v", i, paths[i], errs[i])
		}
	}
	if n := gets.Load(); n != 2 {
		t.Errorf("%d blob.get calls for a two-chunk blob, want 2 (one fetch)", n)
	}
	checkBlobFile(t, b, digest, data)
}

func TestTransfers_EnsureWithoutHolder(t *testing.T) {
	c := newTestCluster(t, "a", "b")
	a, b := c.nodes["a"], c.nodes["b"]
	missing := sha256Hex(testutil.RandomBytes(t, 16))
	cases := []struct {
		name    string
		node    *testNode
		holders []string
	}{
		{"holder lacks it", b, []string{a.id}},
		{"no holders recorded", b, nil},
		{"self the only holder", a, []string{a.id}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.node.xfer.Ensure(context.Background(), missing, tc.holders)
			if structs.ErrorCode(err) != structs.CodeUnavailable || !strings.Contains(err.Error(), "could not be fetched") {
				t.Fatalf("err %v, want unavailable: could not be fetched", err)
			}
			if names := testutil.DirNames(t, tc.node.store.TmpDir()); len(names) != 0 {
				t.Errorf("failed fetch left temporary files %v", names)
			}
		})
	}
	if _, err := b.xfer.Ensure(context.Background(), "../../node-id", nil); structs.ErrorCode(err) != structs.CodeInvalid {
		t.Errorf("invalid digest: err %v, want invalid", err)
	}
}

// With no other node to ask, Ensure fails at once, naming that.
func TestTransfers_EnsureWithNoOtherNode(t *testing.T) {
	t.Run("alone in the cluster", func(t *testing.T) {
		c := newTestCluster(t, "a")
		a := c.nodes["a"]
		_, err := a.xfer.Ensure(context.Background(), sha256Hex([]byte("x")), []string{a.id})
		if structs.ErrorCode(err) != structs.CodeUnavailable || !strings.Contains(err.Error(), "no other node") {
			t.Fatalf("err %v, want unavailable: no other node", err)
		}
	})
	t.Run("unknown holder and only self alive", func(t *testing.T) {
		c := newTestCluster(t, "a", "b")
		a, b := c.nodes["a"], c.nodes["b"]
		digest := storeBlob(t, a.store, []byte("held by a, which gossip does not list"))
		c.setAlive(t, b.id)
		_, err := b.xfer.Ensure(context.Background(), digest, []string{"no-such-node"})
		if structs.ErrorCode(err) != structs.CodeUnavailable || !strings.Contains(err.Error(), "no other node") {
			t.Fatalf("err %v, want unavailable: no other node", err)
		}
		if n := a.calls[MethodGet].Load(); n != 0 {
			t.Errorf("a node Alive does not list was asked %d times", n)
		}
	})
}

// Callers that wait on a shared fetch get its failure; they do not each try
// again, one after another.
func TestTransfers_ConcurrentEnsuresShareAFailure(t *testing.T) {
	c := newTestCluster(t, "a", "b")
	a, b := c.nodes["a"], c.nodes["b"]
	missing := sha256Hex(testutil.RandomBytes(t, 16))
	c.setAlive(t, "a", "b")
	const callers = 5
	_, errs, gets := concurrentEnsures(t, a, b, missing, callers)
	for i, err := range errs {
		if structs.ErrorCode(err) != structs.CodeUnavailable {
			t.Errorf("caller %d: %v, want the shared fetch's unavailable", i, err)
		}
	}
	if n := gets.Load(); n != 1 {
		t.Errorf("%d blob.get calls for %d callers of a missing blob, want 1", n, callers)
	}
}

// Push refuses a digest that is not one before opening anything.
func TestTransfers_PushRefusesInvalidDigest(t *testing.T) {
	c := newTestCluster(t, "a", "b")
	a, b := c.nodes["a"], c.nodes["b"]
	err := a.xfer.Push(context.Background(), b.tr.Addr(), "../../node-id")
	if structs.ErrorCode(err) != structs.CodeInvalid {
		t.Fatalf("Push of %q: %v, want invalid", "../../node-id", err)
	}
	if n := b.calls[MethodPut].Load(); n != 0 {
		t.Fatalf("%d blob.put calls reached the receiver", n)
	}
}
