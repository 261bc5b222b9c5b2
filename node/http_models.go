package node

import (
	"net/http"
	"time"

	"github.com/kilnml/kiln/raftfsm"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// modelCreateRequest is the body of POST /v1/models.
type modelCreateRequest struct {
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Owner       string            `json:"owner"`
	Tags        map[string]string `json:"tags"`
}

// modelPatchRequest is the body of PATCH /v1/models/{name}. Absent fields are kept;
// "tags" merges, and a tag set to null is deleted.
type modelPatchRequest struct {
	Description *string            `json:"description"`
	Owner       *string            `json:"owner"`
	Tags        map[string]*string `json:"tags"`
}

func (a *Agent) handleModelCreate(w http.ResponseWriter, r *http.Request) {
	var req modelCreateRequest
	if err := a.decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	now := time.Now().UTC()
	m := structs.Model{Name: req.Name, Description: req.Description, Owner: req.Owner, Tags: req.Tags, CreatedAt: now, UpdatedAt: now}
	if err := m.Validate(); err != nil {
		writeError(w, err)
		return
	}
	if err := a.authorize(r, structs.KindModel, m.Name, structs.AccessWrite); err != nil {
		writeError(w, err)
		return
	}
	var stored structs.Model
	idx, err := a.propose(r.Context(), structs.ModelCreateType, &structs.ModelCreateRequest{Model: m}, &stored)
	if err != nil {
		writeError(w, err)
		return
	}
	writeCommitted(w, http.StatusCreated, idx, modelJSON(&stored))
}

func (a *Agent) handleModelList(w http.ResponseWriter, r *http.Request) {
	cursor, limit, err := listParams(r)
	if err != nil {
		writeError(w, err)
		return
	}
	txn, err := a.readTxn(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	defer txn.Discard()
	items, next, err := visiblePage(cursor, limit, txn.Models,
		func(m *structs.Model) bool { return a.allowed(r, structs.KindModel, m.Name, structs.AccessRead) },
		func(m *structs.Model) string { return m.Name })
	if err != nil {
		writeError(w, err)
		return
	}
	for _, m := range items {
		modelJSON(m)
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items, "next_cursor": next})
}

func (a *Agent) handleModelGet(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := structs.ValidateName("name", name); err != nil {
		writeError(w, err)
		return
	}
	serveRead(a, w, r, func(txn *raftfsm.Txn) (*structs.Model, error) {
		m, err := txn.Model(name)
		if err != nil {
			return nil, err
		}
		return modelJSON(m), nil
	})
}

func (a *Agent) handleModelUpdate(w http.ResponseWriter, r *http.Request) {
	var req modelPatchRequest
	if err := a.decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	cmd := structs.ModelUpdateRequest{
		Name: r.PathValue("name"), Description: req.Description, Owner: req.Owner, Tags: req.Tags,
		UpdatedAt: time.Now().UTC(),
	}
	if err := cmd.Validate(); err != nil {
		writeError(w, err)
		return
	}
	var stored structs.Model
	idx, err := a.propose(r.Context(), structs.ModelUpdateType, &cmd, &stored)
	if err != nil {
		writeError(w, err)
		return
	}
	writeCommitted(w, http.StatusOK, idx, modelJSON(&stored))
}

func (a *Agent) handleModelDelete(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := structs.ValidateName("name", name); err != nil {
		writeError(w, err)
		return
	}
	idx, err := a.propose(r.Context(), structs.ModelDeleteType, &structs.ModelDeleteRequest{Name: name}, nil)
	if err != nil {
		writeError(w, err)
		return
	}
	writeCommitted(w, http.StatusOK, idx, map[string]any{"deleted": name})
}

// modelJSON prepares a model for a response: times in UTC (msgpack decodes them
// in the local zone) and tags as an object even when empty.
func modelJSON(m *structs.Model) *structs.Model {
	m.CreatedAt, m.UpdatedAt = m.CreatedAt.UTC(), m.UpdatedAt.UTC()
	if m.Tags == nil {
		m.Tags = map[string]string{}
	}
	if m.Aliases == nil {
		m.Aliases = structs.VersionMap{}
	}
	return m
}
