package tensorjson

import (
	"encoding/json"
	"math"
	"slices"
	"testing"

	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// The fast paths must agree with the generic ones wherever they accept input.

func FuzzFastRows(f *testing.F) {
	for _, s := range []string{
		`[[1,2,3]]`, `[[1.5e3, -2, null], [0, 0.25, 7]]`, ` [ [1] , [2] ] `, `[[1,2],[3]]`,
		`[]`, `[[]]`, `[[1,"a"]]`, `[[1,2]]x`, `[1,2]`, `[[1e999]]`, `[[--1]]`, `[[nul]]`,
	} {
		f.Add([]byte(s))
	}
	schema := &structs.Schema{Inputs: []structs.TensorSpec{{Name: "input", Shape: []int{-1, 3}}}}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := FastRows(b)
		if !ok {
			return
		}
		if err := fast.Check(); err != nil {
			t.Fatalf("FastRows(%q) gave a bad tensor: %v", b, err)
		}
		slow, err := FromInstances(json.RawMessage(b), schema)
		if err != nil {
			t.Fatalf("FastRows accepted %q, the generic path refused it: %v", b, err)
		}
		if len(slow) != 1 || !slices.Equal(slow[0].Shape, fast.Shape) || !sameData(slow[0].Data, fast.Data) {
			t.Fatalf("FastRows(%q) = %v %v, generic = %+v", b, fast.Shape, fast.Data, slow)
		}
	})
}

func sameData(a, b []float64) bool {
	return slices.EqualFunc(a, b, func(x, y float64) bool { return x == y || math.IsNaN(x) && math.IsNaN(y) })
}

func TestAppendPredictions_MatchesGenericEncoding(t *testing.T) {
	for _, out := range [][]ml.Tensor{
		{{Name: "y", Shape: []int{3}, Data: []float64{1, -2.5, math.NaN()}}},
		{{Name: "p", Shape: []int{2, 3}, Data: []float64{0.1, 0.2, 0.7, 1e-9, 1e22, 0}}},
	} {
		fast, ok := AppendPredictions(nil, out)
		if !ok {
			t.Fatalf("AppendPredictions refused %v", out)
		}
		preds, err := Predictions(out)
		if err != nil {
			t.Fatal(err)
		}
		slow, _ := json.Marshal(preds)
		var a, b any
		if err := json.Unmarshal(fast, &a); err != nil {
			t.Fatalf("fast encoding %s is not JSON: %v", fast, err)
		}
		_ = json.Unmarshal(slow, &b)
		if ja, _ := json.Marshal(a); string(ja) != string(slow) {
			t.Errorf("fast %s, generic %s", fast, slow)
		}
	}
	if _, ok := AppendPredictions(nil, []ml.Tensor{{Shape: []int{1, 1, 1}, Data: []float64{1}}}); ok {
		t.Error("AppendPredictions took a 3-D output; the generic path should")
	}
}
