package dataset

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
)

// Parquet is a Parquet file, read with ScanParquet: its footer comes last,
// so it is read from a file (io.ReaderAt), not a stream.
const Parquet Format = "parquet"

// julianUnixEpoch is the Julian day of 1970-01-01.
const julianUnixEpoch = 2440588

// parquetBatch is how many rows are read at a time.
const parquetBatch = 1024

// ScanParquet reads a Parquet file of size bytes from r. Its columns are
// the file's leaf columns, typed from their physical and logical types:
// booleans are bool; INT32 and INT64 int, or timestamp when annotated as a
// timestamp or a date; FLOAT and DOUBLE float; INT96 timestamp; byte arrays
// string. Nested and repeated columns are refused. A pinned schema must name
// the same columns, in the same order, with the same or wider types. Rows
// are typed by the file, so none is bad; the file is refused as a whole when
// it does not decode. OnRow sees the values as the file types them (an int
// in a column the schema widens to float stays an Int), line being the
// 1-based row number.
func ScanParquet(r io.ReaderAt, size int64, opts Options) (*Result, error) {
	f, err := parquet.OpenFile(r, size)
	if err != nil {
		return nil, fmt.Errorf("%w: not a parquet file: %v", ErrFormat, err)
	}
	sample := withSample(&opts)
	s := &scan{opts: opts, byName: map[string]int{}, sample: sample}
	kinds := []parquetColumn{}
	for _, field := range f.Schema().Fields() {
		pc, err := parquetColumnOf(field)
		if err != nil {
			return nil, err
		}
		kinds = append(kinds, pc)
		s.addColumn(field.Name(), pc.typ)
	}
	if len(opts.Schema) > 0 {
		if err := matchSchema(opts.Schema, s.cols); err != nil {
			return nil, err
		}
		for i, c := range opts.Schema {
			s.cols[i].typ = c.Type // a wider type the schema asks for
		}
	}
	reader := parquet.NewReader(f)
	defer reader.Close()
	rows := make([]parquet.Row, parquetBatch)
	fields := make([]Value, len(s.cols)) // the row OnRow sees, reused
	for {
		n, err := reader.ReadRows(rows)
		for _, row := range rows[:n] {
			clear(fields)
			for _, v := range row {
				i := v.Column()
				if i < 0 || i >= len(s.cols) {
					return nil, fmt.Errorf("%w: a value of column %d, the file has %d", ErrFormat, i, len(s.cols))
				}
				fields[i] = kinds[i].value(v)
				s.cols[i].add(fields[i])
			}
			s.rows++
			if err := s.onRow(s.rows, fields); errors.Is(err, ErrStop) {
				return s.result(), nil
			} else if err != nil {
				return nil, err
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: reading rows: %v", ErrFormat, err)
		}
	}
	return s.result(), nil
}

// parquetColumn is how one leaf column's values become values.
type parquetColumn struct {
	typ   Type
	scale float64 // timestamp: seconds per unit
	date  bool    // timestamp: days, shown as 2006-01-02
}

func parquetColumnOf(field parquet.Field) (parquetColumn, error) {
	if !field.Leaf() || field.Repeated() {
		return parquetColumn{}, fmt.Errorf("%w: column %q is nested or repeated; only flat columns are read", ErrFormat, field.Name())
	}
	t := field.Type()
	lt := t.LogicalType()
	switch t.Kind() {
	case parquet.Boolean:
		return parquetColumn{typ: Bool}, nil
	case parquet.Int32, parquet.Int64:
		if lt != nil {
			switch v := lt.Value.(type) {
			case *format.DateType:
				return parquetColumn{typ: Timestamp, scale: 86400, date: true}, nil
			case *format.TimestampType:
				switch v.Unit.Value.(type) {
				case *format.MilliSeconds:
					return parquetColumn{typ: Timestamp, scale: 1e-3}, nil
				case *format.MicroSeconds:
					return parquetColumn{typ: Timestamp, scale: 1e-6}, nil
				case *format.NanoSeconds:
					return parquetColumn{typ: Timestamp, scale: 1e-9}, nil
				}
			}
		}
		return parquetColumn{typ: Int}, nil
	case parquet.Int96:
		return parquetColumn{typ: Timestamp}, nil
	case parquet.Float, parquet.Double:
		return parquetColumn{typ: Float}, nil
	case parquet.ByteArray, parquet.FixedLenByteArray:
		return parquetColumn{typ: String}, nil
	}
	return parquetColumn{}, fmt.Errorf("%w: column %q has type %s, which is not read", ErrFormat, field.Name(), t)
}

func (c parquetColumn) value(v parquet.Value) Value {
	if v.IsNull() {
		return Value{}
	}
	switch v.Kind() {
	case parquet.Boolean:
		if v.Boolean() {
			return Value{Kind: Bool, Text: "true"}
		}
		return Value{Kind: Bool, Text: "false"}
	case parquet.Int32, parquet.Int64:
		x := float64(v.Int64())
		if c.typ == Timestamp {
			return Value{Kind: Timestamp, Num: x * c.scale, Text: c.timeText(v.Int64())}
		}
		return Value{Kind: Int, Num: x, Text: v.String()}
	case parquet.Int96:
		// Impala's timestamp: nanoseconds of the day, then the Julian day.
		i := v.Int96()
		nanos := uint64(i[1])<<32 | uint64(i[0])
		days := int64(i[2]) - julianUnixEpoch
		return Value{Kind: Timestamp, Num: float64(days)*86400 + float64(nanos)/1e9, Text: time.Unix(days*86400, int64(nanos)).UTC().Format(time.RFC3339Nano)}
	case parquet.Float:
		return Value{Kind: Float, Num: float64(v.Float()), Text: v.String()}
	case parquet.Double:
		return Value{Kind: Float, Num: v.Double(), Text: v.String()}
	}
	return Value{Kind: String, Text: string(v.ByteArray())}
}

// timeText writes a timestamp of x units as a CSV file would: RFC 3339 in
// UTC, or 2006-01-02 for a date; parse reads either back as a timestamp.
func (c parquetColumn) timeText(x int64) string {
	if c.date {
		return time.Unix(x*86400, 0).UTC().Format(time.DateOnly)
	}
	perSec := int64(math.Round(1 / c.scale))
	return time.Unix(x/perSec, x%perSec*(1e9/perSec)).UTC().Format(time.RFC3339Nano)
}

// matchSchema checks a file's columns against a pinned schema.
func matchSchema(schema []Column, cols []*col) error {
	if len(schema) != len(cols) {
		names := make([]string, len(cols))
		for i, c := range cols {
			names[i] = c.name
		}
		return fmt.Errorf("%w: the file has columns %s, the schema %d", ErrFormat, strings.Join(names, ", "), len(schema))
	}
	for i, want := range schema {
		got := cols[i]
		if got.name != want.Name || (got.typ != want.Type && !(want.Type == Float && got.typ == Int) && want.Type != String) {
			return fmt.Errorf("%w: column %d is %s %s in the file, %s %s in the schema", ErrFormat, i, got.name, got.typ, want.Name, want.Type)
		}
	}
	return nil
}

// ScanFile reads a dataset file of size bytes in opts.Format: Parquet from
// its footer (ScanParquet), the other formats in one pass (Scan).
func ScanFile(f interface {
	io.Reader
	io.ReaderAt
}, size int64, opts Options) (*Result, error) {
	if opts.Format == Parquet {
		return ScanParquet(f, size, opts)
	}
	return Scan(f, opts)
}
