package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"
	"time"

	"github.com/kilnml/kiln/raftfsm/structs"
	"github.com/kilnml/kiln/transport"
)

// Blobs move between nodes in chunks over the RPC transport, so a large
// artifact is never held in memory and travels over the same authenticated
// port as everything else. A push is a sequence of blob.put calls under one
// transfer ID; the receiver hashes as it writes and commits only when the last
// chunk's digest matches. A fetch is a sequence of blob.get calls, verified the
// same way on the fetching side.
const (
	rpcBlobPut = "blob.put"
	rpcBlobGet = "blob.get"
	rpcBlobHas = "blob.has"

	blobChunkBytes = 4 << 20
	// blobCallTimeout bounds one chunk's round trip.
	blobCallTimeout = 30 * time.Second
	// staleTransferAge is when an idle incoming transfer is given up.
	staleTransferAge = 10 * time.Minute
	// maxIncomingTransfers bounds the pushes a node receives at once; one
	// more is refused (overloaded) and its sender tries another node.
	maxIncomingTransfers = 8
	// maxBlobBytes bounds any blob a node receives: the largest a snapshot
	// may be (model files are bounded lower, by max_artifact_bytes, at upload).
	maxBlobBytes = maxSnapshotBytes
)

type blobPutArgs struct {
	Transfer string `msgpack:"transfer"`
	Digest   string `msgpack:"digest"`
	Offset   int64  `msgpack:"offset"`
	Data     []byte `msgpack:"data"`
	Last     bool   `msgpack:"last"`
	// Size is the blob's whole length, declared with every chunk: the
	// receiver refuses a chunk that goes past it, and a last chunk that
	// falls short of it.
	Size int64 `msgpack:"size"`
}

type blobGetArgs struct {
	Digest string `msgpack:"digest"`
	Offset int64  `msgpack:"offset"`
}

type blobGetReply struct {
	Data []byte `msgpack:"data"`
	Size int64  `msgpack:"size"`
}

type blobHasArgs struct {
	Digest string `msgpack:"digest"`
}

type blobHasReply struct {
	Has  bool  `msgpack:"has"`
	Size int64 `msgpack:"size"`
}

// incoming is one push in progress on the receiving node.
type incoming struct {
	f       *os.File
	h       hash.Hash
	digest  string
	size    int64 // declared by the first chunk
	offset  int64
	touched time.Time
}

// blobTransfers serves the blob RPCs and runs pushes and fetches.
type blobTransfers struct {
	a     *Agent
	store *blobStore

	mu       sync.Mutex
	incoming map[string]*incoming     // guarded by mu; by transfer ID
	active   int                      // guarded by mu: pushes received, begun and not ended
	fetching map[string]chan struct{} // guarded by mu; closed when a fetch of that digest ends
}

func newBlobTransfers(a *Agent, store *blobStore) *blobTransfers {
	t := &blobTransfers{a: a, store: store, incoming: map[string]*incoming{}, fetching: map[string]chan struct{}{}}
	return t
}

func (t *blobTransfers) handlePut(ctx context.Context, dec transport.Decoder) (any, error) {
	var args blobPutArgs
	if err := dec.Decode(&args); err != nil {
		return nil, structs.Errorf(structs.CodeInvalid, "node: bad blob.put request: %v", err)
	}
	if err := structs.ValidateDigest("digest", args.Digest); err != nil {
		return nil, err
	}
	if args.Transfer == "" || len(args.Transfer) > 64 {
		return nil, structs.Errorf(structs.CodeInvalid, "node: blob.put: bad transfer id")
	}
	t.mu.Lock()
	in, ok := t.incoming[args.Transfer]
	if !ok {
		if args.Offset != 0 {
			t.mu.Unlock()
			return nil, structs.Errorf(structs.CodeNotFound, "node: blob.put: transfer %s unknown at offset %d", args.Transfer, args.Offset)
		}
		if args.Size < 0 || args.Size > maxBlobBytes {
			t.mu.Unlock()
			return nil, structs.Errorf(structs.CodeTooLarge, "node: blob.put: size %d is not from 0 to %d bytes", args.Size, int64(maxBlobBytes))
		}
		if t.active >= maxIncomingTransfers {
			t.mu.Unlock()
			return nil, structs.Errorf(structs.CodeOverloaded, "node: blob.put: %d transfers already in progress", t.active)
		}
		f, err := t.store.tempFile()
		if err != nil {
			t.mu.Unlock()
			return nil, err
		}
		t.active++
		in = &incoming{f: f, h: sha256.New(), digest: args.Digest, size: args.Size}
		t.incoming[args.Transfer] = in
	}
	// The transfer leaves the map while this chunk is written, so a duplicate
	// chunk cannot interleave with it.
	delete(t.incoming, args.Transfer)
	t.mu.Unlock()

	end := func() {
		t.mu.Lock()
		t.active--
		t.mu.Unlock()
	}
	fail := func(err error) (any, error) {
		in.f.Close()
		_ = os.Remove(in.f.Name())
		end()
		return nil, err
	}
	if args.Offset != in.offset || args.Digest != in.digest {
		return fail(structs.Errorf(structs.CodeInvalid, "node: blob.put: chunk at offset %d for %s does not continue transfer at %d for %s", args.Offset, args.Digest, in.offset, in.digest))
	}
	if in.offset+int64(len(args.Data)) > in.size || (args.Last && in.offset+int64(len(args.Data)) != in.size) {
		return fail(structs.Errorf(structs.CodeInvalid, "node: blob.put: chunk of %d bytes at offset %d does not fit the declared size %d", len(args.Data), in.offset, in.size))
	}
	if _, err := in.f.Write(args.Data); err != nil {
		return fail(fmt.Errorf("node: blob.put: %w", err))
	}
	in.h.Write(args.Data)
	in.offset += int64(len(args.Data))
	in.touched = time.Now()
	if !args.Last {
		t.mu.Lock()
		t.incoming[args.Transfer] = in
		t.mu.Unlock()
		return struct{}{}, nil
	}
	if got := hex.EncodeToString(in.h.Sum(nil)); got != in.digest {
		return fail(structs.Errorf(structs.CodeInvalid, "node: blob.put: received %d bytes with digest %s, not %s", in.offset, got, in.digest))
	}
	if err := in.f.Sync(); err != nil {
		return fail(err)
	}
	if err := in.f.Close(); err != nil {
		return fail(err)
	}
	end()
	return struct{}{}, t.store.commit(in.f.Name(), in.digest)
}

func (t *blobTransfers) handleGet(ctx context.Context, dec transport.Decoder) (any, error) {
	var args blobGetArgs
	if err := dec.Decode(&args); err != nil {
		return nil, structs.Errorf(structs.CodeInvalid, "node: bad blob.get request: %v", err)
	}
	size, ok := t.store.has(args.Digest)
	if !ok {
		return nil, structs.Errorf(structs.CodeNotFound, "node: blob %s is not stored here", args.Digest)
	}
	if args.Offset < 0 || args.Offset > size {
		return nil, structs.Errorf(structs.CodeInvalid, "node: blob.get: offset %d outside 0..%d", args.Offset, size)
	}
	f, err := os.Open(t.store.path(args.Digest))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, min(blobChunkBytes, size-args.Offset))
	n, err := f.ReadAt(buf, args.Offset)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return &blobGetReply{Data: buf[:n], Size: size}, nil
}

func (t *blobTransfers) handleHas(ctx context.Context, dec transport.Decoder) (any, error) {
	var args blobHasArgs
	if err := dec.Decode(&args); err != nil {
		return nil, structs.Errorf(structs.CodeInvalid, "node: bad blob.has request: %v", err)
	}
	size, ok := t.store.has(args.Digest)
	return &blobHasReply{Has: ok, Size: size}, nil
}

// dropStale abandons incoming transfers idle for longer than staleTransferAge.
func (t *blobTransfers) dropStale() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, in := range t.incoming {
		if time.Since(in.touched) > staleTransferAge {
			in.f.Close()
			_ = os.Remove(in.f.Name())
			delete(t.incoming, id)
			t.active--
		}
	}
}

func (t *blobTransfers) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, in := range t.incoming {
		in.f.Close()
		_ = os.Remove(in.f.Name())
		delete(t.incoming, id)
		t.active--
	}
}

// push copies a stored blob to the node at addr.
func (t *blobTransfers) push(ctx context.Context, addr, digest string) error {
	f, err := os.Open(t.store.path(digest))
	if err != nil {
		return err
	}
	defer f.Close()
	size, _ := t.store.has(digest)
	transfer := structs.NewID(time.Now())
	buf := make([]byte, blobChunkBytes)
	var off int64
	for {
		n, rerr := io.ReadFull(f, buf)
		if rerr != nil && !errors.Is(rerr, io.ErrUnexpectedEOF) && !errors.Is(rerr, io.EOF) {
			return rerr
		}
		last := off+int64(n) >= size
		cctx, cancel := context.WithTimeout(ctx, blobCallTimeout)
		err := t.a.trans.Call(cctx, addr, rpcBlobPut, &blobPutArgs{Transfer: transfer, Digest: digest, Offset: off, Data: buf[:n], Last: last, Size: size}, nil)
		cancel()
		if err != nil {
			return fmt.Errorf("node: push blob %.12s to %s at offset %d: %w", digest, addr, off, err)
		}
		off += int64(n)
		if last {
			return nil
		}
	}
}

// ensure makes the blob available locally and returns its path, fetching it
// from the first node that has it: its recorded holders first, then any alive
// member. Concurrent callers for one digest share one fetch.
func (t *blobTransfers) ensure(ctx context.Context, digest string, holders []string) (string, error) {
	if err := structs.ValidateDigest("digest", digest); err != nil {
		return "", err
	}
	for {
		if _, ok := t.store.has(digest); ok {
			return t.store.path(digest), nil
		}
		t.mu.Lock()
		wait, busy := t.fetching[digest]
		if !busy {
			done := make(chan struct{})
			t.fetching[digest] = done
			t.mu.Unlock()
			err := t.fetchFromAny(ctx, digest, holders)
			t.mu.Lock()
			delete(t.fetching, digest)
			close(done)
			t.mu.Unlock()
			if err != nil {
				return "", err
			}
			continue
		}
		t.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// sources lists the RPC addresses to fetch from, holders first.
func (t *blobTransfers) sources(holders []string) []string {
	var addrs []string
	seen := map[string]bool{t.a.id: true}
	for _, id := range holders {
		if seen[id] {
			continue
		}
		seen[id] = true
		if addr, err := t.a.resolveNode(id); err == nil {
			addrs = append(addrs, addr)
		}
	}
	for _, m := range t.a.gossip.alive() {
		if !seen[m.Meta.ID] {
			seen[m.Meta.ID] = true
			addrs = append(addrs, m.Meta.RPCAddr)
		}
	}
	return addrs
}

func (t *blobTransfers) fetchFromAny(ctx context.Context, digest string, holders []string) error {
	var errs []error
	for _, addr := range t.sources(holders) {
		err := t.fetch(ctx, addr, digest)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return structs.Errorf(structs.CodeUnavailable, "node: blob %s: no other node to fetch it from", digest)
	}
	return structs.Errorf(structs.CodeUnavailable, "node: blob %s could not be fetched: %v", digest, errors.Join(errs...))
}

func (t *blobTransfers) fetch(ctx context.Context, addr, digest string) (err error) {
	f, err := t.store.tempFile()
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	h := sha256.New()
	var off int64
	for {
		var reply blobGetReply
		cctx, cancel := context.WithTimeout(ctx, blobCallTimeout)
		err := t.a.trans.Call(cctx, addr, rpcBlobGet, &blobGetArgs{Digest: digest, Offset: off}, &reply)
		cancel()
		if err != nil {
			return fmt.Errorf("fetch from %s: %w", addr, err)
		}
		if reply.Size > maxBlobBytes || off+int64(len(reply.Data)) > reply.Size {
			return fmt.Errorf("fetch from %s: %d bytes at offset %d of a blob it says is %d bytes", addr, len(reply.Data), off, reply.Size)
		}
		if _, err := f.Write(reply.Data); err != nil {
			return err
		}
		h.Write(reply.Data)
		off += int64(len(reply.Data))
		if off >= reply.Size {
			break
		}
		if len(reply.Data) == 0 {
			return fmt.Errorf("fetch from %s: no progress at offset %d of %d", addr, off, reply.Size)
		}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != digest {
		return fmt.Errorf("fetch from %s: checksum mismatch: got %s", addr, got)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return t.store.commit(f.Name(), digest)
}

// blobsEndpoint serves the blob transfer RPCs between nodes.
func (a *Agent) blobsEndpoint() endpoint {
	return endpoint{rpcs: map[string]transport.Handler{
		rpcBlobPut:   a.xfer.handlePut,
		rpcBlobGet:   a.xfer.handleGet,
		rpcBlobHas:   a.xfer.handleHas,
		rpcBlobFetch: a.handleBlobFetchRPC,
	}}
}
