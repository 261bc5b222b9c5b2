package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// The audit log (acl { audit_file }) holds one JSON line per write and per
// denied request: who (the token's accessor ID, never its secret), what, and
// the outcome. Requests hand records to a queue and go on; one goroutine
// writes them, so a slow disk delays requests by at most auditEnqueueWait.
const (
	// auditKeep is how many rotated files are kept: path.1 (newest) to path.5.
	auditKeep = 5
	// auditQueueLen is how many records may wait for the writer.
	auditQueueLen = 4096
	// auditEnqueueWait is how long a request waits for room in a full queue
	// before its record is dropped (and counted, and the drop logged).
	auditEnqueueWait = 100 * time.Millisecond
	// auditBatchBytes bounds the lines the writer gathers into one write.
	auditBatchBytes = 256 << 10
	// auditErrorInterval spaces out the writer's error logs: a full disk
	// fails every write, and the log should not repeat it for each.
	auditErrorInterval = 10 * time.Second
)

// auditRecord is one line of the audit log. It has no field for a token's
// secret, so no caller can put one there; Path is the URL path, without the
// query string.
type auditRecord struct {
	Time       time.Time `json:"time"`
	Node       string    `json:"node"`
	AccessorID string    `json:"accessor_id"`
	Method     string    `json:"method"`
	Path       string    `json:"path"`
	Status     int       `json:"status"`
	RemoteAddr string    `json:"remote_addr"`
}

// auditLog appends auditRecords to a file as JSON lines, rotating it by size.
// Lines are written whole, in the order record queued them; a file on disk
// never ends in a part of a line, even after a failed write.
type auditLog struct {
	path     string
	maxBytes int64
	log      hclog.Logger

	lines   chan []byte   // encoded lines waiting for the writer
	closing chan struct{} // closed by Close
	done    chan struct{} // closed when the writer has finished
	once    sync.Once
	dropped atomic.Int64 // records record could not queue, not yet logged

	// The writer goroutine alone uses the fields below (Close after it ends).
	f        *os.File // nil after a failed rotation, until a reopen succeeds
	size     int64    // bytes in f, all of them whole lines
	closeErr error    // the first error closing a file
	lastLog  time.Time
	muted    int // errors not logged since lastLog
}

// newAuditLog opens path for append (creating it 0600, and its directory
// 0700) and starts the writer; Close stops it.
func newAuditLog(path string, maxBytes int64, logger hclog.Logger) (*auditLog, error) {
	if maxBytes <= 0 {
		return nil, fmt.Errorf("node: audit log: max bytes %d is not positive", maxBytes)
	}
	l := &auditLog{
		path:     path,
		maxBytes: maxBytes,
		log:      logger.Named("audit"),
		lines:    make(chan []byte, auditQueueLen),
		closing:  make(chan struct{}),
		done:     make(chan struct{}),
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("node: audit log: %w", err)
	}
	if err := l.open(); err != nil {
		return nil, err
	}
	go l.run()
	return l, nil
}

// record queues r; its Time is set to now when zero, and written in UTC. It
// never waits more than auditEnqueueWait; a record that finds no room by then
// is dropped, and the writer logs how many were. Records made after Close are
// dropped.
func (l *auditLog) record(r auditRecord) {
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	r.Time = r.Time.UTC()
	line, err := json.Marshal(&r)
	if err != nil { // cannot happen: strings, an int and a time in range
		l.dropped.Add(1)
		return
	}
	line = append(line, '\n')
	select {
	case l.lines <- line:
		return
	case <-l.closing:
		return
	default:
	}
	t := time.NewTimer(auditEnqueueWait)
	defer t.Stop()
	select {
	case l.lines <- line:
	case <-l.closing:
	case <-t.C:
		l.dropped.Add(1)
	}
}

// Close writes the records already queued, stops the writer and closes the
// file. It is idempotent.
func (l *auditLog) Close() error {
	l.once.Do(func() { close(l.closing) })
	<-l.done
	return l.closeErr
}

// run is the writer goroutine.
func (l *auditLog) run() {
	defer close(l.done)
	defer func() {
		if l.f != nil {
			l.closeFile()
		}
	}()
	batch := make([]byte, 0, 64<<10)
	for {
		var line []byte
		select {
		case line = <-l.lines:
		case <-l.closing:
			// Close: write what is queued, then stop.
			for {
				select {
				case line := <-l.lines:
					batch = l.add(batch, line)
				default:
					l.flush(batch)
					l.reportDropped()
					return
				}
			}
		}
		batch = l.add(batch, line)
		// Gather what else is queued into the same write.
	gather:
		for len(batch) < auditBatchBytes {
			select {
			case line := <-l.lines:
				batch = l.add(batch, line)
			default:
				break gather
			}
		}
		batch = l.flush(batch)
		l.reportDropped()
	}
}

// add appends line to batch, first writing batch and rotating the file if the
// line would take it past maxBytes. A line longer than maxBytes gets a file
// of its own.
func (l *auditLog) add(batch, line []byte) []byte {
	if pending := l.size + int64(len(batch)); pending > 0 && pending+int64(len(line)) > l.maxBytes {
		batch = l.flush(batch)
		l.rotate()
	}
	return append(batch, line...)
}

// flush writes batch (whole lines) and returns it emptied. On a failed or
// short write the file is cut back to its last whole line and the batch is
// lost; the error is logged.
func (l *auditLog) flush(batch []byte) []byte {
	if len(batch) == 0 {
		return batch
	}
	if l.f == nil {
		// The last rotation could not reopen the file; try again.
		if err := l.open(); err != nil {
			l.logError("audit log is not open; records lost", err, "lost_bytes", len(batch))
			return batch[:0]
		}
	}
	n, err := l.f.Write(batch)
	if err == nil {
		l.size += int64(n)
		return batch[:0]
	}
	if n > 0 {
		if terr := l.f.Truncate(l.size); terr != nil {
			err = errors.Join(err, fmt.Errorf("cutting back the partial line: %w", terr))
		}
	}
	l.logError("writing the audit log failed; records lost", err, "lost_bytes", len(batch))
	return batch[:0]
}

// rotate renames path.4 to path.5 ... path to path.1, and opens a new path.
// The oldest file, path.5, is replaced.
func (l *auditLog) rotate() {
	if l.f != nil {
		l.closeFile()
		l.f = nil
	}
	for i := auditKeep - 1; i >= 0; i-- {
		from := l.path
		if i > 0 {
			from = fmt.Sprintf("%s.%d", l.path, i)
		}
		to := fmt.Sprintf("%s.%d", l.path, i+1)
		if err := os.Rename(from, to); err != nil && !errors.Is(err, fs.ErrNotExist) {
			l.logError("rotating the audit log failed", err, "from", from, "to", to)
		}
	}
	if err := l.open(); err != nil {
		l.logError("reopening the audit log after rotation failed", err)
	}
}

// open opens path for append and reads its size.
func (l *auditLog) open() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("node: audit log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("node: audit log: %w", err)
	}
	l.f, l.size = f, st.Size()
	return nil
}

func (l *auditLog) closeFile() {
	if err := l.f.Close(); err != nil {
		l.logError("closing the audit log failed", err)
		if l.closeErr == nil {
			l.closeErr = fmt.Errorf("node: audit log: %w", err)
		}
	}
}

// reportDropped logs the records record had to drop since the last report.
func (l *auditLog) reportDropped() {
	if n := l.dropped.Load(); n > 0 && time.Since(l.lastLog) >= auditErrorInterval {
		l.dropped.Add(-n)
		l.logError("audit log queue full; records dropped", nil, "dropped", n)
	}
}

// logError logs at most once per auditErrorInterval, counting what it holds
// back and saying so in the next message.
func (l *auditLog) logError(msg string, err error, kv ...interface{}) {
	if time.Since(l.lastLog) < auditErrorInterval {
		l.muted++
		return
	}
	if err != nil {
		kv = append(kv, "error", err)
	}
	if l.muted > 0 {
		kv = append(kv, "errors_not_logged", l.muted)
	}
	l.log.Error(msg, append(kv, "path", l.path)...)
	l.lastLog, l.muted = time.Now(), 0
}
