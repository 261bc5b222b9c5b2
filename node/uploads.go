package node

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kilnml/kiln/raftfsm/structs"
	"github.com/kilnml/kiln/transport"
)

// Asynchronous uploads (POST /v1/models/{name}/versions?async=true): the
// node answers 202 with an upload ID as soon as it has checked the request,
// then goes on reading the body on the same connection (full duplex) and
// recording the version. GET /v1/uploads/{id}, on any node, shows how far
// it got: bytes received, the copies made, and the version or the error.
// A client draws its progress from there, so it shows what the server has,
// not what the client has sent into its socket buffers.
//
// Uploads live in the memory of the node that takes them, for an hour after
// they end; their IDs start with that node's ID, so that another node knows
// where to ask.

// Upload states.
const (
	uploadReceiving = "receiving" // the body is arriving
	uploadChecking  = "checking"  // the file is loaded by its runtime
	uploadCopying   = "copying"   // the file is copied to other nodes
	uploadDone      = "done"      // the version is recorded
	uploadFailed    = "failed"
)

// uploadKeep is how long an ended upload stays visible.
const uploadKeep = time.Hour

// asyncUpload is one asynchronous upload's progress.
type asyncUpload struct {
	id, model string
	total     int64 // the body's length, -1 when not given
	started   time.Time
	received  atomic.Int64
	copies    atomic.Int32

	mu       sync.Mutex
	state    string
	version  uint64
	err      *structs.CodedError
	finished time.Time
}

// uploadView is GET /v1/uploads/{id}.
type uploadView struct {
	ID            string              `json:"id" msgpack:"id"`
	Model         string              `json:"model" msgpack:"model"`
	State         string              `json:"state" msgpack:"state"`
	BytesReceived int64               `json:"bytes_received" msgpack:"bytes_received"`
	BytesTotal    int64               `json:"bytes_total" msgpack:"bytes_total"`
	Copies        int                 `json:"copies" msgpack:"copies"`
	Version       uint64              `json:"version,omitempty" msgpack:"version"`
	Error         *structs.CodedError `json:"error,omitempty" msgpack:"error"`
	StartedAt     time.Time           `json:"started_at" msgpack:"started_at"`
	FinishedAt    *time.Time          `json:"finished_at,omitempty" msgpack:"finished_at"`
}

func (u *asyncUpload) view() *uploadView {
	u.mu.Lock()
	defer u.mu.Unlock()
	v := &uploadView{ID: u.id, Model: u.model, State: u.state, BytesReceived: u.received.Load(), BytesTotal: u.total,
		Copies: int(u.copies.Load()), Version: u.version, Error: u.err, StartedAt: u.started}
	if !u.finished.IsZero() {
		f := u.finished
		v.FinishedAt = &f
	}
	return v
}

func (u *asyncUpload) setState(s string) {
	if u == nil {
		return
	}
	u.mu.Lock()
	u.state = s
	u.mu.Unlock()
}

// end records how the upload ended.
func (u *asyncUpload) end(version uint64, err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.finished = time.Now().UTC()
	if err != nil {
		u.state = uploadFailed
		u.err = codedError(err)
		return
	}
	u.state, u.version = uploadDone, version
}

func codedError(err error) *structs.CodedError {
	if ce, ok := err.(*structs.CodedError); ok {
		return ce
	}
	return &structs.CodedError{Code: structs.ErrorCode(err), Message: err.Error()}
}

// countingReader counts the bytes read through it into an upload.
type countingReader struct {
	r io.Reader
	u *asyncUpload
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.u.received.Add(int64(n))
	return n, err
}

// uploads is a node's table of asynchronous uploads.
type uploads struct {
	mu    sync.Mutex
	items map[string]*asyncUpload
}

// start registers a new upload of a model's file.
func (t *uploads) start(nodeID, model string, total int64) *asyncUpload {
	u := &asyncUpload{id: nodeID[:min(8, len(nodeID))] + "." + structs.NewID(time.Now()), model: model, total: total, started: time.Now().UTC(), state: uploadReceiving}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.items == nil {
		t.items = map[string]*asyncUpload{}
	}
	for id, old := range t.items {
		old.mu.Lock()
		gone := !old.finished.IsZero() && time.Since(old.finished) > uploadKeep
		old.mu.Unlock()
		if gone {
			delete(t.items, id)
		}
	}
	t.items[u.id] = u
	return u
}

func (t *uploads) get(id string) *asyncUpload {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.items[id]
}

// acceptAsync answers 202 with the upload's ID and keeps the connection
// reading the body: the rest of the handler records the version.
func acceptAsync(w http.ResponseWriter, u *asyncUpload) {
	_ = http.NewResponseController(w).EnableFullDuplex()
	b, _ := json.Marshal(map[string]any{"upload_id": u.id, "state": uploadReceiving, "status_url": "/v1/uploads/" + u.id})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Location", "/v1/uploads/"+u.id)
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write(append(b, '\n'))
	_ = http.NewResponseController(w).Flush()
}

// rpcUploadGet asks the node that took an upload how it is going.
const rpcUploadGet = "uploads.get"

type uploadGetArgs struct {
	ID string `msgpack:"id"`
}

func (a *Agent) handleUploadGetRPC(_ context.Context, dec transport.Decoder) (any, error) {
	var args uploadGetArgs
	if err := decodeArgs(dec, rpcUploadGet, &args); err != nil {
		return nil, err
	}
	u := a.uploads.get(args.ID)
	if u == nil {
		return nil, structs.Errorf(structs.CodeNotFound, "no upload %q on this node (an upload is kept for %s after it ends)", args.ID, uploadKeep)
	}
	return u.view(), nil
}

// handleUploadGet serves GET /v1/uploads/{id}, from the node that took the
// upload; the caller needs read on the upload's model.
func (a *Agent) handleUploadGet(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	owner, _, ok := strings.Cut(id, ".")
	if !ok || owner == "" || len(id) > 128 {
		writeError(w, structs.Errorf(structs.CodeInvalid, "upload ID %q is not one a node gave", id))
		return
	}
	var v *uploadView
	if strings.HasPrefix(a.id, owner) {
		u := a.uploads.get(id)
		if u == nil {
			writeError(w, structs.Errorf(structs.CodeNotFound, "no upload %q on this node (an upload is kept for %s after it ends)", id, uploadKeep))
			return
		}
		v = u.view()
	} else {
		addr := ""
		for _, m := range a.gossip.alive() {
			if strings.HasPrefix(m.Meta.ID, owner) {
				addr = m.Meta.RPCAddr
			}
		}
		if addr == "" {
			writeError(w, structs.Errorf(structs.CodeNotFound, "upload %q was taken by a node that is not alive", id))
			return
		}
		v = &uploadView{}
		if err := a.trans.Call(r.Context(), addr, rpcUploadGet, &uploadGetArgs{ID: id}, v); err != nil {
			writeError(w, err)
			return
		}
	}
	if err := a.authorize(r, structs.KindModel, v.Model, structs.AccessRead); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}
