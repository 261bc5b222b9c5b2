package node

import (
	"time"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// blobGCLoop collects blobs that no model version references (DESIGN.md §3).
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
		a.xfer.dropStale()
		a.blobs.staleTemps(staleTransferAge)
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

// collectBlobs removes stored blobs that no version references and that are
// older than the grace period, and returns how many it removed.
func (a *Agent) collectBlobs(now time.Time) (int, error) {
	referenced := map[string]bool{}
	txn := a.fsm.ReadTxn()
	err := txn.AllVersions(func(v *structs.ModelVersion) { referenced[v.Digest] = true })
	txn.Discard()
	if err != nil {
		return 0, err
	}
	stored, err := a.blobs.list()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, b := range stored {
		if referenced[b.digest] || now.Sub(b.modTime) < a.cfg.BlobGCGrace {
			continue
		}
		if err := a.blobs.remove(b.digest); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
