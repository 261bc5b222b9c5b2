package linear

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/kilnml/kiln/ml"
)

// FileFormat is the value of the "format" field of every kiln-linear file.
const FileFormat = "kiln-linear"

// Version is the version of the format this package reads and writes.
const Version = 1

// Limits on a model. They keep a hostile or mistaken upload from taking a
// replica's memory: 16M float64 parameters are 128 MiB once loaded.
const (
	// MaxFileBytes is the size of the largest file Load and Decode read.
	MaxFileBytes = 64 << 20
	// MaxParams is the largest number of parameters a model may have: every
	// weight and bias, and the scaler's means and scales.
	MaxParams = 16 << 20
)

// Kind says what a model computes; see the package doc.
type Kind string

// The kinds of model.
const (
	KindLinear   Kind = "linear"   // linear regression: one identity layer
	KindLogistic Kind = "logistic" // binary logistic regression: one sigmoid output
	KindSoftmax  Kind = "softmax"  // multinomial logistic regression
	KindMLP      Kind = "mlp"      // multilayer perceptron, activations per layer
)

// Activation is the function a layer applies to its outputs.
type Activation string

// The activations.
const (
	Identity Activation = "identity"
	ReLU     Activation = "relu"
	Tanh     Activation = "tanh"
	Sigmoid  Activation = "sigmoid"
	Softmax  Activation = "softmax" // over the layer's outputs; last layer only
)

// Model is a kiln-linear file in Go form: what Decode returns, what Encode
// writes and what New builds a runtime from. A trainer fills one in and calls
// Encode. Format and Version may be left zero in memory; Encode writes them.
type Model struct {
	// Format is FileFormat.
	Format string `json:"format"`
	// Version is Version.
	Version int `json:"version"`
	// Kind is what the model computes.
	Kind Kind `json:"kind"`
	// NFeatures is the number of columns of an input row.
	NFeatures int `json:"n_features"`
	// FeatureNames, when set, names the NFeatures columns in order.
	FeatureNames []string `json:"feature_names,omitempty"`
	// Classes, when set, labels a classifier's outputs: one per output, or
	// [negative, positive] for a single sigmoid output.
	Classes []string `json:"classes,omitempty"`
	// Scaler, when set, standardizes a row before the first layer.
	Scaler *Scaler `json:"scaler,omitempty"`
	// Layers are the dense layers, applied in order.
	Layers []Layer `json:"layers"`
}

// Scaler standardizes input column i to (x[i] - Mean[i]) / Scale[i].
type Scaler struct {
	Mean  []float64 `json:"mean"`
	Scale []float64 `json:"scale"`
}

// Layer is one dense layer: out[j] = activation(Weights[j] · in + Bias[j]).
type Layer struct {
	// Weights is shaped [outputs][inputs].
	Weights [][]float64 `json:"weights"`
	// Bias has one value per output.
	Bias []float64 `json:"bias"`
	// Activation may be left empty in a single-layer kind, which implies it;
	// an mlp layer must name it.
	Activation Activation `json:"activation,omitempty"`
}

// Encode checks m and writes it to w as one line of JSON. Numbers are written
// in the shortest form that reads back to the same float64, so a model that
// is encoded and loaded again predicts exactly as before. Errors in m wrap
// ml.ErrBadModel.
func (m *Model) Encode(w io.Writer) error {
	c := *m
	if c.Format == "" {
		c.Format = FileFormat
	}
	if c.Version == 0 {
		c.Version = Version
	}
	if err := c.Validate(); err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&c); err != nil {
		return fmt.Errorf("linear: encoding model: %w", err)
	}
	return nil
}

// Validate checks every rule of the format (see the package doc) and returns
// the first broken one as an error wrapping ml.ErrBadModel that names the
// field and index. Format and Version may be zero, meaning the current ones.
func (m *Model) Validate() error {
	if m.Format != "" && m.Format != FileFormat {
		return formatError(m.Format)
	}
	if m.Version != 0 && m.Version != Version {
		return versionError(m.Version)
	}
	switch m.Kind {
	case KindLinear, KindLogistic, KindSoftmax, KindMLP:
	case "":
		return badModelf("kind is missing; want one of linear, logistic, softmax, mlp")
	default:
		return badModelf("kind %q is unknown; want one of linear, logistic, softmax, mlp", m.Kind)
	}
	if m.NFeatures < 1 {
		return badModelf("n_features is %d; it must be at least 1", m.NFeatures)
	}
	if len(m.FeatureNames) > 0 { // an empty list is no list
		if len(m.FeatureNames) != m.NFeatures {
			return badModelf("feature_names has %d names; n_features is %d", len(m.FeatureNames), m.NFeatures)
		}
		if err := checkLabels("feature_names", m.FeatureNames); err != nil {
			return err
		}
	}
	params := 0
	if s := m.Scaler; s != nil {
		if len(s.Mean) != m.NFeatures {
			return badModelf("scaler.mean has %d values; n_features is %d", len(s.Mean), m.NFeatures)
		}
		if len(s.Scale) != m.NFeatures {
			return badModelf("scaler.scale has %d values; n_features is %d", len(s.Scale), m.NFeatures)
		}
		params += 2 * m.NFeatures
	}
	if err := m.checkShapes(); err != nil {
		return err
	}
	for _, l := range m.Layers {
		params += len(l.Weights)*len(l.Weights[0]) + len(l.Bias)
	}
	if params > MaxParams {
		return badModelf("model has %d parameters; the limit is %d", params, MaxParams)
	}
	if err := m.checkActivations(); err != nil {
		return err
	}
	if err := m.checkClasses(); err != nil {
		return err
	}
	return m.checkFinite()
}

// checkShapes checks that the layers chain: each layer's rows are as wide as
// its inputs, and it has one bias per row.
func (m *Model) checkShapes() error {
	if len(m.Layers) == 0 {
		return badModelf("layers is empty; a model has at least one layer")
	}
	in := m.NFeatures // inputs of layer i
	for i, l := range m.Layers {
		if len(l.Weights) == 0 {
			return badModelf("layers[%d].weights is empty; a layer has at least one output", i)
		}
		for j, row := range l.Weights {
			if len(row) == in {
				continue
			}
			if i == 0 {
				return badModelf("layers[0].weights[%d] has %d columns; n_features is %d", j, len(row), in)
			}
			return badModelf("layers[%d].weights[%d] has %d columns; layers[%d] has %d outputs", i, j, len(row), i-1, in)
		}
		if len(l.Bias) != len(l.Weights) {
			return badModelf("layers[%d].bias has %d values; layers[%d].weights has %d rows (outputs)", i, len(l.Bias), i, len(l.Weights))
		}
		in = len(l.Weights)
	}
	return nil
}

// checkActivations applies the rules of the kind: how many layers, how many
// outputs, which activations.
func (m *Model) checkActivations() error {
	for i, l := range m.Layers {
		switch l.Activation {
		case "", Identity, ReLU, Tanh, Sigmoid, Softmax:
		default:
			return badModelf("layers[%d].activation %q is unknown; want one of identity, relu, tanh, sigmoid, softmax", i, l.Activation)
		}
	}
	last := len(m.Layers) - 1
	outputs := len(m.Layers[last].Weights)
	if m.Kind == KindMLP {
		for i, l := range m.Layers {
			if l.Activation == "" {
				return badModelf("layers[%d].activation is missing; every layer of an mlp names its activation", i)
			}
			if l.Activation == Softmax && i != last {
				return badModelf("layers[%d].activation is softmax; only the last layer (layers[%d]) may be softmax", i, last)
			}
		}
		if m.Layers[last].Activation == Softmax && outputs < 2 {
			return badModelf("layers[%d] is softmax with 1 output; softmax needs at least 2", last)
		}
		return nil
	}
	if len(m.Layers) != 1 {
		return badModelf("layers has %d layers; kind %q takes exactly one", len(m.Layers), m.Kind)
	}
	implied := m.outputActivation()
	if a := m.Layers[0].Activation; a != "" && a != implied {
		return badModelf("layers[0].activation is %q; kind %q implies %q", a, m.Kind, implied)
	}
	switch {
	case m.Kind == KindLogistic && outputs != 1:
		return badModelf("layers[0] has %d outputs; kind \"logistic\" has exactly 1, the probability of the positive class (use kind \"softmax\" for more classes)", outputs)
	case m.Kind == KindSoftmax && outputs < 2:
		return badModelf("layers[0] has %d output; kind \"softmax\" needs at least 2, one per class", outputs)
	}
	return nil
}

// outputActivation is the activation of the last layer, given or implied.
// It expects the layers to have been checked.
func (m *Model) outputActivation() Activation {
	switch m.Kind {
	case KindLinear:
		return Identity
	case KindLogistic:
		return Sigmoid
	case KindSoftmax:
		return Softmax
	}
	return m.Layers[len(m.Layers)-1].Activation
}

// checkClasses checks that classes label a classifier's outputs.
func (m *Model) checkClasses() error {
	if len(m.Classes) == 0 {
		return nil
	}
	act := m.outputActivation()
	if act != Sigmoid && act != Softmax {
		return badModelf("classes is set but the model's output activation is %s; only sigmoid or softmax outputs have classes", act)
	}
	outputs := len(m.Layers[len(m.Layers)-1].Weights)
	want := outputs
	if act == Sigmoid && outputs == 1 {
		want = 2 // [negative, positive] for the one probability
	}
	if len(m.Classes) != want {
		if want == 2 && outputs == 1 {
			return badModelf("classes has %d labels; a single sigmoid output takes 2, [negative, positive]", len(m.Classes))
		}
		return badModelf("classes has %d labels; the last layer has %d outputs", len(m.Classes), outputs)
	}
	return checkLabels("classes", m.Classes)
}

// checkFinite rejects NaN and ±Inf anywhere among the parameters. A JSON null
// decodes as NaN, so it is caught here too.
func (m *Model) checkFinite() error {
	if s := m.Scaler; s != nil {
		if err := checkFinite("scaler.mean", s.Mean); err != nil {
			return err
		}
		if err := checkFinite("scaler.scale", s.Scale); err != nil {
			return err
		}
		for i, v := range s.Scale {
			if v == 0 {
				return badModelf("scaler.scale[%d] is 0; a scale divides the column and must not be 0", i)
			}
		}
	}
	for i, l := range m.Layers {
		for j, row := range l.Weights {
			if err := checkFinite(fmt.Sprintf("layers[%d].weights[%d]", i, j), row); err != nil {
				return err
			}
		}
		if err := checkFinite(fmt.Sprintf("layers[%d].bias", i), l.Bias); err != nil {
			return err
		}
	}
	return nil
}

func checkFinite(field string, v []float64) error {
	for i, x := range v {
		switch {
		case math.IsNaN(x):
			return badModelf("%s[%d] is NaN or null; parameters must be finite numbers", field, i)
		case math.IsInf(x, 0):
			return badModelf("%s[%d] is %v; parameters must be finite numbers", field, i, x)
		}
	}
	return nil
}

// checkLabels checks that names are non-empty and distinct: requests address
// columns by name, and a class label must say which class.
func checkLabels(field string, names []string) error {
	seen := make(map[string]int, len(names))
	for i, n := range names {
		if strings.TrimSpace(n) == "" {
			return badModelf("%s[%d] is empty", field, i)
		}
		if j, ok := seen[n]; ok {
			return badModelf("%s[%d] %q repeats %s[%d]", field, i, n, field, j)
		}
		seen[n] = i
	}
	return nil
}

func formatError(got string) error {
	return badModelf("format is %q; want %q", got, FileFormat)
}

func versionError(got int) error {
	return badModelf("version %d is not supported; this build reads version %d", got, Version)
}

// badModelf returns an error wrapping ml.ErrBadModel, prefixed with the
// package name.
func badModelf(format string, args ...any) error {
	return fmt.Errorf("%w: linear: %s", ml.ErrBadModel, fmt.Sprintf(format, args...))
}
