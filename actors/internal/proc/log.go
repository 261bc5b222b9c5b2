package proc

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// tailWindow bounds how much of the end of a log Tail reads.
const tailWindow = 64 << 10

// notePrefix starts each line that Kiln writes into a log (Note).
const notePrefix = "[kiln] "

// Log is a child's stdout and stderr, appended to a file that is rotated to
// <path>.1 when it would grow past its cap, so a chatty process keeps at most
// about twice the cap on disk. It is an io.Writer for exec.Cmd's Stdout and
// Stderr; give both the same Log, so that exec copies them on one goroutine
// and their lines interleave as written.
type Log struct {
	path string
	max  int64

	mu sync.Mutex
	// mu guards f and size, and the files at path and path.1 against a
	// rotation while Tail reads them.
	f    *os.File // nil once closed, or after a failed rotation
	size int64
}

// OpenLog opens the log at path for appending, creating it if missing. The
// file is rotated once a write would take it past max bytes; max <= 0 means
// no cap.
func OpenLog(path string, max int64) (*Log, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("proc: log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("proc: log: %w", err)
	}
	return &Log{path: path, max: max, f: f, size: st.Size()}, nil
}

// Path is the file the log writes to.
func (l *Log) Path() string { return l.path }

// Write never fails: an error would stop exec's copying, and the child would
// then die of a broken pipe on its next line of output. Output that cannot
// be written is dropped.
func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil && l.max > 0 && l.size > 0 && l.size+int64(len(p)) > l.max {
		l.f.Close()
		l.f = nil
		if err := os.Rename(l.path, l.path+".1"); err == nil || errors.Is(err, os.ErrNotExist) {
			l.f, _ = os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		}
		l.size = 0
	}
	if l.f != nil {
		n, _ := l.f.Write(p)
		l.size += int64(n)
	}
	return len(p), nil
}

// Note writes a line of Kiln's own into the log, prefixed "[kiln]" and the
// time, so that a user reading the output sees the child's starts, exits
// and stops in place.
func (l *Log) Note(format string, args ...any) {
	fmt.Fprintf(l, "%s%s %s\n", notePrefix, time.Now().UTC().Format(time.RFC3339), fmt.Sprintf(format, args...))
}

// Tail returns up to the last n lines of the child's output, oldest first:
// the reason a process failed is usually there. Blank lines and Kiln's own
// notes are left out, and so is anything before the last 64 KiB of the
// file (and of the rotated file before it, when the current one is short).
func (l *Log) Tail(n int) []string {
	if n <= 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lines, whole := tailLines(l.path, n)
	if len(lines) < n && whole {
		older, _ := tailLines(l.path+".1", n-len(lines))
		lines = append(older, lines...)
	}
	return lines
}

// tailLines returns up to the last n output lines of the file at path, and
// whether it read the file from its start (true also when there is no file):
// only then may older lines be in the rotated file.
func tailLines(path string, n int) ([]string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return nil, errors.Is(err, os.ErrNotExist)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, false
	}
	off := max(st.Size()-tailWindow, 0)
	buf, err := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	if err != nil {
		return nil, false
	}
	text := string(buf)
	if off > 0 {
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			text = text[i+1:] // drop the cut first line
		}
	}
	var lines []string
	for _, line := range strings.Split(text, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, notePrefix) {
			lines = append(lines, line)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines, off == 0
}

// Close closes the file; later writes are dropped. It is idempotent.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
