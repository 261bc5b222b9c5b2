package structs

import (
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Source kinds (DESIGN.md §8, "Data and features").
const (
	SourcePostgres = "postgres"
	SourceHTTP     = "http"
	SourceFile     = "file"
	SourceKafka    = "kafka"
	SourceNATS     = "nats"
	SourcePush     = "push"
	// SourceDataset reads the versions of a registered dataset, so that a
	// feature view can be defined on a dataset as on any source.
	SourceDataset = "dataset"
)

// SourceKinds lists the source kinds, in the order errors name them.
var SourceKinds = []string{SourcePostgres, SourceHTTP, SourceFile, SourceKafka, SourceNATS, SourcePush, SourceDataset}

// Streaming reports whether a kind reads continuously rather than on a
// schedule.
func StreamingKind(kind string) bool {
	return kind == SourceKafka || kind == SourceNATS || kind == SourcePush
}

// Rereadable reports whether the source's records can be read again
// without counting twice: a source read whole on every run (an HTTP API
// without a cursor, a file that changed) or a dataset's versions. Its
// batches are committed with Dedupe (identical rows of one entity and time
// are stored once), and its position may be reset.
func (s *SourceSpec) Rereadable() bool {
	switch s.Kind {
	case SourceFile, SourceDataset:
		return true
	case SourceHTTP:
		return s.HTTP == nil || s.HTTP.Pagination == nil || s.HTTP.Pagination.Type != PaginationCursor
	}
	return false
}

// Secret says where a credential comes from on the node that reads the
// source: a file, or an environment variable of the agent. The registry
// holds the name, never the secret.
type Secret struct {
	File string `msgpack:"file,omitempty" json:"file,omitempty" hcl:"file,optional"`
	Env  string `msgpack:"env,omitempty" json:"env,omitempty" hcl:"env,optional"`
}

// Set reports whether the secret names a file or a variable.
func (s Secret) Set() bool { return s.File != "" || s.Env != "" }

func (s Secret) validate(field string) error {
	if s.File != "" && s.Env != "" {
		return Errorf(CodeInvalid, "%s: give file or env, not both", field)
	}
	if s.File != "" && !filepath.IsAbs(s.File) {
		return Errorf(CodeInvalid, "%s.file %q must be an absolute path", field, s.File)
	}
	if s.Env != "" && !envNameRE.MatchString(s.Env) {
		return Errorf(CodeInvalid, "%s.env %q is not an environment variable name", field, s.Env)
	}
	return nil
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// PostgresSource reads a query incrementally: each run selects the rows whose
// incremental column is past the watermark, in that column's order.
type PostgresSource struct {
	// Conn is a postgres:// URL or key=value connection string without a
	// password.
	Conn     string `msgpack:"conn" json:"conn" hcl:"conn"`
	Password Secret `msgpack:"password" json:"password" hcl:"password,block"`
	// Query is a SELECT whose rows are the records; it may not end in ';'.
	// Kiln wraps it: SELECT * FROM (query) WHERE col > $1 ORDER BY col.
	Query string `msgpack:"query" json:"query" hcl:"query"`
	// IncrementalColumn is the column whose values only grow (updated_at, id).
	IncrementalColumn string `msgpack:"incremental_column" json:"incremental_column" hcl:"incremental_column"`
}

// DatasetSource reads every version of a dataset, in order, as it is
// registered: a version that failed its source's validation is skipped.
type DatasetSource struct {
	Name string `msgpack:"name" json:"name" hcl:"name"`
}

// HTTPSource GETs a URL that answers with records.
type HTTPSource struct {
	URL string `msgpack:"url" json:"url" hcl:"url"`
	// Format is json (an array of objects, or an object holding one under
	// RecordsField), ndjson, or csv.
	Format string `msgpack:"format" json:"format" hcl:"format,optional"`
	// RecordsField names the array in a JSON object answer.
	RecordsField string `msgpack:"records_field,omitempty" json:"records_field,omitempty" hcl:"records_field,optional"`
	Token        Secret `msgpack:"token" json:"token" hcl:"token,block"`
	// Pagination, when set, follows pages until one is empty or has no
	// next cursor.
	Pagination *HTTPPagination `msgpack:"pagination,omitempty" json:"pagination,omitempty" hcl:"pagination,block"`
}

// HTTP pagination types.
const (
	PaginationPage   = "page"
	PaginationCursor = "cursor"
)

// HTTPPagination says how to ask for the next page.
type HTTPPagination struct {
	// Type is page (?param=1,2,...) or cursor (?param=<the cursor the last
	// answer gave in CursorField>).
	Type  string `msgpack:"type" json:"type" hcl:"type"`
	Param string `msgpack:"param" json:"param" hcl:"param"`
	// CursorField is the field of a JSON object answer holding the next
	// cursor (cursor pagination).
	CursorField string `msgpack:"cursor_field,omitempty" json:"cursor_field,omitempty" hcl:"cursor_field,optional"`
	// Start is the first page number (page pagination; default 1).
	Start int `msgpack:"start,omitempty" json:"start,omitempty" hcl:"start,optional"`
	// MaxPages bounds one run (default 1000).
	MaxPages int `msgpack:"max_pages,omitempty" json:"max_pages,omitempty" hcl:"max_pages,optional"`
}

// FileSource reads files on the node it runs on.
type FileSource struct {
	// Path is an absolute path or glob (filepath.Match syntax).
	Path string `msgpack:"path" json:"path" hcl:"path"`
	// Format is csv, tsv, jsonl or parquet; empty takes it from each file's
	// extension.
	Format string `msgpack:"format,omitempty" json:"format,omitempty" hcl:"format,optional"`
	// Node pins the source to the node with this ID or name, the one the
	// files are on. Empty lets placement choose (the files must then be on
	// every node, e.g. a shared mount).
	Node string `msgpack:"node,omitempty" json:"node,omitempty" hcl:"node,optional"`
}

// KafkaSource consumes topics as a consumer group. Message values are JSON
// objects, one record each.
type KafkaSource struct {
	Brokers []string `msgpack:"brokers" json:"brokers" hcl:"brokers"`
	Topics  []string `msgpack:"topics" json:"topics" hcl:"topics"`
	// Group is the consumer group; default kiln-<source name>.
	Group string `msgpack:"group,omitempty" json:"group,omitempty" hcl:"group,optional"`
	// StartOffset is where a partition with no position starts: earliest
	// (default) or latest.
	StartOffset string `msgpack:"start_offset,omitempty" json:"start_offset,omitempty" hcl:"start_offset,optional"`
}

// NATSSource consumes a JetStream stream through a durable consumer.
// Message data are JSON objects, one record each.
type NATSSource struct {
	URL    string `msgpack:"url" json:"url" hcl:"url"`
	Stream string `msgpack:"stream" json:"stream" hcl:"stream"`
	// Subjects filter the stream (default: all of it).
	Subjects []string `msgpack:"subjects,omitempty" json:"subjects,omitempty" hcl:"subjects,optional"`
	// Durable is the consumer's name; default kiln-<source name>.
	Durable string `msgpack:"durable,omitempty" json:"durable,omitempty" hcl:"durable,optional"`
	Token   Secret `msgpack:"token" json:"token" hcl:"token,block"`
}

// Expectation rules (per source; checked on every record or every batch).
const (
	RuleNotNull         = "not_null"
	RuleRange           = "range"
	RuleAllowed         = "allowed"
	RuleRegex           = "regex"
	RuleUnique          = "unique"
	RuleType            = "type"
	RuleMaxNullFraction = "max_null_fraction"
	RuleRowCountBetween = "row_count_between"
)

// ExpectationRules lists the rules, in the order errors name them.
var ExpectationRules = []string{RuleNotNull, RuleRange, RuleAllowed, RuleRegex, RuleUnique, RuleType, RuleMaxNullFraction, RuleRowCountBetween}

// Expectation is one validation rule. Records that fail a record rule go to
// the run's quarantine with the rule and the reason; a run that fails a
// batch rule is stored but marked failed_validation.
type Expectation struct {
	Rule   string `msgpack:"rule" json:"rule" hcl:"rule"`
	Column string `msgpack:"column,omitempty" json:"column,omitempty" hcl:"column,optional"`
	// Min and Max bound range (values) and row_count_between (rows).
	Min *float64 `msgpack:"min,omitempty" json:"min,omitempty" hcl:"min,optional"`
	Max *float64 `msgpack:"max,omitempty" json:"max,omitempty" hcl:"max,optional"`
	// Values are the allowed values, compared as text.
	Values []string `msgpack:"values,omitempty" json:"values,omitempty" hcl:"values,optional"`
	// Pattern is a Go regular expression the whole text value must match.
	Pattern string `msgpack:"pattern,omitempty" json:"pattern,omitempty" hcl:"pattern,optional"`
	// Type is one of ColumnTypes.
	Type string `msgpack:"type,omitempty" json:"type,omitempty" hcl:"type,optional"`
	// Fraction bounds max_null_fraction, in [0, 1].
	Fraction *float64 `msgpack:"fraction,omitempty" json:"fraction,omitempty" hcl:"fraction,optional"`
}

// SourceSpec is what a user declares about a source.
type SourceSpec struct {
	Name string `msgpack:"name" json:"name"`
	Kind string `msgpack:"kind" json:"kind"`
	// Schema maps column names to ColumnTypes. Records are converted to it;
	// a value that does not convert quarantines its record. Columns outside
	// it are dropped. Required for push, kafka and nats; inferred from the
	// first batch otherwise when empty.
	Schema map[string]string `msgpack:"schema,omitempty" json:"schema,omitempty"`
	// Schedule is an interval ("15m") or a cron expression ("0 3 * * *"),
	// for the kinds that are not streams. Empty runs only when asked.
	Schedule     string        `msgpack:"schedule,omitempty" json:"schedule,omitempty"`
	Expectations []Expectation `msgpack:"expectations,omitempty" json:"expectations,omitempty"`
	// Dataset receives the records as dataset versions; default the
	// source's name.
	Dataset     string `msgpack:"dataset,omitempty" json:"dataset,omitempty"`
	Description string `msgpack:"description,omitempty" json:"description,omitempty"`

	Postgres *PostgresSource `msgpack:"postgres,omitempty" json:"postgres,omitempty"`
	HTTP     *HTTPSource     `msgpack:"http,omitempty" json:"http,omitempty"`
	File     *FileSource     `msgpack:"file,omitempty" json:"file,omitempty"`
	Kafka    *KafkaSource    `msgpack:"kafka,omitempty" json:"kafka,omitempty"`
	NATS     *NATSSource     `msgpack:"nats,omitempty" json:"nats,omitempty"`
	// FromDataset is the dataset a dataset source reads.
	FromDataset *DatasetSource `msgpack:"from_dataset,omitempty" json:"from_dataset,omitempty"`
}

// Limits of a source spec.
const (
	MaxSourceColumns      = MaxDatasetColumns
	MaxExpectations       = 256
	MaxSourceQueryLen     = 64 << 10
	MaxExpectationValues  = 1024
	defaultHTTPMaxPages   = 1000
	maxHTTPMaxPages       = 1_000_000
	defaultKafkaStart     = "earliest"
	minScheduleInterval   = time.Second
	maxSourceListElements = 64
)

// Normalize fills defaults.
func (s *SourceSpec) Normalize() {
	if s.Dataset == "" {
		s.Dataset = s.Name
	}
	if s.HTTP != nil {
		if s.HTTP.Format == "" {
			s.HTTP.Format = "json"
		}
		if p := s.HTTP.Pagination; p != nil {
			if p.Type == PaginationPage && p.Start == 0 {
				p.Start = 1
			}
			if p.MaxPages == 0 {
				p.MaxPages = defaultHTTPMaxPages
			}
		}
	}
	if s.Kafka != nil {
		if s.Kafka.Group == "" {
			s.Kafka.Group = "kiln-" + s.Name
		}
		if s.Kafka.StartOffset == "" {
			s.Kafka.StartOffset = defaultKafkaStart
		}
	}
	if s.NATS != nil && s.NATS.Durable == "" {
		s.NATS.Durable = "kiln-" + strings.ReplaceAll(s.Name, ".", "_")
	}
}

// Validate checks a normalized spec, naming the field at fault.
func (s *SourceSpec) Validate() error {
	if err := ValidateName("name", s.Name); err != nil {
		return err
	}
	if !slices.Contains(SourceKinds, s.Kind) {
		return Errorf(CodeInvalid, "kind %q is not a source kind: use one of %s", s.Kind, strings.Join(SourceKinds, ", "))
	}
	if err := ValidateName("dataset", s.Dataset); err != nil {
		return err
	}
	if len(s.Description) > MaxDescriptionLen {
		return Errorf(CodeInvalid, "description is %d bytes, more than %d", len(s.Description), MaxDescriptionLen)
	}
	if err := validateSchemaMap("schema", s.Schema); err != nil {
		return err
	}
	if len(s.Schema) == 0 && (s.Kind == SourcePush || s.Kind == SourceKafka || s.Kind == SourceNATS) {
		return Errorf(CodeInvalid, "schema is required for a %s source: a map of column name to type", s.Kind)
	}
	if StreamingKind(s.Kind) {
		if s.Schedule != "" {
			return Errorf(CodeInvalid, "schedule is for sources read in runs; a %s source reads continuously", s.Kind)
		}
	} else if s.Schedule != "" {
		if _, err := ParseSchedule(s.Schedule); err != nil {
			return Errorf(CodeInvalid, "schedule %q: %v", s.Schedule, err)
		}
	}
	if err := s.validateExpectations(); err != nil {
		return err
	}
	return s.validateKind()
}

func (s *SourceSpec) validateKind() error {
	set := map[string]bool{
		SourcePostgres: s.Postgres != nil, SourceHTTP: s.HTTP != nil, SourceFile: s.File != nil,
		SourceKafka: s.Kafka != nil, SourceNATS: s.NATS != nil, SourceDataset: s.FromDataset != nil,
	}
	for _, k := range SourceKinds {
		if set[k] && k != s.Kind {
			return Errorf(CodeInvalid, "%s is set on a %s source", k, s.Kind)
		}
	}
	if s.Kind != SourcePush && !set[s.Kind] {
		return Errorf(CodeInvalid, "%s is required for a %s source", s.Kind, s.Kind)
	}
	switch s.Kind {
	case SourcePostgres:
		return s.Postgres.validate()
	case SourceHTTP:
		return s.HTTP.validate()
	case SourceFile:
		return s.File.validate()
	case SourceKafka:
		return s.Kafka.validate()
	case SourceNATS:
		return s.NATS.validate()
	case SourceDataset:
		return ValidateName("from_dataset.name", s.FromDataset.Name)
	}
	return nil
}

func (p *PostgresSource) validate() error {
	if p.Conn == "" {
		return Errorf(CodeInvalid, "postgres.conn is required")
	}
	if PostgresConnHasPassword(p.Conn) {
		return Errorf(CodeInvalid, "postgres.conn holds a password; name a file or an environment variable in postgres.password instead, so that the registry never stores it")
	}
	if strings.HasPrefix(p.Conn, "postgres://") || strings.HasPrefix(p.Conn, "postgresql://") {
		if _, err := url.Parse(p.Conn); err != nil {
			return Errorf(CodeInvalid, "postgres.conn is not a valid URL: %v", err)
		}
	} else if !strings.Contains(p.Conn, "=") {
		return Errorf(CodeInvalid, "postgres.conn %q is neither a postgres:// URL nor key=value pairs", p.Conn)
	}
	if err := p.Password.validate("postgres.password"); err != nil {
		return err
	}
	q := strings.TrimSpace(p.Query)
	switch {
	case q == "":
		return Errorf(CodeInvalid, "postgres.query is required")
	case len(q) > MaxSourceQueryLen:
		return Errorf(CodeInvalid, "postgres.query is %d bytes, more than %d", len(q), MaxSourceQueryLen)
	case strings.HasSuffix(q, ";"):
		return Errorf(CodeInvalid, "postgres.query must be one SELECT without a trailing ';'")
	}
	if p.IncrementalColumn == "" {
		return Errorf(CodeInvalid, "postgres.incremental_column is required: the column whose values only grow (updated_at, id)")
	}
	return nil
}

// PostgresConnHasPassword reports whether a connection string carries a
// password, as a URL's user info or a password= pair.
func PostgresConnHasPassword(conn string) bool {
	if u, err := url.Parse(conn); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			return true
		}
		if u.Query().Has("password") {
			return true
		}
	}
	for _, f := range strings.Fields(conn) {
		if k, _, ok := strings.Cut(f, "="); ok && strings.TrimSpace(k) == "password" {
			return true
		}
	}
	return false
}

func (h *HTTPSource) validate() error {
	u, err := url.Parse(h.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Errorf(CodeInvalid, "http.url %q is not an http or https URL", h.URL)
	}
	if !slices.Contains([]string{"json", "ndjson", "csv"}, h.Format) {
		return Errorf(CodeInvalid, "http.format %q: use json, ndjson or csv", h.Format)
	}
	if err := h.Token.validate("http.token"); err != nil {
		return err
	}
	if p := h.Pagination; p != nil {
		switch p.Type {
		case PaginationPage:
		case PaginationCursor:
			if p.CursorField == "" {
				return Errorf(CodeInvalid, "http.pagination.cursor_field is required for cursor pagination")
			}
			if h.Format != "json" {
				return Errorf(CodeInvalid, "http.pagination: cursor pagination needs format json (the cursor is a field of the answer)")
			}
			if h.RecordsField == "" {
				return Errorf(CodeInvalid, "http.records_field is required with cursor pagination: the answer is an object holding the records and the cursor")
			}
		default:
			return Errorf(CodeInvalid, "http.pagination.type %q: use page or cursor", p.Type)
		}
		if p.Param == "" {
			return Errorf(CodeInvalid, "http.pagination.param is required: the query parameter that selects the page")
		}
		if p.MaxPages < 1 || p.MaxPages > maxHTTPMaxPages {
			return Errorf(CodeInvalid, "http.pagination.max_pages %d is outside 1-%d", p.MaxPages, maxHTTPMaxPages)
		}
	}
	return nil
}

func (f *FileSource) validate() error {
	if !filepath.IsAbs(f.Path) {
		return Errorf(CodeInvalid, "file.path %q must be an absolute path or glob", f.Path)
	}
	if _, err := filepath.Match(f.Path, ""); err != nil {
		return Errorf(CodeInvalid, "file.path %q is not a valid glob: %v", f.Path, err)
	}
	if f.Format != "" && !slices.Contains([]string{DatasetCSV, DatasetTSV, DatasetJSONL, DatasetParquet}, f.Format) {
		return Errorf(CodeInvalid, "file.format %q: use csv, tsv, jsonl or parquet", f.Format)
	}
	return nil
}

func (k *KafkaSource) validate() error {
	if err := validateList("kafka.brokers", k.Brokers); err != nil {
		return err
	}
	for _, b := range k.Brokers {
		if _, port, ok := strings.Cut(b, ":"); !ok || port == "" {
			return Errorf(CodeInvalid, "kafka.brokers: %q is not host:port", b)
		}
	}
	if err := validateList("kafka.topics", k.Topics); err != nil {
		return err
	}
	if k.StartOffset != "earliest" && k.StartOffset != "latest" {
		return Errorf(CodeInvalid, "kafka.start_offset %q: use earliest or latest", k.StartOffset)
	}
	return nil
}

func (n *NATSSource) validate() error {
	u, err := url.Parse(n.URL)
	if err != nil || (u.Scheme != "nats" && u.Scheme != "tls") || u.Host == "" {
		return Errorf(CodeInvalid, "nats.url %q is not a nats:// or tls:// URL", n.URL)
	}
	if n.Stream == "" {
		return Errorf(CodeInvalid, "nats.stream is required")
	}
	if len(n.Subjects) > maxSourceListElements {
		return Errorf(CodeInvalid, "nats.subjects has %d entries, more than %d", len(n.Subjects), maxSourceListElements)
	}
	if err := validateNATSDurable(n.Durable); err != nil {
		return err
	}
	return n.Token.validate("nats.token")
}

// maxNATSDurableLen bounds a durable consumer's name: the server keeps a
// consumer in a directory of that name.
const maxNATSDurableLen = 255

// validateNATSDurable checks a durable consumer's name as the server would
// take it: not empty (Normalize sets a default), and none of the subject
// tokens '.', '*', '>', no whitespace or control character, and no '/' or
// '\\', which would make the server's directory of it a path.
func validateNATSDurable(d string) error {
	if d == "" || len(d) > maxNATSDurableLen {
		return Errorf(CodeInvalid, "nats.durable %q must be 1-%d bytes", d, maxNATSDurableLen)
	}
	for _, r := range d {
		if strings.ContainsRune(".*>/\\", r) || unicode.IsSpace(r) || unicode.IsControl(r) {
			return Errorf(CodeInvalid, "nats.durable %q holds %q: a consumer name may not hold '.', '*', '>', '/', '\\', whitespace or control characters", d, r)
		}
	}
	return nil
}

func validateList(field string, xs []string) error {
	if len(xs) == 0 {
		return Errorf(CodeInvalid, "%s is required", field)
	}
	if len(xs) > maxSourceListElements {
		return Errorf(CodeInvalid, "%s has %d entries, more than %d", field, len(xs), maxSourceListElements)
	}
	for i, x := range xs {
		if strings.TrimSpace(x) == "" {
			return Errorf(CodeInvalid, "%s[%d] is empty", field, i)
		}
	}
	return nil
}

// validateSchemaMap checks a map of column name to type.
func validateSchemaMap(field string, schema map[string]string) error {
	if len(schema) > MaxSourceColumns {
		return Errorf(CodeInvalid, "%s has %d columns, more than %d", field, len(schema), MaxSourceColumns)
	}
	for _, col := range sortedKeys(schema) {
		if col == "" || len(col) > MaxColumnNameLen {
			return Errorf(CodeInvalid, "%s: column name %q must be 1-%d bytes", field, col, MaxColumnNameLen)
		}
		if !slices.Contains(ColumnTypes, schema[col]) {
			return Errorf(CodeInvalid, "%s: column %q has type %q; use one of %s", field, col, schema[col], strings.Join(ColumnTypes, ", "))
		}
	}
	return nil
}

func (s *SourceSpec) validateExpectations() error {
	if len(s.Expectations) > MaxExpectations {
		return Errorf(CodeInvalid, "expectations has %d rules, more than %d", len(s.Expectations), MaxExpectations)
	}
	for i, e := range s.Expectations {
		field := fmt.Sprintf("expectations[%d]", i)
		if !slices.Contains(ExpectationRules, e.Rule) {
			return Errorf(CodeInvalid, "%s.rule %q: use one of %s", field, e.Rule, strings.Join(ExpectationRules, ", "))
		}
		if e.Rule != RuleRowCountBetween {
			if e.Column == "" {
				return Errorf(CodeInvalid, "%s.column is required for %s", field, e.Rule)
			}
			if len(s.Schema) > 0 {
				if _, ok := s.Schema[e.Column]; !ok {
					return Errorf(CodeInvalid, "%s.column %q is not in the schema", field, e.Column)
				}
			}
		}
		switch e.Rule {
		case RuleRange, RuleRowCountBetween:
			if e.Min == nil && e.Max == nil {
				return Errorf(CodeInvalid, "%s: %s needs min, max or both", field, e.Rule)
			}
			if e.Min != nil && e.Max != nil && *e.Min > *e.Max {
				return Errorf(CodeInvalid, "%s: min %g is above max %g", field, *e.Min, *e.Max)
			}
		case RuleAllowed:
			if len(e.Values) == 0 || len(e.Values) > MaxExpectationValues {
				return Errorf(CodeInvalid, "%s.values needs 1-%d values", field, MaxExpectationValues)
			}
		case RuleRegex:
			if _, err := regexp.Compile(e.Pattern); err != nil || e.Pattern == "" {
				return Errorf(CodeInvalid, "%s.pattern %q is not a regular expression: %v", field, e.Pattern, err)
			}
		case RuleType:
			if !slices.Contains(ColumnTypes, e.Type) {
				return Errorf(CodeInvalid, "%s.type %q: use one of %s", field, e.Type, strings.Join(ColumnTypes, ", "))
			}
		case RuleMaxNullFraction:
			if e.Fraction == nil || *e.Fraction < 0 || *e.Fraction > 1 {
				return Errorf(CodeInvalid, "%s.fraction must be in [0, 1]", field)
			}
		}
	}
	return nil
}

// Schedule is a parsed source schedule: a fixed interval, or a cron
// expression evaluated by the leader.
type Schedule struct {
	Interval time.Duration // set for an interval
	Cron     string        // set for a cron expression
}

// ParseSchedule reads "15m" (an interval, at least 1s; "d" counts days) or
// a 5-field cron expression. Cron syntax is checked by the scheduler that
// evaluates it; here only its shape.
func ParseSchedule(s string) (Schedule, error) {
	if d, err := ParseSpan(s); err == nil {
		if d < minScheduleInterval {
			return Schedule{}, fmt.Errorf("an interval must be at least %v", minScheduleInterval)
		}
		return Schedule{Interval: d}, nil
	}
	if f := strings.Fields(s); len(f) == 5 || (len(f) == 1 && strings.HasPrefix(s, "@")) {
		return Schedule{Cron: s}, nil
	}
	return Schedule{}, fmt.Errorf("neither an interval (15m, 1h, 1d) nor a 5-field cron expression")
}

// ParseSpan parses a duration as time.ParseDuration does, and also a whole
// number of days or weeks ("1d", "7d", "2w"), which feature windows and
// retention use.
func ParseSpan(s string) (time.Duration, error) {
	for suffix, unit := range map[string]time.Duration{"d": 24 * time.Hour, "w": 7 * 24 * time.Hour} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			v, err := strconv.ParseUint(n, 10, 32)
			if err != nil {
				return 0, fmt.Errorf("%q is not a duration", s)
			}
			return time.Duration(v) * unit, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration", s)
	}
	return d, nil
}

// Source is a source's record: its spec, where reading has got to, and
// what its runs did.
type Source struct {
	Spec SourceSpec `msgpack:"spec" json:"spec"`
	// Paused sources are not read; pushes to them are refused.
	Paused bool `msgpack:"paused" json:"paused"`
	// Position is how far the source has been read (actors/data.Position).
	// It moves only with the records it covers, in one command.
	Position map[string]string `msgpack:"position,omitempty" json:"position,omitempty"`
	// Totals since the source was created.
	Read        int64 `msgpack:"read" json:"read"`
	Accepted    int64 `msgpack:"accepted" json:"accepted"`
	Quarantined int64 `msgpack:"quarantined" json:"quarantined"`
	// LastIngestAt is the time of the last committed batch.
	LastIngestAt time.Time `msgpack:"last_ingest_at" json:"last_ingest_at"`
	// Node runs the source's ingestion actor (not for push sources);
	// AssignIndex is the index it was placed at, the actor's generation.
	Node        string `msgpack:"node,omitempty" json:"node,omitempty"`
	AssignIndex uint64 `msgpack:"assign_index,omitempty" json:"assign_index,omitempty"`
	// Triggers counts the runs asked for (by the schedule, by a user, by a
	// retry); a run records the count it answers, and an actor that finds
	// Triggers past its last run's runs again. Several triggers while a run
	// goes on make one more run, not several.
	Triggers uint64 `msgpack:"triggers" json:"triggers"`
	// LastScheduledAt is the schedule's last tick that triggered a run:
	// the leader fires the next tick after it, so that a new leader
	// neither repeats nor skips one.
	LastScheduledAt time.Time `msgpack:"last_scheduled_at,omitempty" json:"last_scheduled_at,omitempty"`
	// Runs counts the runs started; a run's number is its ordinal.
	Runs uint64 `msgpack:"runs" json:"runs"`
	// LastRun is the latest run's record, as of its last report.
	LastRun *SourceRun `msgpack:"last_run,omitempty" json:"last_run,omitempty"`
	// Failures counts the runs that failed in a row, for the backoff; 0
	// after a success.
	Failures int `msgpack:"failures" json:"failures"`
	// LastError is the error of the last failed run, kept until a run
	// succeeds.
	LastError   string    `msgpack:"last_error,omitempty" json:"last_error,omitempty"`
	LastErrorAt time.Time `msgpack:"last_error_at,omitempty" json:"last_error_at,omitempty"`
	CreatedAt   time.Time `msgpack:"created_at" json:"created_at"`
	UpdatedAt   time.Time `msgpack:"updated_at" json:"updated_at"`
	CreateIndex uint64    `msgpack:"create_index" json:"create_index"`
	ModifyIndex uint64    `msgpack:"modify_index" json:"modify_index"`
}

// SourcePutRequest creates a source or replaces its spec.
type SourcePutRequest struct {
	Spec SourceSpec `msgpack:"spec"`
	At   time.Time  `msgpack:"at"`
}

// SourceIngestRequest commits one batch of a source. From holds, for each
// key of Advance, the value the batch was read after ("" where the key was
// absent); Apply refuses the batch with already_exists when the stored
// position differs, so a batch read twice (by an actor that lost its place
// to another, or resent after an unknown outcome) is committed once.
type SourceIngestRequest struct {
	Source      string            `msgpack:"source"`
	From        map[string]string `msgpack:"from,omitempty"`
	Advance     map[string]string `msgpack:"advance,omitempty"`
	Read        int64             `msgpack:"read"`
	Accepted    int64             `msgpack:"accepted"`
	Quarantined int64             `msgpack:"quarantined"`
	Rows        []FeatureRow      `msgpack:"rows,omitempty"`
	// Dedupe stores a row only if its view holds no row of the same
	// entity and timestamp with the same values: for sources read whole on
	// every run (an HTTP snapshot, a file rewritten), whose unchanged
	// records come again.
	Dedupe bool      `msgpack:"dedupe,omitempty"`
	At     time.Time `msgpack:"at"`
}

// Source run states.
const (
	SourceRunRunning          = "running"
	SourceRunSucceeded        = "succeeded"
	SourceRunFailed           = "failed"
	SourceRunFailedValidation = "failed_validation"
)

// SourceRun is one run of a source: a pass over what a source has now (a
// query, an API, files), or a session of a stream from its actor's start
// to its end.
type SourceRun struct {
	Source string `msgpack:"source" json:"source"`
	Seq    uint64 `msgpack:"seq" json:"seq"`
	// Trigger is the source's trigger count the run answers; 0 for a
	// stream's session.
	Trigger     uint64    `msgpack:"trigger" json:"trigger"`
	Node        string    `msgpack:"node" json:"node"`
	State       string    `msgpack:"state" json:"state"`
	StartedAt   time.Time `msgpack:"started_at" json:"started_at"`
	FinishedAt  time.Time `msgpack:"finished_at,omitempty" json:"finished_at,omitempty"`
	Read        int64     `msgpack:"read" json:"read"`
	Accepted    int64     `msgpack:"accepted" json:"accepted"`
	Quarantined int64     `msgpack:"quarantined" json:"quarantined"`
	// DurationMS is the run's length, when it ended.
	DurationMS int64  `msgpack:"duration_ms" json:"duration_ms"`
	Error      string `msgpack:"error,omitempty" json:"error,omitempty"`
	// Failed lists the batch expectations the run failed: its data are
	// stored, but marked failed_validation so that nothing downstream
	// takes them.
	Failed []string `msgpack:"failed,omitempty" json:"failed,omitempty"`
	// Dataset is the dataset version the run wrote, name:version.
	Dataset string `msgpack:"dataset,omitempty" json:"dataset,omitempty"`
	// Interrupted: the run ended because its actor stopped (its node died
	// or shut down, the source was paused or moved), not because reading
	// failed. It does not count toward the backoff, and the next actor
	// runs again at once.
	Interrupted bool `msgpack:"interrupted,omitempty" json:"interrupted,omitempty"`
	// Quarantine samples the run's quarantined records.
	Quarantine []QuarantinedRecord `msgpack:"quarantine,omitempty" json:"quarantine,omitempty"`
}

// QuarantinedRecord is a record kept out of a source's data, with where it
// came from, the rule it failed and why.
type QuarantinedRecord struct {
	Offset string `msgpack:"offset" json:"offset"`
	Rule   string `msgpack:"rule" json:"rule"`
	Reason string `msgpack:"reason" json:"reason"`
	Raw    string `msgpack:"raw" json:"raw"`
}

// MaxRunQuarantineSample bounds the quarantined records a run lists.
const MaxRunQuarantineSample = 20

// Terminal reports whether the run has ended.
func (r *SourceRun) Terminal() bool { return r.State != SourceRunRunning }

// SourceAssignRequest places a source on a node (empty: nowhere).
type SourceAssignRequest struct {
	Name string `msgpack:"name"`
	Node string `msgpack:"node"`
	// Expect is the node the proposer saw, so that two leaders' passes do
	// not undo each other.
	Expect string    `msgpack:"expect"`
	At     time.Time `msgpack:"at"`
}

// SourceTriggerRequest asks for a run. A trigger of the schedule names
// the tick it fires for (Tick); Apply refuses a tick at or before the last
// one, so two leaders never fire one tick twice.
type SourceTriggerRequest struct {
	Name string    `msgpack:"name"`
	Tick time.Time `msgpack:"tick,omitempty"`
	At   time.Time `msgpack:"at"`
}

// SourceRunRequest records a run. A run with Seq 0 is a new one: Apply
// numbers it. Gen is the actor's generation (the source's AssignIndex):
// a report from an actor the source has moved away from is refused.
type SourceRunRequest struct {
	Run SourceRun `msgpack:"run"`
	Gen uint64    `msgpack:"gen"`
}

// SourceIngestResult is what a committed batch did: the source after it,
// and the sequence number each row was stored with, in the order of the
// request's rows (0 for a row Dedupe left out). A mirror of the latest
// values (Redis) orders rows of one timestamp by it, as the store does.
type SourceIngestResult struct {
	Source *Source  `msgpack:"source"`
	Seqs   []uint64 `msgpack:"seqs"`
}
