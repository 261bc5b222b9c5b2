package onnx

import (
	"fmt"
	"strconv"
	"strings"

	pb "github.com/advancedclimatesystems/gonnx/onnx"

	"github.com/kilnml/kiln/ml"
)

// graph is what both backends know of a model from its protobuf: the
// schema, the inputs a caller feeds, and the outputs in order. Checking a
// request against it (match) is the same whichever backend runs the model,
// so nothing malformed reaches ORT's C++ code or gonnx's kernels.
type graph struct {
	schema  ml.Schema
	inputs  []inputSpec  // schema order
	outputs []outputSpec // schema order
	// nanOK lets float inputs carry NaN to the model: under ORT, for a
	// graph whose ops read NaN as a missing value (readsMissing).
	nanOK bool
}

// inputSpec is one graph input the caller feeds.
type inputSpec struct {
	name string
	elem elemType
	// dims holds the declared size of each dimension, -1 where free; nil
	// when the graph gives no shape.
	dims []int
	// dimParams holds each dimension's symbolic name (dim_param), "" where
	// none: two inputs naming the same parameter must agree on its size.
	dimParams []string
}

// outputSpec is one graph output.
type outputSpec struct {
	name string
	elem elemType
	// dims is the declared shape, nil when the graph gives none.
	dims []int
	// zipMap is set for the sequence of maps a ZipMap node gives (class ->
	// probability, one map per row), which is served as an FP32 tensor
	// [rows, classes], its columns in the ZipMap's class order.
	zipMap bool
	// classes are the ZipMap's class labels, as strings, in column order.
	classes []string
}

// readGraph takes the schema from the graph: the inputs a caller feeds
// (graph inputs that are not initializers) and the outputs. zipMaps says
// whether the backend turns ZipMap outputs into tensors; without it, any
// output that is not a tensor is refused.
func readGraph(g *pb.GraphProto, isInitializer func(string) bool, zipMaps bool) (*graph, error) {
	gr := &graph{}
	for _, vi := range g.GetInput() {
		if isInitializer(vi.GetName()) {
			continue
		}
		elem, dims, params, err := tensorType("input", vi)
		if err != nil {
			return nil, err
		}
		gr.inputs = append(gr.inputs, inputSpec{name: vi.GetName(), elem: elem, dims: dims, dimParams: params})
		gr.schema.Inputs = append(gr.schema.Inputs, ml.TensorSpec{Name: vi.GetName(), DataType: elem.name, Shape: dims})
	}
	if len(gr.inputs) == 0 {
		return nil, fmt.Errorf("%w: onnx: model takes no inputs", ml.ErrBadModel)
	}
	if len(g.GetOutput()) == 0 {
		return nil, fmt.Errorf("%w: onnx: model has no outputs", ml.ErrBadModel)
	}
	for _, vi := range g.GetOutput() {
		if zipMaps && vi.GetType().GetSequenceType() != nil {
			classes, err := zipMapClasses(g, vi.GetName())
			if err != nil {
				return nil, err
			}
			gr.outputs = append(gr.outputs, outputSpec{name: vi.GetName(), zipMap: true, classes: classes})
			gr.schema.Outputs = append(gr.schema.Outputs, ml.TensorSpec{Name: vi.GetName(), DataType: ml.FP32, Shape: []int{-1, len(classes)}})
			continue
		}
		elem, dims, _, err := tensorType("output", vi)
		if err != nil {
			return nil, err
		}
		gr.outputs = append(gr.outputs, outputSpec{name: vi.GetName(), elem: elem, dims: dims})
		gr.schema.Outputs = append(gr.schema.Outputs, ml.TensorSpec{Name: vi.GetName(), DataType: elem.name, Shape: dims})
	}
	return gr, nil
}

// zipMapClasses finds the ZipMap node (domain ai.onnx.ml) that makes output
// and returns its class labels.
func zipMapClasses(g *pb.GraphProto, output string) ([]string, error) {
	for _, n := range g.GetNode() {
		if n.GetOpType() != "ZipMap" || len(n.GetOutput()) != 1 || n.GetOutput()[0] != output {
			continue
		}
		for _, a := range n.GetAttribute() {
			switch a.GetName() {
			case "classlabels_int64s":
				labels := make([]string, len(a.GetInts()))
				for i, v := range a.GetInts() {
					labels[i] = strconv.FormatInt(v, 10)
				}
				return labels, nil
			case "classlabels_strings":
				labels := make([]string, len(a.GetStrings()))
				for i, v := range a.GetStrings() {
					labels[i] = string(v)
				}
				return labels, nil
			}
		}
		return nil, fmt.Errorf("%w: onnx: the ZipMap making output %q has no class labels", ml.ErrBadModel, output)
	}
	return nil, fmt.Errorf("%w: onnx: output %q is a sequence not made by a ZipMap node; only tensors and ZipMap outputs are served", ml.ErrBadModel, output)
}

// tensorType reads a graph input's or output's element type and shape. A
// dimension with a symbolic name or no value is free (-1).
func tensorType(kind string, vi *pb.ValueInfoProto) (elemType, []int, []string, error) {
	tt := vi.GetType().GetTensorType()
	if tt == nil {
		return elemType{}, nil, nil, fmt.Errorf("%w: onnx: %s %q is not a tensor (sequences, maps and optionals are not supported)", ml.ErrBadModel, kind, vi.GetName())
	}
	elem, ok := elemTypes[pb.TensorProto_DataType(tt.GetElemType())]
	if !ok {
		return elemType{}, nil, nil, fmt.Errorf("%w: onnx: %s %q has element type %s, which this runtime does not carry (it takes %s)",
			ml.ErrBadModel, kind, vi.GetName(), pb.TensorProto_DataType(tt.GetElemType()), supportedTypes())
	}
	if tt.GetShape() == nil {
		return elem, nil, nil, nil
	}
	dims := make([]int, len(tt.GetShape().GetDim()))
	params := make([]string, len(dims))
	for i, d := range tt.GetShape().GetDim() {
		dims[i] = -1
		if v, ok := d.GetValue().(*pb.TensorShapeProto_Dimension_DimValue); ok && v.DimValue > 0 {
			dims[i] = int(v.DimValue)
		}
		params[i] = d.GetDimParam()
	}
	return elem, dims, params, nil
}

// Schema implements ml.Model.
func (gr *graph) Schema() ml.Schema {
	s := ml.Schema{
		Inputs:  make([]ml.TensorSpec, len(gr.schema.Inputs)),
		Outputs: make([]ml.TensorSpec, len(gr.schema.Outputs)),
	}
	for i, t := range gr.schema.Inputs {
		s.Inputs[i] = ml.TensorSpec{Name: t.Name, DataType: t.DataType, Shape: cloneInts(t.Shape)}
	}
	for i, t := range gr.schema.Outputs {
		s.Outputs[i] = ml.TensorSpec{Name: t.Name, DataType: t.DataType, Shape: cloneInts(t.Shape)}
	}
	return s
}

func cloneInts(s []int) []int {
	if s == nil {
		return nil
	}
	return append([]int{}, s...)
}

// match pairs the request's tensors with the graph inputs and checks each:
// its name, its shape against the declared one and against dimensions other
// inputs share by name, and its values against the element type. It
// returns the tensors in input order. Every error wraps ml.ErrBadInput and
// names the input.
func (gr *graph) match(inputs []ml.Tensor) ([]ml.Tensor, error) {
	byName := make(map[string]ml.Tensor, len(inputs))
	for _, t := range inputs {
		if t.Name == "" {
			if len(gr.inputs) != 1 || len(inputs) != 1 {
				return nil, fmt.Errorf("%w: onnx: an input has no name; the model takes %s", ml.ErrBadInput, gr.describeInputs())
			}
			t.Name = gr.inputs[0].name
		}
		if _, dup := byName[t.Name]; dup {
			return nil, fmt.Errorf("%w: onnx: input %q is given twice", ml.ErrBadInput, t.Name)
		}
		if !gr.hasInput(t.Name) {
			return nil, fmt.Errorf("%w: onnx: unknown input %q; the model takes %s", ml.ErrBadInput, t.Name, gr.describeInputs())
		}
		byName[t.Name] = t
	}

	out := make([]ml.Tensor, len(gr.inputs))
	var dimSizes map[string]int // dim_param -> size seen first
	var dimOwner map[string]string
	for k, spec := range gr.inputs {
		t, ok := byName[spec.name]
		if !ok {
			return nil, fmt.Errorf("%w: onnx: missing input %q (%s of shape %s)", ml.ErrBadInput, spec.name, spec.elem.name, spec.shapeString())
		}
		if err := t.Check(); err != nil {
			return nil, err
		}
		if err := spec.checkShape(t.Shape); err != nil {
			return nil, err
		}
		for i, p := range spec.dimParams {
			if p == "" || spec.dims[i] != -1 {
				continue
			}
			if dimSizes == nil {
				dimSizes, dimOwner = map[string]int{}, map[string]string{}
			}
			if size, seen := dimSizes[p]; seen && size != t.Shape[i] {
				return nil, fmt.Errorf("%w: onnx: input %q has %s = %d (dimension %d) but input %q has %s = %d",
					ml.ErrBadInput, spec.name, p, t.Shape[i], i, dimOwner[p], p, size)
			}
			dimSizes[p], dimOwner[p] = t.Shape[i], spec.name
		}
		if err := spec.checkValues(t, gr.nanOK); err != nil {
			return nil, err
		}
		out[k] = t
	}
	return out, nil
}
func (gr *graph) hasInput(name string) bool {
	for _, s := range gr.inputs {
		if s.name == name {
			return true
		}
	}
	return false
}

func (gr *graph) describeInputs() string {
	parts := make([]string, len(gr.inputs))
	for i, s := range gr.inputs {
		parts[i] = fmt.Sprintf("%q (%s %s)", s.name, s.elem.name, s.shapeString())
	}
	return strings.Join(parts, ", ")
}

// checkShape compares a request's shape with the declared one, where the
// graph declares one.
func (s inputSpec) checkShape(shape []int) error {
	if s.dims == nil {
		return nil
	}
	ok := len(shape) == len(s.dims)
	for i := 0; ok && i < len(shape); i++ {
		ok = s.dims[i] == -1 || s.dims[i] == shape[i]
	}
	if !ok {
		return fmt.Errorf("%w: onnx: input %q has shape %v; the model expects %s", ml.ErrBadInput, s.name, shape, s.shapeString())
	}
	return nil
}

// shapeString writes the declared shape with free dimensions by their
// symbolic name, or "?": [batch_size, 3].
func (s inputSpec) shapeString() string {
	if s.dims == nil {
		return "[any]"
	}
	parts := make([]string, len(s.dims))
	for i, d := range s.dims {
		switch {
		case d != -1:
			parts[i] = strconv.Itoa(d)
		case s.dimParams[i] != "":
			parts[i] = s.dimParams[i]
		default:
			parts[i] = "?"
		}
	}
	return "[" + strings.Join(parts, ", ") + "]"
}
