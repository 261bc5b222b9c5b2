package raftfsm

import (
	"fmt"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// badgerLogger adapts an hclog.Logger to badger.Logger. Messages below min are
// dropped, whatever the level of the logger itself, because Badger reports every
// compaction and flush at info.
type badgerLogger struct {
	log hclog.Logger
	min hclog.Level
}

func (b badgerLogger) Errorf(format string, args ...interface{}) {
	b.emit(hclog.Error, format, args)
}

func (b badgerLogger) Warningf(format string, args ...interface{}) {
	b.emit(hclog.Warn, format, args)
}

func (b badgerLogger) Infof(format string, args ...interface{}) {
	b.emit(hclog.Info, format, args)
}

func (b badgerLogger) Debugf(format string, args ...interface{}) {
	b.emit(hclog.Debug, format, args)
}

func (b badgerLogger) emit(level hclog.Level, format string, args []interface{}) {
	if level < b.min {
		return
	}
	b.log.Log(level, strings.TrimSpace(fmt.Sprintf(format, args...)))
}
