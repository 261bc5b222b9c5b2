package structs

import (
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kilnml/kiln/ml/stats"
)

// Data commands: datasets and their versions (DESIGN.md §7). Never renumber;
// add new ones at the end of RangeData.
const (
	// DatasetVersionCreateType records an uploaded dataset file as the next
	// version of its dataset, creating the dataset on its first version.
	DatasetVersionCreateType MessageType = 64
	// DatasetVersionDeleteType removes one version, unless a model's lineage
	// still names it (or Force).
	DatasetVersionDeleteType MessageType = 65
	// DatasetDeleteType removes a dataset and all its versions, on the same
	// condition for each.
	DatasetDeleteType MessageType = 66
	// DatasetHoldersType records the nodes that hold one of a version's
	// blobs (its file or its quarantine), after the leader had copies made.
	DatasetHoldersType MessageType = 67
)

var _ = registerTypes(RangeData,
	TypeDef{DatasetVersionCreateType, "dataset_version_create"},
	TypeDef{DatasetVersionDeleteType, "dataset_version_delete"},
	TypeDef{DatasetDeleteType, "dataset_delete"},
	TypeDef{DatasetHoldersType, "dataset_holders"},
)

// Dataset file formats.
const (
	DatasetCSV     = "csv"
	DatasetTSV     = "tsv"
	DatasetJSONL   = "jsonl"
	DatasetLibSVM  = "libsvm"
	DatasetParquet = "parquet"
)

// DatasetFormats lists the dataset file formats, in the order errors name them.
var DatasetFormats = []string{DatasetCSV, DatasetTSV, DatasetJSONL, DatasetLibSVM, DatasetParquet}

// Column types of a dataset.
var ColumnTypes = []string{"int", "float", "bool", "timestamp", "string"}

// Upload modes: what a bad row does.
const (
	// ModeStrict refuses an upload with any bad row; nothing is recorded.
	ModeStrict = "strict"
	// ModeLenient records the good rows and keeps the bad ones in a
	// quarantine blob listed on the version.
	ModeLenient = "lenient"
)

// Limits of a dataset version record. Statistics live in the record, so that
// any node reads a version's reference distribution locally (drift monitoring
// compares live traffic against it); these bound the record well under the
// registry's 1 MiB per record.
const (
	// MaxDatasetColumns bounds the columns of a dataset.
	MaxDatasetColumns = 1024
	// MaxStatValueLen bounds a value quoted in statistics (a top-k string);
	// longer ones are cut at a UTF-8 boundary by the uploader.
	MaxStatValueLen = 128
	// MaxColumnNameLen bounds a column's name.
	MaxColumnNameLen = 256
	// MaxBadRowSample is how many bad rows a version lists itself; the
	// quarantine blob holds all of them.
	MaxBadRowSample = 10
	// MaxDatasetSample is the rows of a version's reservoir sample.
	MaxDatasetSample = 100_000
	// MaxBadRowReasonLen bounds one listed reason.
	MaxBadRowReasonLen = 512
)

// Dataset is a named series of versions. It exists from its first version
// until it is deleted; version numbers are never reused.
type Dataset struct {
	Name          string    `msgpack:"name" json:"name"`
	LatestVersion uint64    `msgpack:"latest_version" json:"latest_version"`
	CreatedAt     time.Time `msgpack:"created_at" json:"created_at"`
	UpdatedAt     time.Time `msgpack:"updated_at" json:"updated_at"`
	CreateIndex   uint64    `msgpack:"create_index" json:"create_index"`
	ModifyIndex   uint64    `msgpack:"modify_index" json:"modify_index"`
}

// DatasetColumn is one column's name, type and statistics. The statistics
// are ml/stats' result types, whose field names are part of the stored
// record: they are renamed never.
type DatasetColumn struct {
	Name        string                  `msgpack:"name" json:"name"`
	Type        string                  `msgpack:"type" json:"type"`
	Numeric     *stats.NumericStats     `msgpack:"numeric,omitempty" json:"numeric,omitempty"`
	Categorical *stats.CategoricalStats `msgpack:"categorical,omitempty" json:"categorical,omitempty"`
}

// BadRow is a row an upload did not count, and why.
type BadRow struct {
	Line   int64  `msgpack:"line" json:"line"`
	Reason string `msgpack:"reason" json:"reason"`
}

// Quarantine is the blob of a lenient upload's bad rows: JSON lines of
// {"line", "reason", "raw"}, one per bad row, in file order.
type Quarantine struct {
	Digest  string   `msgpack:"digest" json:"digest"`
	Size    int64    `msgpack:"size" json:"size"`
	Rows    int64    `msgpack:"rows" json:"rows"`
	Sample  []BadRow `msgpack:"sample" json:"sample"` // the first MaxBadRowSample
	Holders []string `msgpack:"holders" json:"holders"`
}

// DatasetSample is the blob of a dataset version's reservoir sample.
type DatasetSample struct {
	Digest  string   `msgpack:"digest" json:"digest"`
	Size    int64    `msgpack:"size" json:"size"`
	Rows    int64    `msgpack:"rows" json:"rows"`
	Holders []string `msgpack:"holders" json:"holders"`
}

// DatasetVersion is one uploaded file of a dataset with its schema and
// statistics.
type DatasetVersion struct {
	Dataset string `msgpack:"dataset" json:"dataset"`
	Version uint64 `msgpack:"version" json:"version"`
	Format  string `msgpack:"format" json:"format"`
	Mode    string `msgpack:"mode" json:"mode"`
	// NoHeader: a CSV or TSV file whose first line is data; its columns
	// are c0, c1, ...
	NoHeader bool `msgpack:"no_header,omitempty" json:"no_header,omitempty"`
	// Digest is the sha256 of the file and Size its length; Holders are the
	// nodes that store it, as for a model version's artifact.
	Digest  string          `msgpack:"digest" json:"digest"`
	Size    int64           `msgpack:"size" json:"size"`
	Holders []string        `msgpack:"holders" json:"holders"`
	Rows    int64           `msgpack:"rows" json:"rows"`
	Columns []DatasetColumn `msgpack:"columns" json:"columns"`
	// Quarantine holds a lenient upload's bad rows; nil when it had none.
	Quarantine *Quarantine `msgpack:"quarantine,omitempty" json:"quarantine,omitempty"`
	// Sample is the blob of a uniform sample of the rows (ml/dataset
	// Sample), the reference drift checks compare live traffic with; nil
	// for a version written before samples were kept.
	Sample *DatasetSample `msgpack:"sample,omitempty" json:"sample,omitempty"`
	// Source is the source whose run wrote the version, if one did, and
	// FailedValidation the batch expectations the run failed: such a
	// version is kept for inspection, but no job may read it.
	Source           string   `msgpack:"source,omitempty" json:"source,omitempty"`
	FailedValidation []string `msgpack:"failed_validation,omitempty" json:"failed_validation,omitempty"`
	// Features is the lineage of a point-in-time frame: what it was
	// built from, exactly.
	Features    *FeatureLineage `msgpack:"features,omitempty" json:"features,omitempty"`
	CreatedAt   time.Time       `msgpack:"created_at" json:"created_at"`
	CreateIndex uint64          `msgpack:"create_index" json:"create_index"`
}

// Ref is the version's name:version form, as lineage records it.
func (v *DatasetVersion) Ref() string { return DatasetRef(v.Dataset, v.Version) }

// DatasetRef formats a dataset version reference, name:version.
func DatasetRef(name string, version uint64) string {
	return name + ":" + strconv.FormatUint(version, 10)
}

// ParseDatasetRef reads name:version, or name alone (version 0: the latest).
// field names the field in the error.
func ParseDatasetRef(field, s string) (string, uint64, error) {
	name, ver, hasVer := strings.Cut(s, ":")
	if err := ValidateName(field, name); err != nil {
		return "", 0, err
	}
	if !hasVer {
		return name, 0, nil
	}
	n, err := strconv.ParseUint(ver, 10, 64)
	if err != nil || n == 0 {
		return "", 0, Errorf(CodeInvalid, "%s %q: the version after ':' must be a number from 1", field, s)
	}
	return name, n, nil
}

// Validate checks a version before it is proposed, and again in Apply.
func (v *DatasetVersion) Validate() error {
	if err := ValidateName("dataset", v.Dataset); err != nil {
		return err
	}
	if !slices.Contains(DatasetFormats, v.Format) {
		return Errorf(CodeInvalid, "format %q is unknown: use one of %s", v.Format, strings.Join(DatasetFormats, ", "))
	}
	if v.NoHeader && v.Format != DatasetCSV && v.Format != DatasetTSV {
		return Errorf(CodeInvalid, "no_header is only for csv and tsv files, not %s", v.Format)
	}
	if v.Mode != ModeStrict && v.Mode != ModeLenient {
		return Errorf(CodeInvalid, "mode %q is unknown: use strict or lenient", v.Mode)
	}
	if err := ValidateDigest("digest", v.Digest); err != nil {
		return err
	}
	if v.Size <= 0 {
		return Errorf(CodeInvalid, "size must be positive: a dataset file is not empty")
	}
	if err := ValidateHolders("holders", v.Holders); err != nil {
		return err
	}
	if v.Rows < 0 {
		return Errorf(CodeInvalid, "rows is negative")
	}
	if len(v.Columns) == 0 || len(v.Columns) > MaxDatasetColumns {
		return Errorf(CodeInvalid, "columns must list from 1 to %d columns, not %d", MaxDatasetColumns, len(v.Columns))
	}
	seen := make(map[string]bool, len(v.Columns))
	for i := range v.Columns {
		if err := v.Columns[i].validate(i); err != nil {
			return err
		}
		if seen[v.Columns[i].Name] {
			return Errorf(CodeInvalid, "columns[%d]: name %q appears twice", i, v.Columns[i].Name)
		}
		seen[v.Columns[i].Name] = true
	}
	if s := v.Sample; s != nil {
		if err := ValidateDigest("sample.digest", s.Digest); err != nil {
			return err
		}
		if s.Size <= 0 || s.Rows <= 0 || s.Rows > v.Rows {
			return Errorf(CodeInvalid, "sample.size and sample.rows must be positive, and rows at most the version's")
		}
		if err := ValidateHolders("sample.holders", s.Holders); err != nil {
			return err
		}
	}
	if q := v.Quarantine; q != nil {
		if v.Mode != ModeLenient {
			return Errorf(CodeInvalid, "quarantine is only kept in mode lenient")
		}
		if err := q.validate(); err != nil {
			return err
		}
	}
	return nil
}

func (c *DatasetColumn) validate(i int) error {
	if c.Name == "" || len(c.Name) > MaxColumnNameLen || !utf8.ValidString(c.Name) {
		return Errorf(CodeInvalid, "columns[%d]: name must be 1 to %d bytes of UTF-8", i, MaxColumnNameLen)
	}
	if !slices.Contains(ColumnTypes, c.Type) {
		return Errorf(CodeInvalid, "columns[%d] (%s): type %q is unknown: use one of %s", i, c.Name, c.Type, strings.Join(ColumnTypes, ", "))
	}
	if n := c.Numeric; n != nil && (len(n.Histogram.Edges) > 1024 || len(n.Quantiles) > 128) {
		return Errorf(CodeInvalid, "columns[%d] (%s): statistics are too large", i, c.Name)
	}
	if k := c.Categorical; k != nil {
		if len(k.Top) > 128 {
			return Errorf(CodeInvalid, "columns[%d] (%s): top lists %d values, more than 128", i, c.Name, len(k.Top))
		}
		for _, t := range k.Top {
			if len(t.Value) > MaxStatValueLen {
				return Errorf(CodeInvalid, "columns[%d] (%s): a top value is longer than %d bytes", i, c.Name, MaxStatValueLen)
			}
		}
	}
	return nil
}

func (q *Quarantine) validate() error {
	if err := ValidateDigest("quarantine.digest", q.Digest); err != nil {
		return err
	}
	if q.Size <= 0 || q.Rows <= 0 {
		return Errorf(CodeInvalid, "quarantine.size and quarantine.rows must be positive")
	}
	if len(q.Sample) > MaxBadRowSample {
		return Errorf(CodeInvalid, "quarantine.sample lists %d rows, more than %d", len(q.Sample), MaxBadRowSample)
	}
	for i, b := range q.Sample {
		if b.Line < 0 || len(b.Reason) > MaxBadRowReasonLen {
			return Errorf(CodeInvalid, "quarantine.sample[%d]: a negative line or a reason longer than %d bytes", i, MaxBadRowReasonLen)
		}
	}
	return ValidateHolders("quarantine.holders", q.Holders)
}

// TruncateUTF8 cuts s to at most n bytes, at a rune boundary.
func TruncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// DatasetVersionCreateRequest carries a new version; Apply numbers it.
type DatasetVersionCreateRequest struct {
	Version DatasetVersion `msgpack:"version"`
}

// DatasetVersionDeleteRequest deletes one version. Force deletes it even if a
// model's lineage names it.
type DatasetVersionDeleteRequest struct {
	Dataset string `msgpack:"dataset"`
	Version uint64 `msgpack:"version"`
	Force   bool   `msgpack:"force"`
}

// DatasetDeleteRequest deletes a dataset and all its versions.
type DatasetDeleteRequest struct {
	Name  string `msgpack:"name"`
	Force bool   `msgpack:"force"`
}

// DatasetHoldersRequest replaces the holders of one blob of a version: its
// file, or its quarantine, whichever Digest names.
type DatasetHoldersRequest struct {
	Dataset string   `msgpack:"dataset"`
	Version uint64   `msgpack:"version"`
	Digest  string   `msgpack:"digest"`
	Holders []string `msgpack:"holders"`
}

// Validate checks the request, naming the field at fault.
func (r *DatasetHoldersRequest) Validate() error {
	if err := ValidateName("dataset", r.Dataset); err != nil {
		return err
	}
	if r.Version == 0 {
		return Errorf(CodeInvalid, "version is required")
	}
	if err := ValidateDigest("digest", r.Digest); err != nil {
		return err
	}
	return ValidateHolders("holders", r.Holders)
}

// FeatureLineage says what a point-in-time frame was built from: the
// service (or the list) of features, the dataset version of entity rows
// and its timestamp column, and each feature view's state at the registry
// index the values were read at.
type FeatureLineage struct {
	Service         string      `msgpack:"service,omitempty" json:"service,omitempty"`
	Features        []string    `msgpack:"features" json:"features"`
	EntityRows      string      `msgpack:"entity_rows" json:"entity_rows"`
	TimestampColumn string      `msgpack:"timestamp_column" json:"timestamp_column"`
	Views           []ViewState `msgpack:"views" json:"views"`
	Index           uint64      `msgpack:"index" json:"index"`
}

// ViewState is a feature view as a frame read it: its definition (modify
// index) and how many values had been written to it (its write counter).
type ViewState struct {
	Name        string `msgpack:"name" json:"name"`
	ModifyIndex uint64 `msgpack:"modify_index" json:"modify_index"`
	Rows        uint64 `msgpack:"rows" json:"rows"`
}
