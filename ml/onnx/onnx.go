package onnx

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"

	"github.com/advancedclimatesystems/gonnx"
	pb "github.com/advancedclimatesystems/gonnx/onnx"
	"google.golang.org/protobuf/proto"
	"gorgonia.org/tensor"

	"github.com/kilnml/kiln/ml"
)

// MaxModelBytes caps the size of a model file Load reads. gonnx keeps every
// weight in memory (it has no external-data support, so a model is one
// protobuf), decodes it once more into tensors, and each Predict call copies
// the weights again (see the package doc); 256 MiB of weights is already
// far more than its pure-Go kernels score at a useful speed, and well below
// protobuf's 2 GiB message limit.
const MaxModelBytes = 256 << 20

// Load reads an ONNX model of at most MaxModelBytes from r and prepares it
// for gonnx: the opset is checked and, for opsets 14 to 17, rewritten to 13
// where that changes nothing (see the package doc); every op must be one
// gonnx implements. Errors wrap ml.ErrBadModel and say what is wrong.
func Load(r io.Reader) (ml.Model, error) {
	return load(r, MaxModelBytes)
}

func load(r io.Reader, limit int64) (ml.Model, error) {
	b, err := readModelFile(r, limit)
	if err != nil {
		return nil, err
	}
	m, err := fromBytes(b)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// readModelFile reads a model file of at most limit bytes.
func readModelFile(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%w: onnx: read model: %v", ml.ErrBadModel, err)
	}
	if int64(len(b)) > limit {
		// Reading on just to report the exact size would let a caller
		// stream without end; "larger than the cap" is what matters.
		return nil, fmt.Errorf("%w: onnx: model file is larger than %d bytes, the cap on ONNX models (MaxModelBytes)", ml.ErrBadModel, limit)
	}
	return b, nil
}

// parseModel parses a ModelProto and checks that it has a graph with
// nodes: what both backends need before anything else.
func parseModel(b []byte) (*pb.ModelProto, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: onnx: model file is empty", ml.ErrBadModel)
	}
	mp := &pb.ModelProto{}
	if err := proto.Unmarshal(b, mp); err != nil {
		return nil, fmt.Errorf("%w: onnx: not an ONNX model: %v", ml.ErrBadModel, err)
	}
	if g := mp.GetGraph(); g == nil || len(g.GetNode()) == 0 {
		return nil, fmt.Errorf("%w: onnx: model has no graph (or a graph without nodes)", ml.ErrBadModel)
	}
	return mp, nil
}

// fromBytes parses and checks a model. gonnx and gorgonia panic on some
// malformed tensors, so the whole of it runs under recover.
func fromBytes(b []byte) (m *model, err error) {
	defer func() {
		if r := recover(); r != nil {
			m = nil
			err = fmt.Errorf("%w: onnx: gonnx panicked loading the model: %v", ml.ErrBadModel, r)
		}
	}()
	mp, err := parseModel(b)
	if err != nil {
		return nil, err
	}
	g := mp.GetGraph()
	if err := prepareOpsets(mp); err != nil {
		return nil, err
	}
	if err := checkInitializers(g); err != nil {
		return nil, err
	}
	params, err := g.Params()
	if err != nil {
		return nil, fmt.Errorf("%w: onnx: gonnx cannot read the initializers: %v", ml.ErrBadModel, err)
	}
	// The same choice gonnx.NewModel makes: the op set of the highest
	// imported version, which prepareOpsets has made 13.
	var opsetID int64
	for _, imp := range mp.GetOpsetImport() {
		opsetID = max(opsetID, imp.GetVersion())
	}
	getOperator, err := gonnx.ResolveOperatorGetter(opsetID)
	if err != nil {
		return nil, fmt.Errorf("%w: onnx: gonnx has no op set %d: %v", ml.ErrBadModel, opsetID, err)
	}

	m = &model{
		nodes:       g.GetNode(),
		params:      params,
		getOperator: getOperator,
	}
	if err := m.checkNodes(g); err != nil {
		return nil, err
	}
	if m.graph, err = readGraph(g, func(name string) bool { _, ok := params[name]; return ok }, false); err != nil {
		return nil, err
	}
	return m, nil
}

// model is a loaded ONNX graph. Nothing in it changes after Load: each
// Predict call hands gonnx its own copies of the weights and nodes, because
// gonnx's ops change some of their input tensors in place (Conv reshapes
// its bias, GRU its initial state), which breaks even a second sequential
// run of gonnx.Model.Run on a Conv model with a bias.
type model struct {
	*graph
	nodes []*pb.NodeProto
	// params are the decoded initializers, read only: run clones them.
	params      map[string]tensor.Tensor
	getOperator gonnx.OpGetter
}

// checkInitializers rejects what gonnx would silently mis-read: sparse or
// external initializers, and initializers whose data does not fill their
// dims.
func checkInitializers(g *pb.GraphProto) error {
	if len(g.GetSparseInitializer()) > 0 {
		return fmt.Errorf("%w: onnx: sparse initializers (%q, ...) are not supported by gonnx", ml.ErrBadModel, g.GetSparseInitializer()[0].GetValues().GetName())
	}
	for _, t := range g.GetInitializer() {
		if t.GetDataLocation() == pb.TensorProto_EXTERNAL || len(t.GetExternalData()) > 0 {
			return fmt.Errorf("%w: onnx: initializer %q keeps its data in an external file; save the model with its weights inside", ml.ErrBadModel, t.GetName())
		}
		want, ok := elements(t.GetDims())
		if !ok {
			return fmt.Errorf("%w: onnx: initializer %q has invalid dims %v", ml.ErrBadModel, t.GetName(), t.GetDims())
		}
		if have, known := storedElements(t); known && have != want {
			return fmt.Errorf("%w: onnx: initializer %q has dims %v (%d values) but holds %d values", ml.ErrBadModel, t.GetName(), t.GetDims(), want, have)
		}
	}
	return nil
}

// elements returns the product of dims, false when a dim is negative or the
// product overflows.
func elements(dims []int64) (int64, bool) {
	n := int64(1)
	for _, d := range dims {
		if d < 0 || (d > 0 && n > (1<<62)/d) {
			return 0, false
		}
		n *= d
	}
	return n, true
}

// rawSizes are the bytes per value in raw_data of the initializer types
// whose count storedElements checks.
var rawSizes = map[pb.TensorProto_DataType]int64{
	pb.TensorProto_FLOAT: 4, pb.TensorProto_DOUBLE: 8,
	pb.TensorProto_INT8: 1, pb.TensorProto_UINT8: 1, pb.TensorProto_BOOL: 1,
	pb.TensorProto_INT16: 2, pb.TensorProto_UINT16: 2,
	pb.TensorProto_INT32: 4, pb.TensorProto_INT64: 8,
}

// storedElements counts the values a TensorProto holds, as gonnx's
// TensorFromProto reads them; known is false for types it handles otherwise.
func storedElements(t *pb.TensorProto) (n int64, known bool) {
	size := rawSizes[pb.TensorProto_DataType(t.GetDataType())]
	if size == 0 {
		return 0, false
	}
	switch {
	case len(t.GetFloatData()) > 0:
		return int64(len(t.GetFloatData())), true
	case len(t.GetDoubleData()) > 0:
		return int64(len(t.GetDoubleData())), true
	case len(t.GetInt32Data()) > 0:
		return int64(len(t.GetInt32Data())), true
	case len(t.GetInt64Data()) > 0:
		return int64(len(t.GetInt64Data())), true
	}
	return int64(len(t.GetRawData())) / size, true
}

// checkNodes initialises every node's gonnx op once, so that an attribute
// gonnx does not support fails at load, and checks that gonnx, which runs
// the nodes in file order, finds each node's inputs made by then.
func (m *model) checkNodes(g *pb.GraphProto) error {
	have := map[string]bool{"": true} // "" marks an omitted optional input
	for _, in := range g.GetInput() {
		have[in.GetName()] = true
	}
	for name := range m.params {
		have[name] = true
	}
	for i, n := range m.nodes {
		op, err := m.getOperator(n.GetOpType())
		if err != nil {
			return fmt.Errorf("%w: onnx: op %s: %v", ml.ErrBadModel, n.GetOpType(), err)
		}
		if err := op.Init(proto.Clone(n).(*pb.NodeProto)); err != nil {
			return fmt.Errorf("%w: onnx: op %s (node %d %q): gonnx: %v", ml.ErrBadModel, n.GetOpType(), i, n.GetName(), err)
		}
		for _, in := range n.GetInput() {
			if !have[in] {
				return fmt.Errorf("%w: onnx: op %s (node %d %q) reads %q, which no input, initializer or earlier node gives", ml.ErrBadModel, n.GetOpType(), i, n.GetName(), in)
			}
		}
		for _, out := range n.GetOutput() {
			have[out] = true
		}
	}
	for _, out := range g.GetOutput() {
		if !have[out.GetName()] {
			return fmt.Errorf("%w: onnx: graph output %q is made by no node", ml.ErrBadModel, out.GetName())
		}
	}
	return nil
}

// Runtime says what serves the model.
func (m *model) Runtime() string { return "gonnx " + gonnxVersion }

// gonnxVersion is the gonnx module go.mod pins.
const gonnxVersion = "v1.1.0"

// Predict implements ml.Model. It is safe for concurrent use: every call
// builds its own tensors and hands gonnx its own copies of the weights. A
// panic in gonnx or gorgonia, here or while converting tensors, becomes an
// error wrapping ml.ErrRuntime.
func (m *model) Predict(ctx context.Context, inputs []ml.Tensor) (out []ml.Tensor, err error) {
	defer func() {
		if r := recover(); r != nil {
			out = nil
			err = fmt.Errorf("%w: onnx: panic: %v\n%s", ml.ErrRuntime, r, stackTop(debug.Stack(), 12))
		}
	}()
	feeds, err := m.feeds(inputs)
	if err != nil {
		return nil, err
	}
	results, err := m.run(ctx, feeds)
	if err != nil {
		return nil, err
	}
	out = make([]ml.Tensor, len(m.outputs))
	for i, o := range m.outputs {
		name := o.name
		t, ok := results[name]
		if !ok || t == nil {
			return nil, fmt.Errorf("%w: onnx: gonnx gave no tensor for output %q", ml.ErrRuntime, name)
		}
		if out[i], err = fromGonnx(name, t); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// feeds checks the request's tensors (graph.match) and converts each to a
// fresh gonnx tensor of its input's element type.
func (m *model) feeds(inputs []ml.Tensor) (map[string]tensor.Tensor, error) {
	ts, err := m.match(inputs)
	if err != nil {
		return nil, err
	}
	feeds := make(map[string]tensor.Tensor, len(ts))
	for i, spec := range m.inputs {
		g, err := toGonnx(spec, ts[i])
		if err != nil {
			return nil, err
		}
		feeds[spec.name] = g
	}
	return feeds, nil
}

// run executes the graph with gonnx's ops, as gonnx.Model.Run does, on this
// call's own state: clones of the weights and of the nodes (some ops wrap
// attribute data in tensors). A panic inside gonnx becomes an error wrapping
// ml.ErrRuntime that names the op.
func (m *model) run(ctx context.Context, feeds map[string]tensor.Tensor) (vals map[string]tensor.Tensor, err error) {
	current := "setup"
	defer func() {
		if r := recover(); r != nil {
			vals = nil
			err = fmt.Errorf("%w: onnx: gonnx panicked in %s: %v\n%s", ml.ErrRuntime, current, r, stackTop(debug.Stack(), 12))
		}
	}()
	vals = make(map[string]tensor.Tensor, len(m.params)+len(feeds)+len(m.nodes))
	for name, p := range m.params {
		c, ok := p.Clone().(tensor.Tensor)
		if !ok {
			return nil, fmt.Errorf("%w: onnx: cannot copy initializer %q", ml.ErrRuntime, name)
		}
		vals[name] = c
	}
	for name, t := range feeds {
		vals[name] = t
	}
	for i, n := range m.nodes {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("onnx: predict stopped before node %d: %w", i, err)
		}
		current = fmt.Sprintf("op %s (node %d %q)", n.GetOpType(), i, n.GetName())
		node := proto.Clone(n).(*pb.NodeProto)
		op, err := m.getOperator(node.GetOpType())
		if err != nil {
			return nil, fmt.Errorf("%w: onnx: %s: %v", ml.ErrRuntime, current, err)
		}
		if err := op.Init(node); err != nil {
			return nil, fmt.Errorf("%w: onnx: %s: gonnx: %v", ml.ErrRuntime, current, err)
		}
		ins := make([]tensor.Tensor, len(node.GetInput()))
		for j, name := range node.GetInput() {
			if name != "" {
				ins[j] = vals[name] // present: checkNodes saw to that
			}
		}
		if ins, err = op.ValidateInputs(ins); err != nil {
			return nil, fmt.Errorf("%w: onnx: %s: gonnx: %v", ml.ErrRuntime, current, err)
		}
		outs, err := op.Apply(ins)
		if err != nil {
			return nil, fmt.Errorf("%w: onnx: %s: gonnx: %v", ml.ErrRuntime, current, err)
		}
		// A node may leave off trailing optional outputs (GRU's Y_h, say);
		// gonnx.Model.Run refuses that, but ONNX allows it.
		if len(outs) < len(node.GetOutput()) {
			return nil, fmt.Errorf("%w: onnx: %s: gonnx gave %d outputs for %d names", ml.ErrRuntime, current, len(outs), len(node.GetOutput()))
		}
		for j, name := range node.GetOutput() {
			if name != "" {
				vals[name] = outs[j]
			}
		}
	}
	return vals, nil
}

func stackTop(b []byte, lines int) []byte {
	for i, c := range b {
		if c == '\n' {
			if lines--; lines == 0 {
				return b[:i]
			}
		}
	}
	return b
}
