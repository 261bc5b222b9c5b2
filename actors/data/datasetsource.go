package data

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/kilnml/kiln/ml/dataset"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// A dataset source reads the versions of a registered dataset, in order,
// so that a feature view can take a dataset's rows as it takes any
// source's. Its position is {"version": the last version read whole,
// "row": the rows of the next one already handed over}: a run stopped
// inside a version resumes after those rows.

type datasetReader struct {
	name string
	env  Env
}

// NewDatasetSource returns the reader of a dataset source.
func NewDatasetSource(name string, spec *structs.DatasetSource, env Env) (Reader, error) {
	if env.Datasets == nil {
		return nil, errors.New("data: this node cannot read datasets for a source")
	}
	return &datasetReader{name: spec.Name, env: env}, nil
}

func (r *datasetReader) Close() error { return nil }

func (r *datasetReader) Read(ctx context.Context, from Position, maxBatch int, emit Emit) error {
	done, err := positionNumber(from, "version")
	if err != nil {
		return err
	}
	skip, err := positionNumber(from, "row")
	if err != nil {
		return err
	}
	files, err := r.env.Datasets(ctx, r.name, done)
	if err != nil {
		return fmt.Errorf("dataset %s: %w", r.name, err)
	}
	for _, f := range files {
		if len(f.Failed) > 0 {
			// Skipped whole: nothing downstream takes a version that
			// failed its validation.
			if err := emit(ctx, Batch{Advance: Position{"version": strconv.FormatUint(f.Version, 10), "row": "0"}}); err != nil {
				return err
			}
			skip = 0
			continue
		}
		if err := r.readVersion(ctx, f, skip, maxBatch, emit); err != nil {
			return err
		}
		skip = 0
	}
	return nil
}

func positionNumber(p Position, key string) (uint64, error) {
	s, ok := p[key]
	if !ok || s == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("data: position %s %q is not a number", key, s)
	}
	return n, nil
}

// readVersion hands over the rows of one version after the first skip.
func (r *datasetReader) readVersion(ctx context.Context, f DatasetFile, skip uint64, maxBatch int, emit Emit) error {
	file, err := os.Open(f.Path)
	if err != nil {
		return err
	}
	defer file.Close()
	version := strconv.FormatUint(f.Version-1, 10)
	var b Batch
	n := uint64(0) // rows of the version met, good and bad
	flush := func(last bool) error {
		adv := Position{"version": version, "row": strconv.FormatUint(n, 10)}
		if last {
			adv = Position{"version": strconv.FormatUint(f.Version, 10), "row": "0"}
		}
		b.Advance = adv
		err := emit(ctx, b)
		b = Batch{}
		return err
	}
	add := func() error {
		if b.Len() >= maxBatch {
			return flush(false)
		}
		return ctx.Err()
	}
	opts := dataset.Options{Format: dataset.Format(f.Format), Schema: f.Columns, NoHeader: f.NoHeader,
		OnRow: func(_ int64, vals []dataset.Value) error {
			n++
			if n <= skip {
				return nil
			}
			rec := make(Record, len(f.Columns))
			for i, c := range f.Columns {
				if i < len(vals) {
					rec[c.Name] = datasetValue(c.Type, vals[i])
				}
			}
			b.Records = append(b.Records, rec)
			return add()
		},
		OnBadRow: func(bad dataset.BadRow, raw []byte) error {
			n++
			if n <= skip {
				return nil
			}
			b.Bad = append(b.Bad, BadRecord{Offset: fmt.Sprintf("line %d of %s:%d", bad.Line, r.name, f.Version), Reason: bad.Reason, Raw: CutRaw(string(raw))})
			return add()
		}}
	_, err = dataset.ScanFile(file, f.Size, opts)
	if err != nil {
		return fmt.Errorf("reading %s:%d: %w", r.name, f.Version, err)
	}
	return flush(true)
}

// datasetValue types a dataset cell as a Record holds it.
func datasetValue(t dataset.Type, v dataset.Value) any {
	if v.Kind == "" {
		return nil
	}
	switch t {
	case dataset.Int:
		if n, err := strconv.ParseInt(v.Text, 10, 64); err == nil {
			return n
		}
	case dataset.Float:
		return v.Num
	case dataset.Bool:
		return v.Text == "true"
	case dataset.Timestamp:
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"} {
			if ts, err := time.Parse(layout, v.Text); err == nil {
				return ts.UTC()
			}
		}
	}
	return v.Text
}
