package serving

import (
	"fmt"
	"maps"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// ExecPolicy is the node's own exec {} config: which commands a process
// replica may run here, as whom, and which otherwise refused variables its
// environment may set. The zero value runs nothing. Placement reads the same
// Enabled and AllowedCommands from the node's registry record; the node checks
// them again here, against its live config, so that a registry write or a
// restored snapshot cannot get a command run where the agent's config forbids
// it.
type ExecPolicy struct {
	// NodeExec holds Enabled and AllowedCommands (path.Match globs over the
	// command's first word, as written and as resolved; "*" allows any).
	structs.NodeExec
	// User, when set, is the account the server runs as (unix only; the
	// agent must be root unless it is that user itself).
	User string
	// AllowedEnv lists the variables a version may set that are refused
	// otherwise: PATH and LD_* (LD_PRELOAD, LD_LIBRARY_PATH...).
	AllowedEnv []string
}

// refusedEnv reports whether a version's env may set k only where
// exec.allowed_env lists it: these change which program a name runs or what
// code a program loads, which is the agent's config to decide.
func refusedEnv(k string) bool { return k == "PATH" || strings.HasPrefix(k, "LD_") }

// kilnEnv are the variables Kiln sets for every process replica; a version's
// env cannot override them.
var kilnEnv = []string{"KILN_PORT", "KILN_MODEL_PATH", "KILN_MODEL_NAME", "CUDA_VISIBLE_DEVICES"}

// resolveCommand returns the file that running name in dir executes: an
// absolute path as it is, a relative path with a separator under dir, and a
// bare name looked up on the agent's PATH (exec.LookPath). "" when a bare
// name is not found: the child's own environment has no PATH unless its
// version sets one, so the agent resolves the program before starting it.
func resolveCommand(name, dir string) string {
	switch {
	case filepath.IsAbs(name):
		return filepath.Clean(name)
	case strings.ContainsRune(name, '/') || strings.ContainsRune(name, filepath.Separator):
		p, err := filepath.Abs(filepath.Join(dir, name))
		if err != nil {
			return ""
		}
		return p
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "" // not found, or found only through a relative PATH entry (exec.ErrDot)
	}
	if p, err = filepath.Abs(p); err != nil {
		return ""
	}
	return p
}

// check resolves spec's command as run in dir and checks it and spec's
// environment against the policy. It returns the path to execute.
func (p ExecPolicy) check(model string, spec structs.ProcessSpec, dir string) (string, error) {
	if len(spec.Command) == 0 || spec.Command[0] == "" {
		return "", fmt.Errorf("%w: serving: process for model %q has no command", ml.ErrBadModel, model)
	}
	name := spec.Command[0]
	if !p.Enabled {
		return "", fmt.Errorf("%w: model %q: command %q cannot run here: exec.enabled is false in this node's agent config",
			ErrExecRefused, model, name)
	}
	path := resolveCommand(name, dir)
	if !p.Allows(name, path) {
		resolved := ""
		if path != "" && path != name {
			resolved = fmt.Sprintf(" (%s)", path)
		}
		return "", fmt.Errorf("%w: model %q: command %q%s matches none of exec.allowed_commands %q in this node's agent config",
			ErrExecRefused, model, name, resolved, p.AllowedCommands)
	}
	for _, k := range slices.Sorted(maps.Keys(spec.Env)) {
		if refusedEnv(k) && !slices.Contains(p.AllowedEnv, k) {
			return "", fmt.Errorf("%w: model %q: its env sets %s, which this node allows only when exec.allowed_env in its agent config lists it",
				ErrExecRefused, model, k)
		}
	}
	if path == "" {
		return "", fmt.Errorf("%w: serving: process for model %q: command %q is not found on this node's PATH", ml.ErrBadModel, model, name)
	}
	return path, nil
}
