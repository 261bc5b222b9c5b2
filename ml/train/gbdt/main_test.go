package gbdt

import (
	"testing"

	"github.com/kilnml/kiln/cluster-tests/testutil"
)

// TestMain fails the run if a test leaves a goroutine behind (STYLE.md rule
// 6): Train's workers must all have exited when it returns.
func TestMain(m *testing.M) { testutil.Main(m) }
