package node

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// How long an HTTP request may take (DESIGN.md "Bounded resources"): the
// server bounds the headers, the body (http.read_timeout; net/http lifts it
// once the body is read, so a handler at work keeps its context), the
// answer (http.write_timeout) and idle keep-alive connections. Uploads and
// snapshots move gigabytes, so they replace the body and answer bounds with
// an idle one (longRequest). Predictions are bounded by the router:
// serving.predict_timeout, or the deployment's timeout_ms, which may lift
// the write deadline past http.write_timeout (extendWriteDeadline).

// versionCommitWindow is how long a proposed version may be in flight
// before its proposer gives up on it: the batch RPC that carries it to the
// leader (forwardRPCTimeout), then the leader's wait to hand it to Raft
// (commitTimeout). It is the floor blob_gc_grace must clear beyond one
// stall of the upload, not a guarantee: an entry that Raft commits later
// still (across an election), or a file that takes long to copy to
// artifact_replicas nodes, is covered by the grace's default of an hour.
const versionCommitWindow = forwardRPCTimeout + commitTimeout

// extendWriteDeadline lets a prediction whose deployment sets a timeout
// longer than http.write_timeout be answered: the router bounds the call by
// that timeout, and the connection's write deadline moves past it.
func extendWriteDeadline(w http.ResponseWriter, d *structs.Deployment) {
	if d.TimeoutMS > 0 {
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Duration(d.TimeoutMS)*time.Millisecond + predictAnswerMargin))
	}
}

// predictAnswerMargin is the time left to write a prediction's answer (or
// its timeout) after the deadline of the call.
const predictAnswerMargin = 10 * time.Second

// inFlight counts requests of one kind in progress against a bound; its zero
// value counts from zero.
type inFlight struct{ n atomic.Int64 }

// acquire takes a place, or refuses at once with overloaded (429) when limit
// requests already hold one; what names them in the refusal, key the config
// key of the limit. The caller calls release once, when its request is done.
func (f *inFlight) acquire(limit int, what, key string) (release func(), err error) {
	if f.n.Add(1) > int64(limit) {
		f.n.Add(-1)
		return nil, structs.Errorf(structs.CodeOverloaded, "node: %d %s already in progress on this node (%s); retry later", limit, what, key)
	}
	return func() { f.n.Add(-1) }, nil
}

// acquireUpload takes one of limits.max_concurrent_uploads.
func (a *Agent) acquireUpload() (func(), error) {
	return a.uploadSlots.acquire(a.cfg.Limits.MaxConcurrentUploads, "uploads", "limits.max_concurrent_uploads")
}

// acquireRestore takes one of limits.max_concurrent_restores.
func (a *Agent) acquireRestore() (func(), error) {
	return a.restores.acquire(a.cfg.Limits.MaxConcurrentRestores, "snapshot restores", "limits.max_concurrent_restores")
}

// errUploadStalled is the read error of a body that delivered no bytes for
// upload_idle_timeout.
var errUploadStalled = errors.New("node: upload stalled")

// stalledError is errUploadStalled as the API answers it.
func stalledError(idle time.Duration) error {
	return structs.Errorf(structs.CodeInvalid, "upload stalled: no data for %s (limits.upload_idle_timeout); the upload was dropped", idle)
}

// longRequest prepares a request that may take minutes — a model upload, a
// snapshot restore or download — and returns the writer and body the
// handler uses from then on. The server's write_timeout is lifted: the
// returned writer gives each write idle to go through instead, so an answer
// still reaches a client that reads, and a client that stops reading is
// dropped. The body fails with errUploadStalled once it delivers no bytes
// for idle; a slow body that keeps moving is read to its end.
func longRequest(w http.ResponseWriter, r *http.Request, idle time.Duration) (http.ResponseWriter, io.Reader) {
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{})
	return &idleWriter{ResponseWriter: w, rc: rc, idle: idle}, &idleReader{r: r.Body, rc: rc, idle: idle}
}

// idleReader moves the connection's read deadline idle ahead before each
// read of the body. Once the body has ended it leaves the deadline alone:
// net/http then watches the connection for a client that goes away, and a
// deadline passing there would cancel the request's context.
type idleReader struct {
	r    io.Reader
	rc   *http.ResponseController
	idle time.Duration
	eof  bool
}

func (b *idleReader) Read(p []byte) (int, error) {
	if b.eof {
		return 0, io.EOF
	}
	_ = b.rc.SetReadDeadline(time.Now().Add(b.idle))
	n, err := b.r.Read(p)
	switch {
	case err == nil:
	case errors.Is(err, io.EOF):
		b.eof = true // net/http has cleared the deadline
	case isTimeout(err):
		err = errUploadStalled
	}
	return n, err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// idleWriteChunk bounds one write under idleWriter's deadline, so that a
// large write to a slow client that keeps reading is not cut off.
const idleWriteChunk = 64 << 10

// idleWriter gives every write to the connection idle to go through.
type idleWriter struct {
	http.ResponseWriter
	rc   *http.ResponseController
	idle time.Duration
}

func (w *idleWriter) WriteHeader(code int) {
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.idle))
	w.ResponseWriter.WriteHeader(code)
}

func (w *idleWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), idleWriteChunk)]
		_ = w.rc.SetWriteDeadline(time.Now().Add(w.idle))
		n, err := w.ResponseWriter.Write(chunk)
		written += n
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

// Unwrap lets http.ResponseController reach the connection through the
// wrapper.
func (w *idleWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
