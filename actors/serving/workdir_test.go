package serving

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/kilnml/kiln/raftfsm/structs"
)

func TestReplicaWorkDir_OnlyPlainNames(t *testing.T) {
	base := filepath.Join(t.TempDir(), "replicas")
	id := structs.NewID(time.Now())
	if got, err := replicaWorkDir(base, id); err != nil || got != filepath.Join(base, id) {
		t.Fatalf("replicaWorkDir(%q) = %q, %v", id, got, err)
	}
	for _, bad := range []string{"", ".", "..", "../../x", "a/b", "/abs", `a\b`, "a\x00b", "x/.."} {
		if got, err := replicaWorkDir(base, bad); err == nil {
			t.Errorf("replicaWorkDir(%q) = %q, want an error", bad, got)
		}
	}
}
