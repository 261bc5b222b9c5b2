package ml

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
)

func TestTensor_Check(t *testing.T) {
	for _, tc := range []struct {
		name string
		t    Tensor
		ok   bool
	}{
		{"matches", Tensor{Shape: []int{2, 3}, Data: make([]float64, 6)}, true},
		{"scalar", Tensor{Data: []float64{1}}, true},
		{"empty batch", Tensor{Shape: []int{0, 3}}, true},
		{"short data", Tensor{Shape: []int{2, 3}, Data: make([]float64, 5)}, false},
		{"negative dim", Tensor{Shape: []int{-1, 3}, Data: make([]float64, 3)}, false},
		{"overflowing shape", Tensor{Shape: []int{math.MaxInt / 2, 28}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.t.Check()
			if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrBadInput)) {
				t.Fatalf("Check() = %v, want ok=%v (errors wrapping ErrBadInput)", err, tc.ok)
			}
		})
	}
}

type panicky struct{}

func (panicky) Schema() Schema { return Schema{} }
func (panicky) Predict(context.Context, []Tensor) ([]Tensor, error) {
	panic("boom")
}

func TestGuard_TurnsPanicIntoError(t *testing.T) {
	_, err := Guard(context.Background(), panicky{}, nil)
	var pe *PanicError
	if !errors.As(err, &pe) || !errors.Is(err, ErrRuntime) {
		t.Fatalf("Guard = %v, want a *PanicError wrapping ErrRuntime", err)
	}
	if pe.Value != "boom" || len(pe.Stack) == 0 {
		t.Errorf("PanicError = %+v, want the value and a stack", pe)
	}
	if strings.Contains(err.Error(), "goroutine") || !strings.Contains(err.Error(), "boom") {
		t.Errorf("message %q should name the panic value and carry no stack", err)
	}
}

func TestTabularInput_Shapes(t *testing.T) {
	spec := TensorSpec{Name: "input", Shape: []int{-1, 3}}
	for _, tc := range []struct {
		name   string
		in     []Tensor
		rows   int
		errHas string
	}{
		{"batch", []Tensor{{Name: "input", Shape: []int{2, 3}, Data: make([]float64, 6)}}, 2, ""},
		{"unnamed", []Tensor{{Shape: []int{1, 3}, Data: make([]float64, 3)}}, 1, ""},
		{"one flat row", []Tensor{{Shape: []int{3}, Data: make([]float64, 3)}}, 1, ""},
		{"wrong width", []Tensor{{Shape: []int{1, 2}, Data: make([]float64, 2)}}, 0, "[n, 3]"},
		{"wrong name", []Tensor{{Name: "x", Shape: []int{1, 3}, Data: make([]float64, 3)}}, 0, `unknown input "x"`},
		{"two inputs", []Tensor{{}, {}}, 0, "one input"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows, _, err := TabularInput(tc.in, spec, 3)
			if tc.errHas == "" {
				if err != nil || rows != tc.rows {
					t.Fatalf("TabularInput = %d, %v; want %d rows", rows, err, tc.rows)
				}
				return
			}
			if !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("TabularInput error %v, want ErrBadInput mentioning %q", err, tc.errHas)
			}
		})
	}
}

func TestNoMissing_NamesRowAndFeature(t *testing.T) {
	if err := NoMissing("linear", []float64{1, 2, 3, 4}, 2); err != nil {
		t.Fatal(err)
	}
	err := NoMissing("linear", []float64{1, 2, 3, math.NaN()}, 2)
	if !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), "row 1 feature 1") {
		t.Fatalf("NoMissing = %v, want ErrBadInput naming row 1 feature 1", err)
	}
}
