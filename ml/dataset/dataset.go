// Package dataset reads a dataset file in one streaming pass: it infers (or
// checks against a pinned) schema, computes every column's statistics with
// ml/stats, and reports each bad row with its line number and reason. Memory
// stays bounded whatever the file's size: rows are not kept.
//
// Formats: CSV and TSV with a header row, and JSON lines (one object per
// line; the columns are the keys in the order first seen, a missing key is a
// null), and LibSVM (a label, then index:value pairs; a feature a row leaves
// out is 0). Parquet files, whose footer comes last, are read from a file
// with ScanParquet (github.com/parquet-go/parquet-go), typed by the file.
//
// Types are int, float, bool, timestamp (RFC 3339, or a date 2006-01-02) and
// string. An inferred column takes the narrowest type all its values fit:
// int widens to float, and mixed kinds widen to string. An empty field or a
// JSON null is a null in any column. With a pinned schema a value that does
// not parse as its column's type makes the row bad, as does a CSV row with
// the wrong number of fields, a line that is not a JSON object, or a LibSVM
// feature index the schema does not name.
//
// Numeric columns (int, float, timestamp as Unix seconds) get numeric
// statistics; bool and string columns categorical ones. Until a column's type
// is settled both are kept, so that widening never needs a second pass.
//
// The same pass can hand each good row to the caller (Options.OnRow) as
// typed Values, to preview a file or read it for training; returning ErrStop
// ends the pass early. Detect guesses a file's format from its first bytes.
package dataset

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kilnml/kiln/ml/stats"
)

// Format of a dataset file.
type Format string

// Formats this package reads.
const (
	CSV    Format = "csv"
	TSV    Format = "tsv"
	JSONL  Format = "jsonl"
	LibSVM Format = "libsvm"
)

// Type of a column.
type Type string

// Column types, narrowest first.
const (
	Int       Type = "int"
	Float     Type = "float"
	Bool      Type = "bool"
	Timestamp Type = "timestamp"
	String    Type = "string"
)

// Column is a named, typed column.
type Column struct {
	Name string `json:"name" msgpack:"name"`
	Type Type   `json:"type" msgpack:"type"`
}

// BadRow is a row that was not counted, and why.
type BadRow struct {
	Line   int64  `json:"line" msgpack:"line"`
	Reason string `json:"reason" msgpack:"reason"`
}

// Options of a Scan.
type Options struct {
	Format Format
	// Schema, when set, pins the columns' names and types: the file's
	// columns must match it by name, and values must parse as their type.
	Schema []Column
	// OnBadRow is called for every bad row, with the row's raw line (valid
	// only during the call; nil for a CSV row the reader could not split). A
	// non-nil error stops the scan and is returned (strict mode returns one
	// at once; lenient mode keeps the line in quarantine and goes on).
	OnBadRow func(bad BadRow, raw []byte) error
	// OnRow, when set, is called for every good row once it is counted, so
	// that a caller can preview or read the rows in the same pass. line is
	// the row's 1-based line number (for Parquet, its 1-based row number).
	// row holds one value per column in the scan's column order, a null
	// where the row has none; it is valid only during the call. A non-nil
	// error stops the scan and is returned (ErrStop: see there).
	//
	// A caller that needs to know which column each value is passes Schema:
	// then row[i] is Schema[i], for every format. Without one the order is
	// the file's: a CSV or TSV header's; for JSON lines the keys in the order
	// first seen, so row grows when a later row brings a new key (len(row)
	// is the columns known at that row); for LibSVM the label, then the
	// features known so far in the order first seen (the Result sorts them
	// by index), a feature the row leaves out being 0.
	OnRow func(line int64, row []Value) error
	// Seed makes the quantile sketches repeatable.
	Seed uint64
	// NoHeader reads a CSV or TSV file whose first line is data: its
	// columns are named c0, c1, ... (a pinned schema names them so too).
	NoHeader bool
	// SampleRows, when positive, keeps a uniform sample of up to that many
	// good rows in Result.Sample.
	SampleRows int
}

// ColumnStats is one column's type and statistics.
type ColumnStats struct {
	Column
	Numeric     *stats.NumericStats     `json:"numeric,omitempty" msgpack:"numeric,omitempty"`
	Categorical *stats.CategoricalStats `json:"categorical,omitempty" msgpack:"categorical,omitempty"`
}

// Result of a Scan.
type Result struct {
	Rows    int64         `json:"rows" msgpack:"rows"`
	BadRows int64         `json:"bad_rows" msgpack:"bad_rows"`
	Columns []ColumnStats `json:"columns" msgpack:"columns"`
	// Sample is the rows kept when Options.SampleRows is set.
	Sample *Sample `json:"-" msgpack:"-"`
}

var (
	// ErrFormat is wrapped by errors about the file as a whole (no header,
	// an unknown format, a header that does not match the pinned schema).
	ErrFormat = errors.New("dataset: bad file")
	// ErrStop, returned (or wrapped) by OnRow or OnBadRow, ends the scan
	// early without failing it: Scan and ScanParquet return the result of
	// the rows read so far (Rows counts the row whose OnRow returned it) and
	// a nil error. A caller reading the first N rows returns it from the
	// Nth call.
	ErrStop = errors.New("dataset: stop")
)

// maxLineBytes bounds one line (one row) of a file.
const maxLineBytes = 16 << 20

// utf8BOM is skipped at the start of a text file.
var utf8BOM = []byte("\xef\xbb\xbf")

// Scan reads a dataset file from r.
func Scan(r io.Reader, opts Options) (*Result, error) {
	sample := withSample(&opts)
	s := &scan{opts: opts, byName: map[string]int{}, sample: sample}
	if opts.OnBadRow == nil {
		s.opts.OnBadRow = func(BadRow, []byte) error { return nil }
	}
	for _, c := range opts.Schema {
		if _, dup := s.byName[c.Name]; dup || c.Name == "" {
			return nil, fmt.Errorf("%w: schema names column %q twice or empty", ErrFormat, c.Name)
		}
		switch c.Type {
		case Int, Float, Bool, Timestamp, String:
		default:
			return nil, fmt.Errorf("%w: schema column %q has type %q: use int, float, bool, timestamp or string", ErrFormat, c.Name, c.Type)
		}
		s.addColumn(c.Name, c.Type)
	}
	br := bufio.NewReaderSize(r, 1<<16)
	if head, _ := br.Peek(len(utf8BOM)); bytes.Equal(head, utf8BOM) {
		br.Discard(len(utf8BOM)) // else it would be part of the first column's name
	}
	r = br
	var err error
	switch opts.Format {
	case CSV:
		err = s.delimited(r, ',')
	case TSV:
		err = s.delimited(r, '\t')
	case JSONL:
		err = s.jsonLines(r)
	case LibSVM:
		err = s.libsvm(r)
	default:
		err = fmt.Errorf("%w: format %q: use csv, tsv, jsonl or libsvm", ErrFormat, opts.Format)
	}
	if err != nil && !errors.Is(err, ErrStop) {
		return nil, err
	}
	return s.result(), nil
}

// col accumulates one column.
type col struct {
	name   string
	typ    Type // current inferred type; "" until a value is seen
	pinned bool
	num    *stats.Numeric
	cat    *stats.Categorical // nil for a sparse feature, which is numeric
	// present counts the rows that have a sparse feature; the others hold 0.
	present int64
	// lastLine is the line that last gave a sparse feature, to find one
	// given twice in a row.
	lastLine int64
}

type scan struct {
	opts    Options
	sample  *reservoir
	cols    []*col
	byName  map[string]int
	rows    int64
	badRows int64
}

func (s *scan) addColumn(name string, typ Type) *col {
	c := &col{name: name, typ: typ, pinned: typ != "",
		num: stats.NewNumeric(0, 0, s.opts.Seed+uint64(len(s.cols))), cat: stats.NewCategorical(0)}
	s.byName[name] = len(s.cols)
	s.cols = append(s.cols, c)
	return c
}

// Value is one parsed field of a row, as OnRow receives it.
type Value struct {
	// Kind is the value's own type, "" for a null. It may be narrower than
	// its column's: an int in a float column, a bool in a string column.
	Kind Type
	// Num is the number of an Int or Float, and a Timestamp's Unix seconds;
	// 0 for the other kinds (a Bool is not a number).
	Num float64
	// Text is the field's text: as written for numbers, timestamps and
	// strings (a JSON string unquoted; a Parquet timestamp in RFC 3339, or
	// 2006-01-02 for a date), "true" or "false" for a Bool, "" for a null.
	Text string
}

// parse reads a field as the narrowest type it fits.
func parse(field string) Value {
	if field == "" {
		return Value{}
	}
	if i, err := strconv.ParseInt(field, 10, 64); err == nil {
		return Value{Kind: Int, Num: float64(i), Text: field}
	}
	if f, err := strconv.ParseFloat(field, 64); err == nil && !math.IsInf(f, 0) {
		return Value{Kind: Float, Num: f, Text: field}
	}
	switch strings.ToLower(field) {
	case "true", "false":
		return Value{Kind: Bool, Text: strings.ToLower(field)}
	}
	if t, ok := parseTime(field); ok {
		return Value{Kind: Timestamp, Num: float64(t.UnixNano()) / 1e9, Text: field}
	}
	return Value{Kind: String, Text: field}
}

func parseTime(s string) (time.Time, bool) {
	if len(s) < 10 || s[4] != '-' {
		return time.Time{}, false
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// widen is the type that holds values of types a and b.
func widen(a, b Type) Type {
	switch {
	case a == "":
		return b
	case b == "" || a == b:
		return a
	case (a == Int && b == Float) || (a == Float && b == Int):
		return Float
	}
	return String
}

// fits reports whether v can be a value of a pinned column of type t.
func fits(t Type, v Value) bool {
	return v.Kind == "" || v.Kind == t || t == String || (t == Float && v.Kind == Int)
}

// check refuses, for a pinned column, a value of another type.
func (c *col) check(v Value) error {
	if c.pinned && !fits(c.typ, v) {
		return fmt.Errorf("column %s: %q is not a %s", c.name, v.Text, c.typ)
	}
	return nil
}

// add counts v, widening the inferred type to hold it.
func (c *col) add(v Value) {
	if v.Kind == "" {
		c.num.AddNull()
		if c.cat != nil {
			c.cat.AddNull()
		}
		return
	}
	if !c.pinned {
		c.typ = widen(c.typ, v.Kind)
	}
	switch v.Kind {
	case Int, Float, Timestamp:
		c.num.Add(v.Num)
	default:
		c.num.AddNull() // a string in what is, so far, a numeric column
	}
	if c.cat != nil {
		c.cat.Add(v.Text)
	}
}

// row counts one good row, or reports it bad. fields are by column index;
// raw gives the row's text, asked only for a bad row.
func (s *scan) row(line int64, raw func() []byte, fields []Value) error {
	for i, v := range fields {
		if err := s.cols[i].check(v); err != nil {
			return s.bad(line, raw(), err.Error())
		}
	}
	for i, v := range fields {
		s.cols[i].add(v)
	}
	s.rows++
	return s.onRow(line, fields)
}

// onRow passes a counted row to OnRow, if set.
func (s *scan) onRow(line int64, fields []Value) error {
	if s.opts.OnRow == nil {
		return nil
	}
	return s.opts.OnRow(line, fields)
}

func (s *scan) bad(line int64, raw []byte, reason string) error {
	s.badRows++
	return s.opts.OnBadRow(BadRow{Line: line, Reason: reason}, raw)
}

func (s *scan) delimited(r io.Reader, sep rune) error {
	cr := csv.NewReader(bufio.NewReaderSize(r, 1<<16))
	cr.Comma = sep
	cr.FieldsPerRecord = -1 // checked here, to report the row and go on
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err == io.EOF {
		return fmt.Errorf("%w: the file is empty; the first line must name the columns", ErrFormat)
	}
	if err != nil {
		return fmt.Errorf("%w: header: %v", ErrFormat, err)
	}
	var first []string // with NoHeader, the first line is the first row
	if s.opts.NoHeader {
		first = slices.Clone(header)
		header = make([]string, len(first))
		for i := range header {
			header[i] = "c" + strconv.Itoa(i)
		}
	}
	index := make([]int, len(header)) // file column -> column
	for i, name := range header {
		name = strings.TrimSpace(name)
		j, ok := s.byName[name]
		switch {
		case ok && !s.cols[j].pinned, ok && slicesIndex(index[:i], j) >= 0:
			return fmt.Errorf("%w: header names column %q twice", ErrFormat, name)
		case !ok && len(s.opts.Schema) > 0:
			return fmt.Errorf("%w: header column %q is not in the schema", ErrFormat, name)
		case !ok:
			j = len(s.cols)
			s.addColumn(name, "")
		}
		index[i] = j
	}
	if len(s.opts.Schema) > 0 && len(header) != len(s.opts.Schema) {
		return fmt.Errorf("%w: header has %d columns, the schema %d", ErrFormat, len(header), len(s.opts.Schema))
	}
	fields := make([]Value, len(s.cols))
	for {
		var rec []string
		var err error
		if first != nil {
			rec, first = first, nil // FieldPos still points at line 1
		} else {
			rec, err = cr.Read()
		}
		if err == io.EOF {
			return nil
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			if err := s.bad(int64(pe.StartLine), nil, pe.Err.Error()); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		line, _ := cr.FieldPos(0)
		raw := func() []byte { return []byte(strings.Join(rec, string(sep))) }
		if len(rec) != len(header) {
			if err := s.bad(int64(line), raw(), fmt.Sprintf("%d fields, the header has %d", len(rec), len(header))); err != nil {
				return err
			}
			continue
		}
		for i, f := range rec {
			fields[index[i]] = parse(f)
		}
		if err := s.row(int64(line), raw, fields); err != nil {
			return err
		}
	}
}

func slicesIndex(s []int, v int) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func (s *scan) jsonLines(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<16), maxLineBytes)
	var line int64
	var fields []Value // reused: OnRow's row is valid only during the call
	for sc.Scan() {
		line++
		raw := bytes.TrimSpace(sc.Bytes())
		if len(raw) == 0 {
			continue
		}
		var obj map[string]json.RawMessage
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&obj); err != nil || obj == nil {
			if err := s.bad(line, raw, "not a JSON object"); err != nil {
				return err
			}
			continue
		}
		// Columns in the order the keys first appear in the file.
		keys, err := objectKeys(raw)
		if err != nil {
			if err := s.bad(line, raw, "not a JSON object"); err != nil {
				return err
			}
			continue
		}
		for _, k := range keys {
			if _, ok := s.byName[k]; !ok {
				if len(s.opts.Schema) > 0 {
					if err := s.bad(line, raw, fmt.Sprintf("key %q is not in the schema", k)); err != nil {
						return err
					}
					goto next
				}
				c := s.addColumn(k, "")
				// Earlier rows did not have it: nulls.
				for range s.rows {
					c.add(Value{})
				}
			}
		}
		{
			fields = append(fields[:0], make([]Value, len(s.cols))...)
			for k, v := range obj {
				fields[s.byName[k]] = jsonValue(v)
			}
			if err := s.row(line, func() []byte { return raw }, fields); err != nil {
				return err
			}
		}
	next:
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("%w: line %d is longer than %d bytes", ErrFormat, line+1, maxLineBytes)
		}
		return err
	}
	return nil
}

// libsvm reads "label index:value ..." lines: a label column, then one
// column per feature index, named f<index>. A feature a row leaves out is 0
// in that row, as the format means it. A qid:N token is skipped; an index
// given twice makes the row bad. Only numbers are kept for features (no top
// values: a sparse file may have a million of them).
//
// Without a schema the features are found as they come, and the result
// lists them in index order. A pinned schema (what inference recorded)
// names the label, then features f<index>, each int or float: the columns
// are exactly those, in its order, and a row with a feature index it does
// not name is bad.
func (s *scan) libsvm(r io.Reader) error {
	features := map[int64]int{} // feature index -> column
	if len(s.opts.Schema) > 0 {
		if err := s.libsvmSchema(features); err != nil {
			return err
		}
	} else {
		s.addColumn("label", "")
	}
	err := s.libsvmRows(r, features)
	if err != nil && !errors.Is(err, ErrStop) {
		return err
	}
	// Also after ErrStop: the partial result must count the zeros too.
	for _, c := range s.cols[1:] {
		if missing := s.rows - c.present; missing > 0 {
			c.num.AddN(0, missing)
			if !c.pinned {
				c.typ = widen(c.typ, Int)
			}
		}
	}
	if len(s.opts.Schema) == 0 {
		// Label first, then features by index.
		idx := make([]int64, 0, len(features))
		for i := range features {
			idx = append(idx, i)
		}
		slices.Sort(idx)
		cols := make([]*col, 1, len(s.cols))
		cols[0] = s.cols[0]
		for _, i := range idx {
			cols = append(cols, s.cols[features[i]])
		}
		s.cols = cols
	}
	return err
}

// libsvmSchema checks a pinned schema for a libsvm file and maps each
// feature index it names to its column.
func (s *scan) libsvmSchema(features map[int64]int) error {
	for i, c := range s.opts.Schema {
		if i == 0 {
			if c.Name != "label" {
				return fmt.Errorf("%w: schema column %q: a libsvm file's first column is its label, named \"label\"", ErrFormat, c.Name)
			}
		} else {
			idx, err := strconv.ParseInt(strings.TrimPrefix(c.Name, "f"), 10, 64)
			if !strings.HasPrefix(c.Name, "f") || err != nil || idx < 0 {
				return fmt.Errorf("%w: schema column %q: a libsvm file's columns after the label are features named f<index>, as f3", ErrFormat, c.Name)
			}
			if j, dup := features[idx]; dup {
				return fmt.Errorf("%w: schema columns %q and %q are both feature %d", ErrFormat, s.opts.Schema[j].Name, c.Name, idx)
			}
			features[idx] = i
			s.cols[i].cat = nil
		}
		if c.Type != Int && c.Type != Float {
			return fmt.Errorf("%w: schema column %q has type %s: a libsvm file holds numbers: use int or float", ErrFormat, c.Name, c.Type)
		}
	}
	return nil
}

// libsvmRows reads the lines of a libsvm file; see libsvm.
func (s *scan) libsvmRows(r io.Reader, features map[int64]int) error {
	pinned := len(s.opts.Schema) > 0
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<16), maxLineBytes)
	type feat struct {
		col int
		v   Value
	}
	var (
		line  int64
		feats []feat
		dense []Value // the row OnRow sees, reused
	)
	for sc.Scan() {
		line++
		raw := sc.Bytes()
		fields := strings.Fields(string(raw))
		if len(fields) == 0 || fields[0][0] == '#' {
			continue
		}
		reason := ""
		lv := parse(fields[0])
		if lv.Kind != Int && lv.Kind != Float {
			reason = fmt.Sprintf("label %q is not a number", fields[0])
		} else if err := s.cols[0].check(lv); err != nil {
			reason = err.Error()
		}
		feats = feats[:0]
		for _, f := range fields[1:] {
			if reason != "" {
				break
			}
			k, v, ok := strings.Cut(f, ":")
			if !ok {
				reason = fmt.Sprintf("%q is not index:value", f)
				break
			}
			if k == "qid" {
				continue
			}
			idx, err := strconv.ParseInt(k, 10, 64)
			if err != nil || idx < 0 {
				reason = fmt.Sprintf("feature index %q is not a non-negative integer", k)
				break
			}
			fv := parse(v)
			if fv.Kind != Int && fv.Kind != Float {
				reason = fmt.Sprintf("feature %d: %q is not a number", idx, v)
				break
			}
			j, known := features[idx]
			if !known && pinned {
				reason = fmt.Sprintf("feature index %d is not in the schema", idx)
				break
			}
			if !known {
				j = len(s.cols)
				s.addColumn("f"+strconv.FormatInt(idx, 10), "").cat = nil
				features[idx] = j
			}
			c := s.cols[j]
			if c.lastLine == line {
				reason = fmt.Sprintf("feature %d is given twice", idx)
				break
			}
			c.lastLine = line
			if err := c.check(fv); err != nil {
				reason = err.Error()
				break
			}
			feats = append(feats, feat{j, fv})
		}
		if reason != "" {
			if err := s.bad(line, raw, reason); err != nil {
				return err
			}
			continue
		}
		s.cols[0].add(lv)
		for _, f := range feats {
			c := s.cols[f.col]
			c.add(f.v)
			c.present++
		}
		s.rows++
		if s.opts.OnRow != nil {
			dense = append(dense[:0], make([]Value, len(s.cols))...)
			dense[0] = lv
			for i := range dense[1:] {
				dense[1+i] = Value{Kind: Int, Text: "0"}
			}
			for _, f := range feats {
				dense[f.col] = f.v
			}
			if err := s.opts.OnRow(line, dense); err != nil {
				return err
			}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("%w: line %d is longer than %d bytes", ErrFormat, line+1, maxLineBytes)
		}
		return err
	}
	return nil
}

// objectKeys lists a JSON object's keys in order.
func objectKeys(raw []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	var keys []string
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k, _ := t.(string)
		keys = append(keys, k)
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

// jsonValue types a JSON value: numbers as int or float by their form,
// strings as parse does (so timestamps are found), nested values as text.
func jsonValue(raw json.RawMessage) Value {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return Value{}
	case string(raw) == "true" || string(raw) == "false":
		return Value{Kind: Bool, Text: string(raw)}
	case raw[0] == '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return Value{Kind: String, Text: string(raw)}
		}
		if s == "" {
			return Value{Kind: String, Text: s}
		}
		v := parse(s)
		if v.Kind == Int || v.Kind == Float || v.Kind == Bool {
			return Value{Kind: String, Text: s} // a quoted number is text
		}
		return v
	case raw[0] == '{' || raw[0] == '[':
		return Value{Kind: String, Text: string(raw)}
	}
	return parse(string(raw))
}

func (s *scan) result() *Result {
	res := &Result{Rows: s.rows, BadRows: s.badRows, Columns: make([]ColumnStats, len(s.cols))}
	for i, c := range s.cols {
		typ := c.typ
		if typ == "" {
			typ = String // only nulls: nothing says otherwise
		}
		cs := ColumnStats{Column: Column{Name: c.name, Type: typ}}
		switch typ {
		case Int, Float, Timestamp:
			n := c.num.Result()
			cs.Numeric = &n
		default:
			if c.cat != nil {
				k := c.cat.Result(0)
				cs.Categorical = &k
			}
		}
		res.Columns[i] = cs
	}
	if s.sample != nil {
		res.Sample = s.sample.result(res.Columns)
	}
	return res
}
