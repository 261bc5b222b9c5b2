package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
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

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// dirNames lists the names in dir, sorted.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names
}

// storeBlob ingests and commits data, returning its digest.
func storeBlob(t *testing.T, s *blobs.Store, data []byte) string {
	t.Helper()
	tmp, digest, _, err := s.Ingest(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(tmp, digest); err != nil {
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
