package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kilnml/kiln/cluster-tests/testutil"
	"github.com/kilnml/kiln/node/internal/blobs"
	"github.com/kilnml/kiln/raftfsm/structs"
	"github.com/kilnml/kiln/transport"
)

// Helpers of the tests that move blobs between agents (the transfers
// themselves are tested in node/internal/blobs).

// testPair starts two agents in one cluster: a bootstraps, b joins it. Blob
// transfers need gossip to find holders; they do not need b to be a voter.
func testPair(t *testing.T) (a, b *Agent) {
	t.Helper()
	a = testNode(t)
	b = testNode(t, func(c *Config) { c.RetryJoin = []string{a.cfg.BindAddr}; c.BootstrapExpect = 0 })
	testutil.Until(t, 15*time.Second, "both agents to see each other alive", func() bool {
		return len(a.gossip.alive()) == 2 && len(b.gossip.alive()) == 2
	})
	// Once the leader adds b, both gossip their new state and wait up to 5 s
	// for the broadcast; a Shutdown meanwhile waits for it. Let it finish
	// first so the test ends promptly.
	testutil.Until(t, 20*time.Second, "both agents to gossip that they have Raft state", func() bool {
		return hasStateGossiped(a) && hasStateGossiped(b) && testutil.GoroutinesIn("node.(*gossip).setHasState(") == 0
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

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// storeBlob ingests and commits data, returning its digest.
func storeBlob(t *testing.T, s *blobs.Store, data []byte) string {
	t.Helper()
	digest, err := s.PutBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	return digest
}

// blobDir is where agent a stores complete blobs.
func blobDir(a *Agent) string { return filepath.Join(a.cfg.DataDir, "blobs", "sha256") }

// remoteCode is the error code of an RPC's failure.
func remoteCode(err error) string {
	var re *transport.RemoteError
	if errors.As(err, &re) {
		return re.Code
	}
	return structs.ErrorCode(err)
}
