package node

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/kilnml/kiln/actors/data"
	"github.com/kilnml/kiln/ml/dataset"
	"github.com/kilnml/kiln/raftfsm"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// setupSources builds this node's source reconciler (DESIGN.md §8); New
// starts it with the others.
func (a *Agent) setupSources() {
	a.sources = data.NewReconciler(data.ReconcilerConfig{
		NodeID: a.id,
		System: a.actors,
		View: func() (data.Registry, func()) {
			txn := a.fsm.ReadTxn()
			return txn, txn.Discard
		},
		Changed: a.fsm.Changed,
		Index:   a.fsm.IndexFunc(raftfsm.TableSources),
		Host:    sourcesHost{a},
		Logger:  a.logger,
	})
}

// sourcesHost is what ingestion actors need of the node.
type sourcesHost struct{ a *Agent }

func (h sourcesHost) Source(name string) (*structs.Source, []*structs.FeatureView, map[string]*structs.Entity, error) {
	txn := h.a.fsm.ReadTxn()
	defer txn.Discard()
	s, err := txn.Source(name)
	if err != nil {
		return nil, nil, nil, err
	}
	views, entities, err := sourceViews(txn, name)
	return s, views, entities, err
}

func (h sourcesHost) Ingest(ctx context.Context, req *structs.SourceIngestRequest) error {
	_, err := h.a.ingest(ctx, req)
	return err
}

// ingest commits a batch of a source and mirrors its rows to the Redis
// online store when there is one. A failed mirror write fails nothing: the
// batch is committed, and the leader's resync brings Redis up to date.
func (a *Agent) ingest(ctx context.Context, req *structs.SourceIngestRequest) (uint64, error) {
	data, err := structs.Encode(structs.SourceIngestType, req)
	if err != nil {
		return 0, err
	}
	return a.ingestEncoded(ctx, req, data)
}

// ingestEncoded is ingest for a request already encoded as data.
func (a *Agent) ingestEncoded(ctx context.Context, req *structs.SourceIngestRequest, data []byte) (uint64, error) {
	var res structs.SourceIngestResult
	idx, err := a.proposeEncoded(ctx, data, &res)
	if err != nil {
		return 0, err
	}
	if a.redis != nil && len(req.Rows) > 0 {
		if err := a.redis.write(ctx, req.Rows, res.Seqs); err != nil {
			a.logger.Warn("writing the latest feature values to Redis failed; the next resync repairs it", "source", req.Source, "error", err)
		}
	}
	return idx, nil
}

func (h sourcesHost) ReportRun(ctx context.Context, req *structs.SourceRunRequest) (*structs.SourceRun, error) {
	var run structs.SourceRun
	if _, err := h.a.propose(ctx, structs.SourceRunType, req, &run); err != nil {
		return nil, err
	}
	return &run, nil
}

// sourceHTTPClient reads HTTP sources: no overall timeout (a large answer
// may take long), but one for the headers.
var sourceHTTPClient = &http.Client{Transport: &http.Transport{
	Proxy:                 http.ProxyFromEnvironment,
	ResponseHeaderTimeout: time.Minute,
	IdleConnTimeout:       time.Minute,
}}

func (h sourcesHost) OpenReader(s *structs.Source) (data.Reader, error) {
	return data.Open(s, data.Env{Logger: h.a.logger.Named("sources"), Datasets: h.a.datasetFiles}, sourceHTTPClient)
}

func (h sourcesHost) Changed() <-chan struct{} { return h.a.fsm.Changed() }

func (h sourcesHost) FeatureIndex() uint64 { return h.a.sourceTablesIndex() }

// Output writes a run's accepted records as JSON lines into a temporary
// file of the blob store, and its quarantined ones into another; at the
// run's end the first is stored as the source's dataset's next version,
// with the source's schema pinned and the second as its quarantine.
func (h sourcesHost) Output(s *structs.Source, run *structs.SourceRun) (data.Output, error) {
	if s.Spec.Kind == structs.SourceDataset {
		return nil, nil // its records are a dataset's already
	}
	return h.a.newDatasetOutput(s)
}

// datasetFiles lists a dataset's versions after a number, fetched to local
// files, for a dataset source.
func (a *Agent) datasetFiles(ctx context.Context, name string, after uint64) ([]data.DatasetFile, error) {
	txn := a.fsm.ReadTxn()
	var versions []*structs.DatasetVersion
	cursor := ""
	for {
		page, next, err := txn.DatasetVersions(name, cursor, 1000)
		if err != nil {
			txn.Discard()
			return nil, err
		}
		for _, v := range page {
			if v.Version > after {
				versions = append(versions, v)
			}
		}
		if next == "" {
			break
		}
		cursor = next
	}
	txn.Discard()
	out := make([]data.DatasetFile, 0, len(versions))
	for _, v := range versions {
		path, err := a.xfer.Ensure(ctx, v.Digest, v.Holders)
		if err != nil {
			return nil, fmt.Errorf("fetching %s: %w", v.Ref(), err)
		}
		cols := make([]dataset.Column, len(v.Columns))
		for i, c := range v.Columns {
			cols[i] = dataset.Column{Name: c.Name, Type: dataset.Type(c.Type)}
		}
		out = append(out, data.DatasetFile{Version: v.Version, Path: path, Format: v.Format, Size: v.Size, NoHeader: v.NoHeader, Columns: cols, Failed: v.FailedValidation})
	}
	return out, nil
}

func (a *Agent) newDatasetOutput(s *structs.Source) (*datasetOutput, error) {
	f, err := a.blobs.TempFile()
	if err != nil {
		return nil, err
	}
	sum := sha256.New()
	return &datasetOutput{a: a, source: s, f: f, sum: sum, w: bufio.NewWriterSize(io.MultiWriter(f, sum), 256<<10)}, nil
}

// datasetOutput is a run's dataset file in the making.
type datasetOutput struct {
	a      *Agent
	source *structs.Source
	f      *os.File
	sum    hash.Hash
	w      *bufio.Writer
	size   int64
	rows   int64
	// q holds the quarantined records, from the first one on.
	q       *quarantineWriter
	qRows   int64
	qSample []structs.BadRow
}

func (o *datasetOutput) Write(recs []data.Record) error {
	for _, r := range recs {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		n, err := o.w.Write(append(b, '\n'))
		if err != nil {
			return err
		}
		o.size += int64(n)
		o.rows++
	}
	return nil
}

// sourceQuarantineRow is one line of a source run's quarantine blob.
type sourceQuarantineRow struct {
	Offset string `json:"offset"`
	Rule   string `json:"rule"`
	Reason string `json:"reason"`
	Raw    string `json:"raw"`
}

func (o *datasetOutput) Quarantine(recs []data.Quarantined) error {
	if len(recs) == 0 {
		return nil
	}
	if o.q == nil {
		f, err := o.a.blobs.TempFile()
		if err != nil {
			return err
		}
		o.q = newQuarantineWriter(f)
	}
	for _, r := range recs {
		if err := o.q.enc.Encode(sourceQuarantineRow(r)); err != nil {
			return err
		}
		o.qRows++
		if len(o.qSample) < structs.MaxBadRowSample {
			o.qSample = append(o.qSample, structs.BadRow{Line: o.qRows, Reason: truncateReason(r.Rule + ": " + r.Reason + " (" + r.Offset + ")")})
		}
	}
	return nil
}

func truncateReason(s string) string {
	if len(s) <= structs.MaxBadRowReasonLen {
		return s
	}
	return data.CutRaw(s[:structs.MaxBadRowReasonLen])
}

func (o *datasetOutput) Close(ctx context.Context, keep bool, failed []string) (string, error) {
	defer os.Remove(o.f.Name()) // moved away when committed
	err := o.w.Flush()
	if cerr := o.f.Close(); err == nil {
		err = cerr
	}
	var extra *quarantine
	if o.q != nil {
		defer os.Remove(o.q.f.Name())
		size, digest, qerr := o.q.close()
		if err == nil {
			err = qerr
		}
		extra = &quarantine{tmp: o.q.f.Name(), rec: structs.Quarantine{Digest: digest, Size: size, Rows: o.qRows, Sample: o.qSample}}
	}
	if err != nil || !keep || o.rows == 0 {
		return "", err
	}
	spec := &o.source.Spec
	var schema []dataset.Column
	for _, name := range slices.Sorted(maps.Keys(spec.Schema)) {
		schema = append(schema, dataset.Column{Name: name, Type: dataset.Type(spec.Schema[name])})
	}
	mode := structs.ModeStrict
	if extra != nil {
		mode = structs.ModeLenient // the version lists its quarantine
	}
	v := structs.DatasetVersion{
		Dataset: spec.Dataset, Format: structs.DatasetJSONL, Mode: mode,
		Digest: hex.EncodeToString(o.sum.Sum(nil)), Size: o.size,
		Source: spec.Name, FailedValidation: failed,
	}
	stored, _, err := o.a.storeDatasetFile(ctx, &v, o.f.Name(), schema, extra)
	if err != nil {
		return "", err
	}
	return stored.Ref(), nil
}
