package proc

import (
	"fmt"
	"maps"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// Policy is the node's own exec {} config: which commands may run here, as
// whom, and which otherwise refused variables their environment may set.
// The zero value runs nothing. Placement and scheduling read the same
// Enabled and AllowedCommands from the node's registry record; the node
// checks them again with Check, against its live config, so that a registry
// write or a restored snapshot cannot get a command run where the agent's
// config forbids it.
type Policy struct {
	// NodeExec holds Enabled and AllowedCommands (path.Match globs over the
	// command's first word, as written and as resolved; "*" allows any).
	structs.NodeExec
	// User, when set, is the account a command runs as (unix only; the
	// agent must be root unless it is that user itself).
	User string
	// AllowedEnv lists the variables a command's env may set that are
	// refused otherwise: PATH and LD_* (LD_PRELOAD, LD_LIBRARY_PATH...).
	AllowedEnv []string
}

// refusedEnv reports whether a command's env may set k only where
// exec.allowed_env lists it: these change which program a name runs or what
// code a program loads, which is the agent's config to decide.
func refusedEnv(k string) bool { return k == "PATH" || strings.HasPrefix(k, "LD_") }

// Check resolves command as run in dir and checks it and env against the
// policy. It returns the path to execute: the child's environment has no
// PATH unless env sets one, so the agent resolves the program itself.
//
// what names the thing that runs, for the errors (`model "iris"`,
// `job "01j..."`). reserved are the variables Kiln sets for the command,
// which env cannot override; a caller that drops them silently instead
// passes nil.
//
// A refusal by the policy wraps ErrExecRefused; an empty command, one not
// found on the agent's PATH, or env setting a reserved variable wraps
// ErrBadCommand. Refusals come first, so that a caller that only acts on
// ErrExecRefused sees it whatever else is wrong.
func (p Policy) Check(what string, command []string, env map[string]string, dir string, reserved []string) (string, error) {
	if len(command) == 0 || command[0] == "" {
		return "", fmt.Errorf("%w: %s has no command", ErrBadCommand, what)
	}
	name := command[0]
	if !p.Enabled {
		return "", fmt.Errorf("%w: %s: command %q cannot run here: exec.enabled is false in this node's agent config",
			ErrExecRefused, what, name)
	}
	path := resolveCommand(name, dir)
	if !p.Allows(name, path) {
		resolved := ""
		if path != "" && path != name {
			resolved = fmt.Sprintf(" (%s)", path)
		}
		return "", fmt.Errorf("%w: %s: command %q%s matches none of exec.allowed_commands %q in this node's agent config",
			ErrExecRefused, what, name, resolved, p.AllowedCommands)
	}
	keys := slices.Sorted(maps.Keys(env))
	for _, k := range keys {
		if refusedEnv(k) && !slices.Contains(p.AllowedEnv, k) {
			return "", fmt.Errorf("%w: %s: its env sets %s, which this node allows only when exec.allowed_env in its agent config lists it",
				ErrExecRefused, what, k)
		}
	}
	for _, k := range keys {
		if slices.Contains(reserved, k) {
			return "", fmt.Errorf("%w: %s: its env sets %s, which Kiln sets itself", ErrBadCommand, what, k)
		}
	}
	if path == "" {
		return "", fmt.Errorf("%w: %s: command %q is not found on this node's PATH", ErrBadCommand, what, name)
	}
	return path, nil
}

// resolveCommand returns the file that running name in dir executes: an
// absolute path as it is, a relative path with a separator under dir, and a
// bare name looked up on the agent's PATH (exec.LookPath). "" when a bare
// name is not found.
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
