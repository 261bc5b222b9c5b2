package linear

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strings"

	"github.com/kilnml/kiln/ml"
)

// Load reads a kiln-linear file from r, checks it and returns a model ready to
// score (a *Runtime). Errors about the file wrap ml.ErrBadModel.
func Load(r io.Reader) (ml.Model, error) {
	m, err := Decode(r)
	if err != nil {
		return nil, err
	}
	rt, err := New(m)
	if err != nil {
		return nil, err
	}
	return rt, nil
}

// Decode reads a kiln-linear file from r and checks it against every rule of
// the format. Unlike Validate, it requires the file to state its format and
// version. Errors about the file wrap ml.ErrBadModel; an error reading r
// does not (it is wrapped as it is).
func Decode(r io.Reader) (*Model, error) {
	lr := &sizeLimit{r: r, left: MaxFileBytes}
	dec := json.NewDecoder(lr)
	dec.DisallowUnknownFields()
	var f fileModel
	err := dec.Decode(&f)
	trailing := int64(-1)
	if err == nil {
		trailing = firstNonBlank(io.MultiReader(dec.Buffered(), lr))
	}
	switch {
	case lr.err != nil:
		return nil, fmt.Errorf("linear: reading model: %w", lr.err)
	case lr.over:
		return nil, badModelf("the file is over %d bytes (64 MiB)", MaxFileBytes)
	case err != nil:
		// encoding/json goes on decoding after an unknown field, so the
		// header is known even then: a file of another format or a later
		// version is better told so than told about the field.
		if f.Format != "" && f.Format != FileFormat {
			return nil, formatError(f.Format)
		}
		if f.Version != 0 && f.Version != Version {
			return nil, versionError(f.Version)
		}
		return nil, jsonError(err)
	case trailing >= 0:
		return nil, badModelf("unexpected data after the model object, at byte %d", dec.InputOffset()+trailing)
	}
	m := f.model()
	if m.Format == "" {
		return nil, badModelf("format is missing; want %q", FileFormat)
	}
	if m.Version == 0 {
		return nil, badModelf("version is missing; this build reads version %d", Version)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// firstNonBlank returns the offset of the first byte of r that is not JSON
// whitespace, or -1 if there is none before the end or an error (which the
// caller learns from its sizeLimit). Decoder.Token would do, but it rescans
// a run of blanks from its start at every refill: quadratic in the padding.
func firstNonBlank(r io.Reader) int64 {
	buf := make([]byte, 32<<10)
	off := int64(0)
	for {
		n, err := r.Read(buf)
		for i, c := range buf[:n] {
			if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
				return off + int64(i)
			}
		}
		off += int64(n)
		if err != nil {
			return -1
		}
	}
}

// errTooLarge ends a read past MaxFileBytes; Decode reports it from
// sizeLimit.over.
var errTooLarge = errors.New("linear: file too large")

// sizeLimit reads at most left+1 bytes of r, so that a file over the limit
// is told from one exactly at it, and records why reading stopped. Reading
// through it, rather than reading the file whole first, keeps one copy of the
// file in memory (the JSON decoder's) instead of two.
type sizeLimit struct {
	r    io.Reader
	left int64
	over bool  // more than the limit was read
	err  error // r failed
}

func (l *sizeLimit) Read(p []byte) (int, error) {
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		l.over = true
		return n, errTooLarge
	}
	if err != nil && err != io.EOF {
		l.err = err
	}
	return n, err
}

// jsonError turns an error of encoding/json into one wrapping ml.ErrBadModel
// that speaks of the file's fields rather than of Go types.
func jsonError(err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return badModelf("the file is empty")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badModelf("the file ends in the middle of the JSON object")
	case errors.As(err, &syntax):
		return badModelf("invalid JSON at byte %d: %v", syntax.Offset, syntax)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "the file"
		}
		if strings.HasPrefix(typ.Value, "number") && typ.Type != nil && typ.Type.Kind() == reflect.Float64 {
			return badModelf("%s: %s is out of the range of float64", field, typ.Value)
		}
		return badModelf("%s: JSON %s where %s is expected", field, typ.Value, jsonKind(typ.Type))
	}
	// Unknown fields and the like: encoding/json's text names the key.
	return badModelf("%v", err)
}

// jsonKind names the JSON value a Go type is decoded from.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "another value"
	}
	switch t.Kind() {
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Pointer, reflect.Map:
		return "an object"
	}
	return "another value"
}

// fileModel mirrors Model for decoding, with the number arrays as floats so
// that a null among them becomes NaN, which Validate reports with its index,
// instead of the 0 encoding/json would leave. Its fields and tags must match
// Model's; the round-trip tests hold them together.
type fileModel struct {
	Format       string      `json:"format"`
	Version      int         `json:"version"`
	Kind         Kind        `json:"kind"`
	NFeatures    int         `json:"n_features"`
	FeatureNames []string    `json:"feature_names"`
	Classes      []string    `json:"classes"`
	Scaler       *fileScaler `json:"scaler"`
	Layers       []fileLayer `json:"layers"`
}

type fileScaler struct {
	Mean  floats `json:"mean"`
	Scale floats `json:"scale"`
}

type fileLayer struct {
	Weights    []floats   `json:"weights"`
	Bias       floats     `json:"bias"`
	Activation Activation `json:"activation"`
}

func (f *fileModel) model() *Model {
	m := &Model{
		Format:    f.Format,
		Version:   f.Version,
		Kind:      f.Kind,
		NFeatures: f.NFeatures,
	}
	// An empty list is written as none, so it reads as none: Encode then
	// Decode gives back what Decode gave.
	if len(f.FeatureNames) > 0 {
		m.FeatureNames = f.FeatureNames
	}
	if len(f.Classes) > 0 {
		m.Classes = f.Classes
	}
	if f.Scaler != nil {
		m.Scaler = &Scaler{Mean: f.Scaler.Mean, Scale: f.Scaler.Scale}
	}
	if f.Layers != nil {
		m.Layers = make([]Layer, len(f.Layers))
	}
	for i, l := range f.Layers {
		var w [][]float64
		if l.Weights != nil {
			w = make([][]float64, len(l.Weights))
		}
		for j, row := range l.Weights {
			w[j] = row
		}
		m.Layers[i] = Layer{Weights: w, Bias: l.Bias, Activation: l.Activation}
	}
	return m
}

// floats is a JSON array of numbers in which null stands for NaN.
type floats []float64

// UnmarshalJSON decodes b, which encoding/json has already checked is one
// well-formed JSON value.
func (f *floats) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*f = nil
		return nil
	}
	// An array of numbers has no letter n, so the common case decodes
	// directly (and reports any non-number as encoding/json does); only an
	// array holding a null, or a string, walks the tokens.
	if bytes.IndexByte(b, 'n') < 0 {
		return json.Unmarshal(b, (*[]float64)(f))
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return &json.UnmarshalTypeError{Value: jsonValueName(tok), Type: reflect.TypeFor[[]float64]()}
	}
	out := []float64{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch v := tok.(type) {
		case float64:
			out = append(out, v)
		case nil:
			out = append(out, math.NaN())
		default:
			return &json.UnmarshalTypeError{Value: jsonValueName(tok), Type: reflect.TypeFor[float64]()}
		}
	}
	*f = out
	return nil
}

// jsonValueName names a token as encoding/json's errors do.
func jsonValueName(tok json.Token) string {
	switch tok.(type) {
	case string:
		return "string"
	case bool:
		return "bool"
	case json.Delim:
		if tok == json.Delim('[') {
			return "array"
		}
		return "object"
	}
	return "value"
}
