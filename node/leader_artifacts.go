package node

import (
	"context"
	"slices"
	"sort"
	"time"

	"github.com/kilnml/kiln/raftfsm"
	"github.com/kilnml/kiln/raftfsm/structs"
	"github.com/kilnml/kiln/transport"
)

// Model and dataset files keep their copies (DESIGN.md §3). An upload is
// acknowledged once min(artifact_replicas, alive nodes) hold its blob; the
// leader keeps it so. When a holder has been gone longer than dead_node_reap, or left,
// the leader asks alive nodes that lack the blob to fetch it until the count
// is met again, and records the new holders through Raft (each record's HoldersCommand).
// A holder that is gone is struck from the record only once enough others
// hold the blob, so a record never loses its last known copy.

const (
	rpcBlobFetch = "blob.fetch"
	// artifactCheckInterval is how often the leader looks at holder counts
	// when nothing else wakes it.
	artifactCheckInterval = 5 * time.Second
	// blobFetchTimeout bounds one node's fetch of one blob for the leader.
	blobFetchTimeout = 10 * time.Minute
)

type blobFetchArgs struct {
	Digest  string   `msgpack:"digest"`
	Size    int64    `msgpack:"size"`
	Holders []string `msgpack:"holders"`
}

// handleBlobFetchRPC makes a blob local on this node, fetching it from its
// holders: the leader's way of adding a copy.
func (a *Agent) handleBlobFetchRPC(ctx context.Context, dec transport.Decoder) (any, error) {
	var args blobFetchArgs
	if err := dec.Decode(&args); err != nil {
		return nil, structs.Errorf(structs.CodeInvalid, "node: bad blob.fetch request: %v", err)
	}
	return struct{}{}, a.fetchBlob(ctx, &args)
}

// fetchBlob makes a blob local, and checks it has the size the version
// records.
func (a *Agent) fetchBlob(ctx context.Context, args *blobFetchArgs) error {
	if _, err := a.xfer.Ensure(ctx, args.Digest, args.Holders); err != nil {
		return err
	}
	if size, _ := a.blobs.Has(args.Digest); args.Size > 0 && size != args.Size {
		_ = a.blobs.Remove(args.Digest)
		return structs.Errorf(structs.CodeInvalid, "node: blob %.12s is %d bytes, the version records %d", args.Digest, size, args.Size)
	}
	return nil
}

// artifactsLoop is the leader task that restores copies of model files.
func (a *Agent) artifactsLoop(ctx context.Context) {
	t := &artifactKeeper{a: a, missingSince: map[string]time.Time{}, orphaned: map[string]bool{}}
	tick := time.NewTicker(artifactCheckInterval)
	defer tick.Stop()
	for {
		if err := t.check(ctx); err != nil && ctx.Err() == nil {
			a.logger.Warn("artifact copies check failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// artifactKeeper lives for one term; like the membership reconciler's, its
// timers restart with a new leader, which can only delay a copy.
type artifactKeeper struct {
	a            *Agent
	missingSince map[string]time.Time // node ID -> first seen not alive this term
	// orphaned holds the blobs found with no live holder this term, each
	// logged once: nothing can copy them until a holder comes back.
	orphaned map[string]bool
}

// artifact is one blob as the registry references it.
type artifact struct {
	digest  string
	size    int64
	holders []string            // union over the records
	refs    []*raftfsm.Artifact // every record that references it
}

func (t *artifactKeeper) check(ctx context.Context) error {
	a := t.a
	arts, err := t.artifacts()
	if err != nil {
		return err
	}
	alive := map[string]bool{}
	var aliveIDs []string
	for _, m := range a.gossip.alive() {
		if !m.Meta.Leaving {
			alive[m.Meta.ID] = true
			aliveIDs = append(aliveIDs, m.Meta.ID)
		}
	}
	sort.Strings(aliveIDs)
	now := time.Now()
	for id := range t.missingSince {
		if alive[id] {
			delete(t.missingSince, id)
		}
	}
	want := min(a.cfg.ArtifactReplicas, max(len(aliveIDs), 1))
	for _, art := range arts {
		var live, lost []string
		for _, h := range art.holders {
			if alive[h] {
				live = append(live, h)
			} else if t.lost(h, now) {
				lost = append(lost, h)
			}
		}
		if len(lost) == 0 || len(live) >= want {
			if len(lost) > 0 {
				t.record(ctx, art, withoutAll(art.holders, lost))
			}
			continue
		}
		if len(live) == 0 {
			if !t.orphaned[art.digest] {
				t.orphaned[art.digest] = true
				a.logger.Error("no live node holds an artifact; it cannot be copied until one of its holders returns",
					"digest", art.digest, "holders", art.holders, "record", art.refs[0].Owner)
			}
			continue
		}
		delete(t.orphaned, art.digest)
		added := t.copyTo(ctx, art, live, aliveIDs, want-len(live))
		if len(added) == 0 {
			continue
		}
		holders := append(withoutAll(art.holders, lost), added...)
		if len(live)+len(added) < want {
			holders = append(slices.Clone(art.holders), added...) // keep the lost ones on record for now
		}
		t.record(ctx, art, holders)
	}
	return nil
}

// lost reports whether a holder that is not alive counts as gone: it left,
// or it has been missing longer than dead_node_reap.
func (t *artifactKeeper) lost(id string, now time.Time) bool {
	if m, ok := t.a.gossip.goneMember(id); ok && m.Status == "left" {
		return true
	}
	since, ok := t.missingSince[id]
	if !ok {
		t.missingSince[id] = now
		return false
	}
	return now.Sub(since) >= t.a.cfg.DeadNodeReap
}

// copyTo asks up to n alive nodes that do not hold the blob to fetch it, and
// returns those that did.
func (t *artifactKeeper) copyTo(ctx context.Context, art *artifact, live, aliveIDs []string, n int) []string {
	a := t.a
	var added []string
	for _, id := range aliveIDs {
		if len(added) == n {
			break
		}
		if slices.Contains(art.holders, id) {
			continue
		}
		args := &blobFetchArgs{Digest: art.digest, Size: art.size, Holders: live}
		var err error
		if id == a.id {
			err = a.fetchBlob(ctx, args)
		} else if m, ok := a.gossip.aliveMember(id); ok {
			cctx, cancel := context.WithTimeout(ctx, blobFetchTimeout)
			err = a.trans.Call(cctx, m.Meta.RPCAddr, rpcBlobFetch, args, nil)
			cancel()
		} else {
			continue
		}
		if err != nil {
			a.logger.Warn("artifact copy failed", "digest", art.digest, "node", id, "error", err)
			continue
		}
		a.logger.Info("artifact copied to restore its holder count", "digest", art.digest, "node", id)
		added = append(added, id)
	}
	return added
}

// record writes the new holders of every record of art.
func (t *artifactKeeper) record(ctx context.Context, art *artifact, holders []string) {
	for _, ref := range art.refs {
		if slices.Equal(ref.Holders, holders) {
			continue
		}
		typ, cmd := ref.HoldersCommand(holders)
		if err := t.a.proposeCmd(ctx, typ, cmd); err != nil && ctx.Err() == nil {
			t.a.logger.Warn("recording artifact holders failed", "record", ref.Owner, "error", err)
		}
	}
}

// artifacts groups the registry's references by blob.
func (t *artifactKeeper) artifacts() ([]*artifact, error) {
	byDigest := map[string]*artifact{}
	var out []*artifact
	txn := t.a.fsm.ReadTxn()
	defer txn.Discard()
	err := txn.Artifacts(func(ref *raftfsm.Artifact) {
		art := byDigest[ref.Digest]
		if art == nil {
			art = &artifact{digest: ref.Digest, size: ref.Size}
			byDigest[ref.Digest] = art
			out = append(out, art)
		}
		art.refs = append(art.refs, ref)
		for _, h := range ref.Holders {
			if !slices.Contains(art.holders, h) {
				art.holders = append(art.holders, h)
			}
		}
	})
	return out, err
}

func withoutAll(s, drop []string) []string {
	return slices.DeleteFunc(slices.Clone(s), func(x string) bool { return slices.Contains(drop, x) })
}
