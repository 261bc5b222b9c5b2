package node

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
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
// is spooled to disk and loaded into a scratch FSM first, so a corrupt file is
// rejected before anything changes; then the leader restores it through Raft and
// every node installs it.
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
		writeError(w, errorf(structs.CodeInvalid, "snapshot is not valid: %v", err))
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

// validateSnapshot loads the file into a throwaway FSM.
func validateSnapshot(path, dir string) error {
	cfg := raftfsm.DefaultConfig()
	cfg.Dir = dir
	fsm, err := raftfsm.New(cfg)
	if err != nil {
		return err
	}
	defer fsm.Close()
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	return fsm.Restore(f)
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
	f, err := os.Open(path)
	if err != nil {
		writeError(w, errorf(structs.CodeInternal, "snapshot restore: %v", err))
		return
	}
	defer f.Close()
	u := url.URL{Scheme: "http", Host: leaderHTTP, Path: "/v1/snapshot"}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPut, u.String(), f)
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
