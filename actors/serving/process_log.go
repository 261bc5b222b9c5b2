package serving

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// processLog is the server's stdout and stderr, appended to a file that is
// rotated to <path>.1 when it would grow past max, so a chatty server keeps
// at most twice max on disk.
type processLog struct {
	path string
	max  int64

	mu sync.Mutex
	// mu guards f and size.
	f    *os.File // nil once closed, or after a failed rotation
	size int64
}

func openProcessLog(path string, max int64) (*processLog, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("serving: process log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("serving: process log: %w", err)
	}
	return &processLog{path: path, max: max, f: f, size: st.Size()}, nil
}

// Write never fails: an error would stop exec's copying, and the server
// would then die of a broken pipe on its next log line. Output that cannot
// be written is dropped.
func (l *processLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil && l.size > 0 && l.size+int64(len(p)) > l.max {
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

// note writes a line of Kiln's own into the log, so that a user reading
// the server's output sees its exits and restarts in place.
func (l *processLog) note(format string, args ...any) {
	fmt.Fprintf(l, "[kiln] %s %s\n", time.Now().UTC().Format(time.RFC3339), fmt.Sprintf(format, args...))
}

// tailNote is the end of the log as a suffix for an error message: the
// reason a server would not start is usually in its last lines.
func (l *processLog) tailNote() string {
	f, err := os.Open(l.path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(st.Size()-processLogTail, 0)
	buf := make([]byte, st.Size()-off)
	n, _ := f.ReadAt(buf, off)
	text := string(buf[:n])
	if off > 0 {
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			text = text[i+1:] // drop the cut first line
		}
	}
	var lines []string
	for _, line := range strings.Split(text, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "[kiln] ") {
			lines = append(lines, line)
		}
	}
	if len(lines) == 0 {
		return fmt.Sprintf(" (output in %s)", l.path)
	}
	return fmt.Sprintf("; last output: %s (all of it in %s)", strings.Join(lines, " | "), l.path)
}

// Close closes the file; later writes are dropped.
func (l *processLog) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
}
