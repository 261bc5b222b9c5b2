package proc

import (
	"testing"

	"github.com/kilnml/kiln/cluster-tests/testutil"
)

// TestMain fails the run if a test leaves a goroutine behind (STYLE.md rule 6).
func TestMain(m *testing.M) { testutil.Main(m) }
