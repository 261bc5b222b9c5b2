//go:build !linux

package clustertest

import "os/exec"

// Only Linux can tie a child's life to its parent; elsewhere the cleanups and
// TestMain's leftover check are all there is.

func startSpawner() (stop func()) { return func() {} }

func startProcess(cmd *exec.Cmd) error { return cmd.Start() }
