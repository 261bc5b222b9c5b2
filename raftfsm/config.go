package raftfsm

import (
	"errors"

	"github.com/hashicorp/go-hclog"
)

// Config configures an FSM.
type Config struct {
	// Dir is the directory the FSM owns (for example data_dir/fsm). It holds a
	// CURRENT file and the Badger directories it names; nothing else may write there.
	Dir string

	// Logger receives the FSM's logs; nil discards them.
	Logger hclog.Logger

	// BadgerLogLevel is the least severe Badger message that is passed on to Logger.
	// Badger is chatty at info; the zero value means hclog.Warn.
	BadgerLogLevel hclog.Level

	// InMemory keeps the state in memory only (tests). Dir must then be empty.
	InMemory bool
}

// DefaultConfig returns a Config with the defaults filled in. Dir is left empty:
// the caller must set it (or InMemory).
func DefaultConfig() Config {
	return Config{BadgerLogLevel: hclog.Warn}
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	switch {
	case c.InMemory && c.Dir != "":
		return errors.New("raftfsm: config: dir must be empty when in_memory is set")
	case !c.InMemory && c.Dir == "":
		return errors.New("raftfsm: config: dir is required")
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	if c.BadgerLogLevel == hclog.NoLevel {
		c.BadgerLogLevel = hclog.Warn
	}
	return c
}
