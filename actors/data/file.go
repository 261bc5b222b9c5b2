package data

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kilnml/kiln/ml/dataset"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// fileReader reads the files a glob matches, each once per content: its
// position maps each file read to the SHA-256 of what was read, and a file
// whose checksum has not changed since is skipped. A file being read maps
// to "<sha256>@<n>", n being its records (good and bad) committed so far.
type fileReader struct {
	name string
	spec structs.FileSource
}

// NewFile returns the reader of a file source. It reads nothing until Read.
func NewFile(name string, spec *structs.FileSource, env Env) (Reader, error) {
	if spec == nil || spec.Path == "" {
		return nil, fmt.Errorf("data: file source %q: no path", name)
	}
	if _, err := filepath.Match(spec.Path, ""); err != nil {
		return nil, fmt.Errorf("data: file source %q: path %q is not a valid glob: %v", name, spec.Path, err)
	}
	return &fileReader{name: name, spec: *spec}, nil
}

// Read reads, in name order, every file the glob matches that is new, whose
// checksum differs from the one in from, or whose read stopped part-way.
//
// A file is emitted in batches. Each batch but the last moves the file's
// position to "<sha256>@<n>", n counting the file's records (good and bad)
// handed over with it and before it; the last moves it to "<sha256>". A
// read stopped between two batches of a file (a crash, a lost leader)
// resumes that file after its first n records, which come in the same
// order every time the same content is read. A file whose checksum differs
// from the one its position holds, even one stopped part-way, changed: it
// is read again whole, which repeats the records of the batches committed
// before. Files are expected to be written once and then replaced by a
// rename, never changed in place.
func (r *fileReader) Read(ctx context.Context, from Position, maxBatch int, emit Emit) error {
	u := &unitEmit{emit: emit}
	b, err := newBatcher(ctx, maxBatch, u.Emit)
	if err != nil {
		return err
	}
	paths, err := filepath.Glob(r.spec.Path)
	if err != nil {
		return fmt.Errorf("data: file source %q: %v", r.name, err)
	}
	slices.Sort(paths)
	for _, path := range paths {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := r.readFile(b, u, path, from[path]); err != nil {
			return err
		}
	}
	return nil
}

// readFile reads one file unless seen, its position, says it is read whole
// with the checksum it has now. The file is opened once, and its checksum,
// its columns and its records are all read from the same open file within
// the size it had then, so that a file replaced meanwhile (renamed over)
// cannot mix two contents. A file written in place while it is read is not
// guarded against.
func (r *fileReader) readFile(b *batcher, u *unitEmit, path, seen string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // removed since the glob: nothing to read now
	}
	if err != nil {
		return fmt.Errorf("data: file source %q: %v", r.name, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("data: file source %q: %v", r.name, err)
	}
	if !info.Mode().IsRegular() {
		return nil // a directory the glob matches holds no records itself
	}
	size := info.Size()
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, size)); err != nil {
		return fmt.Errorf("data: file source %q: reading %s: %v", r.name, path, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if sum == seen {
		return nil
	}
	done := Position{path: sum}
	if size == 0 {
		return b.end(done)
	}
	// A read stopped part-way resumes after the records it committed. A
	// position of another checksum is another content, read again whole,
	// which can repeat records: files are expected to be written once,
	// then replaced by a rename.
	skip := 0
	if prefix, n, ok := strings.Cut(seen, "@"); ok && prefix == sum {
		if v, err := strconv.Atoi(n); err == nil && v > 0 {
			skip = v
		}
	}
	u.begin(skip, func(n int) Position { return Position{path: sum + "@" + strconv.Itoa(n)} })
	out := &fileRecords{b: b, skip: skip}
	format, err := r.format(f, path)
	if err == nil {
		err = r.scanFile(out, f, size, path, format)
	}
	var whole *badFileError
	switch {
	case errors.As(err, &whole):
		// The file, or the rest of it, cannot be read as its format (no
		// header, not a Parquet file): it is quarantined once, and not
		// read again until it changes.
		if err := out.addBad(BadRecord{Offset: path, Reason: whole.reason}); err != nil {
			return err
		}
	case err != nil:
		return err
	}
	return b.end(done)
}

// fileRecords hands a file's records, good and bad, to the batcher, but
// for the first skip, which an earlier read committed.
type fileRecords struct {
	b    *batcher
	skip int
}

// skipped reports whether the next record is one to skip, and counts it.
func (o *fileRecords) skipped() bool {
	if o.skip == 0 {
		return false
	}
	o.skip--
	return true
}

func (o *fileRecords) add(rec Record) error {
	if o.skipped() {
		return nil
	}
	return o.b.add(rec)
}

func (o *fileRecords) addBad(bad BadRecord) error {
	if o.skipped() {
		return nil
	}
	return o.b.addBad(bad)
}

// badFileError says that a file, or what is left of it, cannot be read as
// its format: a data problem to quarantine, not a failure of the read.
type badFileError struct{ reason string }

func (e *badFileError) Error() string { return e.reason }

// format is the file's format: the spec's, else its extension's, else what
// its first bytes look like.
func (r *fileReader) format(f *os.File, path string) (dataset.Format, error) {
	if r.spec.Format != "" {
		return dataset.Format(r.spec.Format), nil
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv":
		return dataset.CSV, nil
	case ".tsv":
		return dataset.TSV, nil
	case ".jsonl", ".ndjson":
		return dataset.JSONL, nil
	case ".parquet":
		return dataset.Parquet, nil
	}
	head := make([]byte, 4096)
	n, err := f.ReadAt(head, 0)
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("data: file source %q: reading %s: %v", r.name, path, err)
	}
	format, ok := dataset.Detect(head[:n])
	if !ok || format == dataset.LibSVM {
		return "", &badFileError{"the format is not csv, tsv, jsonl or parquet: name it in the source's format, or give the file one of the extensions .csv, .tsv, .jsonl, .ndjson, .parquet"}
	}
	return format, nil
}

// scanFile reads a file in two passes of ml/dataset: the first infers its
// columns (names and types, as dataset would for a dataset upload), the
// second pins them and hands each row over typed by its column, so that a
// column holds one type through the whole file.
func (r *fileReader) scanFile(out *fileRecords, f *os.File, size int64, path string, format dataset.Format) error {
	scan := func(opts dataset.Options) (*dataset.Result, error) {
		if format == dataset.Parquet {
			return dataset.ScanParquet(f, size, opts)
		}
		opts.Format = format
		return dataset.Scan(io.NewSectionReader(f, 0, size), opts)
	}
	first := dataset.Options{}
	if format == dataset.Parquet {
		// The columns are the file's own; no row needs to be read.
		first.OnRow = func(int64, []dataset.Value) error { return dataset.ErrStop }
	}
	res, err := scan(first)
	if errors.Is(err, dataset.ErrFormat) {
		return &badFileError{err.Error()}
	}
	if err != nil {
		return fmt.Errorf("data: file source %q: reading %s: %v", r.name, path, err)
	}
	schema := make([]dataset.Column, len(res.Columns))
	for i, c := range res.Columns {
		schema[i] = c.Column
	}
	offset := func(line int64) string {
		if format == dataset.Parquet {
			return fmt.Sprintf("row %d of %s", line, path)
		}
		return fmt.Sprintf("line %d of %s", line, path)
	}
	// emitErr keeps Emit's error apart from the file's own: it is returned
	// as it is, not as a failure to read the file.
	var emitErr error
	keep := func(err error) error {
		emitErr = err
		return err
	}
	_, err = scan(dataset.Options{
		Schema: schema,
		OnRow: func(line int64, row []dataset.Value) error {
			if out.skipped() {
				return nil // committed by an earlier read; not decoded again
			}
			rec := make(Record, len(schema))
			for i, v := range row {
				val, err := fileValue(schema[i].Type, v)
				if err != nil {
					// Only a file changed between the passes gets here.
					return keep(out.b.addBad(BadRecord{Offset: offset(line), Reason: fmt.Sprintf("column %s: %v", schema[i].Name, err)}))
				}
				rec[schema[i].Name] = val
			}
			return keep(out.b.add(rec))
		},
		OnBadRow: func(bad dataset.BadRow, raw []byte) error {
			return keep(out.addBad(BadRecord{Offset: offset(bad.Line), Reason: bad.Reason, Raw: string(raw)}))
		},
	})
	switch {
	case emitErr != nil:
		return emitErr
	case errors.Is(err, dataset.ErrFormat):
		// A Parquet row group that does not decode (the first pass read
		// only the footer), or a text file changed in place between the
		// passes: the records before it are kept, the rest is quarantined.
		return &badFileError{err.Error()}
	case err != nil:
		return fmt.Errorf("data: file source %q: reading %s: %v", r.name, path, err)
	}
	return nil
}

// fileValue converts a value dataset parsed into the Record type of its
// column's type: an int in a float column is a float64, a number in a
// string column its text.
func fileValue(typ dataset.Type, v dataset.Value) (any, error) {
	if v.Kind == "" {
		return nil, nil
	}
	switch typ {
	case dataset.Int:
		return strconv.ParseInt(v.Text, 10, 64)
	case dataset.Float:
		if v.Kind == dataset.Int {
			return strconv.ParseFloat(v.Text, 64)
		}
		return v.Num, nil
	case dataset.Bool:
		return v.Text == "true", nil
	case dataset.Timestamp:
		for _, layout := range []string{time.RFC3339Nano, time.DateOnly} {
			if t, err := time.Parse(layout, v.Text); err == nil {
				return t.UTC(), nil
			}
		}
		return nil, fmt.Errorf("%q is not a timestamp", v.Text)
	}
	return v.Text, nil
}

// Close releases nothing: a file is closed once read.
func (r *fileReader) Close() error { return nil }
