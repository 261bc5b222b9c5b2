package blobs

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/kilnml/kiln/cluster-tests/testutil"
)

// TestMain fails the run if a test leaves a goroutine behind (STYLE.md rule 6).
func TestMain(m *testing.M) { testutil.Main(m) }

func newTestStore(t *testing.T) *Store {
	t.Helper()
	s, err := NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// storeBlob ingests and commits data, returning its digest.
func storeBlob(t *testing.T, s *Store, data []byte) string {
	t.Helper()
	digest, err := s.PutBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	return digest
}
