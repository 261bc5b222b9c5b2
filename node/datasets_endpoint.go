package node

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kilnml/kiln/ml/dataset"
	"github.com/kilnml/kiln/ml/stats"
	"github.com/kilnml/kiln/node/internal/blobs"
	"github.com/kilnml/kiln/raftfsm"
	"github.com/kilnml/kiln/raftfsm/structs"
	"github.com/vmihailenco/msgpack/v5"
)

// Datasets (DESIGN.md §7): files in the artifact store, with their schema and
// column statistics in the registry.

const (
	// defaultPreviewRows and maxPreviewRows bound GET .../rows?limit=.
	defaultPreviewRows = 20
	maxPreviewRows     = 1000
)

// handleDatasetVersionCreate takes a dataset file as the request body and
// records it as the dataset's next version. As for a model file, the order
// makes an acknowledged upload durable and a rejected one leave nothing:
//
//  1. stream the body to a temporary file, hashing it;
//  2. read it once (ml/dataset): schema, statistics and bad rows. In strict
//     mode a bad row refuses the upload, naming its line; in lenient mode
//     the bad rows go to a quarantine file;
//  3. store the file (and the quarantine) and copy them to
//     artifact_replicas-1 other nodes;
//  4. only then propose the version.
//
// Query parameters: format (else detected from the file), schema (a JSON
// array of {"name", "type"}, pinning the columns), mode (strict or lenient).
func (a *Agent) handleDatasetVersionCreate(w http.ResponseWriter, r *http.Request) {
	w, body := longRequest(w, r, a.cfg.Limits.UploadIdleTimeout)
	name := r.PathValue("name")
	if err := structs.ValidateName("name", name); err != nil {
		writeError(w, err)
		return
	}
	up, err := datasetUploadFromQuery(r)
	if err != nil {
		writeError(w, err)
		return
	}
	release, err := a.acquireUpload()
	if err != nil {
		writeError(w, err)
		return
	}
	defer release()

	tmp, digest, size, err := a.blobs.Ingest(body, a.cfg.Limits.MaxDatasetBytes)
	switch {
	case errors.Is(err, blobs.ErrTooLarge):
		writeError(w, structs.Errorf(structs.CodeTooLarge, "dataset file is larger than limits.max_dataset_bytes (%d bytes)", a.cfg.Limits.MaxDatasetBytes))
		return
	case errors.Is(err, errUploadStalled):
		writeError(w, stalledError(a.cfg.Limits.UploadIdleTimeout))
		return
	case err != nil:
		writeError(w, structs.Errorf(structs.CodeInvalid, "reading the dataset file: %v", err))
		return
	}
	defer os.Remove(tmp) // moved away when committed
	if size == 0 {
		writeError(w, structs.Errorf(structs.CodeInvalid, "request body is empty: send the dataset file"))
		return
	}
	v := structs.DatasetVersion{Dataset: name, Format: up.format, Mode: up.mode, NoHeader: up.noHeader, Digest: digest, Size: size}
	stored, idx, err := a.storeDatasetFile(r.Context(), &v, tmp, up.schema, nil)
	if err != nil {
		writeError(w, err)
		return
	}
	writeCommitted(w, http.StatusCreated, idx, datasetVersionJSON(stored))
}

// storeDatasetFile records a dataset file, held in tmp with v's digest and
// size set, as the dataset's next version: it scans it (schema,
// statistics, bad rows), stores it and its quarantine, copies them to other
// nodes, and only then proposes the version. tmp is moved into the store
// when committed; the caller removes it otherwise. extra is a quarantine
// the caller wrote (a source run's), for a file that has none of its own.
func (a *Agent) storeDatasetFile(ctx context.Context, v *structs.DatasetVersion, tmp string, schema []dataset.Column, extra *quarantine) (*structs.DatasetVersion, uint64, error) {
	q, sample, err := a.scanDataset(v, tmp, schema)
	if q == nil && err == nil {
		q = extra
	}
	if q != nil {
		defer os.Remove(q.tmp)
	}
	if sample != nil {
		defer os.Remove(sample.tmp)
	}
	if err != nil {
		return nil, 0, err
	}
	digests := []string{v.Digest}
	if err := a.blobs.Commit(tmp, v.Digest); err != nil {
		return nil, 0, err
	}
	if q != nil {
		if err := a.blobs.Commit(q.tmp, q.rec.Digest); err != nil {
			return nil, 0, err
		}
		digests = append(digests, q.rec.Digest)
	}
	if sample != nil {
		if err := a.blobs.Commit(sample.tmp, sample.rec.Digest); err != nil {
			return nil, 0, err
		}
		digests = append(digests, sample.rec.Digest)
	}
	holders, err := a.replicateBlobs(ctx, digests...)
	if err != nil {
		return nil, 0, err
	}
	v.Holders = holders
	if q != nil {
		q.rec.Holders = holders
		v.Quarantine = &q.rec
	}
	if sample != nil {
		sample.rec.Holders = holders
		v.Sample = &sample.rec
	}
	v.CreatedAt = time.Now().UTC()
	if err := v.Validate(); err != nil {
		return nil, 0, err
	}
	var stored structs.DatasetVersion
	idx, err := a.propose(ctx, structs.DatasetVersionCreateType, &structs.DatasetVersionCreateRequest{Version: *v}, &stored)
	if err != nil {
		return nil, 0, err
	}
	return &stored, idx, nil
}

// datasetUpload is what an upload's query asks.
type datasetUpload struct {
	format   string
	mode     string
	schema   []dataset.Column
	noHeader bool
}

func datasetUploadFromQuery(r *http.Request) (datasetUpload, error) {
	q := r.URL.Query()
	up := datasetUpload{format: q.Get("format"), mode: q.Get("mode")}
	for key := range q {
		switch key {
		case "format", "mode", "schema", "header":
		default:
			return up, structs.Errorf(structs.CodeInvalid, "unknown query parameter %q: use format, mode, schema or header", key)
		}
	}
	switch q.Get("header") {
	case "", "true":
	case "false":
		up.noHeader = true
	default:
		return up, structs.Errorf(structs.CodeInvalid, "header must be true (the first line names the columns) or false (it is data; columns are c0, c1, ...), not %q", q.Get("header"))
	}
	if up.format != "" && !slices.Contains(structs.DatasetFormats, up.format) {
		return up, structs.Errorf(structs.CodeInvalid, "format %q is unknown: use one of %s", up.format, strings.Join(structs.DatasetFormats, ", "))
	}
	switch up.mode {
	case "":
		up.mode = structs.ModeStrict
	case structs.ModeStrict, structs.ModeLenient:
	default:
		return up, structs.Errorf(structs.CodeInvalid, "mode %q is unknown: use strict (the default: a bad row refuses the upload) or lenient (bad rows are quarantined)", up.mode)
	}
	if s := q.Get("schema"); s != "" {
		if err := decodeJSON(strings.NewReader(s), &up.schema); err != nil {
			return up, structs.Errorf(structs.CodeInvalid, "query parameter schema: %v; give a JSON array such as [{\"name\":\"x\",\"type\":\"float\"}]", err)
		}
		if len(up.schema) == 0 {
			return up, structs.Errorf(structs.CodeInvalid, "query parameter schema is an empty array")
		}
		for i, c := range up.schema {
			if c.Name == "" || !slices.Contains(structs.ColumnTypes, string(c.Type)) {
				return up, structs.Errorf(structs.CodeInvalid, "schema[%d]: name %q with type %q: a name is required, and the type is one of %s", i, c.Name, c.Type, strings.Join(structs.ColumnTypes, ", "))
			}
		}
	}
	return up, nil
}

// quarantine is a lenient upload's bad rows, in a temporary file until it is
// committed as a blob.
type quarantine struct {
	tmp string
	rec structs.Quarantine
}

// errTooManyBadRows stops a strict scan once it has enough bad rows to report.
var errTooManyBadRows = errors.New("too many bad rows")

// scanDataset reads the file at path once: it settles v's format, columns
// and rows, and returns the quarantine of a lenient upload's bad rows (nil
// when there were none). A strict upload with a bad row is refused with the
// first MaxBadRowSample of them, by line.
func (a *Agent) scanDataset(v *structs.DatasetVersion, path string, schema []dataset.Column) (*quarantine, *sampleFile, error) {
	q, res, err := a.scanDatasetFile(v, path, schema)
	if err != nil || res.Sample == nil {
		return q, nil, err
	}
	sample, err := a.writeSample(res.Sample)
	return q, sample, err
}

// sampleFile is a dataset version's reservoir sample, in a temporary file
// until it is committed as a blob.
type sampleFile struct {
	tmp string
	rec structs.DatasetSample
}

// writeSample writes a sample's blob (msgpack of dataset.Sample) to a
// temporary file.
func (a *Agent) writeSample(s *dataset.Sample) (*sampleFile, error) {
	b, err := msgpack.Marshal(s)
	if err != nil {
		return nil, err
	}
	f, err := a.blobs.TempFile()
	if err != nil {
		return nil, err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return nil, err
	}
	sum := sha256.Sum256(b)
	return &sampleFile{tmp: f.Name(), rec: structs.DatasetSample{Digest: hex.EncodeToString(sum[:]), Size: int64(len(b)), Rows: int64(s.Rows)}}, nil
}

func (a *Agent) scanDatasetFile(v *structs.DatasetVersion, path string, schema []dataset.Column) (*quarantine, *dataset.Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	if v.Format == "" {
		head := make([]byte, 4096)
		n, _ := io.ReadFull(f, head)
		format, ok := dataset.Detect(head[:n])
		if !ok {
			return nil, nil, structs.Errorf(structs.CodeInvalid, "the file's format could not be detected; give ?format= (one of %s)", strings.Join(structs.DatasetFormats, ", "))
		}
		v.Format = string(format)
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, nil, err
		}
	}
	var q *quarantine
	var qw *quarantineWriter
	var sample []structs.BadRow
	if v.NoHeader && v.Format != structs.DatasetCSV && v.Format != structs.DatasetTSV {
		return nil, nil, structs.Errorf(structs.CodeInvalid, "header=false is only for csv and tsv files, not %s", v.Format)
	}
	opts := dataset.Options{Format: dataset.Format(v.Format), Schema: schema, Seed: digestSeed(v.Digest), NoHeader: v.NoHeader, SampleRows: structs.MaxDatasetSample}
	opts.OnBadRow = func(bad dataset.BadRow, raw []byte) error {
		if len(sample) < structs.MaxBadRowSample {
			sample = append(sample, structs.BadRow{Line: bad.Line, Reason: structs.TruncateUTF8(bad.Reason, structs.MaxBadRowReasonLen)})
		}
		if v.Mode == structs.ModeStrict {
			if len(sample) == structs.MaxBadRowSample {
				return errTooManyBadRows
			}
			return nil
		}
		if qw == nil {
			tf, err := a.blobs.TempFile()
			if err != nil {
				return err
			}
			q = &quarantine{tmp: tf.Name()}
			qw = newQuarantineWriter(tf)
		}
		return qw.write(bad, raw)
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	res, err := dataset.ScanFile(f, fi.Size(), opts)
	if qw != nil {
		size, digest, cerr := qw.close()
		if err == nil {
			err = cerr
		}
		if err == nil {
			q.rec = structs.Quarantine{Digest: digest, Size: size, Rows: res.BadRows, Sample: sample}
		}
	}
	switch {
	case errors.Is(err, dataset.ErrFormat):
		return q, nil, structs.Errorf(structs.CodeInvalid, "the file is not a valid %s dataset: %v", v.Format, strings.TrimPrefix(err.Error(), dataset.ErrFormat.Error()+": "))
	case err != nil && !errors.Is(err, errTooManyBadRows):
		return q, nil, err
	}
	if v.Mode == structs.ModeStrict && len(sample) > 0 {
		return q, nil, badRowsError(sample, errors.Is(err, errTooManyBadRows))
	}
	if res.Rows == 0 {
		if res.BadRows > 0 {
			return q, nil, structs.Errorf(structs.CodeInvalid, "no row of the file is good; %d bad rows, the first at line %d: %s", res.BadRows, sample[0].Line, sample[0].Reason)
		}
		return q, nil, structs.Errorf(structs.CodeInvalid, "the file has no rows")
	}
	if len(res.Columns) > structs.MaxDatasetColumns {
		return q, nil, structs.Errorf(structs.CodeInvalid, "the file has %d columns, more than the %d a dataset may have", len(res.Columns), structs.MaxDatasetColumns)
	}
	v.Rows = res.Rows
	v.Columns = make([]structs.DatasetColumn, len(res.Columns))
	for i, c := range res.Columns {
		if len(c.Name) > structs.MaxColumnNameLen {
			return q, nil, structs.Errorf(structs.CodeInvalid, "column %d's name is %d bytes, more than %d", i+1, len(c.Name), structs.MaxColumnNameLen)
		}
		v.Columns[i] = structs.DatasetColumn{Name: c.Name, Type: string(c.Type), Numeric: c.Numeric, Categorical: truncateTop(c.Categorical)}
	}
	return q, res, nil
}

// badRowsError refuses a strict upload, naming the bad rows it found.
func badRowsError(sample []structs.BadRow, more bool) error {
	var b strings.Builder
	for i, s := range sample {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "line %d: %s", s.Line, s.Reason)
	}
	if more {
		b.WriteString("; and maybe more")
	}
	return structs.Errorf(structs.CodeInvalid, "the file has bad rows, so nothing was recorded (mode=strict; mode=lenient keeps the good rows and quarantines the bad ones): %s", b.String())
}

// truncateTop cuts the quoted values of top-k statistics to MaxStatValueLen.
func truncateTop(c *stats.CategoricalStats) *stats.CategoricalStats {
	if c == nil {
		return nil
	}
	for i := range c.Top {
		c.Top[i].Value = structs.TruncateUTF8(c.Top[i].Value, structs.MaxStatValueLen)
	}
	return c
}

// digestSeed seeds the quantile sketches from the file's digest, so that one
// file always gets the same statistics.
func digestSeed(digest string) uint64 {
	b, err := hex.DecodeString(digest[:16])
	if err != nil {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// quarantineWriter writes bad rows as JSON lines, hashing them.
type quarantineWriter struct {
	f    *os.File
	buf  *bufio.Writer
	hash hash.Hash
	enc  *json.Encoder
}

func newQuarantineWriter(f *os.File) *quarantineWriter {
	qw := &quarantineWriter{f: f, hash: sha256.New()}
	qw.buf = bufio.NewWriter(io.MultiWriter(f, qw.hash))
	qw.enc = json.NewEncoder(qw.buf)
	return qw
}

// quarantineRow is one line of a quarantine blob.
type quarantineRow struct {
	Line   int64  `json:"line"`
	Reason string `json:"reason"`
	Raw    string `json:"raw"`
}

func (q *quarantineWriter) write(bad dataset.BadRow, raw []byte) error {
	return q.enc.Encode(quarantineRow{Line: bad.Line, Reason: bad.Reason, Raw: string(raw)})
}

// close flushes and syncs the file and returns its size and digest.
func (q *quarantineWriter) close() (int64, string, error) {
	err := q.buf.Flush()
	if err == nil {
		err = q.f.Sync()
	}
	fi, serr := q.f.Stat()
	if err == nil {
		err = serr
	}
	if cerr := q.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, "", err
	}
	return fi.Size(), hex.EncodeToString(q.hash.Sum(nil)), nil
}

// datasetVersionJSON fixes up a version for JSON: empty slices, not null.
func datasetVersionJSON(v *structs.DatasetVersion) *structs.DatasetVersion {
	if v.Holders == nil {
		v.Holders = []string{}
	}
	if v.Columns == nil {
		v.Columns = []structs.DatasetColumn{}
	}
	if q := v.Quarantine; q != nil && q.Sample == nil {
		q.Sample = []structs.BadRow{}
	}
	return v
}

// datasetVersionSummary is a version in a list: everything but the statistics.
type datasetVersionSummary struct {
	Dataset    string              `json:"dataset"`
	Version    uint64              `json:"version"`
	Format     string              `json:"format"`
	Mode       string              `json:"mode"`
	NoHeader   bool                `json:"no_header,omitempty"`
	Digest     string              `json:"digest"`
	Size       int64               `json:"size"`
	Rows       int64               `json:"rows"`
	BadRows    int64               `json:"bad_rows"`
	Columns    []dataset.Column    `json:"columns"`
	Quarantine *structs.Quarantine `json:"quarantine,omitempty"`
	CreatedAt  time.Time           `json:"created_at"`
}

func summarizeDatasetVersion(v *structs.DatasetVersion) datasetVersionSummary {
	s := datasetVersionSummary{Dataset: v.Dataset, Version: v.Version, Format: v.Format, Mode: v.Mode, NoHeader: v.NoHeader, Digest: v.Digest,
		Size: v.Size, Rows: v.Rows, Columns: make([]dataset.Column, len(v.Columns)), CreatedAt: v.CreatedAt}
	for i, c := range v.Columns {
		s.Columns[i] = dataset.Column{Name: c.Name, Type: dataset.Type(c.Type)}
	}
	if v.Quarantine != nil {
		s.BadRows = v.Quarantine.Rows
		s.Quarantine = datasetVersionJSON(v).Quarantine
	}
	return s
}

// datasetVersionPath reads {name} and {version} ("latest" is 0).
func datasetVersionPath(r *http.Request) (string, uint64, error) {
	name := r.PathValue("name")
	if err := structs.ValidateName("name", name); err != nil {
		return "", 0, err
	}
	if r.PathValue("version") == "latest" {
		return name, 0, nil
	}
	n, err := parseVersionNumber("version", r.PathValue("version"))
	return name, n, err
}

func (a *Agent) handleDatasetList(w http.ResponseWriter, r *http.Request) {
	serveList(a, w, r, structs.KindDataset,
		func(txn *raftfsm.Txn) func(string, int) ([]*structs.Dataset, string, error) { return txn.Datasets },
		func(d *structs.Dataset) string { return d.Name }, func(d *structs.Dataset) *structs.Dataset { return d })
}

func (a *Agent) handleDatasetGet(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := structs.ValidateName("name", name); err != nil {
		writeError(w, err)
		return
	}
	serveRead(a, w, r, func(txn *raftfsm.Txn) (*structs.Dataset, error) { return txn.Dataset(name) })
}

func (a *Agent) handleDatasetVersionList(w http.ResponseWriter, r *http.Request) {
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
		if _, err := txn.Dataset(name); err != nil {
			return nil, err
		}
		items, next, err := txn.DatasetVersions(name, cursor, limit)
		if err != nil {
			return nil, err
		}
		out := make([]datasetVersionSummary, len(items))
		for i, v := range items {
			out[i] = summarizeDatasetVersion(v)
		}
		return map[string]any{"items": out, "next_cursor": next}, nil
	})
}

func (a *Agent) handleDatasetVersionGet(w http.ResponseWriter, r *http.Request) {
	name, n, err := datasetVersionPath(r)
	if err != nil {
		writeError(w, err)
		return
	}
	serveRead(a, w, r, func(txn *raftfsm.Txn) (*structs.DatasetVersion, error) {
		v, err := txn.DatasetVersion(name, n)
		if err != nil {
			return nil, err
		}
		return datasetVersionJSON(v), nil
	})
}

// handleDatasetRows previews the first rows of a version (?limit=, 20 by
// default), typed by its schema: {"columns": [...], "rows": [[...], ...]}.
// A node that does not hold the file fetches it first.
func (a *Agent) handleDatasetRows(w http.ResponseWriter, r *http.Request) {
	name, n, err := datasetVersionPath(r)
	if err != nil {
		writeError(w, err)
		return
	}
	limit := defaultPreviewRows
	for key, vals := range r.URL.Query() {
		switch key {
		case "consistency", "index": // readTxn's
			continue
		case "limit":
		default:
			writeError(w, structs.Errorf(structs.CodeInvalid, "unknown query parameter %q: use limit, consistency or index", key))
			return
		}
		l, err := strconv.Atoi(vals[0])
		if err != nil || l < 1 || l > maxPreviewRows {
			writeError(w, structs.Errorf(structs.CodeInvalid, "limit must be an integer from 1 to %d, not %q", maxPreviewRows, vals[0]))
			return
		}
		limit = l
	}
	txn, err := a.readTxn(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	v, err := txn.DatasetVersion(name, n)
	txn.Discard()
	if err != nil {
		writeError(w, err)
		return
	}
	path, err := a.xfer.Ensure(r.Context(), v.Digest, v.Holders)
	if err != nil {
		writeError(w, structs.Errorf(structs.CodeUnavailable, "the file of dataset %s could not be fetched from its holders: %v", v.Ref(), err))
		return
	}
	rows, err := previewRows(path, v, limit)
	if err != nil {
		writeError(w, err)
		return
	}
	names := make([]string, len(v.Columns))
	for i, c := range v.Columns {
		names[i] = c.Name
	}
	writeJSON(w, http.StatusOK, map[string]any{"dataset": v.Dataset, "version": v.Version, "columns": names, "rows": rows})
}

// previewRows reads the first limit good rows of a version's file.
func previewRows(path string, v *structs.DatasetVersion, limit int) ([][]any, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	schema := make([]dataset.Column, len(v.Columns))
	for i, c := range v.Columns {
		schema[i] = dataset.Column{Name: c.Name, Type: dataset.Type(c.Type)}
	}
	rows := [][]any{}
	opts := dataset.Options{Format: dataset.Format(v.Format), Schema: schema, NoHeader: v.NoHeader,
		OnRow: func(_ int64, row []dataset.Value) error {
			out := make([]any, len(schema))
			for i := range schema {
				if i < len(row) {
					out[i] = jsonCell(schema[i].Type, row[i])
				}
			}
			rows = append(rows, out)
			if len(rows) == limit {
				return dataset.ErrStop
			}
			return nil
		}}
	_, err = dataset.ScanFile(f, v.Size, opts)
	if err != nil {
		return nil, fmt.Errorf("reading dataset %s: %w", v.Ref(), err)
	}
	return rows, nil
}

// jsonCell is a value as JSON: numbers as numbers (ints exactly as
// written), booleans as booleans, timestamps and strings as strings.
func jsonCell(t dataset.Type, v dataset.Value) any {
	switch {
	case v.Kind == "":
		return nil
	case t == dataset.Int && v.Kind == dataset.Int:
		return json.Number(v.Text)
	case (t == dataset.Float || t == dataset.Int) && (v.Kind == dataset.Int || v.Kind == dataset.Float):
		return v.Num
	case t == dataset.Bool && v.Kind == dataset.Bool:
		return v.Text == "true"
	}
	return v.Text
}

func (a *Agent) handleDatasetVersionDelete(w http.ResponseWriter, r *http.Request) {
	name, n, err := datasetVersionPath(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if n == 0 {
		writeError(w, structs.Errorf(structs.CodeInvalid, "version must be a number to delete, not latest"))
		return
	}
	force, err := forceParam(r)
	if err != nil {
		writeError(w, err)
		return
	}
	a.serveDelete(w, r, structs.DatasetVersionDeleteType, &structs.DatasetVersionDeleteRequest{Dataset: name, Version: n, Force: force}, "")
}

func (a *Agent) handleDatasetDelete(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := structs.ValidateName("name", name); err != nil {
		writeError(w, err)
		return
	}
	force, err := forceParam(r)
	if err != nil {
		writeError(w, err)
		return
	}
	a.serveDelete(w, r, structs.DatasetDeleteType, &structs.DatasetDeleteRequest{Name: name, Force: force}, "")
}

// forceParam reads ?force=true|false, the only query parameter of a delete.
func forceParam(r *http.Request) (bool, error) {
	q := r.URL.Query()
	for key := range q {
		if key != "force" {
			return false, structs.Errorf(structs.CodeInvalid, "unknown query parameter %q: use force", key)
		}
	}
	if s := q.Get("force"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return false, structs.Errorf(structs.CodeInvalid, "force must be true or false, not %q", s)
		}
		return b, nil
	}
	return false, nil
}

// datasetsEndpoint: datasets and their versions.
func (a *Agent) datasetsEndpoint() endpoint {
	d := structs.KindDataset
	return endpoint{routes: []route{
		{pattern: "POST /v1/datasets/{name}/versions", handler: a.handleDatasetVersionCreate, kind: d, need: needWrite, name: pathName},
		{pattern: "GET /v1/datasets", handler: a.handleDatasetList, kind: d, need: needList},
		{pattern: "GET /v1/datasets/{name}", handler: a.handleDatasetGet, kind: d, need: needRead, name: pathName},
		{pattern: "DELETE /v1/datasets/{name}", handler: a.handleDatasetDelete, kind: d, need: needWrite, name: pathName},
		{pattern: "GET /v1/datasets/{name}/versions", handler: a.handleDatasetVersionList, kind: d, need: needRead, name: pathName},
		{pattern: "GET /v1/datasets/{name}/versions/{version}", handler: a.handleDatasetVersionGet, kind: d, need: needRead, name: pathName},
		{pattern: "GET /v1/datasets/{name}/versions/{version}/rows", handler: a.handleDatasetRows, kind: d, need: needRead, name: pathName},
		{pattern: "DELETE /v1/datasets/{name}/versions/{version}", handler: a.handleDatasetVersionDelete, kind: d, need: needWrite, name: pathName},
	}}
}
