package data

import (
	"errors"
	"sync"
)

// errReaderClosed is returned by inflight.set after Close.
var errReaderClosed = errors.New("reader is closed")

// closer is a client a stream reader holds while a Read runs.
type closer interface {
	comparable
	Close()
}

// inflight holds the client of the Read in progress, so that the reader's
// Close, from another goroutine, can close it and make the Read return.
type inflight[C closer] struct {
	mu     sync.Mutex
	cur    C    // guarded by mu: the client of the Read in progress, or zero
	closed bool // guarded by mu
}

// set makes c the Read's client; after Close it closes c and refuses.
func (f *inflight[C]) set(c C) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		c.Close()
		return errReaderClosed
	}
	f.cur = c
	return nil
}

// release closes the client of a Read that returns, unless Close has taken
// it to close it.
func (f *inflight[C]) release(c C) {
	var zero C
	f.mu.Lock()
	own := f.cur == c
	if own {
		f.cur = zero
	}
	f.mu.Unlock()
	if own {
		c.Close()
	}
}

// close closes the client of a Read in progress, which then returns an
// error; nothing is set after it.
func (f *inflight[C]) close() {
	var zero C
	f.mu.Lock()
	c := f.cur
	f.cur, f.closed = zero, true
	f.mu.Unlock()
	if c != zero {
		c.Close()
	}
}
