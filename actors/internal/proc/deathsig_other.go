//go:build unix && !linux

package proc

import "syscall"

// Only Linux has a parent-death signal; elsewhere a child outlives an agent
// that is killed with -9.
func setDeathSignal(*syscall.SysProcAttr) {}
