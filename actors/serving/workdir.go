package serving

import (
	"fmt"
	"path/filepath"
	"strings"
)

// replicaWorkDir is the work directory of allocation id under base. The ID
// comes from the registry, which a restored snapshot fills too: one that is
// not a single plain path element ("..", a separator, a NUL) is refused
// rather than joined, so a replica never runs or writes outside base.
func replicaWorkDir(base, id string) (string, error) {
	if !filepath.IsLocal(id) || filepath.Base(id) != id || strings.ContainsAny(id, `/\`+"\x00") || id == "." {
		return "", fmt.Errorf("serving: allocation id %.40q is not a plain directory name", id)
	}
	return filepath.Join(base, id), nil
}
