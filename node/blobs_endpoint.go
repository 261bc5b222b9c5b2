package node

import (
	"time"

	"github.com/kilnml/kiln/node/internal/blobs"
	"github.com/kilnml/kiln/raftfsm"
)

// blobsEndpoint serves the blob transfer RPCs between nodes.
func (a *Agent) blobsEndpoint() endpoint {
	rpcs := a.xfer.Handlers()
	rpcs[rpcBlobFetch] = a.handleBlobFetchRPC
	return endpoint{rpcs: rpcs}
}

// newBlobs opens the node's blob store and its transfers.
func (a *Agent) newBlobs() (err error) {
	if a.blobs, err = blobs.NewStore(a.cfg.DataDir); err != nil {
		return err
	}
	a.xfer = blobs.NewTransfers(blobs.Config{
		Store: a.blobs, Caller: a.trans, Self: a.id, Resolve: a.resolveNode,
		Alive: func() []blobs.Member {
			alive := a.gossip.alive()
			ms := make([]blobs.Member, len(alive))
			for i, m := range alive {
				ms[i] = blobs.Member{ID: m.Meta.ID, Addr: m.Meta.RPCAddr}
			}
			return ms
		},
	})
	return nil
}

// blobGCLoop collects blobs that no record references (DESIGN.md §3).
// It reads the local registry: a version this node has not applied yet may
// reference a blob it just received, which is why a blob younger than
// BlobGCGrace (its time is refreshed on every upload and transfer) is kept
// whatever the registry says.
func (a *Agent) blobGCLoop() {
	tick := time.NewTicker(a.cfg.BlobGCInterval)
	defer tick.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-tick.C:
		}
		a.xfer.DropStale()
		a.blobs.RemoveStaleTemps(blobs.StaleTransferAge)
		if addr, _ := a.raft.LeaderWithID(); addr == "" {
			continue // cut off: the local registry may be far behind
		}
		if n, err := a.collectBlobs(time.Now()); err != nil {
			a.logger.Warn("blob collection failed", "error", err)
		} else if n > 0 {
			a.logger.Info("collected unreferenced blobs", "count", n)
		}
	}
}

// collectBlobs removes stored blobs that no record references and that are
// older than the grace period, and returns how many it removed.
func (a *Agent) collectBlobs(now time.Time) (int, error) {
	referenced := map[string]bool{}
	txn := a.fsm.ReadTxn()
	err := txn.Artifacts(func(ref *raftfsm.Artifact) { referenced[ref.Digest] = true })
	txn.Discard()
	if err != nil {
		return 0, err
	}
	return a.blobs.Collect(func(d string) bool { return referenced[d] }, a.cfg.BlobGCGrace, now)
}
