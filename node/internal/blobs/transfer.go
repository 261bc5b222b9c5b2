package blobs

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

// The RPC methods of transfers (see the package doc), and their sizes.
const (
	MethodPut = "blob.put" // one chunk of a push
	MethodGet = "blob.get" // one chunk of a fetch
	MethodHas = "blob.has" // whether a node stores a blob

	// ChunkBytes is the data one call carries.
	ChunkBytes = 4 << 20
	// callTimeout bounds one chunk's round trip.
	callTimeout = 30 * time.Second
	// StaleTransferAge is when an idle incoming transfer is given up.
	StaleTransferAge = 10 * time.Minute
	// MaxIncoming bounds the pushes a node receives at once; one
	// more is refused (overloaded) and its sender tries another node.
	MaxIncoming = 8
	// MaxBlobBytes bounds any blob a node receives: the largest a snapshot
	// may be (model files are bounded lower, by max_artifact_bytes, at upload).
	MaxBlobBytes = 16 << 30
)

type putArgs struct {
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

type getArgs struct {
	Digest string `msgpack:"digest"`
	Offset int64  `msgpack:"offset"`
}

type getReply struct {
	Data []byte `msgpack:"data"`
	Size int64  `msgpack:"size"`
}

type hasArgs struct {
	Digest string `msgpack:"digest"`
}

type hasReply struct {
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

// fetchCall is one fetch of a digest, which concurrent Ensure calls share:
// they all get its outcome, err set before done closes.
type fetchCall struct {
	done chan struct{}
	err  error
}

// Caller makes RPC calls to other nodes (transport.Transport).
type Caller interface {
	Call(ctx context.Context, addr, method string, args, reply any) error
}

// Member is a node that may hold blobs: its ID and RPC address.
type Member struct {
	ID   string
	Addr string
}

// Config is what Transfers needs of its node.
type Config struct {
	Store  *Store
	Caller Caller
	// Self is this node's ID.
	Self string
	// Resolve returns the RPC address of a node by ID.
	Resolve func(id string) (string, error)
	// Alive lists the members gossip sees alive.
	Alive func() []Member
}

// Transfers serves the blob RPCs and runs pushes and fetches.
type Transfers struct {
	cfg   Config
	store *Store

	mu       sync.Mutex
	incoming map[string]*incoming  // guarded by mu; by transfer ID
	active   int                   // guarded by mu: pushes received, begun and not ended
	fetching map[string]*fetchCall // guarded by mu; the fetch of a digest in progress
}

// NewTransfers returns the transfers of cfg.Store.
func NewTransfers(cfg Config) *Transfers {
	return &Transfers{cfg: cfg, store: cfg.Store, incoming: map[string]*incoming{}, fetching: map[string]*fetchCall{}}
}

// Handlers returns the RPC methods a node serves for other nodes' transfers.
func (t *Transfers) Handlers() map[string]transport.Handler {
	return map[string]transport.Handler{MethodPut: t.HandlePut, MethodGet: t.HandleGet, MethodHas: t.HandleHas}
}

// HandlePut serves blob.put: one chunk of a push to this node.
func (t *Transfers) HandlePut(ctx context.Context, dec transport.Decoder) (any, error) {
	var args putArgs
	if err := dec.Decode(&args); err != nil {
		return nil, structs.Errorf(structs.CodeInvalid, "blobs: bad blob.put request: %v", err)
	}
	if err := structs.ValidateDigest("digest", args.Digest); err != nil {
		return nil, err
	}
	if args.Transfer == "" || len(args.Transfer) > 64 {
		return nil, structs.Errorf(structs.CodeInvalid, "blobs: blob.put: bad transfer id")
	}
	t.mu.Lock()
	in, ok := t.incoming[args.Transfer]
	if !ok {
		if args.Offset != 0 {
			t.mu.Unlock()
			return nil, structs.Errorf(structs.CodeNotFound, "blobs: blob.put: transfer %s unknown at offset %d", args.Transfer, args.Offset)
		}
		if args.Size < 0 || args.Size > MaxBlobBytes {
			t.mu.Unlock()
			return nil, structs.Errorf(structs.CodeTooLarge, "blobs: blob.put: size %d is not from 0 to %d bytes", args.Size, int64(MaxBlobBytes))
		}
		if t.active >= MaxIncoming {
			t.mu.Unlock()
			return nil, structs.Errorf(structs.CodeOverloaded, "blobs: blob.put: %d transfers already in progress", t.active)
		}
		f, err := t.store.TempFile()
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
		return fail(structs.Errorf(structs.CodeInvalid, "blobs: blob.put: chunk at offset %d for %s does not continue transfer at %d for %s", args.Offset, args.Digest, in.offset, in.digest))
	}
	if in.offset+int64(len(args.Data)) > in.size || (args.Last && in.offset+int64(len(args.Data)) != in.size) {
		return fail(structs.Errorf(structs.CodeInvalid, "blobs: blob.put: chunk of %d bytes at offset %d does not fit the declared size %d", len(args.Data), in.offset, in.size))
	}
	if _, err := in.f.Write(args.Data); err != nil {
		return fail(fmt.Errorf("blobs: blob.put: %w", err))
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
		return fail(structs.Errorf(structs.CodeInvalid, "blobs: blob.put: received %d bytes with digest %s, not %s", in.offset, got, in.digest))
	}
	if err := in.f.Sync(); err != nil {
		return fail(err)
	}
	if err := in.f.Close(); err != nil {
		return fail(err)
	}
	end()
	return struct{}{}, t.store.Commit(in.f.Name(), in.digest)
}

// HandleGet serves blob.get: one chunk of a stored blob, for a fetch.
func (t *Transfers) HandleGet(ctx context.Context, dec transport.Decoder) (any, error) {
	var args getArgs
	if err := dec.Decode(&args); err != nil {
		return nil, structs.Errorf(structs.CodeInvalid, "blobs: bad blob.get request: %v", err)
	}
	size, ok := t.store.Has(args.Digest)
	if !ok {
		return nil, structs.Errorf(structs.CodeNotFound, "blobs: blob %s is not stored here", args.Digest)
	}
	if args.Offset < 0 || args.Offset > size {
		return nil, structs.Errorf(structs.CodeInvalid, "blobs: blob.get: offset %d outside 0..%d", args.Offset, size)
	}
	f, err := os.Open(t.store.Path(args.Digest))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, min(ChunkBytes, size-args.Offset))
	n, err := f.ReadAt(buf, args.Offset)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return &getReply{Data: buf[:n], Size: size}, nil
}

// HandleHas serves blob.has: whether this node stores a blob, and its size.
func (t *Transfers) HandleHas(ctx context.Context, dec transport.Decoder) (any, error) {
	var args hasArgs
	if err := dec.Decode(&args); err != nil {
		return nil, structs.Errorf(structs.CodeInvalid, "blobs: bad blob.has request: %v", err)
	}
	size, ok := t.store.Has(args.Digest)
	return &hasReply{Has: ok, Size: size}, nil
}

// DropStale abandons incoming transfers idle for longer than StaleTransferAge.
func (t *Transfers) DropStale() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, in := range t.incoming {
		if time.Since(in.touched) > StaleTransferAge {
			in.f.Close()
			_ = os.Remove(in.f.Name())
			delete(t.incoming, id)
			t.active--
		}
	}
}

// CloseAll abandons every incoming transfer and removes its file; the node
// calls it at shutdown, after its transport stopped.
func (t *Transfers) CloseAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, in := range t.incoming {
		in.f.Close()
		_ = os.Remove(in.f.Name())
		delete(t.incoming, id)
		t.active--
	}
}

// Push copies a stored blob to the node at addr.
func (t *Transfers) Push(ctx context.Context, addr, digest string) error {
	if err := structs.ValidateDigest("digest", digest); err != nil {
		return err
	}
	f, err := os.Open(t.store.Path(digest))
	if err != nil {
		return err
	}
	defer f.Close()
	size, _ := t.store.Has(digest)
	transfer := structs.NewID(time.Now())
	buf := make([]byte, ChunkBytes)
	var off int64
	for {
		n, rerr := io.ReadFull(f, buf)
		if rerr != nil && !errors.Is(rerr, io.ErrUnexpectedEOF) && !errors.Is(rerr, io.EOF) {
			return rerr
		}
		last := off+int64(n) >= size
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		err := t.cfg.Caller.Call(cctx, addr, MethodPut, &putArgs{Transfer: transfer, Digest: digest, Offset: off, Data: buf[:n], Last: last, Size: size}, nil)
		cancel()
		if err != nil {
			return fmt.Errorf("blobs: push blob %.12s to %s at offset %d: %w", digest, addr, off, err)
		}
		off += int64(n)
		if last {
			return nil
		}
	}
}

// Ensure makes the blob available locally and returns its path, fetching it
// from the first node that has it: its recorded holders first, then any alive
// member. Concurrent callers for one digest share one fetch.
func (t *Transfers) Ensure(ctx context.Context, digest string, holders []string) (string, error) {
	if err := structs.ValidateDigest("digest", digest); err != nil {
		return "", err
	}
	if _, ok := t.store.Has(digest); ok {
		return t.store.Path(digest), nil
	}
	t.mu.Lock()
	f, busy := t.fetching[digest]
	if !busy {
		f = &fetchCall{done: make(chan struct{})}
		t.fetching[digest] = f
		t.mu.Unlock()
		f.err = t.fetchFromAny(ctx, digest, holders)
		t.mu.Lock()
		delete(t.fetching, digest)
		close(f.done)
	}
	t.mu.Unlock()
	select {
	case <-f.done:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	if f.err != nil {
		return "", f.err
	}
	return t.store.Path(digest), nil
}

// sources lists the RPC addresses to fetch from, holders first.
func (t *Transfers) sources(holders []string) []string {
	var addrs []string
	seen := map[string]bool{t.cfg.Self: true}
	for _, id := range holders {
		if seen[id] {
			continue
		}
		seen[id] = true
		if addr, err := t.cfg.Resolve(id); err == nil {
			addrs = append(addrs, addr)
		}
	}
	for _, m := range t.cfg.Alive() {
		if !seen[m.ID] {
			seen[m.ID] = true
			addrs = append(addrs, m.Addr)
		}
	}
	return addrs
}

func (t *Transfers) fetchFromAny(ctx context.Context, digest string, holders []string) error {
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
		return structs.Errorf(structs.CodeUnavailable, "blobs: blob %s: no other node to fetch it from", digest)
	}
	return structs.Errorf(structs.CodeUnavailable, "blobs: blob %s could not be fetched: %v", digest, errors.Join(errs...))
}

func (t *Transfers) fetch(ctx context.Context, addr, digest string) (err error) {
	f, err := t.store.TempFile()
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
		var reply getReply
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		err := t.cfg.Caller.Call(cctx, addr, MethodGet, &getArgs{Digest: digest, Offset: off}, &reply)
		cancel()
		if err != nil {
			return fmt.Errorf("fetch from %s: %w", addr, err)
		}
		if reply.Size > MaxBlobBytes || off+int64(len(reply.Data)) > reply.Size {
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
	return t.store.Commit(f.Name(), digest)
}
