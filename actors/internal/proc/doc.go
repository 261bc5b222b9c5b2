// Package proc runs a user's command on this node, for the two kinds of work
// that do so: serving's process replicas, long-running servers that
// actors/serving supervises and restarts, and training's jobs, one-shot
// commands (python3 train.py) that run to an exit code.
//
// Both face the same concerns, and this package holds the one copy of each.
// The node's exec {} config (Policy) decides what may run at all: Check
// resolves a command as the node will run it and refuses it unless exec is
// enabled, the command matches exec.allowed_commands, and its environment
// sets PATH or LD_* only where exec.allowed_env lists them; these change
// which program a name runs or what code it loads, which is the agent's
// config to decide, not the registry's. A child gets the environment its
// caller built and nothing of the agent's: the agent's tokens, proxies and
// paths are not the user's business.
//
// Start runs a child in a process group of its own, so that stopping it
// reaches what it forks (gunicorn's workers, a DataLoader's processes) and
// never the agent; as exec.user when set; and on Linux with a parent-death
// signal, so that a child dies with an agent killed by -9, which cannot
// clean up. Run builds on Start for one-shot commands: it waits for the exit,
// and when its context ends it sends SIGTERM to the group, then SIGKILL
// after a grace period.
//
// A child's stdout and stderr go to a Log, a file that rotates once it would
// pass its cap, so a chatty process keeps a bounded amount on disk; Kiln
// writes its own lines (starts, exits, stops) into it, so that a user
// reading the output sees them in place, and Tail gives the last lines for
// an error message.
//
// The package is internal to actors: node configures Policy through
// serving's alias of it (serving.ExecPolicy).
package proc
