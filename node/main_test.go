package node

import (
	"testing"

	"github.com/kilnml/kiln/cluster-tests/testutil"
)

// TestMain fails the run if an agent leaves a goroutine behind after Shutdown
// (STYLE.md rule 6).
func TestMain(m *testing.M) { testutil.Main(m) }
