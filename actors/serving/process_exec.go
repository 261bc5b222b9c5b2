package serving

import (
	"errors"
	"fmt"

	"github.com/kilnml/kiln/actors/internal/proc"
	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// ExecPolicy is the node's own exec {} config: which commands a process
// replica may run here, as whom, and which otherwise refused variables (PATH,
// LD_*) its environment may set. The zero value runs nothing. It is
// proc.Policy, which training's jobs obey too, under the name the node
// configures it by.
type ExecPolicy = proc.Policy

// kilnEnv are the variables Kiln sets for every process replica; a version's
// env cannot override them. They are dropped from it silently rather than
// refused, as they always were: versions already in the registry may set
// them.
var kilnEnv = []string{"KILN_PORT", "KILN_MODEL_PATH", "KILN_MODEL_NAME", "CUDA_VISIBLE_DEVICES"}

// checkExec resolves spec's command as run in dir and checks it and spec's
// environment against p. It returns the path to execute. A refusal wraps
// ErrExecRefused; a command that cannot run anywhere wraps ml.ErrBadModel.
func checkExec(p ExecPolicy, model string, spec structs.ProcessSpec, dir string) (string, error) {
	path, err := p.Check(fmt.Sprintf("model %q", model), spec.Command, spec.Env, dir, nil)
	if errors.Is(err, proc.ErrBadCommand) {
		return "", fmt.Errorf("%w: serving: %w", ml.ErrBadModel, err)
	}
	return path, err
}
