package linear

import (
	"bytes"
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/kilnml/kiln/ml"
)

// load loads a model from JSON text, failing the test on error.
func load(t *testing.T, doc string) *Runtime {
	t.Helper()
	m, err := Load(strings.NewReader(doc))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return m.(*Runtime)
}

// batch turns rows into one [len(rows), width] input tensor.
func batch(rows [][]float64) ml.Tensor {
	in := ml.Tensor{Name: InputName, Shape: []int{len(rows), 0}}
	if len(rows) > 0 {
		in.Shape[1] = len(rows[0])
	}
	for _, r := range rows {
		in.Data = append(in.Data, r...)
	}
	return in
}

// predictRows scores rows and returns the output tensor.
func predictRows(t *testing.T, m ml.Model, rows [][]float64) ml.Tensor {
	t.Helper()
	out, err := m.Predict(context.Background(), []ml.Tensor{batch(rows)})
	if err != nil {
		t.Fatalf("Predict: %v", err)
	}
	if len(out) != 1 || out[0].Name != OutputName {
		t.Fatalf("Predict returned %d tensors (%+v); want one named %q", len(out), out, OutputName)
	}
	return out[0]
}

func sigmoidRef(z float64) float64 { return 1 / (1 + math.Exp(-z)) }

// softmaxRef is the textbook softmax; the tests keep z small enough for it.
func softmaxRef(z ...float64) []float64 {
	sum := 0.0
	for _, v := range z {
		sum += math.Exp(v)
	}
	p := make([]float64, len(z))
	for i, v := range z {
		p[i] = math.Exp(v) / sum
	}
	return p
}

func assertClose(t *testing.T, got, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d values %v; want %d values %v", len(got), got, len(want), want)
	}
	for i := range want {
		if !(math.Abs(got[i]-want[i]) <= tol*(1+math.Abs(want[i]))) { // NaN fails too
			t.Fatalf("value %d: got %.17g; want %.17g (all: got %v, want %v)", i, got[i], want[i], got, want)
		}
	}
}

// TestRuntime_DocExamplesPredictAsDocumented scores the package doc's example
// files and checks the numbers the doc states, worked out by hand.
func TestRuntime_DocExamplesPredictAsDocumented(t *testing.T) {
	e := math.E
	xorLow, xorHigh := sigmoidRef(-5), sigmoidRef(5)
	tests := []struct {
		kind      Kind
		rows      [][]float64
		want      []float64
		wantShape []int
		classes   []string
		features  []string
	}{
		{
			kind: KindLinear,
			// Scaled rows: [1, 1, 1], [0, 0, 0], [-1, -1, -1], [0, 1, -2].
			rows:      [][]float64{{4, 100, 30}, {3, 80, 20}, {2, 60, 10}, {3, 100, 0}},
			want:      []float64{25 + 40 - 5 + 300, 300, -25 - 40 + 5 + 300, 40 + 10 + 300},
			wantShape: []int{4},
			features:  []string{"rooms", "area_m2", "age_years"},
		},
		{
			kind:      KindLogistic,
			rows:      [][]float64{{20, 5}, {20, 2.5}, {0, 0}, {100, 0}},
			want:      []float64{sigmoidRef(2), 0.5, sigmoidRef(-1), sigmoidRef(-6)},
			wantShape: []int{4},
			classes:   []string{"stays", "churns"},
			features:  []string{"tenure_months", "support_calls"},
		},
		{
			kind: KindSoftmax,
			rows: [][]float64{{1, 0}, {0, 0}, {2, 7}},
			want: []float64{
				1 / e / (1/e + 1 + e), 1 / (1/e + 1 + e), e / (1/e + 1 + e),
				1.0 / 3, 1.0 / 3, 1.0 / 3,
				softmaxRef(-2, 0, 2)[0], softmaxRef(-2, 0, 2)[1], softmaxRef(-2, 0, 2)[2],
			},
			wantShape: []int{3, 3},
			classes:   []string{"setosa", "versicolor", "virginica"},
			features:  []string{"petal_length", "petal_width"},
		},
		{
			kind:      KindMLP,
			rows:      [][]float64{{0, 0}, {0, 1}, {1, 0}, {1, 1}},
			want:      []float64{xorLow, xorHigh, xorHigh, xorLow},
			wantShape: []int{4},
			classes:   []string{"false", "true"},
			features:  []string{"a", "b"},
		},
	}
	docs := docExamples(t)
	for _, tt := range tests {
		t.Run(string(tt.kind), func(t *testing.T) {
			m := load(t, docs[tt.kind])
			out := predictRows(t, m, tt.rows)
			if !reflect.DeepEqual(out.Shape, tt.wantShape) {
				t.Fatalf("output shape %v; want %v", out.Shape, tt.wantShape)
			}
			assertClose(t, out.Data, tt.want, 1e-12)
			if got := m.Classes(); !reflect.DeepEqual(got, tt.classes) {
				t.Errorf("Classes() = %q; want %q", got, tt.classes)
			}
			if got := m.Schema().FeatureNames; !reflect.DeepEqual(got, tt.features) {
				t.Errorf("FeatureNames = %q; want %q", got, tt.features)
			}
			if m.Kind() != tt.kind {
				t.Errorf("Kind() = %q; want %q", m.Kind(), tt.kind)
			}
		})
	}
}

// TestRuntime_Schema checks the input and output specs, and the rule that a
// one-output model has output shape [-1].
func TestRuntime_Schema(t *testing.T) {
	oneLayer := func(kind Kind, outputs int) *Model {
		l := Layer{Bias: make([]float64, outputs)}
		for range outputs {
			l.Weights = append(l.Weights, []float64{1, 2, 3})
		}
		return &Model{Kind: kind, NFeatures: 3, Layers: []Layer{l}}
	}
	mlp := &Model{Kind: KindMLP, NFeatures: 3, Layers: []Layer{
		{Weights: [][]float64{{1, 1, 1}, {2, 2, 2}}, Bias: []float64{0, 0}, Activation: Tanh},
		{Weights: [][]float64{{1, 1}}, Bias: []float64{0}, Activation: Identity},
	}}
	tests := []struct {
		name string
		m    *Model
		want []int
	}{
		{"linear one output", oneLayer(KindLinear, 1), []int{-1}},
		{"linear two outputs", oneLayer(KindLinear, 2), []int{-1, 2}},
		{"logistic", oneLayer(KindLogistic, 1), []int{-1}},
		{"softmax", oneLayer(KindSoftmax, 4), []int{-1, 4}},
		{"mlp one output", mlp, []int{-1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(tt.m)
			if err != nil {
				t.Fatal(err)
			}
			want := ml.Schema{
				Inputs:  []ml.TensorSpec{{Name: "input", DataType: ml.FP64, Shape: []int{-1, 3}}},
				Outputs: []ml.TensorSpec{{Name: "output", DataType: ml.FP64, Shape: tt.want}},
			}
			s := r.Schema()
			if !reflect.DeepEqual(s, want) {
				t.Fatalf("Schema() = %+v; want %+v", s, want)
			}
			s.Inputs[0].Shape[1] = 99 // the caller owns what it gets
			if r.Schema().Inputs[0].Shape[1] != 3 {
				t.Fatal("changing a returned schema changed the model's")
			}
			out := predictRows(t, r, [][]float64{{1, 0, 0}, {0, 1, 0}})
			if wantShape := append([]int{2}, tt.want[1:]...); !reflect.DeepEqual(out.Shape, wantShape) {
				t.Fatalf("output shape %v; want %v", out.Shape, wantShape)
			}
		})
	}
}

// TestRuntime_HandComputed checks models whose outputs are worked out by hand:
// multi-output regression, a tanh network, and activations at extremes where
// a naive sigmoid or softmax would overflow.
func TestRuntime_HandComputed(t *testing.T) {
	tests := []struct {
		name string
		m    *Model
		rows [][]float64
		want []float64
	}{
		{
			name: "linear two outputs",
			m: &Model{Kind: KindLinear, NFeatures: 2, Layers: []Layer{
				{Weights: [][]float64{{1, 2}, {-3, 0.5}}, Bias: []float64{10, 0}},
			}},
			rows: [][]float64{{1, 1}, {2, -4}},
			want: []float64{13, -2.5, 4, -8},
		},
		{
			// h = tanh([0.5x, 1-x]); out = 2h[0] + h[1] + 0.1.
			name: "mlp tanh regression",
			m: &Model{Kind: KindMLP, NFeatures: 1, Layers: []Layer{
				{Weights: [][]float64{{0.5}, {-1}}, Bias: []float64{0, 1}, Activation: Tanh},
				{Weights: [][]float64{{2, 1}}, Bias: []float64{0.1}, Activation: Identity},
			}},
			rows: [][]float64{{2}, {0}, {1}},
			want: []float64{2*math.Tanh(1) - math.Tanh(1) + 0.1, math.Tanh(1) + 0.1, 2*math.Tanh(0.5) + 0.1},
		},
		{
			// relu then a softmax over [h, -h, 0] with h = relu(x).
			name: "mlp relu softmax",
			m: &Model{Kind: KindMLP, NFeatures: 1, Classes: []string{"up", "down", "flat"}, Layers: []Layer{
				{Weights: [][]float64{{1}}, Bias: []float64{0}, Activation: ReLU},
				{Weights: [][]float64{{1}, {-1}, {0}}, Bias: []float64{0, 0, 0}, Activation: Softmax},
			}},
			rows: [][]float64{{-3}, {1}},
			want: append(softmaxRef(0, 0, 0), softmaxRef(1, -1, 0)...),
		},
		{
			name: "sigmoid at extremes",
			m: &Model{Kind: KindLogistic, NFeatures: 1, Layers: []Layer{
				{Weights: [][]float64{{1}}, Bias: []float64{0}},
			}},
			rows: [][]float64{{1000}, {-1000}, {-40}, {40}, {0}},
			want: []float64{1, 0, math.Exp(-40) / (1 + math.Exp(-40)), 1 / (1 + math.Exp(-40)), 0.5},
		},
		{
			// z = [1000, 1001, 999]: e^z overflows, e^(z - max) does not.
			name: "softmax at extremes",
			m: &Model{Kind: KindSoftmax, NFeatures: 1, Layers: []Layer{
				{Weights: [][]float64{{1}, {1}, {1}}, Bias: []float64{0, 1, -1}},
			}},
			rows: [][]float64{{1000}, {-1000}},
			want: append(softmaxRef(-1, 0, -2), softmaxRef(-1, 0, -2)...),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(tt.m)
			if err != nil {
				t.Fatal(err)
			}
			out := predictRows(t, r, tt.rows)
			assertClose(t, out.Data, tt.want, 1e-12)
		})
	}
}

// randomModel builds an mlp with a scaler and every hidden activation, from
// a fixed seed.
func randomModel(seed uint64, features int, widths []int, acts []Activation) *Model {
	rng := rand.New(rand.NewPCG(seed, 1))
	m := &Model{Kind: KindMLP, NFeatures: features, Scaler: &Scaler{}}
	for i := range features {
		m.FeatureNames = append(m.FeatureNames, "f"+string(rune('a'+i)))
		m.Scaler.Mean = append(m.Scaler.Mean, rng.NormFloat64()*3)
		m.Scaler.Scale = append(m.Scaler.Scale, 0.5+rng.Float64()*2)
	}
	in := features
	for i, w := range widths {
		l := Layer{Activation: acts[i]}
		for range w {
			row := make([]float64, in)
			for k := range row {
				row[k] = rng.NormFloat64() / math.Sqrt(float64(in))
			}
			l.Weights = append(l.Weights, row)
			l.Bias = append(l.Bias, rng.NormFloat64()*0.1)
		}
		m.Layers = append(m.Layers, l)
		in = w
	}
	return m
}

// referenceForward is a second, deliberately plain implementation of the
// format's arithmetic: nested slices as the file has them, the textbook
// formulas for the activations.
func referenceForward(m *Model, x []float64) []float64 {
	v := append([]float64(nil), x...)
	if m.Scaler != nil {
		for i := range v {
			v[i] = (v[i] - m.Scaler.Mean[i]) / m.Scaler.Scale[i]
		}
	}
	for _, l := range m.Layers {
		z := make([]float64, len(l.Weights))
		for j, row := range l.Weights {
			for k, w := range row {
				z[j] += w * v[k]
			}
			z[j] += l.Bias[j]
		}
		switch l.Activation {
		case ReLU:
			for j := range z {
				z[j] = math.Max(0, z[j])
			}
		case Tanh:
			for j := range z {
				z[j] = math.Tanh(z[j])
			}
		case Sigmoid:
			for j := range z {
				z[j] = sigmoidRef(z[j])
			}
		case Softmax:
			z = softmaxRef(z...)
		}
		v = z
	}
	return v
}

// TestRuntime_MatchesReference checks networks of several shapes against the
// plain reference implementation on random rows.
func TestRuntime_MatchesReference(t *testing.T) {
	tests := []struct {
		name   string
		widths []int
		acts   []Activation
	}{
		{"softmax classifier", []int{16, 8, 5, 3}, []Activation{Tanh, ReLU, Sigmoid, Softmax}},
		{"binary classifier", []int{9, 1}, []Activation{ReLU, Sigmoid}},
		{"regression", []int{12, 12, 2}, []Activation{Tanh, Identity, Identity}},
		{"single layer", []int{4}, []Activation{Tanh}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := randomModel(uint64(i), 7, tt.widths, tt.acts)
			r, err := New(m)
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(99, uint64(i)))
			rows := make([][]float64, 50)
			var want []float64
			for j := range rows {
				rows[j] = make([]float64, 7)
				for k := range rows[j] {
					rows[j][k] = rng.NormFloat64() * 5
				}
				want = append(want, referenceForward(m, rows[j])...)
			}
			out := predictRows(t, r, rows)
			assertClose(t, out.Data, want, 1e-12)
		})
	}
}

// TestRuntime_RejectsBadInput checks that requests the model cannot take wrap
// ml.ErrBadInput and say what is wrong.
func TestRuntime_RejectsBadInput(t *testing.T) {
	docs := docExamples(t)
	logistic := load(t, docs[KindLogistic])
	huge, err := New(&Model{Kind: KindMLP, NFeatures: 2, Layers: []Layer{
		{Weights: [][]float64{{1, 0}, {0, 1}}, Bias: []float64{0, 0}, Activation: ReLU},
		{Weights: [][]float64{{1e300, 1e300}}, Bias: []float64{0}, Activation: Identity},
	}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		m      ml.Model
		inputs []ml.Tensor
		want   string
	}{
		{"too few columns", logistic, []ml.Tensor{{Name: "input", Shape: []int{2, 3}, Data: make([]float64, 6)}}, "expects [n, 2]"},
		{"too many dimensions", logistic, []ml.Tensor{{Shape: []int{1, 1, 2}, Data: make([]float64, 2)}}, "expects [n, 2]"},
		{"data shorter than shape", logistic, []ml.Tensor{{Shape: []int{2, 2}, Data: make([]float64, 3)}}, "needs 4 values, got 3"},
		{"unknown input name", logistic, []ml.Tensor{{Name: "x", Shape: []int{1, 2}, Data: make([]float64, 2)}}, `unknown input "x"`},
		{"two inputs", logistic, []ml.Tensor{{Shape: []int{2}, Data: make([]float64, 2)}, {Shape: []int{2}, Data: make([]float64, 2)}}, "got 2 inputs"},
		{"missing value", logistic, []ml.Tensor{{Shape: []int{2, 2}, Data: []float64{1, 2, math.NaN(), 4}}}, "row 1 feature 0 is missing"},
		{"infinite value", logistic, []ml.Tensor{{Shape: []int{2, 2}, Data: []float64{1, math.Inf(1), 3, 4}}}, "row 0 feature 1 is +Inf"},
		{"overflow", huge, []ml.Tensor{{Shape: []int{2, 2}, Data: []float64{1, 1, 1e10, 1e10}}}, "row 1: layers[1] output 0 overflows float64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := tt.m.Predict(context.Background(), tt.inputs)
			if !errors.Is(err, ml.ErrBadInput) {
				t.Fatalf("Predict = %v, %v; want an error wrapping ml.ErrBadInput", out, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

// TestRuntime_BatchShapes checks a single unbatched row and an empty batch.
func TestRuntime_BatchShapes(t *testing.T) {
	docs := docExamples(t)
	tests := []struct {
		name      string
		kind      Kind
		in        ml.Tensor
		wantShape []int
	}{
		{"one row unbatched, one output", KindLogistic, ml.Tensor{Shape: []int{2}, Data: []float64{20, 2.5}}, []int{1}},
		{"one row unbatched, three outputs", KindSoftmax, ml.Tensor{Shape: []int{2}, Data: []float64{0, 0}}, []int{1, 3}},
		{"empty batch, one output", KindLogistic, ml.Tensor{Shape: []int{0, 2}, Data: []float64{}}, []int{0}},
		{"empty batch, three outputs", KindSoftmax, ml.Tensor{Shape: []int{0, 2}}, []int{0, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := load(t, docs[tt.kind])
			out, err := m.Predict(context.Background(), []ml.Tensor{tt.in})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(out[0].Shape, tt.wantShape) || out[0].Len() != len(out[0].Data) {
				t.Fatalf("output shape %v with %d values; want shape %v", out[0].Shape, len(out[0].Data), tt.wantShape)
			}
		})
	}
}

// TestRuntime_StopsOnCancelledContext checks that Predict gives up on a
// cancelled request.
func TestRuntime_StopsOnCancelledContext(t *testing.T) {
	m := load(t, docExamples(t)[KindMLP])
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Predict(ctx, []ml.Tensor{batch([][]float64{{0, 1}})}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Predict with a cancelled context = %v; want context.Canceled", err)
	}
}

// TestRuntime_ConcurrentPredict shares one model among goroutines scoring
// different batches; run with -race. Each result must equal the serial one.
func TestRuntime_ConcurrentPredict(t *testing.T) {
	m := randomModel(7, 6, []int{10, 4}, []Activation{Tanh, Softmax})
	r, err := New(m)
	if err != nil {
		t.Fatal(err)
	}
	const workers = 8
	rng := rand.New(rand.NewPCG(3, 4))
	batches := make([][][]float64, workers)
	want := make([][]float64, workers)
	for w := range batches {
		for range 20 + w {
			row := make([]float64, 6)
			for k := range row {
				row[k] = rng.NormFloat64()
			}
			batches[w] = append(batches[w], row)
		}
		want[w] = predictRows(t, r, batches[w]).Data
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range 50 {
				out, err := r.Predict(context.Background(), []ml.Tensor{batch(batches[w])})
				if err != nil {
					t.Errorf("worker %d: %v", w, err)
					return
				}
				if !reflect.DeepEqual(out[0].Data, want[w]) {
					t.Errorf("worker %d: got %v; want %v", w, out[0].Data, want[w])
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestNew_CopiesParameters checks that changing a Model after New does not
// change the runtime built from it.
func TestNew_CopiesParameters(t *testing.T) {
	m := randomModel(11, 3, []int{4, 2}, []Activation{ReLU, Softmax})
	m.Classes = []string{"x", "y"}
	r, err := New(m)
	if err != nil {
		t.Fatal(err)
	}
	rows := [][]float64{{1, 2, 3}, {-1, 0, 1}}
	before := predictRows(t, r, rows).Data
	m.Layers[0].Weights[0][0] += 1
	m.Layers[1].Bias[1] -= 1
	m.Scaler.Mean[2] = 40
	m.FeatureNames[0] = "changed"
	m.Classes[0] = "changed"
	if after := predictRows(t, r, rows).Data; !reflect.DeepEqual(before, after) {
		t.Fatalf("predictions changed with the Model: %v then %v", before, after)
	}
	if r.Schema().FeatureNames[0] == "changed" || r.Classes()[0] == "changed" {
		t.Fatal("names changed with the Model")
	}
}

// TestModel_RoundTrip checks that Decode then Encode gives back the same
// model, and that an encoded model predicts bit for bit as it did in memory.
func TestModel_RoundTrip(t *testing.T) {
	type testCase struct {
		name string
		m    *Model
	}
	var tests []testCase
	for kind, doc := range docExamples(t) {
		m, err := Decode(strings.NewReader(doc))
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		tests = append(tests, testCase{"doc " + string(kind), m})
	}
	full := randomModel(5, 5, []int{8, 3}, []Activation{Tanh, Softmax})
	full.Classes = []string{"a", "b", "c"}
	tests = append(tests, testCase{"every field", full})
	tiny := randomModel(6, 2, []int{1}, []Activation{Sigmoid})
	tiny.Kind, tiny.Layers[0].Activation, tiny.Scaler, tiny.FeatureNames = KindLogistic, "", nil, nil
	tests = append(tests, testCase{"no optional fields", tiny})

	rng := rand.New(rand.NewPCG(1, 2))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := tt.m.Encode(&buf); err != nil {
				t.Fatal(err)
			}
			back, err := Decode(bytes.NewReader(buf.Bytes()))
			if err != nil {
				t.Fatalf("Decode of Encode's output: %v\n%s", err, buf.String())
			}
			want := *tt.m
			want.Format, want.Version = FileFormat, Version
			if !reflect.DeepEqual(back, &want) {
				t.Fatalf("round trip changed the model:\n got %+v\nwant %+v", back, &want)
			}
			direct, err := New(tt.m)
			if err != nil {
				t.Fatal(err)
			}
			loaded, err := Load(bytes.NewReader(buf.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			rows := make([][]float64, 10)
			for i := range rows {
				rows[i] = make([]float64, tt.m.NFeatures)
				for k := range rows[i] {
					rows[i][k] = rng.NormFloat64() * 10
				}
			}
			a, b := predictRows(t, direct, rows), predictRows(t, loaded, rows)
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("predictions differ after the round trip: %v then %v", a, b)
			}
		})
	}
}

// TestModel_Encode checks that Encode fills in the format and version and
// refuses an invalid model without writing anything.
func TestModel_Encode(t *testing.T) {
	m := &Model{Kind: KindLinear, NFeatures: 1, Layers: []Layer{{Weights: [][]float64{{2}}, Bias: []float64{1}}}}
	var buf bytes.Buffer
	if err := m.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	want := `{"format":"kiln-linear","version":1,"kind":"linear","n_features":1,"layers":[{"weights":[[2]],"bias":[1]}]}` + "\n"
	if buf.String() != want {
		t.Fatalf("Encode wrote %s; want %s", buf.String(), want)
	}
	if m.Format != "" || m.Version != 0 {
		t.Fatal("Encode changed the caller's Model")
	}

	buf.Reset()
	m.Layers[0].Bias[0] = math.NaN()
	err := m.Encode(&buf)
	if !errors.Is(err, ml.ErrBadModel) || !strings.Contains(err.Error(), "layers[0].bias[0]") {
		t.Fatalf("Encode of a NaN bias = %v; want an ml.ErrBadModel naming layers[0].bias[0]", err)
	}
	if buf.Len() != 0 {
		t.Fatalf("Encode wrote %q for an invalid model", buf.String())
	}
}
