package node

import (
	"net/http"
	"strings"
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

// handleModelList answers GET /v1/models?prefix=P&limit=N&cursor=C: the
// models whose name starts with P (all without one), in name order.
func (a *Agent) handleModelList(w http.ResponseWriter, r *http.Request) {
	prefix := r.URL.Query().Get("prefix")
	serveList(a, w, r, structs.KindModel,
		func(txn *raftfsm.Txn) func(string, int) ([]*structs.Model, string, error) {
			if prefix == "" {
				return txn.Models
			}
			return func(cursor string, limit int) ([]*structs.Model, string, error) {
				page, next, err := txn.Models(cursor, limit)
				kept := page[:0]
				for _, m := range page {
					switch {
					case strings.HasPrefix(m.Name, prefix):
						kept = append(kept, m)
					case m.Name > prefix:
						return kept, "", err // names are sorted: nothing further matches
					}
				}
				return kept, next, err
			}
		},
		func(m *structs.Model) string { return m.Name }, modelJSON)
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
	a.serveDelete(w, r, structs.ModelDeleteType, &structs.ModelDeleteRequest{Name: name}, name)
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

// modelsEndpoint: the model registry, and the per-model request metrics.
func (a *Agent) modelsEndpoint() endpoint {
	m := structs.KindModel
	return endpoint{routes: []route{
		{pattern: "POST /v1/models", handler: a.handleModelCreate, kind: m, need: needBody},
		{pattern: "GET /v1/models", handler: a.handleModelList, kind: m, need: needList},
		{pattern: "GET /v1/models/{name}", handler: a.handleModelGet, kind: m, need: needRead, name: pathName},
		{pattern: "PATCH /v1/models/{name}", handler: a.handleModelUpdate, kind: m, need: needWrite, name: pathName},
		{pattern: "DELETE /v1/models/{name}", handler: a.handleModelDelete, kind: m, need: needWrite, name: pathName},
	}}
}
