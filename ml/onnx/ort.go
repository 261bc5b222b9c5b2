//go:build cgo && linux

package onnx

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"sync"

	pb "github.com/advancedclimatesystems/gonnx/onnx"
	ort "github.com/yalue/onnxruntime_go"

	"github.com/kilnml/kiln/ml"
)

// ortEnv is the process's one ONNX Runtime environment: the library a
// successful initORT loaded. A failed load leaves it unset, so another path
// may be tried.
var ortEnv struct {
	sync.Mutex
	path, version string
}

// initORT loads ONNX Runtime's shared library from path and starts its
// environment, once per process; a later call with the same path is a no-op.
func initORT(path string) (string, error) {
	ortEnv.Lock()
	defer ortEnv.Unlock()
	if ortEnv.path != "" {
		if ortEnv.path != path {
			return "", fmt.Errorf("ONNX Runtime is already loaded from %s in this process", ortEnv.path)
		}
		return ortEnv.version, nil
	}
	ort.SetSharedLibraryPath(path)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return "", err
	}
	ortEnv.path, ortEnv.version = path, ort.GetVersion()
	return ortEnv.version, nil
}

// ortModel is a model served by ONNX Runtime: one session, shared by every
// goroutine of the replica (ORT's Run is safe to call concurrently).
type ortModel struct {
	*graph
	session *ort.DynamicAdvancedSession
	runtime string
	inputs  inputPool
}

func loadORT(data []byte, version string, opts ml.LoadOptions) (ml.Model, error) {
	gr, err := ortGraph(data)
	if err != nil {
		return nil, err
	}
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("%w: onnxruntime: session options: %v", ml.ErrRuntime, err)
	}
	defer so.Destroy()
	threads := max(opts.Threads, 1)
	if err := so.SetIntraOpNumThreads(threads); err != nil {
		return nil, fmt.Errorf("%w: onnxruntime: intra-op threads: %v", ml.ErrRuntime, err)
	}
	if err := so.SetInterOpNumThreads(1); err != nil {
		return nil, fmt.Errorf("%w: onnxruntime: inter-op threads: %v", ml.ErrRuntime, err)
	}
	device := "CPU"
	if opts.GPU >= 0 {
		if err := useCUDA(so, opts.GPU); err != nil {
			device = fmt.Sprintf("CPU (GPU %d reserved, but ORT's CUDA provider did not load: %v)", opts.GPU, err)
		} else {
			device = "CUDA GPU " + strconv.Itoa(opts.GPU)
		}
	}
	in := make([]string, len(gr.inputs))
	for i, s := range gr.inputs {
		in[i] = s.name
	}
	out := make([]string, len(gr.outputs))
	for i, s := range gr.outputs {
		out[i] = s.name
	}
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(data, in, out, so)
	if err != nil {
		return nil, fmt.Errorf("%w: onnxruntime: %v", ml.ErrBadModel, err)
	}
	return &ortModel{graph: gr, session: s, runtime: fmt.Sprintf("onnxruntime %s, %s, %d intra-op thread(s)", version, device, threads)}, nil
}

func useCUDA(so *ort.SessionOptions, gpu int) error {
	co, err := ort.NewCUDAProviderOptions()
	if err != nil {
		return err
	}
	defer co.Destroy()
	if err := co.Update(map[string]string{"device_id": strconv.Itoa(gpu)}); err != nil {
		return err
	}
	return so.AppendExecutionProviderCUDA(co)
}

// Runtime says what serves the model: ORT's version and the device.
func (m *ortModel) Runtime() string { return m.runtime }

// Close ends the session and frees the pooled input tensors.
func (m *ortModel) Close() error {
	m.inputs.close()
	return m.session.Destroy()
}

// Predict implements ml.Model. The request is checked against the graph
// before ORT sees it; ORT's own errors wrap ml.ErrRuntime.
func (m *ortModel) Predict(ctx context.Context, inputs []ml.Tensor) ([]ml.Tensor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ts, err := m.match(inputs)
	if err != nil {
		return nil, err
	}
	in := make([]ort.Value, len(ts))
	held := make([]*pooledInput, len(ts))
	defer func() {
		for _, p := range held {
			m.inputs.put(p)
		}
	}()
	for i, t := range ts {
		if held[i], err = m.inputs.get(i, m.graph.inputs[i], t); err != nil {
			return nil, err
		}
		in[i] = held[i].value
	}
	outs := make([]ort.Value, len(m.outputs)) // nil: ORT allocates each
	defer destroyValues(outs)
	for i, o := range m.outputs {
		if o.dims != nil && len(o.dims) == 0 { // the binding cannot take a rank-0 output from ORT
			if outs[i], err = emptyScalar(o); err != nil {
				return nil, err
			}
		}
	}
	if err := m.session.Run(in, outs); err != nil {
		return nil, fmt.Errorf("%w: onnxruntime: %v", ml.ErrRuntime, err)
	}
	res := make([]ml.Tensor, len(outs))
	for i, v := range outs {
		if res[i], err = fromORT(m.outputs[i], v); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// destroyValues frees what ORT holds for each value. A failed Run can leave
// a typed nil in the slice (the binding converts outputs one by one), so
// nil pointers inside the interface are skipped too.
func destroyValues(vs []ort.Value) {
	for _, v := range vs {
		if v != nil && !reflect.ValueOf(v).IsNil() {
			v.Destroy()
		}
	}
}

// pooledInput is an ORT tensor over a Go slice of its element type, with
// the function that copies a request's values into that slice. The slice is
// the tensor's memory, so refilling it reuses the tensor.
type pooledInput struct {
	key   string
	value ort.Value
	fill  func([]float64)
}

// inputPool keeps input tensors for reuse, per input and shape: the shapes
// a replica sees are few (single rows, a client's batch size), and reuse
// saves a conversion slice and two C calls a request. At most poolShapes
// shapes per model and poolDepth tensors per shape are kept; anything
// beyond is freed after its call.
type inputPool struct {
	mu     sync.Mutex
	free   map[string][]*pooledInput
	closed bool
}

const (
	poolShapes = 32
	poolDepth  = 8
)

// get returns a tensor for input i holding t's values.
func (p *inputPool) get(i int, spec inputSpec, t ml.Tensor) (*pooledInput, error) {
	var buf [64]byte
	k := strconv.AppendInt(buf[:0], int64(i), 10)
	for _, d := range t.Shape {
		k = strconv.AppendInt(append(k, ','), int64(d), 10)
	}
	p.mu.Lock()
	if l := p.free[string(k)]; len(l) > 0 { // no allocation for the lookup
		in := l[len(l)-1]
		p.free[string(k)] = l[:len(l)-1]
		p.mu.Unlock()
		in.fill(t.Data)
		return in, nil
	}
	p.mu.Unlock()
	key := string(k)
	in, err := newInput(spec, t)
	if err != nil {
		return nil, err
	}
	if len(t.Shape) > 0 {
		in.key = key // scalars are not pooled (see typedInput)
	}
	in.fill(t.Data)
	return in, nil
}

// put takes a tensor back after its call, or frees it.
func (p *inputPool) put(in *pooledInput) {
	if in == nil {
		return
	}
	if in.key == "" {
		in.value.Destroy()
		return
	}
	p.mu.Lock()
	if p.free == nil {
		p.free = map[string][]*pooledInput{}
	}
	l, known := p.free[in.key]
	if !p.closed && len(l) < poolDepth && (known || len(p.free) < poolShapes) {
		p.free[in.key] = append(l, in)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	in.value.Destroy()
}

func (p *inputPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, l := range p.free {
		for _, in := range l {
			in.value.Destroy()
		}
	}
	p.free = nil
}

// newInput makes an input tensor of the input's element type and t's
// shape.
func newInput(spec inputSpec, t ml.Tensor) (*pooledInput, error) {
	shape := make(ort.Shape, len(t.Shape))
	for i, d := range t.Shape {
		shape[i] = int64(d)
	}
	switch spec.elem.proto {
	case pb.TensorProto_FLOAT:
		return typedInput(spec, shape, t.Data, func(x float64) float32 { return float32(x) })
	case pb.TensorProto_DOUBLE:
		return typedInput(spec, shape, t.Data, func(x float64) float64 { return x })
	case pb.TensorProto_INT64:
		return typedInput(spec, shape, t.Data, func(x float64) int64 { return int64(x) })
	case pb.TensorProto_INT32:
		return typedInput(spec, shape, t.Data, func(x float64) int32 { return int32(x) })
	case pb.TensorProto_INT16:
		return typedInput(spec, shape, t.Data, func(x float64) int16 { return int16(x) })
	case pb.TensorProto_INT8:
		return typedInput(spec, shape, t.Data, func(x float64) int8 { return int8(x) })
	case pb.TensorProto_UINT64:
		return typedInput(spec, shape, t.Data, func(x float64) uint64 { return uint64(x) })
	case pb.TensorProto_UINT32:
		return typedInput(spec, shape, t.Data, func(x float64) uint32 { return uint32(x) })
	case pb.TensorProto_UINT16:
		return typedInput(spec, shape, t.Data, func(x float64) uint16 { return uint16(x) })
	case pb.TensorProto_UINT8:
		return typedInput(spec, shape, t.Data, func(x float64) uint8 { return uint8(x) })
	case pb.TensorProto_BOOL:
		return typedInput(spec, shape, t.Data, func(x float64) bool { return x != 0 })
	}
	return nil, fmt.Errorf("%w: onnxruntime: input %q: element type %s is not converted", ml.ErrRuntime, spec.name, spec.elem.name)
}

// typedInput makes the tensor over a slice of len(src) elements of type T.
// A rank-0 input is a scalar (the binding's tensors need a dimension) made
// with its value and never pooled: the binding's Scalar.Set replaces its
// Go slice, not the memory ORT reads.
func typedInput[T ort.TensorData](spec inputSpec, shape ort.Shape, src []float64, conv func(float64) T) (*pooledInput, error) {
	if len(shape) == 0 {
		sc, err := ort.NewScalar(conv(src[0]))
		if err != nil {
			return nil, fmt.Errorf("%w: onnxruntime: input %q: %v", ml.ErrBadInput, spec.name, err)
		}
		return &pooledInput{value: sc, fill: func([]float64) {}}, nil
	}
	data := make([]T, len(src))
	t, err := ort.NewTensor(shape, data)
	if err != nil {
		return nil, fmt.Errorf("%w: onnxruntime: input %q: %v", ml.ErrBadInput, spec.name, err)
	}
	return &pooledInput{value: t, fill: func(src []float64) {
		for i, x := range src {
			data[i] = conv(x)
		}
	}}, nil
}

// emptyScalar allocates a rank-0 output of the output's element type.
func emptyScalar(o outputSpec) (ort.Value, error) {
	var v ort.Value
	var err error
	switch o.elem.proto {
	case pb.TensorProto_FLOAT:
		v, err = ort.NewEmptyScalar[float32]()
	case pb.TensorProto_DOUBLE:
		v, err = ort.NewEmptyScalar[float64]()
	case pb.TensorProto_INT64:
		v, err = ort.NewEmptyScalar[int64]()
	case pb.TensorProto_INT32:
		v, err = ort.NewEmptyScalar[int32]()
	case pb.TensorProto_BOOL:
		v, err = ort.NewEmptyScalar[bool]()
	default:
		return nil, fmt.Errorf("%w: onnxruntime: output %q: a scalar %s is not converted", ml.ErrRuntime, o.name, o.elem.name)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: onnxruntime: output %q: %v", ml.ErrRuntime, o.name, err)
	}
	return v, nil
}

// fromORT copies an ORT output into an ml.Tensor: a tensor as it is, a
// ZipMap's sequence of maps as [rows, classes] in the ZipMap's class order.
func fromORT(spec outputSpec, v ort.Value) (ml.Tensor, error) {
	if spec.zipMap {
		return fromZipMap(spec, v)
	}
	var data []float64
	switch t := v.(type) {
	case *ort.Tensor[float32]:
		data = widen(t.GetData())
	case *ort.Tensor[float64]:
		data = slices.Clone(t.GetData())
	case *ort.Tensor[int64]:
		data = widen(t.GetData())
	case *ort.Tensor[int32]:
		data = widen(t.GetData())
	case *ort.Tensor[int16]:
		data = widen(t.GetData())
	case *ort.Tensor[int8]:
		data = widen(t.GetData())
	case *ort.Tensor[uint64]:
		data = widen(t.GetData())
	case *ort.Tensor[uint32]:
		data = widen(t.GetData())
	case *ort.Tensor[uint16]:
		data = widen(t.GetData())
	case *ort.Tensor[uint8]:
		data = widen(t.GetData())
	case *ort.Tensor[bool]:
		data = make([]float64, len(t.GetData()))
		for i, b := range t.GetData() {
			if b {
				data[i] = 1
			}
		}
	case *ort.Scalar[float32]:
		data = []float64{float64(t.GetData())}
	case *ort.Scalar[float64]:
		data = []float64{t.GetData()}
	case *ort.Scalar[int64]:
		data = []float64{float64(t.GetData())}
	case *ort.Scalar[int32]:
		data = []float64{float64(t.GetData())}
	case *ort.Scalar[bool]:
		data = []float64{0}
		if t.GetData() {
			data[0] = 1
		}
	default:
		return ml.Tensor{}, fmt.Errorf("%w: onnxruntime: output %q is a %s, which is not converted", ml.ErrRuntime, spec.name, v.GetONNXType())
	}
	shape := make([]int, len(v.GetShape()))
	for i, d := range v.GetShape() {
		shape[i] = int(d)
	}
	out := ml.Tensor{Name: spec.name, Shape: shape, Data: data}
	if out.Len() != len(data) {
		return ml.Tensor{}, fmt.Errorf("%w: onnxruntime: output %q has shape %v but %d values", ml.ErrRuntime, spec.name, shape, len(data))
	}
	return out, nil
}

// fromZipMap turns ZipMap's output, one map class -> probability per row,
// into a [rows, classes] tensor.
func fromZipMap(spec outputSpec, v ort.Value) (ml.Tensor, error) {
	bad := func(format string, args ...any) (ml.Tensor, error) {
		return ml.Tensor{}, fmt.Errorf("%w: onnxruntime: ZipMap output %q: %s", ml.ErrRuntime, spec.name, fmt.Sprintf(format, args...))
	}
	seq, ok := v.(*ort.Sequence)
	if !ok {
		return bad("ORT gave a %s, not a sequence", v.GetONNXType())
	}
	rows, err := seq.GetValues()
	if err != nil {
		return bad("%v", err)
	}
	col := make(map[string]int, len(spec.classes))
	for i, c := range spec.classes {
		col[c] = i
	}
	data := make([]float64, len(rows)*len(spec.classes))
	for r, row := range rows {
		mp, ok := row.(*ort.Map)
		if !ok {
			return bad("row %d is a %s, not a map", r, row.GetONNXType())
		}
		keys, vals, err := mp.GetKeysAndValues()
		if err != nil {
			return bad("row %d: %v", r, err)
		}
		names, err := keyStrings(keys)
		if err != nil {
			return bad("row %d: %v", r, err)
		}
		probs, ok := vals.(*ort.Tensor[float32])
		if !ok || len(probs.GetData()) != len(names) {
			return bad("row %d: values are not one float per class", r)
		}
		for k, name := range names {
			c, ok := col[name]
			if !ok {
				return bad("row %d: class %q is not among the ZipMap's labels", r, name)
			}
			data[r*len(spec.classes)+c] = float64(probs.GetData()[k])
		}
	}
	return ml.Tensor{Name: spec.name, Shape: []int{len(rows), len(spec.classes)}, Data: data}, nil
}

// keyStrings reads a map's keys (int64 or string) as the strings
// zipMapClasses keyed the columns by.
func keyStrings(keys ort.Value) ([]string, error) {
	switch k := keys.(type) {
	case *ort.Tensor[int64]:
		out := make([]string, len(k.GetData()))
		for i, x := range k.GetData() {
			out[i] = strconv.FormatInt(x, 10)
		}
		return out, nil
	case *ort.StringTensor:
		return k.GetContents()
	}
	return nil, errors.New("map keys are neither int64 nor strings")
}
