package linear

import (
	"context"
	"fmt"
	"math"

	"github.com/kilnml/kiln/ml"
)

// Names of the schema's one input and one output.
const (
	InputName  = "input"
	OutputName = "output"
)

// checkEvery is about how many multiply-adds Predict does between looks at
// its context, so that a cancelled request over a large batch stops within a
// fraction of a millisecond without a tiny model paying for a check per row.
const checkEvery = 1 << 18

// Runtime is a loaded kiln-linear model; it implements ml.Model. It is
// immutable once built, and each Predict call allocates its own buffers, so
// any number of goroutines may share one.
type Runtime struct {
	kind      Kind
	nFeatures int
	classes   []string
	schema    ml.Schema
	// mean and scale are nil without a scaler.
	mean, scale []float64
	layers      []dense
	// width is the most outputs of any layer, the size of a scratch buffer.
	width int
	// rowsPerCheck is how many rows Predict scores between context checks.
	rowsPerCheck int
}

// dense is a layer with its weights flattened row-major, [out][in], so that
// one output's weights are contiguous.
type dense struct {
	in, out int
	w       []float64
	b       []float64
	act     Activation
}

// New checks m (see Validate) and builds a runtime from it. The runtime keeps
// its own copy of the parameters, so m may be changed or reused afterwards.
func New(m *Model) (*Runtime, error) {
	if m == nil {
		return nil, badModelf("no model (nil *Model)")
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	r := &Runtime{
		kind:      m.Kind,
		nFeatures: m.NFeatures,
		classes:   append([]string(nil), m.Classes...),
	}
	if m.Scaler != nil {
		r.mean = append([]float64(nil), m.Scaler.Mean...)
		r.scale = append([]float64(nil), m.Scaler.Scale...)
	}
	in, work := m.NFeatures, m.NFeatures
	for i, l := range m.Layers {
		d := dense{in: in, out: len(l.Weights), b: append([]float64(nil), l.Bias...), act: l.Activation}
		if i == len(m.Layers)-1 {
			d.act = m.outputActivation()
		}
		d.w = make([]float64, 0, d.out*d.in)
		for _, row := range l.Weights {
			d.w = append(d.w, row...)
		}
		r.layers = append(r.layers, d)
		r.width = max(r.width, d.out)
		work += d.out * d.in
		in = d.out
	}
	r.rowsPerCheck = max(1, checkEvery/work)

	outShape := []int{-1}
	if in > 1 {
		outShape = []int{-1, in}
	}
	r.schema = ml.Schema{
		Inputs:       []ml.TensorSpec{{Name: InputName, DataType: ml.FP64, Shape: []int{-1, m.NFeatures}}},
		Outputs:      []ml.TensorSpec{{Name: OutputName, DataType: ml.FP64, Shape: outShape}},
		FeatureNames: append([]string(nil), m.FeatureNames...),
	}
	return r, nil
}

// Schema returns the model's one input, "input" of shape [-1, n_features],
// and one output, "output" of shape [-1] or [-1, k] for k outputs. The caller
// may change what it gets.
func (r *Runtime) Schema() ml.Schema {
	s := ml.Schema{
		Inputs:  []ml.TensorSpec{r.schema.Inputs[0]},
		Outputs: []ml.TensorSpec{r.schema.Outputs[0]},
	}
	s.Inputs[0].Shape = append([]int(nil), s.Inputs[0].Shape...)
	s.Outputs[0].Shape = append([]int(nil), s.Outputs[0].Shape...)
	if len(r.schema.FeatureNames) > 0 {
		s.FeatureNames = append([]string(nil), r.schema.FeatureNames...)
	}
	return s
}

// Kind returns what the model computes.
func (r *Runtime) Kind() Kind { return r.kind }

// Classes returns the class labels the file gives, or nil: one per output, or
// [negative, positive] for a single sigmoid output. The caller may change
// what it gets.
func (r *Runtime) Classes() []string {
	if len(r.classes) == 0 {
		return nil
	}
	return append([]string(nil), r.classes...)
}

// Predict scores a batch of rows: one input of shape [rows, n_features], or
// one row of shape [n_features]. It returns one output, "output", of shape
// [rows] or [rows, k]. A NaN (missing) or infinite input value, or a row whose
// arithmetic overflows float64, is an error wrapping ml.ErrBadInput naming the
// row. A cancelled ctx stops the batch and returns ctx's error.
func (r *Runtime) Predict(ctx context.Context, inputs []ml.Tensor) ([]ml.Tensor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	n := r.nFeatures
	rows, data, err := ml.TabularInput(inputs, r.schema.Inputs[0], n)
	if err != nil {
		return nil, err
	}
	if err := ml.NoMissing(ml.FormatLinear, data, n); err != nil {
		return nil, err
	}
	for i, v := range data {
		if math.IsInf(v, 0) {
			return nil, fmt.Errorf("%w: row %d feature %d is %v; %s models take finite values only", ml.ErrBadInput, i/n, i%n, v, ml.FormatLinear)
		}
	}

	k := r.layers[len(r.layers)-1].out
	out := make([]float64, rows*k)
	s := scratch{
		scaled: make([]float64, n),
		a:      make([]float64, r.width),
		b:      make([]float64, r.width),
	}
	for row := range rows {
		if row > 0 && row%r.rowsPerCheck == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		if err := r.scoreRow(data[row*n:(row+1)*n], out[row*k:(row+1)*k], &s); err != nil {
			return nil, fmt.Errorf("%w: row %d: %s", ml.ErrBadInput, row, err)
		}
	}
	shape := []int{rows}
	if len(r.schema.Outputs[0].Shape) == 2 {
		shape = []int{rows, k}
	}
	return []ml.Tensor{{Name: OutputName, Shape: shape, Data: out}}, nil
}

// scratch holds one Predict call's buffers; a and b take turns as a hidden
// layer's input and output.
type scratch struct {
	scaled, a, b []float64
}

// overflowError is a row whose arithmetic left the float64 range.
type overflowError struct {
	layer, output int
}

func (e overflowError) Error() string {
	return fmt.Sprintf("layers[%d] output %d overflows float64; the input values are too large for this model", e.layer, e.output)
}

// scoreRow computes one row x into dst, which has the last layer's width.
func (r *Runtime) scoreRow(x, dst []float64, s *scratch) error {
	in := x
	if r.mean != nil {
		for i, v := range x {
			s.scaled[i] = (v - r.mean[i]) / r.scale[i]
		}
		in = s.scaled
	}
	last := len(r.layers) - 1
	for li := range r.layers {
		l := &r.layers[li]
		z := dst
		if li != last {
			z = s.a[:l.out]
			s.a, s.b = s.b, s.a
		}
		for j := range z {
			w := l.w[j*l.in : (j+1)*l.in]
			sum := 0.0
			for k, v := range in {
				sum += w[k] * v
			}
			sum += l.b[j]
			if math.IsNaN(sum) || math.IsInf(sum, 0) {
				return overflowError{layer: li, output: j}
			}
			z[j] = sum
		}
		activate(l.act, z)
		in = z
	}
	return nil
}

// activate applies act to z in place. z is finite, and so is the result.
func activate(act Activation, z []float64) {
	switch act {
	case ReLU:
		for j, v := range z {
			z[j] = max(v, 0)
		}
	case Tanh:
		for j, v := range z {
			z[j] = math.Tanh(v)
		}
	case Sigmoid:
		for j, v := range z {
			z[j] = sigmoid(v)
		}
	case Softmax:
		softmax(z)
	}
}

// sigmoid is 1/(1+e^-v), in a form where the exponential never overflows:
// for v < 0 it is e^v/(1+e^v).
func sigmoid(v float64) float64 {
	if v >= 0 {
		return 1 / (1 + math.Exp(-v))
	}
	e := math.Exp(v)
	return e / (1 + e)
}

// softmax replaces z by e^z[j]/Σe^z[i]. Subtracting the largest z first keeps
// every exponential in (0, 1], so none overflows and the sum is at least 1.
func softmax(z []float64) {
	m := z[0]
	for _, v := range z[1:] {
		m = max(m, v)
	}
	sum := 0.0
	for j, v := range z {
		e := math.Exp(v - m)
		z[j] = e
		sum += e
	}
	for j := range z {
		z[j] /= sum
	}
}
