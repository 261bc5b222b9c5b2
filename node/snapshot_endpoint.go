package node

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kilnml/kiln/node/internal/blobs"
	"github.com/kilnml/kiln/raftfsm"
	"github.com/kilnml/kiln/raftfsm/structs"
	"github.com/kilnml/kiln/transport"
)

// maxSnapshotBytes bounds a snapshot upload; it is spooled to disk, not memory.
const maxSnapshotBytes = blobs.MaxBlobBytes

// snapshotRestoreRPCTimeout bounds the leader's side of a restore handed on
// by a follower: checking the file again (which grows with its size), Raft's
// restore (one minute to start) and the write after it. The copy to the
// leader before it is bounded per chunk (blobs.ChunkBytes at a time, each call bounded) instead.
const snapshotRestoreRPCTimeout = 10 * time.Minute

// handleSnapshotSave streams the registry state as of this node's view (with the
// usual consistency parameters) in the FSM's snapshot format. The download
// may take minutes; a client that takes no bytes for
// limits.upload_idle_timeout is dropped (longRequest).
func (a *Agent) handleSnapshotSave(w http.ResponseWriter, r *http.Request) {
	w, _ = longRequest(w, r, a.cfg.Limits.UploadIdleTimeout)
	txn, err := a.readTxn(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	txn.Discard() // readTxn settled consistency and headers; the snapshot opens its own view
	snap, err := a.fsm.Snapshot()
	if err != nil {
		writeError(w, structs.Errorf(structs.CodeInternal, "snapshot: %v", err))
		return
	}
	defer snap.Release()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="kiln.snap"`)
	w.WriteHeader(http.StatusOK)
	if err := snap.Persist(&httpSink{w: w}); err != nil {
		a.logger.Warn("snapshot save aborted", "error", err)
	}
}

// httpSink adapts a ResponseWriter to raft.SnapshotSink.
type httpSink struct{ w io.Writer }

func (s *httpSink) Write(p []byte) (int, error) { return s.w.Write(p) }
func (s *httpSink) Close() error                { return nil }
func (s *httpSink) ID() string                  { return "http" }
func (s *httpSink) Cancel() error               { return nil }

// handleSnapshotRestore replaces the registry with an uploaded snapshot. The upload
// is spooled to disk, every record is checked against the rules the API applies,
// and it is loaded into a scratch FSM, so a corrupt or crafted file is rejected
// before anything changes; then the leader restores it through Raft and every
// node installs it. A follower hands the checked file to the leader over the
// RPC port (as an artifact copy, then snapshot.restore), like every other
// request it forwards: the leader trusts it as a node, checks the file again
// and restores it.
//
// At most limits.max_concurrent_restores run at once on a node; one more is
// refused with 429. The body is dropped once it delivers nothing for
// limits.upload_idle_timeout (longRequest).
func (a *Agent) handleSnapshotRestore(w http.ResponseWriter, r *http.Request) {
	w, body := longRequest(w, r, a.cfg.Limits.UploadIdleTimeout)
	release, err := a.acquireRestore()
	if err != nil {
		writeError(w, err)
		return
	}
	defer release()
	tmpDir, err := os.MkdirTemp(a.cfg.DataDir, "restore-")
	if err != nil {
		writeError(w, structs.Errorf(structs.CodeInternal, "snapshot restore: %v", err))
		return
	}
	defer os.RemoveAll(tmpDir)
	// Spooled into the blob store's scratch space, hashed on the way: a
	// follower then hands the same file on as a blob, without a second copy.
	path, digest, size, err := a.blobs.Ingest(body, maxSnapshotBytes)
	switch {
	case errors.Is(err, blobs.ErrTooLarge):
		writeError(w, structs.Errorf(structs.CodeTooLarge, "request body is larger than %d bytes", int64(maxSnapshotBytes)))
		return
	case errors.Is(err, errUploadStalled):
		writeError(w, stalledError(a.cfg.Limits.UploadIdleTimeout)) // ingest removed its file
		return
	case err != nil:
		writeError(w, structs.Errorf(structs.CodeInvalid, "reading the snapshot: %v", err))
		return
	}
	defer os.Remove(path) // gone already once committed as a blob
	if err := checkSnapshotFile(path, filepath.Join(tmpDir, "check")); err != nil {
		writeError(w, err)
		return
	}
	var idx uint64
	if a.raft.State() == raft.Leader {
		idx, err = a.restoreLocal(path, size)
	} else {
		idx, err = a.restoreViaLeader(r.Context(), path, digest)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	writeCommitted(w, http.StatusOK, idx, map[string]any{"restored_bytes": size})
}

// checkSnapshotFile is validateSnapshot with its error as the API answers it.
func checkSnapshotFile(path, scratch string) error {
	err := validateSnapshot(path, scratch)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raftfsm.ErrCorruptSnapshot) || errors.Is(err, raftfsm.ErrInvalidSnapshot):
		return structs.Errorf(structs.CodeInvalid, "snapshot is not valid: %v", err)
	}
	return structs.Errorf(structs.CodeInternal, "snapshot restore: checking the upload: %v", err)
}

// restoreLocal restores a checked snapshot file through Raft on the leader
// and returns the index it is applied at.
func (a *Agent) restoreLocal(path string, size int64) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, structs.Errorf(structs.CodeInternal, "snapshot restore: %v", err)
	}
	defer f.Close()
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Size: size}
	if err := a.raft.Restore(meta, f, time.Minute); err != nil {
		return 0, structs.Errorf(structs.CodeUnavailable, "snapshot restore: %v", err)
	}
	// The restored state reports the applied index written in the file, which
	// is older than the writes it replaced: a client waiting with ?index= for
	// one of those would wait until some later write. One write of this
	// node's record now moves every node past them, and its index is the
	// restore's: reading with ?index=<it> sees the restored registry.
	idx, err := a.writeSelfRecord(true)
	if err != nil {
		return 0, structs.Errorf(structs.CodeUnavailable, "snapshot restored, but the write that follows it failed (retry reads without ?index=): %v", err)
	}
	return idx, nil
}

// rpcSnapshotRestore asks the leader to restore a snapshot file that the
// caller has copied to it as a blob.
const rpcSnapshotRestore = "snapshot.restore"

type snapshotRestoreArgs struct {
	Digest string `msgpack:"digest"`
	// Token is the caller's token secret, checked again on the leader.
	Token string `msgpack:"token,omitempty"`
	// Hops is how many times the file was handed on before it arrived: 1
	// from restoreViaLeader. A restore is handed on at most once: the node
	// that receives it restores it as the leader or refuses it, never hands
	// it on again, so a stale view of the leader costs one refused copy
	// rather than a chain of them.
	Hops int `msgpack:"hops"`
}

type snapshotRestoreReply struct {
	Index uint64 `msgpack:"index"`
}

// restoreViaLeader stores the checked upload (tmp, from blobs.ingest) as a
// blob, copies it to the leader and asks the leader to restore it, waiting
// at most snapshotRestoreRPCTimeout for its answer. The blob is removed on
// both sides afterwards (the collector would take it anyway: no version
// references it). A leader that has stepped down refuses it (not_leader,
// 503): the client retries, and the file is not handed on again.
func (a *Agent) restoreViaLeader(ctx context.Context, tmp, digest string) (uint64, error) {
	addr, _ := a.raft.LeaderWithID()
	if addr == "" {
		return 0, structs.Errorf(structs.CodeNoLeader, "no known leader to restore the snapshot on")
	}
	if err := a.blobs.Commit(tmp, digest); err != nil {
		return 0, structs.Errorf(structs.CodeInternal, "snapshot restore: %v", err)
	}
	defer a.blobs.Remove(digest)
	if err := a.xfer.Push(ctx, string(addr), digest); err != nil {
		return 0, structs.Errorf(structs.CodeUnavailable, "snapshot restore: copying the file to the leader %s: %v", addr, err)
	}
	cctx, cancel := context.WithTimeout(ctx, snapshotRestoreRPCTimeout)
	defer cancel()
	args := &snapshotRestoreArgs{Digest: digest, Token: callerToken(ctx), Hops: 1}
	var reply snapshotRestoreReply
	if err := a.trans.Call(cctx, string(addr), rpcSnapshotRestore, args, &reply); err != nil {
		return 0, fromTransport(err)
	}
	return reply.Index, nil
}

// handleSnapshotRestoreRPC is the leader's side of restoreViaLeader. It
// never hands the file on: a node that is not the leader refuses it, and
// drops the copy it was sent.
func (a *Agent) handleSnapshotRestoreRPC(ctx context.Context, dec transport.Decoder) (any, error) {
	var args snapshotRestoreArgs
	if err := dec.Decode(&args); err != nil {
		return nil, structs.Errorf(structs.CodeInvalid, "node: bad snapshot.restore request: %v", err)
	}
	if err := structs.ValidateDigest("digest", args.Digest); err != nil {
		return nil, err
	}
	if a.raft.State() != raft.Leader {
		_ = a.blobs.Remove(args.Digest)
		return nil, structs.Errorf(structs.CodeNotLeader, "node: snapshot restore handed on %d time(s) reached %s, which is not the leader; a restore is handed on at most once: retry", args.Hops, a.cfg.NodeName)
	}
	if a.acl != nil && args.Token != "" {
		id, err := a.acl.Resolve(args.Token)
		if err == nil {
			err = id.Check(structs.KindOperator, "", structs.AccessWrite)
		}
		if err != nil {
			return nil, err
		}
	}
	release, err := a.acquireRestore()
	if err != nil {
		return nil, err
	}
	defer release()
	size, ok := a.blobs.Has(args.Digest)
	if !ok {
		return nil, structs.Errorf(structs.CodeNotFound, "node: snapshot file %.12s is not here", args.Digest)
	}
	defer a.blobs.Remove(args.Digest)
	scratch, err := os.MkdirTemp(a.cfg.DataDir, "restore-")
	if err != nil {
		return nil, structs.Errorf(structs.CodeInternal, "snapshot restore: %v", err)
	}
	defer os.RemoveAll(scratch)
	path := a.blobs.Path(args.Digest)
	if err := checkSnapshotFile(path, filepath.Join(scratch, "check")); err != nil {
		return nil, err
	}
	idx, err := a.restoreLocal(path, size)
	if err != nil {
		return nil, err
	}
	return &snapshotRestoreReply{Index: idx}, nil
}

// validateSnapshot checks every record of the file (raftfsm.ValidateSnapshot:
// Restore alone would take records the API refuses, such as an allocation ID
// that is a path), then loads it into a throwaway FSM in dir.
func validateSnapshot(path, dir string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = raftfsm.ValidateSnapshot(f)
	f.Close()
	if err != nil {
		return err
	}
	cfg := raftfsm.DefaultConfig()
	cfg.Dir = dir
	fsm, err := raftfsm.New(cfg)
	if err != nil {
		return err
	}
	defer fsm.Close()
	if f, err = os.Open(path); err != nil {
		return err
	}
	return fsm.Restore(f) // closes f
}

// snapshotEndpoint: save and restore. A snapshot holds every record, token
// hashes included: both ways are operator writes.
func (a *Agent) snapshotEndpoint() endpoint {
	o := structs.KindOperator
	return endpoint{
		routes: []route{
			{pattern: "GET /v1/snapshot", handler: a.handleSnapshotSave, kind: o, need: needWrite},
			{pattern: "PUT /v1/snapshot", handler: a.handleSnapshotRestore, kind: o, need: needWrite},
		},
		rpcs: map[string]transport.Handler{rpcSnapshotRestore: a.handleSnapshotRestoreRPC},
	}
}
