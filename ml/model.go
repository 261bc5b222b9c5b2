package ml

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime/debug"
)

// Sentinel errors. Runtimes wrap them with %w and a sentence naming the input,
// the field or the op at fault.
var (
	// ErrBadInput means the request does not fit the model: wrong shape,
	// unknown input name, or a missing value the runtime cannot take.
	ErrBadInput = errors.New("ml: bad input")
	// ErrBadModel means a model file does not load or is not supported.
	ErrBadModel = errors.New("ml: bad model")
	// ErrRuntime means the runtime failed on valid input (a recovered panic,
	// an internal error of a third-party library).
	ErrRuntime = errors.New("ml: runtime error")
)

// Model formats. The names are the ones users give at upload and the registry
// stores.
const (
	FormatLinear      = "linear"
	FormatLightGBM    = "lightgbm"
	FormatXGBoost     = "xgboost"      // legacy binary model
	FormatXGBoostJSON = "xgboost-json" // JSON model of XGBoost >= 1.0
	FormatONNX        = "onnx"
)

// Data types of a schema's tensors, as the Open Inference Protocol v2 names
// them. Values always travel as float64 (see the package doc); the type says
// what the model itself takes, so a client can be told.
const (
	FP32  = "FP32"
	FP64  = "FP64"
	INT64 = "INT64"
	INT32 = "INT32"
	BOOL  = "BOOL"
)

// Tensor is a named block of values in row-major order. len(Data) equals the
// product of Shape. NaN in Data means a missing value.
type Tensor struct {
	Name  string    `msgpack:"name" json:"name"`
	Shape []int     `msgpack:"shape" json:"shape"`
	Data  []float64 `msgpack:"data" json:"data"`
}

// Len returns the number of elements Shape implies, or -1 when a dimension is
// negative or the product overflows an int.
func (t Tensor) Len() int {
	n := 1
	for _, d := range t.Shape {
		if d < 0 || d != 0 && n > math.MaxInt/d {
			return -1
		}
		n *= d
	}
	return n
}

// Check reports whether Data holds exactly the elements Shape implies.
func (t Tensor) Check() error {
	for i, d := range t.Shape {
		if d < 0 {
			return fmt.Errorf("%w: input %q: dimension %d is negative (%d)", ErrBadInput, t.Name, i, d)
		}
	}
	if t.Len() < 0 {
		return fmt.Errorf("%w: input %q: shape %v is too large", ErrBadInput, t.Name, t.Shape)
	}
	if len(t.Data) != t.Len() {
		return fmt.Errorf("%w: input %q: shape %v needs %d values, got %d", ErrBadInput, t.Name, t.Shape, t.Len(), len(t.Data))
	}
	return nil
}

// TensorSpec describes one input or output of a model. A dimension of -1 is
// free (the batch dimension, usually the first).
type TensorSpec struct {
	Name     string `msgpack:"name" json:"name"`
	DataType string `msgpack:"datatype" json:"datatype"`
	Shape    []int  `msgpack:"shape" json:"shape"`
}

// Schema is what a model takes and gives. Tabular models have one input of
// shape [-1, features] and one output of shape [-1] (regression, binary) or
// [-1, classes] (multiclass).
type Schema struct {
	Inputs  []TensorSpec `msgpack:"inputs" json:"inputs"`
	Outputs []TensorSpec `msgpack:"outputs" json:"outputs"`
	// FeatureNames names the columns of a tabular model's single input, in
	// order, when the model file records them. Requests may then send
	// {"inputs": {"name": [...]}} by column.
	FeatureNames []string `msgpack:"feature_names,omitempty" json:"feature_names,omitempty"`
}

// Model is a loaded model, ready to score. Implementations are safe for
// concurrent use by many goroutines and hold no per-call state: each call
// builds its own tensors.
type Model interface {
	// Schema returns the model's inputs and outputs.
	Schema() Schema
	// Predict scores a batch. Inputs are matched to the schema by name (a
	// model with one input also takes it unnamed); the first dimension of
	// every input is the batch. Outputs come in schema order, each with the
	// batch as its first dimension. Errors wrap ErrBadInput when the request
	// is at fault.
	Predict(ctx context.Context, inputs []Tensor) ([]Tensor, error)
}

// LoadOptions tune how a runtime readies one replica's model. Runtimes that
// have no such knob ignore it.
type LoadOptions struct {
	// Threads is the runtime's intra-op thread count (ONNX Runtime); 0
	// means 1, since replicas and their workers already give parallelism.
	Threads int
	// GPU is the device index the replica reserved, or -1 for none.
	GPU int
}

// CPUOnly is the LoadOptions of a model that runs on the CPU with defaults.
var CPUOnly = LoadOptions{GPU: -1}

// Runtimed is implemented by models that can say what runs them (the
// runtime, its version, the device), for a version's metadata.
type Runtimed interface {
	Runtime() string
}

// Closer is implemented by models that hold resources beyond memory (a child
// process, a file). The shard actor calls Close when it unloads the model.
type Closer interface {
	Close() error
}

// PanicError is a panic recovered by Guard. Its message names the panic
// value only; the stack is for the log, not for the client.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("%v: panic: %v", ErrRuntime, e.Value) }

// Unwrap makes a PanicError match ErrRuntime.
func (e *PanicError) Unwrap() error { return ErrRuntime }

// Guard calls m.Predict and turns a panic inside it into a *PanicError
// (which wraps ErrRuntime), so the calling replica lives on.
func Guard(ctx context.Context, m Model, inputs []Tensor) (out []Tensor, err error) {
	defer func() {
		if r := recover(); r != nil {
			out = nil
			err = &PanicError{Value: r, Stack: firstLines(debug.Stack(), 24)}
		}
	}()
	return m.Predict(ctx, inputs)
}

func firstLines(b []byte, n int) []byte {
	for i, c := range b {
		if c == '\n' {
			n--
			if n == 0 {
				return b[:i]
			}
		}
	}
	return b
}

// TabularInput finds the single [batch, features] input of a tabular model
// in inputs and checks its shape against the model's feature count. It
// returns the batch size and the row-major values.
func TabularInput(inputs []Tensor, spec TensorSpec, features int) (rows int, data []float64, err error) {
	if len(inputs) != 1 {
		return 0, nil, fmt.Errorf("%w: model takes one input %q of shape [n, %d], got %d inputs", ErrBadInput, spec.Name, features, len(inputs))
	}
	in := inputs[0]
	if in.Name != "" && in.Name != spec.Name {
		return 0, nil, fmt.Errorf("%w: unknown input %q; the model's input is %q of shape [n, %d]", ErrBadInput, in.Name, spec.Name, features)
	}
	if err := in.Check(); err != nil {
		return 0, nil, err
	}
	switch {
	case len(in.Shape) == 1 && in.Shape[0] == features:
		return 1, in.Data, nil // one instance sent without a batch dimension
	case len(in.Shape) == 2 && in.Shape[1] == features:
		return in.Shape[0], in.Data, nil
	}
	return 0, nil, fmt.Errorf("%w: input %q has shape %v; the model expects [n, %d] (%d features per row)", ErrBadInput, spec.Name, in.Shape, features, features)
}

// NoMissing returns an error naming the first NaN in a [rows, features]
// block, for runtimes that cannot take missing values.
func NoMissing(format string, data []float64, features int) error {
	for i, v := range data {
		if math.IsNaN(v) {
			return fmt.Errorf("%w: row %d feature %d is missing (null); %s models cannot take missing values", ErrBadInput, i/features, i%features, format)
		}
	}
	return nil
}
