package tensorjson

import (
	"math"
	"strconv"

	"github.com/kilnml/kiln/ml"
)

// The request and answer of a tabular prediction — rows of numbers in, rows
// of numbers out — are by far the most common, and encoding/json's generic
// decoding into []any and encoding from it cost more CPU than a small model
// itself. FastRows and AppendPredictions handle exactly that shape; anything
// else (or anything wrong, which needs a precise error) takes the generic
// path in predict_json.go.

// FastRows parses a JSON array of equally long arrays of numbers or null
// into a [rows, width] tensor. ok is false for any other input.
func FastRows(b []byte) (t ml.Tensor, ok bool) {
	t, end, ok := fastRowsAt(b, 0)
	if !ok || skipSpace(b, end) != len(b) {
		return ml.Tensor{}, false
	}
	return t, true
}

// fastRowsAt is FastRows on the value that starts at b[i] (after any
// space); end is the index just past its closing bracket.
func fastRowsAt(b []byte, i int) (t ml.Tensor, end int, ok bool) {
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != '[' {
		return t, 0, false
	}
	i++
	width := -1
	var data []float64
	rows := 0
	for {
		i = skipSpace(b, i)
		if i >= len(b) {
			return t, 0, false
		}
		if b[i] == ']' && rows == 0 {
			return t, 0, false // empty: the generic path names the problem
		}
		if b[i] != '[' {
			return t, 0, false
		}
		i++
		n := 0
		for {
			i = skipSpace(b, i)
			if i >= len(b) {
				return t, 0, false
			}
			if b[i] == ']' && n == 0 {
				return t, 0, false
			}
			var x float64
			switch {
			case b[i] == 'n' && i+4 <= len(b) && string(b[i:i+4]) == "null":
				x = math.NaN()
				i += 4
			default:
				j := i
				for j < len(b) && isNumberByte(b[j]) {
					j++
				}
				if !validJSONNumber(b[i:j]) {
					return t, 0, false
				}
				v, err := strconv.ParseFloat(string(b[i:j]), 64)
				if err != nil {
					return t, 0, false
				}
				x = v
				i = j
			}
			data = append(data, x)
			n++
			i = skipSpace(b, i)
			if i >= len(b) {
				return t, 0, false
			}
			if b[i] == ',' {
				i++
				continue
			}
			if b[i] != ']' {
				return t, 0, false
			}
			i++
			break
		}
		if width >= 0 && n != width {
			return t, 0, false
		}
		width = n
		rows++
		i = skipSpace(b, i)
		if i >= len(b) {
			return t, 0, false
		}
		if b[i] == ',' {
			i++
			continue
		}
		if b[i] != ']' {
			return t, 0, false
		}
		return ml.Tensor{Shape: []int{rows, width}, Data: data}, i + 1, true
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// validJSONNumber reports whether s is a number as JSON spells it:
// -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? — stricter than ParseFloat,
// which also takes "+1", "01" or "1.".
func validJSONNumber(s []byte) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			return false
		}
	}
	return i == len(s)
}

func isNumberByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// AppendPredictions writes the predictions of a single-output model as JSON:
// a number per instance for an output of shape [n], an array of numbers for
// [n, k]. ok is false for other shapes, which Predictions handles.
func AppendPredictions(b []byte, out []ml.Tensor) ([]byte, bool) {
	if len(out) != 1 || len(out[0].Shape) == 0 || len(out[0].Shape) > 2 {
		return b, false
	}
	t := out[0]
	n := t.Shape[0]
	if n == 0 || len(t.Data)%n != 0 {
		return b, false
	}
	per := len(t.Data) / n
	b = append(b, '[')
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		row := t.Data[i*per : (i+1)*per]
		if len(t.Shape) == 1 {
			b = appendNumber(b, row[0])
			continue
		}
		b = append(b, '[')
		for j, x := range row {
			if j > 0 {
				b = append(b, ',')
			}
			b = appendNumber(b, x)
		}
		b = append(b, ']')
	}
	return append(b, ']'), true
}

// appendNumber writes x as encoding/json would, and NaN or ±Inf as null.
func appendNumber(b []byte, x float64) []byte {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return append(b, "null"...)
	}
	abs := math.Abs(x)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	return strconv.AppendFloat(b, x, format, -1, 64)
}
