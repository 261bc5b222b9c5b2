package node

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/kilnml/kiln/actors/data"
	"github.com/kilnml/kiln/raftfsm"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// Sources (DESIGN.md §8): declared through the API, read by ingestion
// actors, or fed by producers through the push endpoint.

// checkSecretsHere refuses a spec whose credential file or variable this
// node lacks: the node that takes the request checks what it can, so that
// a typo is a 400 at once rather than a failing run later. (A source read
// on another node needs the same file or variable there.)
func checkSecretsHere(spec *structs.SourceSpec) error {
	var secrets []struct {
		field string
		s     structs.Secret
	}
	add := func(field string, s structs.Secret) {
		if s.Set() {
			secrets = append(secrets, struct {
				field string
				s     structs.Secret
			}{field, s})
		}
	}
	switch {
	case spec.Postgres != nil:
		add("postgres.password", spec.Postgres.Password)
	case spec.HTTP != nil:
		add("http.token", spec.HTTP.Token)
	case spec.NATS != nil:
		add("nats.token", spec.NATS.Token)
	}
	for _, s := range secrets {
		if _, err := (data.Env{}).Resolve(s.field, s.s); err != nil {
			return structs.Errorf(structs.CodeInvalid, "%v", err)
		}
	}
	return nil
}

// handleSourcePut creates a source, or replaces its spec (kiln sources
// apply).
func (a *Agent) handleSourcePut(w http.ResponseWriter, r *http.Request) {
	var spec structs.SourceSpec
	if err := a.decodeBody(w, r, &spec); err != nil {
		writeError(w, err)
		return
	}
	if err := a.fillDatasetSchema(&spec); err != nil {
		writeError(w, err)
		return
	}
	spec.Normalize()
	if err := spec.Validate(); err != nil {
		writeError(w, err)
		return
	}
	if err := a.authorize(r, structs.KindSource, spec.Name, structs.AccessWrite); err != nil {
		writeError(w, err)
		return
	}
	if sched, err := structs.ParseSchedule(spec.Schedule); err == nil && sched.Cron != "" {
		if _, err := cronParser.Parse(sched.Cron); err != nil {
			writeError(w, structs.Errorf(structs.CodeInvalid, "schedule %q: %v", spec.Schedule, err))
			return
		}
	}
	if err := checkSecretsHere(&spec); err != nil {
		writeError(w, err)
		return
	}
	serveWrite[structs.Source](a, w, r, structs.SourcePutType, &structs.SourcePutRequest{Spec: spec, At: time.Now().UTC()}, http.StatusOK)
}

// fillDatasetSchema gives a dataset source without a schema its dataset's
// columns, as the latest version has them.
func (a *Agent) fillDatasetSchema(spec *structs.SourceSpec) error {
	if spec.Kind != structs.SourceDataset || spec.FromDataset == nil || len(spec.Schema) > 0 {
		return nil
	}
	txn := a.fsm.ReadTxn()
	defer txn.Discard()
	v, err := txn.DatasetVersion(spec.FromDataset.Name, 0)
	if err != nil {
		return structs.Errorf(structs.CodeInvalid, "from_dataset: %v", err)
	}
	spec.Schema = make(map[string]string, len(v.Columns))
	for _, c := range v.Columns {
		spec.Schema[c.Name] = c.Type
	}
	return nil
}

func (a *Agent) handleSourceList(w http.ResponseWriter, r *http.Request) {
	serveList(a, w, r, structs.KindSource,
		func(txn *raftfsm.Txn) func(string, int) ([]*structs.Source, string, error) { return txn.Sources },
		func(s *structs.Source) string { return s.Spec.Name }, func(s *structs.Source) *structs.Source { return s })
}

func (a *Agent) handleSourcePause(paused bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if err := structs.ValidateName("name", name); err != nil {
			writeError(w, err)
			return
		}
		serveWrite[structs.Source](a, w, r, structs.SourcePauseType, &structs.SourcePauseRequest{Name: name, Paused: paused, At: time.Now().UTC()}, http.StatusOK)
	}
}

// handleSourceRun asks for a run of the source now (kiln sources run).
func (a *Agent) handleSourceRun(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := structs.ValidateName("name", name); err != nil {
		writeError(w, err)
		return
	}
	var stored structs.Source
	idx, err := a.propose(r.Context(), structs.SourceTriggerType, &structs.SourceTriggerRequest{Name: name, At: time.Now().UTC()}, &stored)
	if err != nil {
		writeError(w, err)
		return
	}
	writeCommitted(w, http.StatusAccepted, idx, map[string]any{"source": name, "trigger": stored.Triggers})
}

// handleSourceReset clears a rereadable source's position (kiln sources
// reset): its next run reads everything again.
func (a *Agent) handleSourceReset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := structs.ValidateName("name", name); err != nil {
		writeError(w, err)
		return
	}
	serveWrite[structs.Source](a, w, r, structs.SourceResetType, &structs.SourceTriggerRequest{Name: name, At: time.Now().UTC()}, http.StatusOK)
}

func (a *Agent) handleSourceRuns(w http.ResponseWriter, r *http.Request) {
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
		if _, err := txn.Source(name); err != nil {
			return nil, err
		}
		items, next, err := txn.SourceRuns(name, cursor, limit)
		if err != nil {
			return nil, err
		}
		return map[string]any{"items": items, "next_cursor": next}, nil
	})
}

func (a *Agent) handleSourceRunGet(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := structs.ValidateName("name", name); err != nil {
		writeError(w, err)
		return
	}
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil || seq == 0 {
		writeError(w, structs.Errorf(structs.CodeInvalid, "run number %q is not a number from 1", r.PathValue("seq")))
		return
	}
	serveRead(a, w, r, func(txn *raftfsm.Txn) (*structs.SourceRun, error) { return txn.SourceRun(name, seq) })
}

// Push ingestion.
const (
	// pushBatchRecords is how many records of a push go into one commit at
	// most; fewer when their rows would pass maxIngestBytes.
	pushBatchRecords = 4000
	// maxIngestBytes bounds one ingest command, within what one Badger
	// transaction of the FSM takes (1.5 MiB with room for the records'
	// keys and the source and view records).
	maxIngestBytes = 1 << 20
	// maxPushLine bounds one NDJSON record.
	maxPushLine = 1 << 20
	// maxQuarantineSample is how many quarantined records a push answer
	// lists.
	maxQuarantineSample = 100
)

// pushResult answers a push: how far it got. On an error it says how many
// lines were committed before it, so that the producer can resend the rest.
type pushResult struct {
	Read           int64              `json:"read"`
	Accepted       int64              `json:"accepted"`
	Quarantined    int64              `json:"quarantined"`
	CommittedLines int64              `json:"committed_lines"`
	Quarantine     []data.Quarantined `json:"quarantine"`
	Error          string             `json:"error,omitempty"`
	Code           string             `json:"code,omitempty"`
}

// handleSourcePush takes NDJSON records for a push source, one record a
// line. Records are converted to the source's schema, checked against its
// expectations, and committed with their feature rows in batches; a bad
// record is quarantined and listed, never dropped silently, and never
// stops the push. Each batch is committed whole or not at all: the answer
// says how many lines are committed.
func (a *Agent) handleSourcePush(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := structs.ValidateName("name", name); err != nil {
		writeError(w, err)
		return
	}
	src, prep, err := a.pushPreparer(name)
	if err != nil {
		writeError(w, err)
		return
	}
	res := pushResult{Quarantine: []data.Quarantined{}}
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(make([]byte, 64<<10), maxPushLine)
	var batch data.Batch
	var lines []int64  // line number of each record in batch.Records
	var texts []string // and its text
	line := int64(0)
	lastIndex := uint64(0) // of the last commit: the answer's X-Kiln-Index
	flush := func() error {
		if batch.Len() == 0 {
			return nil
		}
		p := prep.Prepare(&batch, func(i int) string { return fmt.Sprintf("line %d", lines[i]) }, func(i int) string { return texts[i] })
		idx, err := a.commitPushed(r, name, int64(batch.Len()), p)
		if err != nil {
			return err
		}
		lastIndex = idx
		if err := a.pushes.write(r.Context(), src, p); err != nil {
			a.logger.Warn("keeping pushed records for the dataset failed", "source", name, "error", err)
		}
		res.Read += int64(batch.Len())
		res.Accepted += int64(len(p.Accepted))
		res.Quarantined += int64(len(p.Quarantined))
		res.CommittedLines = line
		for _, q := range p.Quarantined {
			if len(res.Quarantine) < maxQuarantineSample {
				res.Quarantine = append(res.Quarantine, q)
			}
		}
		batch, lines, texts = data.Batch{}, lines[:0], texts[:0]
		return nil
	}
	fail := func(err error) {
		var ce *structs.CodedError
		if !errors.As(err, &ce) {
			ce = &structs.CodedError{Code: structs.CodeInternal, Message: err.Error()}
		}
		res.Error, res.Code = ce.Message, ce.Code
		if lastIndex > 0 {
			w.Header().Set("X-Kiln-Index", strconv.FormatUint(lastIndex, 10))
		}
		writeJSON(w, httpStatus(ce.Code), &res)
	}
	for sc.Scan() {
		line++
		text := sc.Bytes()
		if len(bytes.TrimSpace(text)) == 0 {
			continue
		}
		rec, err := data.DecodeJSONRecord(text)
		if err != nil {
			batch.Bad = append(batch.Bad, data.BadRecord{Offset: fmt.Sprintf("line %d", line), Reason: err.Error(), Raw: data.CutRaw(string(text))})
		} else {
			batch.Records = append(batch.Records, rec)
			lines = append(lines, line)
			texts = append(texts, data.CutRaw(string(text)))
		}
		if batch.Len() >= pushBatchRecords {
			if err := flush(); err != nil {
				fail(err)
				return
			}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = structs.Errorf(structs.CodeTooLarge, "line %d is longer than %d bytes", line+1, maxPushLine)
		} else {
			err = structs.Errorf(structs.CodeInvalid, "reading the body: %v", err)
		}
		if ferr := flush(); ferr != nil {
			err = ferr
		}
		fail(err)
		return
	}
	if err := flush(); err != nil {
		fail(err)
		return
	}
	if res.Read == 0 {
		fail(structs.Errorf(structs.CodeInvalid, "the body holds no records: send NDJSON, one JSON object a line"))
		return
	}
	writeCommitted(w, http.StatusOK, lastIndex, &res)
}

// pushPreparer compiles what a push source's records go through, from this
// node's registry.
func (a *Agent) pushPreparer(name string) (*structs.Source, *data.Preparer, error) {
	txn := a.fsm.ReadTxn()
	defer txn.Discard()
	s, err := txn.Source(name)
	if err != nil {
		return nil, nil, err
	}
	if s.Spec.Kind != structs.SourcePush {
		return nil, nil, structs.Errorf(structs.CodeConflict, "source %q is a %s source; only a push source takes records", name, s.Spec.Kind)
	}
	if s.Paused {
		return nil, nil, structs.Errorf(structs.CodeConflict, "source %q is paused; resume it first", name)
	}
	p, err := sourcePreparer(txn, s)
	return s, p, err
}

// sourcePreparer builds a source's Preparer with the feature views that
// read it.
func sourcePreparer(txn *raftfsm.Txn, s *structs.Source) (*data.Preparer, error) {
	views, entities, err := sourceViews(txn, s.Spec.Name)
	if err != nil {
		return nil, err
	}
	p, err := data.NewPreparer(&s.Spec, views, entities)
	if err != nil {
		return nil, structs.Errorf(structs.CodeConflict, "%v", err)
	}
	return p, nil
}

// sourceViews lists the feature views that read a source, with their
// entities.
func sourceViews(txn *raftfsm.Txn, source string) ([]*structs.FeatureView, map[string]*structs.Entity, error) {
	var views []*structs.FeatureView
	entities := make(map[string]*structs.Entity)
	cursor := ""
	for {
		page, next, err := txn.FeatureViews(cursor, 1000)
		if err != nil {
			return nil, nil, err
		}
		for _, v := range page {
			if v.Source != source {
				continue
			}
			views = append(views, v)
			if entities[v.Entity] == nil {
				e, err := txn.Entity(v.Entity)
				if err != nil {
					return nil, nil, err
				}
				entities[v.Entity] = e
			}
		}
		if next == "" {
			return views, entities, nil
		}
		cursor = next
	}
}

// commitPushed commits a prepared batch of a push, in as many commands as
// its size needs (a push has no position to keep in step, so splitting it
// loses nothing: each command is whole or absent).
func (a *Agent) commitPushed(r *http.Request, source string, read int64, p *data.Prepared) (uint64, error) {
	rows := p.Rows
	perRecord := 0
	if len(p.Accepted) > 0 {
		perRecord = len(rows) / len(p.Accepted)
	}
	req := structs.SourceIngestRequest{Source: source, Read: read, Quarantined: int64(len(p.Quarantined)), Accepted: int64(len(p.Accepted)), At: time.Now().UTC()}
	n := len(rows)
	for {
		req.Rows = rows[:min(n, structs.MaxIngestRows)]
		enc, err := structs.Encode(structs.SourceIngestType, &req)
		if err != nil {
			return 0, err
		}
		if len(enc) > maxIngestBytes && len(req.Rows) > 1 {
			n = len(req.Rows) / 2
			if perRecord > 0 {
				n -= n % perRecord // keep a record's rows together
				n = max(n, perRecord)
			}
			continue
		}
		idx, err := a.ingestEncoded(r.Context(), &req, enc)
		if err != nil {
			return 0, err
		}
		rows = rows[len(req.Rows):]
		if len(rows) == 0 {
			return idx, nil
		}
		// The counts went with the first command.
		req.Read, req.Accepted, req.Quarantined = 0, 0, 0
		n = len(rows)
	}
}

// sourcesEndpoint: sources and push ingestion.
func (a *Agent) sourcesEndpoint() endpoint {
	s := structs.KindSource
	return endpoint{routes: []route{
		{pattern: "POST /v1/sources", handler: a.handleSourcePut, kind: s, need: needBody},
		{pattern: "GET /v1/sources", handler: a.handleSourceList, kind: s, need: needList},
		{pattern: "GET /v1/sources/{name}", handler: handleNamedGet(a, func(t *raftfsm.Txn) func(string) (*structs.Source, error) { return t.Source }), kind: s, need: needRead, name: pathName},
		{pattern: "DELETE /v1/sources/{name}", handler: a.handleNamedDelete(structs.SourceDeleteType), kind: s, need: needWrite, name: pathName},
		{pattern: "POST /v1/sources/{name}/pause", handler: a.handleSourcePause(true), kind: s, need: needWrite, name: pathName},
		{pattern: "POST /v1/sources/{name}/resume", handler: a.handleSourcePause(false), kind: s, need: needWrite, name: pathName},
		{pattern: "POST /v1/sources/{name}/records", handler: a.handleSourcePush, kind: s, need: needWrite, name: pathName},
		{pattern: "POST /v1/sources/{name}/run", handler: a.handleSourceRun, kind: s, need: needWrite, name: pathName},
		{pattern: "POST /v1/sources/{name}/reset", handler: a.handleSourceReset, kind: s, need: needWrite, name: pathName},
		{pattern: "GET /v1/sources/{name}/runs", handler: a.handleSourceRuns, kind: s, need: needRead, name: pathName},
		{pattern: "GET /v1/sources/{name}/runs/{seq}", handler: a.handleSourceRunGet, kind: s, need: needRead, name: pathName},
	}}
}
