package node

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kilnml/kiln/actors/data"
	"github.com/kilnml/kiln/raftfsm"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// Entities, feature views, feature services, and feature reads (DESIGN.md
// §8). The three kinds of object are registry records under the ACL kind
// "feature", named by their own names.

type entityPutRequest struct {
	JoinKeys    []string `json:"join_keys"`
	Description string   `json:"description"`
}

func (a *Agent) handleEntityPut(w http.ResponseWriter, r *http.Request) {
	var req entityPutRequest
	if err := a.decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	e := structs.Entity{Name: r.PathValue("name"), JoinKeys: req.JoinKeys, Description: req.Description, UpdatedAt: time.Now().UTC()}
	if err := e.Validate(); err != nil {
		writeError(w, err)
		return
	}
	serveWrite[structs.Entity](a, w, r, structs.EntityPutType, &structs.EntityPutRequest{Entity: e}, http.StatusOK)
}

// serveWrite proposes a command and answers with the record it stored, T,
// and the index it committed at.
func serveWrite[T any](a *Agent, w http.ResponseWriter, r *http.Request, t structs.MessageType, cmd any, status int) {
	var stored T
	idx, err := a.propose(r.Context(), t, cmd, &stored)
	if err != nil {
		writeError(w, err)
		return
	}
	writeCommitted(w, status, idx, &stored)
}

type featureViewPutRequest struct {
	Entity string `json:"entity"`
	Source string `json:"source"`
	// Dataset defines the view on a registered dataset instead of a
	// source: its values come from the dataset's versions, through a
	// dataset source of the same name (created if missing).
	Dataset         string            `json:"dataset"`
	TimestampColumn string            `json:"timestamp_column"`
	Features        []structs.Feature `json:"features"`
	TTL             string            `json:"ttl"`
	Retain          string            `json:"retain"`
	Description     string            `json:"description"`
}

// handleFeatureViewPut checks a view against its entity and its source as
// this node sees them, compiling its expressions (which Apply cannot), then
// proposes it; Apply checks it again against the state it applies to.
func (a *Agent) handleFeatureViewPut(w http.ResponseWriter, r *http.Request) {
	var req featureViewPutRequest
	if err := a.decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	createdSource := false
	if req.Dataset != "" {
		if req.Source != "" {
			writeError(w, structs.Errorf(structs.CodeInvalid, "give source or dataset, not both"))
			return
		}
		var err error
		if createdSource, err = a.ensureDatasetSource(r, req.Dataset); err != nil {
			writeError(w, err)
			return
		}
		req.Source = req.Dataset
	}
	v := structs.FeatureView{
		Name: r.PathValue("name"), Entity: req.Entity, Source: req.Source, TimestampColumn: req.TimestampColumn,
		Features: req.Features, TTL: req.TTL, Retain: req.Retain, Description: req.Description, UpdatedAt: time.Now().UTC(),
	}
	err := a.checkFeatureView(r, &v)
	var stored structs.FeatureView
	idx := uint64(0)
	if err == nil {
		idx, err = a.propose(r.Context(), structs.FeatureViewPutType, &structs.FeatureViewPutRequest{View: v}, &stored)
	}
	if req.Dataset != "" {
		// The dataset source was created paused, so that no version is
		// read before the view exists; now it starts. One that existed
		// reads its versions again, so that the new view gets them all
		// (the other views' rows are stored once: dataset sources
		// dedupe).
		if ferr := a.finishDatasetSource(r, req.Dataset, createdSource, err == nil); err == nil {
			err = ferr
		}
	}
	if err != nil {
		writeError(w, err)
		return
	}
	writeCommitted(w, http.StatusOK, idx, &stored)
}

// ensureDatasetSource makes sure a dataset source named after a dataset
// reads it, creating one, paused, when no source has the name (created).
func (a *Agent) ensureDatasetSource(r *http.Request, name string) (created bool, err error) {
	if err := structs.ValidateName("dataset", name); err != nil {
		return false, err
	}
	if err := a.authorize(r, structs.KindSource, name, structs.AccessWrite); err != nil {
		return false, err
	}
	txn := a.fsm.ReadTxn()
	s, err := txn.Source(name)
	txn.Discard()
	switch {
	case err == nil && s.Spec.Kind == structs.SourceDataset && s.Spec.FromDataset.Name == name:
		return false, nil
	case err == nil:
		return false, structs.Errorf(structs.CodeConflict, "dataset %s: a %s source has that name; define the view on it with source = %q", name, s.Spec.Kind, name)
	case structs.ErrorCode(err) != structs.CodeNotFound:
		return false, err
	}
	spec := structs.SourceSpec{Name: name, Kind: structs.SourceDataset, FromDataset: &structs.DatasetSource{Name: name},
		Description: "reads the versions of dataset " + name + " for feature views"}
	if err := a.fillDatasetSchema(&spec); err != nil {
		return false, structs.Errorf(structs.CodeInvalid, "dataset %s: %v", name, err)
	}
	spec.Normalize()
	if err := spec.Validate(); err != nil {
		return false, err
	}
	now := time.Now().UTC()
	if _, err := a.propose(r.Context(), structs.SourcePutType, &structs.SourcePutRequest{Spec: spec, At: now}, nil); err != nil {
		return false, err
	}
	idx, err := a.propose(r.Context(), structs.SourcePauseType, &structs.SourcePauseRequest{Name: name, Paused: true, At: now}, nil)
	if err != nil {
		return true, err
	}
	// The view is checked against this node's registry next.
	return true, a.fsm.WaitForIndex(r.Context(), idx)
}

// finishDatasetSource starts a dataset source after its view was put (ok)
// or not: one created for the view is resumed, or deleted if the view was
// refused; one that existed is reset, so that the new view reads every
// version.
func (a *Agent) finishDatasetSource(r *http.Request, name string, created, ok bool) error {
	now := time.Now().UTC()
	var err error
	switch {
	case created && ok:
		_, err = a.propose(r.Context(), structs.SourcePauseType, &structs.SourcePauseRequest{Name: name, Paused: false, At: now}, nil)
	case created:
		_, err = a.propose(r.Context(), structs.SourceDeleteType, &structs.NameRequest{Name: name}, nil)
	case ok:
		_, err = a.propose(r.Context(), structs.SourceResetType, &structs.SourceTriggerRequest{Name: name, At: now}, nil)
	}
	return err
}

// checkFeatureView validates a view and compiles it against the local
// registry's entity and source.
func (a *Agent) checkFeatureView(r *http.Request, v *structs.FeatureView) error {
	if err := v.Validate(); err != nil {
		return err
	}
	txn := a.fsm.ReadTxn()
	defer txn.Discard()
	e, err := txn.Entity(v.Entity)
	if err != nil {
		return structs.Errorf(structs.ErrorCode(err), "entity: %v", err)
	}
	s, err := txn.Source(v.Source)
	if err != nil {
		return structs.Errorf(structs.ErrorCode(err), "source: %v", err)
	}
	_, err = data.CompileView(v, e, s.Spec.Schema)
	return err
}

type featureServicePutRequest struct {
	Features    []string `json:"features"`
	Description string   `json:"description"`
}

func (a *Agent) handleFeatureServicePut(w http.ResponseWriter, r *http.Request) {
	var req featureServicePutRequest
	if err := a.decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	s := structs.FeatureService{Name: r.PathValue("name"), Features: req.Features, Description: req.Description, UpdatedAt: time.Now().UTC()}
	if err := s.Validate(); err != nil {
		writeError(w, err)
		return
	}
	serveWrite[structs.FeatureService](a, w, r, structs.FeatureServicePutType, &structs.FeatureServicePutRequest{Service: s}, http.StatusOK)
}

// handleNamedGet answers GET of one named feature object.
func handleNamedGet[T any](a *Agent, get func(*raftfsm.Txn) func(string) (*T, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if err := structs.ValidateName("name", name); err != nil {
			writeError(w, err)
			return
		}
		serveRead(a, w, r, func(txn *raftfsm.Txn) (*T, error) { return get(txn)(name) })
	}
}

// handleNamedDelete answers DELETE of one named object with a NameRequest
// command.
func (a *Agent) handleNamedDelete(t structs.MessageType) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if err := structs.ValidateName("name", name); err != nil {
			writeError(w, err)
			return
		}
		a.serveDelete(w, r, t, &structs.NameRequest{Name: name}, "")
	}
}

// onlineRequest is POST /v1/features/online. Entities maps each join key
// to one value or a list of values; lists are zipped into rows.
type onlineRequest struct {
	FeatureService string                     `json:"feature_service"`
	Features       []string                   `json:"features"`
	Entities       map[string]json.RawMessage `json:"entities"`
}

// maxOnlineRows bounds the entity rows of one online request.
const maxOnlineRows = 10000

// entityRows zips {"user_id": [1, 2], "merchant": ["a", "b"]} (or single
// values) into rows.
func entityRows(entities map[string]json.RawMessage) ([]map[string]any, error) {
	if len(entities) == 0 {
		return nil, structs.Errorf(structs.CodeInvalid, "entities is required: a map of join key to a value or a list of values")
	}
	cols := make(map[string][]any, len(entities))
	n := -1
	for _, k := range slices.Sorted(maps.Keys(entities)) {
		var list []any
		if err := json.Unmarshal(entities[k], &list); err != nil {
			var one any
			if err := json.Unmarshal(entities[k], &one); err != nil {
				return nil, structs.Errorf(structs.CodeInvalid, "entities.%s: %v", k, err)
			}
			list = []any{one}
		}
		if n >= 0 && len(list) != n {
			return nil, structs.Errorf(structs.CodeInvalid, "entities.%s has %d values, but the other keys have %d", k, len(list), n)
		}
		n = len(list)
		cols[k] = list
	}
	if n == 0 || n > maxOnlineRows {
		return nil, structs.Errorf(structs.CodeInvalid, "entities must give 1 to %d rows, not %d", maxOnlineRows, n)
	}
	rows := make([]map[string]any, n)
	for i := range rows {
		rows[i] = make(map[string]any, len(cols))
		for k, list := range cols {
			rows[i][k] = list[i]
		}
	}
	return rows, nil
}

func (a *Agent) authorizeFeatures(r *http.Request, service string, q *featureQuery) error {
	if service != "" {
		return a.authorize(r, structs.KindFeature, service, structs.AccessRead)
	}
	for _, vq := range q.views {
		if err := a.authorize(r, structs.KindFeature, vq.view.Name, structs.AccessRead); err != nil {
			return err
		}
	}
	return nil
}

// handleFeaturesOnline answers the latest values of features for entities,
// from this node's registry, as of now.
func (a *Agent) handleFeaturesOnline(w http.ResponseWriter, r *http.Request) {
	var req onlineRequest
	if err := a.decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	rows, err := entityRows(req.Entities)
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
	q, err := a.features.resolve(txn, req.FeatureService, req.Features)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := a.authorizeFeatures(r, req.FeatureService, q); err != nil {
		writeError(w, err)
		return
	}
	now := time.Now()
	times := make([]time.Time, len(rows))
	for i := range times {
		times[i] = now
	}
	fr, err := q.read(txn, rows, times, a.redisLatest(r))
	if err != nil {
		writeError(w, err)
		return
	}
	writeOnline(w, q.names, rows, fr)
}

// writeOnline answers an online lookup: {"features": [...], "rows":
// [{<join keys>, "values": {...}, "timestamps": {...}}], "missing": n},
// written directly, as writeFrame is.
func writeOnline(w http.ResponseWriter, names []string, rows []map[string]any, fr *featureFrame) {
	b := make([]byte, 0, 128+len(rows)*(96+48*len(names)))
	b = append(b, `{"features":[`...)
	for j, name := range names {
		if j > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, name)
	}
	b = append(b, `],"rows":[`...)
	missing := 0
	keys := make([]string, 0, 4)
	for i, row := range rows {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '{')
		keys = keys[:0]
		for k := range row {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSONValue(b, row[k])
			b = append(b, ',')
		}
		b = append(b, `"values":{`...)
		for j, name := range names {
			if j > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, name)
			b = append(b, ':')
			b = appendJSONValue(b, fr.values[i][j])
		}
		b = append(b, `},"timestamps":{`...)
		first := true
		for j, name := range names {
			if fr.times[i][j].IsZero() {
				continue
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			b = appendJSONString(b, name)
			b = append(b, ':')
			b = appendJSONValue(b, fr.times[i][j])
		}
		b = append(b, "}}"...)
		if !fr.found[i] {
			missing++
		}
	}
	b = append(b, `],"missing":`...)
	b = strconv.AppendInt(b, int64(missing), 10)
	b = append(b, "}\n"...)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// historicalRequest is POST /v1/features/historical with the entity rows
// in the body; each row has the join keys and a timestamp.
//
// For a large frame the entity rows are a dataset version instead
// (entity_dataset, "name:version"), and the frame is written as the next
// version of the dataset output: the answer is that version, 201.
type historicalRequest struct {
	FeatureService  string           `json:"feature_service"`
	Features        []string         `json:"features"`
	EntityRows      []map[string]any `json:"entity_rows"`
	EntityDataset   string           `json:"entity_dataset"`
	Output          string           `json:"output"`
	TimestampColumn string           `json:"timestamp_column"`
}

// handleFeaturesHistorical answers every feature as of each entity row's
// timestamp: the latest value at or before it, never one from after it.
func (a *Agent) handleFeaturesHistorical(w http.ResponseWriter, r *http.Request) {
	var req historicalRequest
	if err := a.decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	if req.TimestampColumn == "" {
		req.TimestampColumn = "ts"
	}
	if req.EntityDataset != "" {
		a.handleFrameToDataset(w, r, &req)
		return
	}
	if req.Output != "" {
		writeError(w, structs.Errorf(structs.CodeInvalid, "output goes with entity_dataset: a frame of entity_rows is answered in the body"))
		return
	}
	if len(req.EntityRows) == 0 {
		writeError(w, structs.Errorf(structs.CodeInvalid, "entity_rows is required: rows of join keys and a %q timestamp", req.TimestampColumn))
		return
	}
	times := make([]time.Time, len(req.EntityRows))
	for i, row := range req.EntityRows {
		v, err := data.ConvertValue("timestamp", row[req.TimestampColumn])
		if err != nil || v == nil {
			writeError(w, structs.Errorf(structs.CodeInvalid, "entity_rows[%d].%s must be a timestamp (RFC 3339, or Unix seconds), not %v", i, req.TimestampColumn, row[req.TimestampColumn]))
			return
		}
		times[i] = v.(time.Time)
	}
	txn, err := a.readTxn(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	defer txn.Discard()
	q, err := a.features.resolve(txn, req.FeatureService, req.Features)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := a.authorizeFeatures(r, req.FeatureService, q); err != nil {
		writeError(w, err)
		return
	}
	fr, err := q.read(txn, req.EntityRows, times, nil)
	if err != nil {
		writeError(w, err)
		return
	}
	writeFrame(w, q.names, req.EntityRows, fr)
}

// handleFrameToDataset builds a frame from a dataset version of entity
// rows into a new version of the output dataset.
func (a *Agent) handleFrameToDataset(w http.ResponseWriter, r *http.Request, req *historicalRequest) {
	if len(req.EntityRows) > 0 {
		writeError(w, structs.Errorf(structs.CodeInvalid, "give entity_rows or entity_dataset, not both"))
		return
	}
	if req.Output == "" {
		writeError(w, structs.Errorf(structs.CodeInvalid, "output is required with entity_dataset: the dataset that receives the frame"))
		return
	}
	txn := a.fsm.ReadTxn()
	q, err := a.features.resolve(txn, req.FeatureService, req.Features)
	txn.Discard()
	if err != nil {
		writeError(w, err)
		return
	}
	if err := a.authorizeFeatures(r, req.FeatureService, q); err != nil {
		writeError(w, err)
		return
	}
	name, _, _ := strings.Cut(req.EntityDataset, ":")
	for _, check := range []struct {
		name   string
		access structs.ACLAccess
	}{{name, structs.AccessRead}, {req.Output, structs.AccessWrite}} {
		if err := a.authorize(r, structs.KindDataset, check.name, check.access); err != nil {
			writeError(w, err)
			return
		}
	}
	w, _ = longRequest(w, r, a.cfg.Limits.UploadIdleTimeout)
	v, err := a.buildFeatureFrame(r.Context(), frameSpec{Service: req.FeatureService, Features: req.Features,
		EntityRows: req.EntityDataset, TimestampColumn: req.TimestampColumn, Output: req.Output})
	if err != nil {
		writeError(w, err)
		return
	}
	writeCommitted(w, http.StatusCreated, v.CreateIndex, datasetVersionJSON(v))
}

// writeFrame answers a point-in-time frame: {"features": [...], "rows":
// [{<the entity row as given>, "values": {...}}]}. It writes the JSON
// itself: a frame of 100,000 rows by 10 features is a million values, and
// encoding/json's reflection over maps was most of the time.
func writeFrame(w http.ResponseWriter, names []string, rows []map[string]any, fr *featureFrame) {
	b := make([]byte, 0, 64+len(rows)*(64+24*len(names)))
	b = append(b, `{"features":[`...)
	quoted := make([][]byte, len(names))
	for j, name := range names {
		quoted[j] = appendJSONString(nil, name)
		if j > 0 {
			b = append(b, ',')
		}
		b = append(b, quoted[j]...)
	}
	b = append(b, `],"rows":[`...)
	var keys []string
	for i, row := range rows {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '{')
		keys = keys[:0]
		for k := range row {
			if k != "values" {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSONValue(b, row[k])
			b = append(b, ',')
		}
		b = append(b, `"values":{`...)
		for j := range names {
			if j > 0 {
				b = append(b, ',')
			}
			b = append(b, quoted[j]...)
			b = append(b, ':')
			b = appendJSONValue(b, fr.values[i][j])
		}
		b = append(b, "}}"...)
	}
	b = append(b, "]}\n"...)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// featuresEndpoint: entities, feature views and services, and feature
// reads.
func (a *Agent) featuresEndpoint() endpoint {
	f := structs.KindFeature
	return endpoint{routes: []route{
		{pattern: "PUT /v1/entities/{name}", handler: a.handleEntityPut, kind: f, need: needWrite, name: pathName},
		{pattern: "GET /v1/entities", handler: a.handleEntityList, kind: f, need: needList},
		{pattern: "GET /v1/entities/{name}", handler: handleNamedGet(a, func(t *raftfsm.Txn) func(string) (*structs.Entity, error) { return t.Entity }), kind: f, need: needRead, name: pathName},
		{pattern: "DELETE /v1/entities/{name}", handler: a.handleNamedDelete(structs.EntityDeleteType), kind: f, need: needWrite, name: pathName},
		{pattern: "PUT /v1/feature-views/{name}", handler: a.handleFeatureViewPut, kind: f, need: needWrite, name: pathName},
		{pattern: "GET /v1/feature-views", handler: a.handleFeatureViewList, kind: f, need: needList},
		{pattern: "GET /v1/feature-views/{name}", handler: handleNamedGet(a, func(t *raftfsm.Txn) func(string) (*structs.FeatureView, error) { return t.FeatureView }), kind: f, need: needRead, name: pathName},
		{pattern: "DELETE /v1/feature-views/{name}", handler: a.handleNamedDelete(structs.FeatureViewDeleteType), kind: f, need: needWrite, name: pathName},
		{pattern: "PUT /v1/feature-services/{name}", handler: a.handleFeatureServicePut, kind: f, need: needWrite, name: pathName},
		{pattern: "GET /v1/feature-services", handler: a.handleFeatureServiceList, kind: f, need: needList},
		{pattern: "GET /v1/feature-services/{name}", handler: handleNamedGet(a, func(t *raftfsm.Txn) func(string) (*structs.FeatureService, error) { return t.FeatureService }), kind: f, need: needRead, name: pathName},
		{pattern: "DELETE /v1/feature-services/{name}", handler: a.handleNamedDelete(structs.FeatureServiceDeleteType), kind: f, need: needWrite, name: pathName},
		{pattern: "POST /v1/features/online", handler: a.handleFeaturesOnline, kind: f, need: needBody},
		{pattern: "POST /v1/features/historical", handler: a.handleFeaturesHistorical, kind: f, need: needBody},
	}}
}

func (a *Agent) handleEntityList(w http.ResponseWriter, r *http.Request) {
	serveList(a, w, r, structs.KindFeature,
		func(txn *raftfsm.Txn) func(string, int) ([]*structs.Entity, string, error) { return txn.Entities },
		func(e *structs.Entity) string { return e.Name }, func(e *structs.Entity) *structs.Entity { return e })
}

func (a *Agent) handleFeatureViewList(w http.ResponseWriter, r *http.Request) {
	serveList(a, w, r, structs.KindFeature,
		func(txn *raftfsm.Txn) func(string, int) ([]*structs.FeatureView, string, error) {
			return txn.FeatureViews
		},
		func(v *structs.FeatureView) string { return v.Name }, func(v *structs.FeatureView) *structs.FeatureView { return v })
}

func (a *Agent) handleFeatureServiceList(w http.ResponseWriter, r *http.Request) {
	serveList(a, w, r, structs.KindFeature,
		func(txn *raftfsm.Txn) func(string, int) ([]*structs.FeatureService, string, error) {
			return txn.FeatureServices
		},
		func(s *structs.FeatureService) string { return s.Name }, func(s *structs.FeatureService) *structs.FeatureService { return s })
}
