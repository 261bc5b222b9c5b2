package onnx

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	pb "github.com/advancedclimatesystems/gonnx/onnx"
	"google.golang.org/protobuf/proto"

	"github.com/kilnml/kiln/ml"
)

// suiteDir holds test cases of the ONNX project's backend test data
// (pytorch-converted, pytorch-operator, simple): each a model.onnx with
// test_data_set_0/input_N.pb and output_N.pb. See ../testdata/SOURCES.md.
const suiteDir = "../testdata/onnx/backend"

// suiteCase is one model and its stored inputs and outputs.
type suiteCase struct {
	name    string
	model   []byte
	inputs  []ml.Tensor
	outputs []ml.Tensor
	opset   int64
	// unread says why the case's tensors cannot be given to Kiln (string
	// tensors: Kiln's tensors carry numbers); such a case is listed, not run.
	unread string
}

func readSuite(t *testing.T) []suiteCase {
	t.Helper()
	models, err := filepath.Glob(filepath.Join(suiteDir, "*", "*", "model.onnx"))
	if err != nil || len(models) == 0 {
		t.Fatalf("no backend test models under %s: %v", suiteDir, err)
	}
	sort.Strings(models)
	var cases []suiteCase
	for _, path := range models {
		dir := filepath.Dir(path)
		c := suiteCase{name: strings.TrimPrefix(dir, suiteDir+"/")}
		if c.model, err = os.ReadFile(path); err != nil {
			t.Fatal(err)
		}
		mp := &pb.ModelProto{}
		if err := proto.Unmarshal(c.model, mp); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		for _, imp := range mp.GetOpsetImport() {
			if imp.GetDomain() == "" || imp.GetDomain() == "ai.onnx" {
				c.opset = imp.GetVersion()
			}
		}
		for _, kind := range []string{"input", "output"} {
			for i := 0; ; i++ {
				b, err := os.ReadFile(filepath.Join(dir, "test_data_set_0", fmt.Sprintf("%s_%d.pb", kind, i)))
				if errors.Is(err, os.ErrNotExist) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				tensor, err := tensorFromPB(b)
				if errors.Is(err, errUnread) {
					c.unread = err.Error()
					break
				}
				if err != nil {
					t.Fatalf("%s %s_%d: %v", c.name, kind, i, err)
				}
				if kind == "input" && slices.ContainsFunc(tensor.Data, math.IsNaN) {
					// Kiln refuses NaN as a missing value unless the model
					// reads it as one (see the package doc).
					c.unread = "a NaN input, which Kiln takes as missing"
				}
				if kind == "input" {
					c.inputs = append(c.inputs, tensor)
				} else {
					c.outputs = append(c.outputs, tensor)
				}
			}
		}
		cases = append(cases, c)
	}
	return cases
}

var errUnread = errors.New("not a numeric tensor")

// tensorFromPB reads a stored TensorProto: its typed fields or raw_data
// (little endian), for the element types the cases use.
func tensorFromPB(b []byte) (ml.Tensor, error) {
	tp := &pb.TensorProto{}
	if err := proto.Unmarshal(b, tp); err != nil {
		return ml.Tensor{}, err
	}
	t := ml.Tensor{Name: tp.GetName(), Shape: make([]int, len(tp.GetDims()))}
	for i, d := range tp.GetDims() {
		t.Shape[i] = int(d)
	}
	raw := tp.GetRawData()
	size := map[pb.TensorProto_DataType]int{pb.TensorProto_FLOAT: 4, pb.TensorProto_DOUBLE: 8, pb.TensorProto_INT64: 8,
		pb.TensorProto_INT32: 4, pb.TensorProto_INT8: 1, pb.TensorProto_UINT8: 1, pb.TensorProto_BOOL: 1}
	dt := pb.TensorProto_DataType(tp.GetDataType())
	width, ok := size[dt]
	if !ok {
		return t, fmt.Errorf("%w: element type %s", errUnread, dt)
	}
	if len(raw) > 0 {
		for i := 0; i+width <= len(raw); i += width {
			var x float64
			switch dt {
			case pb.TensorProto_FLOAT:
				x = float64(math.Float32frombits(binary.LittleEndian.Uint32(raw[i:])))
			case pb.TensorProto_DOUBLE:
				x = math.Float64frombits(binary.LittleEndian.Uint64(raw[i:]))
			case pb.TensorProto_INT64:
				x = float64(int64(binary.LittleEndian.Uint64(raw[i:])))
			case pb.TensorProto_INT32:
				x = float64(int32(binary.LittleEndian.Uint32(raw[i:])))
			case pb.TensorProto_INT8:
				x = float64(int8(raw[i]))
			default:
				x = float64(raw[i])
			}
			t.Data = append(t.Data, x)
		}
	} else {
		for _, v := range tp.GetFloatData() {
			t.Data = append(t.Data, float64(v))
		}
		for _, v := range tp.GetDoubleData() {
			t.Data = append(t.Data, v)
		}
		for _, v := range tp.GetInt64Data() {
			t.Data = append(t.Data, float64(v))
		}
		for _, v := range tp.GetInt32Data() {
			t.Data = append(t.Data, float64(v))
		}
	}
	if t.Data == nil {
		t.Data = []float64{}
	}
	return t, t.Check()
}

// runCase loads and runs one case in b and compares every output to the
// stored one (ONNX's own backend tolerance: rtol 1e-3, atol 1e-7, widened
// to 1e-5 absolute for float32 round-off). It returns "" on a pass, else
// the first reason it failed, and whether the failure was a load refusal
// (ml.ErrBadModel) rather than a wrong or failed run.
func runCase(b *Backend, c suiteCase) (reason string, refused bool) {
	m, err := b.Load(bytes.NewReader(c.model), ml.CPUOnly)
	if err != nil {
		return err.Error(), errors.Is(err, ml.ErrBadModel)
	}
	if cl, ok := m.(ml.Closer); ok {
		defer cl.Close()
	}
	specs := m.Schema().Inputs
	if len(specs) != len(c.inputs) {
		return fmt.Sprintf("the model takes %d inputs, the case stores %d", len(specs), len(c.inputs)), false
	}
	in := make([]ml.Tensor, len(c.inputs))
	for i, t := range c.inputs {
		t.Name = specs[i].Name
		in[i] = t
	}
	out, err := m.Predict(context.Background(), in)
	if err != nil {
		return "run: " + err.Error(), false
	}
	if len(out) != len(c.outputs) {
		return fmt.Sprintf("%d outputs, want %d", len(out), len(c.outputs)), false
	}
	for i, want := range c.outputs {
		got := out[i]
		if !equalInts(got.Shape, want.Shape) && !(len(got.Data) == len(want.Data) && len(got.Data) == 1) {
			return fmt.Sprintf("output %d shape %v, want %v", i, got.Shape, want.Shape), false
		}
		for k := range want.Data {
			w, g := want.Data[k], got.Data[k]
			if math.IsNaN(w) && math.IsNaN(g) {
				continue
			}
			if math.Abs(g-w) > 1e-5+1e-3*math.Abs(w) {
				return fmt.Sprintf("output %d element %d = %g, want %g", i, k, g, w), false
			}
		}
	}
	return "", false
}

// TestBackendSuites runs every stored case under gonnx and, where it is
// installed, ORT, and logs a table of what each backend passes. It holds
// each backend to what it promises:
//   - ORT runs a model right or refuses to load it (ORT 1.30 knows
//     opsets 7 to 26: older ones are refused naming
//     onnx.version_converter, newer ones with ORT's own message);
//   - gonnx either runs a model right or refuses to load it with a reason;
//     it never gives a wrong answer or fails a run of a model it loaded.
func TestBackendSuites(t *testing.T) {
	cases := readSuite(t)
	backends := []*Backend{Gonnx()}
	if b, err := Open(RuntimeORT, ""); err == nil {
		backends = append(backends, b)
	} else {
		t.Logf("ONNX Runtime is not installed here; gonnx only: %v", err)
	}
	pass := map[string]int{}
	neither := 0
	var table strings.Builder
	fmt.Fprintf(&table, "%-58s %-5s", "case", "opset")
	for _, b := range backends {
		fmt.Fprintf(&table, " %-6s", b.Name())
	}
	table.WriteString("\n")
	unread := 0
	for _, c := range cases {
		fmt.Fprintf(&table, "%-58s %-5d", c.name, c.opset)
		if c.unread != "" {
			fmt.Fprintf(&table, " not run: %s\n", c.unread)
			unread++
			continue
		}
		passed := false
		for _, b := range backends {
			reason, refused := runCase(b, c)
			mark := "pass"
			if reason != "" {
				mark = "no"
			} else {
				pass[b.Name()]++
				passed = true
			}
			fmt.Fprintf(&table, " %-6s", mark)
			switch {
			case reason == "":
			case b.Name() == RuntimeORT && !refused:
				t.Errorf("%s: ORT loaded the model but got it wrong: %s", c.name, reason)
			case b.Name() == RuntimeORT && c.opset < minORTOpset && !strings.Contains(reason, "onnx.version_converter"):
				t.Errorf("%s: ORT refuses opset %d without naming the fix: %s", c.name, c.opset, reason)
			case b.Name() == RuntimeGonnx && !refused:
				t.Errorf("%s: gonnx loaded the model but got it wrong: %s", c.name, reason)
			}
		}
		if !passed {
			neither++
		}
		table.WriteString("\n")
	}
	fmt.Fprintf(&table, "%d cases, %d not run:", len(cases), unread)
	for _, b := range backends {
		fmt.Fprintf(&table, " %s passes %d;", b.Name(), pass[b.Name()])
	}
	fmt.Fprintf(&table, " neither %d\n", neither)
	t.Log("\n" + table.String())
}
