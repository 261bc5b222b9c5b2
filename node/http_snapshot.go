package node

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kilnml/kiln/raftfsm"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// maxSnapshotBytes bounds a snapshot upload; it is spooled to disk, not memory.
const maxSnapshotBytes = 16 << 30

// handleSnapshotSave streams the registry state as of this node's view (with the
// usual consistency parameters) in the FSM's snapshot format.
func (a *Agent) handleSnapshotSave(w http.ResponseWriter, r *http.Request) {
	txn, err := a.readTxn(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	txn.Discard() // readTxn settled consistency and headers; the snapshot opens its own view
	snap, err := a.fsm.Snapshot()
	if err != nil {
		writeError(w, errorf(structs.CodeInternal, "snapshot: %v", err))
		return
	}
	defer snap.Release()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="kiln.snap"`)
	w.WriteHeader(http.StatusOK)
	if err := snap.Persist(&httpSink{w: w}); err != nil {
		a.logger.Warn("snapshot save aborted", "error", err)
	}
}

// httpSink adapts a ResponseWriter to raft.SnapshotSink.
type httpSink struct{ w io.Writer }

func (s *httpSink) Write(p []byte) (int, error) { return s.w.Write(p) }
func (s *httpSink) Close() error                { return nil }
func (s *httpSink) ID() string                  { return "http" }
func (s *httpSink) Cancel() error               { return nil }

// handleSnapshotRestore replaces the registry with an uploaded snapshot. The upload
// is spooled to disk, every record is checked against the rules the API applies,
// and it is loaded into a scratch FSM, so a corrupt or crafted file is rejected
// before anything changes; then the leader restores it through Raft and every
// node installs it.
func (a *Agent) handleSnapshotRestore(w http.ResponseWriter, r *http.Request) {
	tmpDir, err := os.MkdirTemp(a.cfg.DataDir, "restore-")
	if err != nil {
		writeError(w, errorf(structs.CodeInternal, "snapshot restore: %v", err))
		return
	}
	defer os.RemoveAll(tmpDir)
	path := filepath.Join(tmpDir, "upload.snap")
	size, err := spool(path, http.MaxBytesReader(w, r.Body, maxSnapshotBytes))
	if err != nil {
		writeError(w, jsonError(err))
		return
	}
	if err := validateSnapshot(path, filepath.Join(tmpDir, "check")); err != nil {
		if errors.Is(err, raftfsm.ErrCorruptSnapshot) || errors.Is(err, raftfsm.ErrInvalidSnapshot) {
			writeError(w, errorf(structs.CodeInvalid, "snapshot is not valid: %v", err))
		} else {
			writeError(w, errorf(structs.CodeInternal, "snapshot restore: checking the upload: %v", err))
		}
		return
	}
	if a.raft.State() != raft.Leader {
		a.proxySnapshotRestore(w, r, path)
		return
	}
	f, err := os.Open(path)
	if err != nil {
		writeError(w, errorf(structs.CodeInternal, "snapshot restore: %v", err))
		return
	}
	defer f.Close()
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Size: size}
	if err := a.raft.Restore(meta, f, time.Minute); err != nil {
		writeError(w, errorf(structs.CodeUnavailable, "snapshot restore: %v", err))
		return
	}
	writeCommitted(w, http.StatusOK, a.raft.AppliedIndex(), map[string]any{"restored_bytes": size})
}

func spool(path string, r io.Reader) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// validateSnapshot checks every record of the file (raftfsm.ValidateSnapshot:
// Restore alone would take records the API refuses, such as an allocation ID
// that is a path), then loads it into a throwaway FSM in dir.
func validateSnapshot(path, dir string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = raftfsm.ValidateSnapshot(f)
	f.Close()
	if err != nil {
		return err
	}
	cfg := raftfsm.DefaultConfig()
	cfg.Dir = dir
	fsm, err := raftfsm.New(cfg)
	if err != nil {
		return err
	}
	defer fsm.Close()
	if f, err = os.Open(path); err != nil {
		return err
	}
	return fsm.Restore(f) // closes f
}

// proxySnapshotRestore sends a validated upload on to the leader's HTTP API.
func (a *Agent) proxySnapshotRestore(w http.ResponseWriter, r *http.Request, path string) {
	_, leaderID := a.raft.LeaderWithID()
	var leaderHTTP string
	for _, m := range a.gossip.alive() {
		if m.Meta.ID == string(leaderID) {
			leaderHTTP = m.Meta.HTTPAddr
		}
	}
	if leaderHTTP == "" {
		writeError(w, errorf(structs.CodeNoLeader, "no known leader to restore the snapshot on"))
		return
	}
	if a.cfg.HTTPTLS != nil {
		// The proxy speaks plain HTTP: to a leader that serves HTTPS it would
		// fail anyway, after sending the caller's token in clear text.
		writeError(w, errorf(structs.CodeNotLeader, "snapshot restore: this node is not the leader and does not proxy over HTTPS; send the snapshot to the leader at %s", leaderHTTP))
		return
	}
	f, err := os.Open(path)
	if err != nil {
		writeError(w, errorf(structs.CodeInternal, "snapshot restore: %v", err))
		return
	}
	defer f.Close()
	req, err := leaderRestoreRequest(r, leaderHTTP, f)
	if err != nil {
		writeError(w, errorf(structs.CodeInternal, "snapshot restore: %v", err))
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		writeError(w, errorf(structs.CodeUnavailable, "snapshot restore via leader %s: %v", leaderHTTP, err))
		return
	}
	defer resp.Body.Close()
	for _, h := range []string{"Content-Type", "X-Kiln-Index", "Retry-After"} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	if _, err := io.Copy(w, resp.Body); err != nil {
		a.logger.Warn("proxy restore response", "error", fmt.Sprint(err))
	}
}

// leaderRestoreRequest is the PUT /v1/snapshot that carries r's upload (body)
// on to the leader at leaderHTTP. The leader checks the caller's token again,
// so the token headers go with it; without them an ACL cluster would refuse
// every restore made through a follower.
func leaderRestoreRequest(r *http.Request, leaderHTTP string, body io.Reader) (*http.Request, error) {
	u := url.URL{Scheme: "http", Host: leaderHTTP, Path: "/v1/snapshot"}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPut, u.String(), body)
	if err != nil {
		return nil, err
	}
	for _, h := range []string{"X-Kiln-Token", "Authorization"} {
		if v := r.Header.Values(h); len(v) > 0 {
			req.Header[h] = slices.Clone(v)
		}
	}
	return req, nil
}
