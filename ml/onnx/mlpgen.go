package onnx

import (
	"fmt"
	"math"
	"math/rand/v2"

	pb "github.com/advancedclimatesystems/gonnx/onnx"
	"google.golang.org/protobuf/proto"
)

// MLP is a dense network with float32 weights: each layer computes
// x·W + b, followed by Relu on the hidden layers and Softmax on the last.
//
// Kiln never builds models itself. MLP exists so that tests and benchmarks
// outside this package (node's BenchmarkBatchingMLP) can serve an ONNX model
// whose compute, rather than the HTTP path, dominates a prediction, without
// a binary file in testdata or a Python toolchain to make one.
type MLP struct {
	// Sizes are the layer widths, input first and output last.
	Sizes []int
	// Weights[l] is layer l's matrix, Sizes[l] rows by Sizes[l+1] columns,
	// row-major.
	Weights [][]float32
	// Biases[l] holds Sizes[l+1] values.
	Biases [][]float32
}

// RandomMLP returns an MLP with the given layer widths (at least two) whose
// weights are He-initialised (normal, variance 2/fan-in) and whose biases
// are normal with deviation 0.1, all drawn from a PCG generator seeded with
// seed: the same seed and sizes give the same model.
func RandomMLP(seed uint64, sizes ...int) *MLP {
	if len(sizes) < 2 {
		panic("onnx: RandomMLP needs an input and an output size")
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	m := &MLP{Sizes: append([]int{}, sizes...)}
	for l := range len(sizes) - 1 {
		in, out := sizes[l], sizes[l+1]
		scale := math.Sqrt(2 / float64(in))
		w := make([]float32, in*out)
		for i := range w {
			w[i] = float32(rng.NormFloat64() * scale)
		}
		b := make([]float32, out)
		for i := range b {
			b[i] = float32(rng.NormFloat64() * 0.1)
		}
		m.Weights = append(m.Weights, w)
		m.Biases = append(m.Biases, b)
	}
	return m
}

// Marshal encodes m as an ONNX model of opset 13 that Load accepts: input
// "input" of shape [batch, Sizes[0]] and output "probabilities" of shape
// [batch, Sizes[last]], both float32 (the type gonnx's Gemm handles: it
// scales by a float32 alpha), and one Gemm per layer with Relu or Softmax
// after it.
func (m *MLP) Marshal() ([]byte, error) {
	if len(m.Weights) == 0 || len(m.Weights) != len(m.Biases) || len(m.Sizes) != len(m.Weights)+1 {
		return nil, fmt.Errorf("onnx: MLP has %d sizes, %d weight matrices and %d biases", len(m.Sizes), len(m.Weights), len(m.Biases))
	}
	g := &pb.GraphProto{
		Name:   "mlp",
		Input:  []*pb.ValueInfoProto{batchValueInfo("input", m.Sizes[0])},
		Output: []*pb.ValueInfoProto{batchValueInfo("probabilities", m.Sizes[len(m.Sizes)-1])},
	}
	x := "input"
	for l := range m.Weights {
		in, out := int64(m.Sizes[l]), int64(m.Sizes[l+1])
		if int64(len(m.Weights[l])) != in*out || int64(len(m.Biases[l])) != out {
			return nil, fmt.Errorf("onnx: MLP layer %d is %dx%d but has %d weights and %d biases", l, in, out, len(m.Weights[l]), len(m.Biases[l]))
		}
		w, b := fmt.Sprintf("W%d", l), fmt.Sprintf("B%d", l)
		g.Initializer = append(g.Initializer,
			&pb.TensorProto{Name: w, Dims: []int64{in, out}, DataType: int32(pb.TensorProto_FLOAT), FloatData: m.Weights[l]},
			&pb.TensorProto{Name: b, Dims: []int64{out}, DataType: int32(pb.TensorProto_FLOAT), FloatData: m.Biases[l]})
		act, y := "Relu", fmt.Sprintf("h%d", l)
		if l == len(m.Weights)-1 {
			act, y = "Softmax", "probabilities"
		}
		lin := fmt.Sprintf("z%d", l)
		g.Node = append(g.Node,
			&pb.NodeProto{OpType: "Gemm", Name: fmt.Sprintf("gemm%d", l), Input: []string{x, w, b}, Output: []string{lin}},
			&pb.NodeProto{OpType: act, Name: fmt.Sprintf("%s%d", act, l), Input: []string{lin}, Output: []string{y}})
		x = y
	}
	return proto.Marshal(&pb.ModelProto{
		IrVersion:    8,
		ProducerName: "kiln onnx.MLP",
		OpsetImport:  []*pb.OperatorSetIdProto{{Domain: "", Version: 13}},
		Graph:        g,
	})
}

// batchValueInfo is a float32 tensor of shape [batch, width].
func batchValueInfo(name string, width int) *pb.ValueInfoProto {
	return &pb.ValueInfoProto{Name: name, Type: &pb.TypeProto{Value: &pb.TypeProto_TensorType{
		TensorType: &pb.TypeProto_Tensor{ElemType: int32(pb.TensorProto_FLOAT), Shape: &pb.TensorShapeProto{Dim: []*pb.TensorShapeProto_Dimension{
			{Value: &pb.TensorShapeProto_Dimension_DimParam{DimParam: "batch"}},
			{Value: &pb.TensorShapeProto_Dimension_DimValue{DimValue: int64(width)}},
		}}},
	}}}
}
