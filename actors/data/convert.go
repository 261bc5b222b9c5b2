package data

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// timeLayouts are the text forms a timestamp column accepts, tried in order.
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02",
}

// ConvertValue converts one value a reader gave to a column type of
// structs.ColumnTypes. nil stays nil. A value that does not convert is an
// error that says what it is and what was expected.
func ConvertValue(typ string, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch typ {
	case "int":
		switch x := v.(type) {
		case int64:
			return x, nil
		case int:
			return int64(x), nil
		case float64:
			if x == math.Trunc(x) && math.Abs(x) <= 1<<63 {
				return int64(x), nil
			}
		case json.Number:
			return ConvertValue(typ, string(x))
		case string:
			if n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64); err == nil {
				return n, nil
			}
			if f, err := strconv.ParseFloat(strings.TrimSpace(x), 64); err == nil && f == math.Trunc(f) && math.Abs(f) <= 1<<53 {
				return int64(f), nil
			}
		}
	case "float":
		switch x := v.(type) {
		case float64:
			return x, nil
		case int64:
			return float64(x), nil
		case int:
			return float64(x), nil
		case json.Number:
			return ConvertValue(typ, string(x))
		case string:
			if f, err := strconv.ParseFloat(strings.TrimSpace(x), 64); err == nil {
				return f, nil
			}
		}
	case "bool":
		switch x := v.(type) {
		case bool:
			return x, nil
		case string:
			if b, err := strconv.ParseBool(strings.TrimSpace(x)); err == nil {
				return b, nil
			}
		}
	case "timestamp":
		switch x := v.(type) {
		case time.Time:
			return x.UTC(), nil
		case string:
			s := strings.TrimSpace(x)
			for _, layout := range timeLayouts {
				if t, err := time.Parse(layout, s); err == nil {
					return t.UTC(), nil
				}
			}
		case int64:
			return time.Unix(x, 0).UTC(), nil // Unix seconds
		case float64:
			sec, frac := math.Modf(x)
			return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
		}
	case "string":
		switch x := v.(type) {
		case string:
			return x, nil
		case int64, int, float64, bool, json.Number:
			return fmt.Sprint(x), nil
		case time.Time:
			return x.UTC().Format(time.RFC3339Nano), nil
		}
	default:
		return nil, fmt.Errorf("unknown column type %q", typ)
	}
	return nil, fmt.Errorf("%s is not a%s %s", describe(v), article(typ), typ)
}

func article(typ string) string {
	if typ == "int" {
		return "n"
	}
	return ""
}

// describe quotes a value for an error, cut short.
func describe(v any) string {
	var s string
	switch x := v.(type) {
	case string:
		s = strconv.Quote(x)
	default:
		s = fmt.Sprintf("%v (%T)", v, v)
	}
	if len(s) > 64 {
		s = s[:61] + "..."
	}
	return s
}

// Schema is a source's columns with their types, in name order, so that
// conversion names the same column first on every run.
type Schema struct {
	Names []string
	Types []string
}

// NewSchema orders a map of column name to type.
func NewSchema(m map[string]string) Schema {
	var s Schema
	for _, name := range slices.Sorted(maps.Keys(m)) {
		s.Names = append(s.Names, name)
		s.Types = append(s.Types, m[name])
	}
	return s
}

// Type returns a column's type, "" when the schema lacks it.
func (s Schema) Type(col string) string {
	if i, ok := slices.BinarySearch(s.Names, col); ok {
		return s.Types[i]
	}
	return ""
}

// Convert converts a record to the schema: every column of the schema,
// nil where the record lacks it; columns outside the schema are dropped.
// The error names the first column, in name order, that does not convert.
func (s Schema) Convert(rec Record) (Record, error) {
	out := make(Record, len(s.Names))
	for i, col := range s.Names {
		v, err := ConvertValue(s.Types[i], rec[col])
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", col, err)
		}
		out[col] = v
	}
	return out, nil
}
