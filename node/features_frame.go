package node

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/kilnml/kiln/ml/dataset"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// Point-in-time frames written as dataset versions: the entity rows come
// from a dataset version (join keys, a timestamp, and whatever else, such
// as the label), every feature is read as of each row's timestamp, and the
// rows with their features are stored as a new version of the output
// dataset, which a training job reads like any other. The version records
// the frame's lineage: the service or features, the entity rows, and each
// view's state (its modify index and its write counter) at the registry
// index the frame was read at.

// frameSpec is what a frame is built from.
type frameSpec struct {
	Service         string
	Features        []string
	EntityRows      string // name or name:version
	TimestampColumn string
	Output          string
}

// frameChunk is how many entity rows are read at once: the features of a
// chunk are looked up together, in entity order.
const frameChunk = 50_000

// buildFeatureFrame builds a frame and records it as the next version of
// spec.Output.
func (a *Agent) buildFeatureFrame(ctx context.Context, spec frameSpec) (*structs.DatasetVersion, error) {
	if err := structs.ValidateName("output", spec.Output); err != nil {
		return nil, err
	}
	name, n, err := structs.ParseDatasetRef("entity_dataset", spec.EntityRows)
	if err != nil {
		return nil, err
	}
	txn := a.fsm.ReadTxn()
	defer txn.Discard()
	in, err := txn.DatasetVersion(name, n)
	if err != nil {
		return nil, structs.Errorf(structs.ErrorCode(err), "entity_dataset: %v", err)
	}
	if len(in.FailedValidation) > 0 {
		return nil, structs.Errorf(structs.CodeInvalid, "entity_dataset %s failed its source's validation; name a version that passed", in.Ref())
	}
	q, err := a.features.resolve(txn, spec.Service, spec.Features)
	if err != nil {
		return nil, err
	}
	tsCol := -1
	schema := make([]dataset.Column, len(in.Columns))
	for i, c := range in.Columns {
		schema[i] = dataset.Column{Name: c.Name, Type: dataset.Type(c.Type)}
		if c.Name == spec.TimestampColumn {
			tsCol = i
		}
	}
	if tsCol < 0 {
		return nil, structs.Errorf(structs.CodeInvalid, "timestamp_column %q is not a column of %s", spec.TimestampColumn, in.Ref())
	}
	for _, k := range q.joinKeys() {
		if !containsColumn(in.Columns, k) {
			return nil, structs.Errorf(structs.CodeInvalid, "entity_dataset %s has no column %s, a join key of the features asked", in.Ref(), k)
		}
	}
	for _, f := range q.names {
		if containsColumn(in.Columns, f) {
			return nil, structs.Errorf(structs.CodeInvalid, "entity_dataset %s already has a column %s", in.Ref(), f)
		}
	}
	path, err := a.xfer.Ensure(ctx, in.Digest, in.Holders)
	if err != nil {
		return nil, structs.Errorf(structs.CodeUnavailable, "the file of dataset %s could not be fetched from its holders: %v", in.Ref(), err)
	}
	out, err := a.blobs.TempFile()
	if err != nil {
		return nil, err
	}
	defer os.Remove(out.Name()) // moved away when committed
	sum := sha256.New()
	w := &frameWriter{w: bufio.NewWriterSize(io.MultiWriter(out, sum), 1<<20), in: schema, features: q.names}
	var rows []map[string]any
	var times []time.Time
	var raw [][]any
	line := int64(0)
	flush := func() error {
		if len(rows) == 0 {
			return nil
		}
		fr, err := q.read(txn, rows, times, nil)
		if err != nil {
			return err
		}
		for i := range rows {
			w.row(raw[i], fr.values[i])
		}
		rows, times, raw = rows[:0], times[:0], raw[:0]
		return w.err
	}
	f, err := os.Open(path)
	if err != nil {
		out.Close()
		return nil, err
	}
	opts := dataset.Options{Format: dataset.Format(in.Format), Schema: schema, NoHeader: in.NoHeader,
		OnRow: func(_ int64, vals []dataset.Value) error {
			line++
			cells := make([]any, len(schema))
			for i := range schema {
				if i < len(vals) {
					cells[i] = frameCell(schema[i].Type, vals[i])
				}
			}
			ts, ok := cells[tsCol].(time.Time)
			if !ok {
				return structs.Errorf(structs.CodeInvalid, "row %d of %s has no %s timestamp", line, in.Ref(), spec.TimestampColumn)
			}
			row := make(map[string]any, 2)
			for _, k := range q.joinKeys() {
				row[k] = cells[columnIndex(in.Columns, k)]
			}
			rows, times, raw = append(rows, row), append(times, ts), append(raw, cells)
			if len(rows) == frameChunk {
				return flush()
			}
			return nil
		}}
	_, err = dataset.ScanFile(f, in.Size, opts)
	f.Close()
	if err == nil {
		err = flush()
	}
	if err == nil {
		err = w.w.Flush()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if w.size == 0 {
		return nil, structs.Errorf(structs.CodeInvalid, "entity_dataset %s has no rows", in.Ref())
	}
	lineage := &structs.FeatureLineage{Service: spec.Service, Features: q.names, EntityRows: in.Ref(), TimestampColumn: spec.TimestampColumn, Index: txn.Index()}
	outSchema := append([]dataset.Column(nil), schema...)
	for _, vq := range q.views {
		lineage.Views = append(lineage.Views, structs.ViewState{Name: vq.view.Name, ModifyIndex: vq.view.ModifyIndex, Rows: vq.view.Rows})
	}
	for _, name := range q.names {
		outSchema = append(outSchema, dataset.Column{Name: name, Type: dataset.Type(q.featureType(name))})
	}
	v := structs.DatasetVersion{Dataset: spec.Output, Format: structs.DatasetJSONL, Mode: structs.ModeStrict,
		Digest: hex.EncodeToString(sum.Sum(nil)), Size: w.size, Features: lineage}
	stored, _, err := a.storeDatasetFile(ctx, &v, out.Name(), outSchema, nil)
	return stored, err
}

func containsColumn(cols []structs.DatasetColumn, name string) bool {
	return columnIndex(cols, name) >= 0
}

func columnIndex(cols []structs.DatasetColumn, name string) int {
	for i, c := range cols {
		if c.Name == name {
			return i
		}
	}
	return -1
}

// featureType is the column type of a feature of the query.
func (q *featureQuery) featureType(name string) string {
	for _, vq := range q.views {
		for j, col := range vq.cols {
			if q.names[col] == name {
				return vq.features[j].Type
			}
		}
	}
	return "string"
}

// frameCell is a dataset cell as a frame handles it: ints int64, floats
// float64, booleans, timestamps time.Time, text string.
func frameCell(t dataset.Type, v dataset.Value) any {
	switch {
	case v.Kind == "":
		return nil
	case t == dataset.Int && v.Kind == dataset.Int:
		if n, err := strconv.ParseInt(v.Text, 10, 64); err == nil {
			return n
		}
	case t == dataset.Float && (v.Kind == dataset.Int || v.Kind == dataset.Float):
		return v.Num
	case t == dataset.Bool:
		return v.Text == "true"
	case t == dataset.Timestamp:
		if ts, ok := parseFrameTime(v.Text); ok {
			return ts
		}
	}
	return v.Text
}

func parseFrameTime(s string) (time.Time, bool) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

// frameWriter writes frame rows as JSON lines: the entity row's columns,
// then the features.
type frameWriter struct {
	w        *bufio.Writer
	in       []dataset.Column
	features []string
	buf      []byte
	size     int64
	err      error
}

func (fw *frameWriter) row(cells []any, values []any) {
	if fw.err != nil {
		return
	}
	b := append(fw.buf[:0], '{')
	for i, c := range fw.in {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, c.Name)
		b = append(b, ':')
		b = appendJSONValue(b, cells[i])
	}
	for j, name := range fw.features {
		b = append(b, ',')
		b = appendJSONString(b, name)
		b = append(b, ':')
		b = appendJSONValue(b, values[j])
	}
	b = append(b, "}\n"...)
	fw.buf = b
	n, err := fw.w.Write(b)
	fw.size += int64(n)
	if err != nil {
		fw.err = fmt.Errorf("writing the frame: %w", err)
	}
}
