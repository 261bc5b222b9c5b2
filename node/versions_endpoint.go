package node

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/ml/formats"
	"github.com/kilnml/kiln/node/internal/blobs"
	"github.com/kilnml/kiln/raftfsm"
	"github.com/kilnml/kiln/raftfsm/structs"
	"github.com/kilnml/kiln/transport"
)

// handleVersionCreate takes a model file as the request body and records it
// as the model's next version (DESIGN.md §3, §6). The order is what makes an
// acknowledged upload durable and a rejected one leave nothing behind:
//
//  1. stream the body to a temporary file, hashing it (never all in memory);
//  2. load it with its runtime: a file that does not load is refused with the
//     loader's reason;
//  3. store it under its digest and copy it to artifact_replicas-1 other nodes;
//  4. only then propose the version, naming the nodes that hold the blob.
//
// A failure before step 4 leaves at most unreferenced blobs, which the
// collector removes after its grace period.
//
// At most limits.max_concurrent_uploads run at once on a node; one more is
// refused with 429. The body may take as long as it needs while it keeps
// moving, but is dropped once it delivers nothing for
// limits.upload_idle_timeout (longRequest).
//
// Query parameters: format (else detected), metadata and schema (JSON
// objects), process (JSON, for format=process).
func (a *Agent) handleVersionCreate(w http.ResponseWriter, r *http.Request) {
	w, body := longRequest(w, r, a.cfg.Limits.UploadIdleTimeout)
	name := r.PathValue("name")
	if err := structs.ValidateName("name", name); err != nil {
		writeError(w, err)
		return
	}
	v, err := versionFromQuery(r)
	if err != nil {
		writeError(w, err)
		return
	}
	v.Model = name
	if err := a.authorizeFormat(r, v.Format); err != nil {
		writeError(w, err) // before the upload is read
		return
	}
	if err := a.modelExists(r.Context(), name); err != nil {
		writeError(w, err) // checked again when the version is applied
		return
	}
	async := false
	switch q := r.URL.Query().Get("async"); q {
	case "", "false":
	case "true":
		async = true
	default:
		writeError(w, structs.Errorf(structs.CodeInvalid, "async must be true or false, not %q", q))
		return
	}
	release, err := a.acquireUpload()
	if err != nil {
		writeError(w, err)
		return
	}
	defer release()

	// With async, the answer is 202 now, and how the upload goes is the
	// upload's to tell (uploads.go).
	var up *asyncUpload
	if async {
		up = a.uploads.start(a.id, name, r.ContentLength)
		body = countingReader{r: body, u: up}
		acceptAsync(w, up)
	}
	stored, idx, err := a.ingestVersion(r, body, &v, up)
	if up != nil {
		var version uint64
		if stored != nil {
			version = stored.Version
		}
		up.end(version, err)
		return
	}
	if err != nil {
		writeError(w, err)
		return
	}
	writeCommitted(w, http.StatusCreated, idx, versionJSON(stored))
}

// ingestVersion reads a model file from body and records it as v.
func (a *Agent) ingestVersion(r *http.Request, body io.Reader, v *structs.ModelVersion, up *asyncUpload) (*structs.ModelVersion, uint64, error) {
	tmp, digest, size, err := a.blobs.Ingest(body, a.cfg.MaxArtifactBytes)
	switch {
	case errors.Is(err, blobs.ErrTooLarge):
		return nil, 0, structs.Errorf(structs.CodeTooLarge, "model file is larger than serving.max_artifact_bytes (%d bytes)", a.cfg.MaxArtifactBytes)
	case errors.Is(err, errUploadStalled):
		return nil, 0, stalledError(a.cfg.Limits.UploadIdleTimeout) // ingest removed its file
	case err != nil:
		return nil, 0, structs.Errorf(structs.CodeInvalid, "reading the model file: %v", err)
	}
	return a.recordVersion(r.Context(), v, tmp, digest, size, func(v *structs.ModelVersion) error {
		return a.authorizeFormat(r, v.Format) // the format may have been detected from the file
	}, up)
}

// recordVersion checks the model file at tmp (an ingested upload; empty
// for a process version without one), settling v's format and schema, runs
// check on the result, stores and copies the file, and proposes v as the
// model's next version. It returns the stored version and its index. tmp is
// consumed. up, when not nil, follows its progress.
func (a *Agent) recordVersion(ctx context.Context, v *structs.ModelVersion, tmp, digest string, size int64,
	check func(*structs.ModelVersion) error, up *asyncUpload) (*structs.ModelVersion, uint64, error) {
	committed := false
	defer func() {
		if !committed {
			_ = os.Remove(tmp)
		}
	}()
	up.setState(uploadChecking)
	if err := a.checkArtifact(v, tmp, size); err != nil {
		return nil, 0, err
	}
	if size > 0 {
		v.Digest, v.Size = digest, size
		if err := a.blobs.Commit(tmp, digest); err != nil {
			return nil, 0, err
		}
		committed = true
		up.setState(uploadCopying)
		var copied func(int)
		if up != nil {
			copied = func(n int) { up.copies.Store(int32(n)) }
		}
		holders, err := a.replicateBlobsNotify(ctx, copied, digest)
		if err != nil {
			return nil, 0, err
		}
		v.Holders = holders
	}
	v.CreatedAt = time.Now().UTC()
	if err := v.Validate(); err != nil {
		return nil, 0, err
	}
	if check != nil {
		if err := check(v); err != nil {
			return nil, 0, err
		}
	}
	var stored structs.ModelVersion
	idx, err := a.propose(ctx, structs.VersionCreateType, &structs.VersionCreateRequest{Version: *v}, &stored)
	if err != nil {
		return nil, 0, err
	}
	return &stored, idx, nil
}

// authorizeFormat asks for the exec capability on top of model write when
// a version runs a command (format process).
func (a *Agent) authorizeFormat(r *http.Request, format string) error {
	if format != structs.FormatProcess {
		return nil
	}
	return a.authorize(r, structs.KindExec, "", structs.AccessAllow)
}

// modelExists checks, before a large upload is read, that the model exists:
// locally, and if this node has not seen it yet, at the leader's index, so a
// model created a moment ago through another node is found.
func (a *Agent) modelExists(ctx context.Context, name string) error {
	txn := a.fsm.ReadTxn()
	_, err := txn.Model(name)
	txn.Discard()
	if structs.ErrorCode(err) != structs.CodeNotFound {
		return err
	}
	txn, cerr := a.consistentTxn(ctx)
	if cerr != nil {
		return err
	}
	defer txn.Discard()
	_, err = txn.Model(name)
	return err
}

// versionFromQuery reads the upload's query parameters.
func versionFromQuery(r *http.Request) (structs.ModelVersion, error) {
	q := r.URL.Query()
	v := structs.ModelVersion{Format: q.Get("format")}
	for _, p := range []struct {
		key string
		dst any
	}{{"metadata", &v.Metadata}, {"schema", &v.Schema}, {"process", &v.Process}} {
		s := q.Get(p.key)
		if s == "" {
			continue
		}
		if err := decodeJSON(strings.NewReader(s), p.dst); err != nil {
			return v, structs.Errorf(structs.CodeInvalid, "query parameter %s: %v", p.key, err)
		}
	}
	for key := range q {
		switch key {
		case "format", "metadata", "schema", "process", "async":
		default:
			return v, structs.Errorf(structs.CodeInvalid, "unknown query parameter %q: use format, metadata, schema, process or async", key)
		}
	}
	if v.Format != "" && v.Format != structs.FormatProcess && !formats.Supported(v.Format) {
		return v, structs.Errorf(structs.CodeInvalid, "format %q is unknown: use one of linear, lightgbm, xgboost, xgboost-json, onnx, process", v.Format)
	}
	if v.Format != structs.FormatProcess && v.Process != nil {
		return v, structs.Errorf(structs.CodeInvalid, "query parameter process is only allowed with format=process")
	}
	if v.Format == structs.FormatProcess {
		if v.Process == nil {
			return v, structs.Errorf(structs.CodeInvalid, "format=process needs the query parameter process, e.g. process={\"command\":[\"python\",\"serve.py\"]}")
		}
		if err := v.Process.Validate(); err != nil {
			return v, err
		}
	}
	return v, nil
}

// checkArtifact settles the version's format and schema from the file at
// path: the format is detected when not given, and the file must load.
func (a *Agent) checkArtifact(v *structs.ModelVersion, path string, size int64) error {
	if v.Format == structs.FormatProcess {
		return nil // the user's process loads its own files; an artifact is optional
	}
	if size == 0 {
		return structs.Errorf(structs.CodeInvalid, "request body is empty: send the model file")
	}
	if v.Format == "" {
		head := make([]byte, 4096)
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		n, _ := io.ReadFull(f, head)
		f.Close()
		if v.Format = formats.Detect(head[:n]); v.Format == "" {
			return structs.Errorf(structs.CodeInvalid, "format could not be detected from the file; give ?format= (one of linear, lightgbm, xgboost, xgboost-json, onnx, process)")
		}
	}
	if len(v.Schema.Inputs) > 0 || len(v.Schema.Outputs) > 0 {
		return structs.Errorf(structs.CodeInvalid, "query parameter schema is only for format=process; format %s carries its own schema", v.Format)
	}
	m, err := a.models.Load(v.Format, path, ml.CPUOnly)
	if err != nil {
		return structs.Errorf(structs.CodeInvalid, "model file does not load as %s: %v", v.Format, err)
	}
	v.Schema = schemaFromML(m.Schema())
	v.Runtime = runtimeName(m)
	if c, ok := m.(ml.Closer); ok {
		_ = c.Close()
	}
	return nil
}

// runtimeName is what a version records of the runtime that loaded it: the
// runtime and its version, without the device (a replica may have a GPU
// that the push's node has not).
func runtimeName(m ml.Model) string {
	r, ok := m.(ml.Runtimed)
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(r.Runtime(), ",")
	return name
}

func schemaFromML(s ml.Schema) structs.Schema {
	conv := func(in []ml.TensorSpec) []structs.TensorSpec {
		out := make([]structs.TensorSpec, len(in))
		for i, t := range in {
			out[i] = structs.TensorSpec{Name: t.Name, DataType: t.DataType, Shape: t.Shape}
		}
		return out
	}
	return structs.Schema{Inputs: conv(s.Inputs), Outputs: conv(s.Outputs), FeatureNames: s.FeatureNames}
}

// replicateBlobs copies stored blobs to other alive nodes until
// min(artifact_replicas, alive nodes) hold them all, and returns the
// holders' IDs, this node first. Fewer holders than that is an error: the
// upload is not acknowledged.
func (a *Agent) replicateBlobs(ctx context.Context, digests ...string) ([]string, error) {
	return a.replicateBlobsNotify(ctx, nil, digests...)
}

// replicateBlobsNotify is replicateBlobs, calling copied (when not nil)
// with the number of nodes that hold the blobs each time it grows.
func (a *Agent) replicateBlobsNotify(ctx context.Context, copied func(int), digests ...string) ([]string, error) {
	members := a.gossip.alive()
	want := min(a.cfg.ArtifactReplicas, max(len(members), 1))
	holders := []string{a.id}
	if copied != nil {
		copied(1)
	}
	rand.Shuffle(len(members), func(i, j int) { members[i], members[j] = members[j], members[i] })
	var errs []error
members:
	for _, m := range members {
		if len(holders) >= want {
			break
		}
		if m.Meta.ID == a.id || m.Meta.Leaving {
			continue
		}
		for _, digest := range digests {
			if err := a.xfer.Push(ctx, m.Meta.RPCAddr, digest); err != nil {
				a.logger.Warn("artifact copy failed", "digest", digest, "node", m.Name, "error", err)
				errs = append(errs, err)
				continue members
			}
		}
		holders = append(holders, m.Meta.ID)
		if copied != nil {
			copied(len(holders))
		}
	}
	if len(holders) < want {
		return nil, structs.Errorf(structs.CodeUnavailable, "artifact stored on %d of %d nodes (serving.artifact_replicas); nothing recorded: %v", len(holders), want, errors.Join(errs...))
	}
	return holders, nil
}

// versionJSON fixes up a version for JSON: empty maps and slices, not null.
func versionJSON(v *structs.ModelVersion) *structs.ModelVersion {
	if v.Metadata == nil {
		v.Metadata = map[string]string{}
	}
	if v.Holders == nil {
		v.Holders = []string{}
	}
	if v.Schema.Inputs == nil {
		v.Schema.Inputs = []structs.TensorSpec{}
	}
	if v.Schema.Outputs == nil {
		v.Schema.Outputs = []structs.TensorSpec{}
	}
	return v
}

func parseVersionNumber(field, s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return 0, structs.Errorf(structs.CodeInvalid, "%s must be a version number (1, 2, ...), not %q", field, s)
	}
	return n, nil
}

// versionPath reads and checks {name} and {version} of a version's path.
func versionPath(r *http.Request) (string, uint64, error) {
	name := r.PathValue("name")
	if err := structs.ValidateName("name", name); err != nil {
		return "", 0, err
	}
	n, err := parseVersionNumber("version", r.PathValue("version"))
	return name, n, err
}

func (a *Agent) handleVersionList(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := structs.ValidateName("name", name); err != nil {
		writeError(w, err)
		return
	}
	cursor, limit, err := listParams(r)
	if err != nil {
		writeError(w, err)
		return
	}
	serveRead(a, w, r, func(txn *raftfsm.Txn) (any, error) {
		if _, err := txn.Model(name); err != nil {
			return nil, err
		}
		items, next, err := txn.Versions(name, cursor, limit)
		if err != nil {
			return nil, err
		}
		if items == nil {
			items = []*structs.ModelVersion{}
		}
		for _, v := range items {
			versionJSON(v)
		}
		return map[string]any{"items": items, "next_cursor": next}, nil
	})
}

func (a *Agent) handleVersionGet(w http.ResponseWriter, r *http.Request) {
	name, n, err := versionPath(r)
	if err != nil {
		writeError(w, err)
		return
	}
	serveRead(a, w, r, func(txn *raftfsm.Txn) (*structs.ModelVersion, error) {
		v, err := txn.Version(name, n)
		if err != nil {
			return nil, err
		}
		return versionJSON(v), nil
	})
}

func (a *Agent) handleVersionDelete(w http.ResponseWriter, r *http.Request) {
	name, n, err := versionPath(r)
	if err != nil {
		writeError(w, err)
		return
	}
	a.serveDelete(w, r, structs.VersionDeleteType, &structs.VersionDeleteRequest{Model: name, Version: n}, "")
}

// handleVersionFile streams a version's model file, from this node's store
// or fetched from a holder first; X-Kiln-Digest carries its sha256 so the
// client can check what it got.
func (a *Agent) handleVersionFile(w http.ResponseWriter, r *http.Request) {
	name, n, err := versionPath(r)
	if err != nil {
		writeError(w, err)
		return
	}
	txn, err := a.readTxn(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	v, err := txn.Version(name, n)
	txn.Discard()
	if err != nil {
		writeError(w, err)
		return
	}
	if v.Digest == "" {
		writeError(w, structs.Errorf(structs.CodeNotFound, "version %d of model %q has no file (a process version uploaded without one)", n, name))
		return
	}
	path, err := a.xfer.Ensure(r.Context(), v.Digest, v.Holders)
	if err != nil {
		writeError(w, structs.Errorf(structs.CodeUnavailable, "the file of version %d of model %q could not be fetched from its holders: %v", n, name, err))
		return
	}
	f, err := os.Open(path)
	if err != nil {
		writeError(w, err)
		return
	}
	defer f.Close()
	w, _ = longRequest(w, r, a.cfg.Limits.UploadIdleTimeout)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(v.Size, 10))
	w.Header().Set("X-Kiln-Digest", v.Digest)
	w.Header().Set("X-Kiln-Format", v.Format)
	_, _ = io.Copy(w, f)
}

type aliasPutRequest struct {
	Version uint64 `json:"version"`
}

func (a *Agent) handleAliasPut(w http.ResponseWriter, r *http.Request) {
	a.setAlias(w, r, true)
}

func (a *Agent) handleAliasDelete(w http.ResponseWriter, r *http.Request) {
	a.setAlias(w, r, false)
}

func (a *Agent) setAlias(w http.ResponseWriter, r *http.Request, put bool) {
	name, alias := r.PathValue("name"), r.PathValue("alias")
	if err := structs.ValidateName("name", name); err != nil {
		writeError(w, err)
		return
	}
	if err := structs.ValidateName("alias", alias); err != nil {
		writeError(w, err)
		return
	}
	var req aliasPutRequest
	if put {
		if err := a.decodeBody(w, r, &req); err != nil {
			writeError(w, err)
			return
		}
		if req.Version == 0 {
			writeError(w, structs.Errorf(structs.CodeInvalid, "version is required (versions start at 1)"))
			return
		}
	}
	var m structs.Model
	idx, err := a.propose(r.Context(), structs.AliasSetType, &structs.AliasSetRequest{
		Model: name, Alias: alias, Version: req.Version, UpdatedAt: time.Now().UTC(),
	}, &m)
	if err != nil {
		writeError(w, err)
		return
	}
	writeCommitted(w, http.StatusOK, idx, modelJSON(&m))
}

// versionsEndpoint: a model's versions and aliases.
func (a *Agent) versionsEndpoint() endpoint {
	m := structs.KindModel
	return endpoint{routes: []route{
		// A process version also needs exec; the handler checks it once it
		// knows the format.
		{pattern: "POST /v1/models/{name}/versions", handler: a.handleVersionCreate, kind: m, need: needWrite, name: pathName},
		{pattern: "GET /v1/models/{name}/versions", handler: a.handleVersionList, kind: m, need: needRead, name: pathName},
		{pattern: "GET /v1/models/{name}/versions/{version}", handler: a.handleVersionGet, kind: m, need: needRead, name: pathName},
		{pattern: "GET /v1/models/{name}/versions/{version}/file", handler: a.handleVersionFile, kind: m, need: needRead, name: pathName},
		{pattern: "DELETE /v1/models/{name}/versions/{version}", handler: a.handleVersionDelete, kind: m, need: needWrite, name: pathName},
		{pattern: "PUT /v1/models/{name}/aliases/{alias}", handler: a.handleAliasPut, kind: m, need: needWrite, name: pathName},
		{pattern: "DELETE /v1/models/{name}/aliases/{alias}", handler: a.handleAliasDelete, kind: m, need: needWrite, name: pathName},
		{pattern: "GET /v1/uploads/{id}", handler: a.handleUploadGet, kind: m, need: needBody},
	}, rpcs: map[string]transport.Handler{rpcUploadGet: a.handleUploadGetRPC}}
}
