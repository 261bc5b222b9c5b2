package xgbobj

import (
	"math"
	"strings"
	"testing"
)

func logit(p float64) float64 { return math.Log(p / (1 - p)) }

func TestByName_KnownAndUnknown(t *testing.T) {
	tests := []struct {
		name string
		want Objective
		ok   bool
	}{
		{"reg:squarederror", Identity, true},
		{"reg:linear", Identity, true},
		{"binary:logistic", Logistic, true},
		{"reg:logistic", Logistic, true},
		{"binary:logitraw", LogitRaw, true},
		{"count:poisson", Log, true},
		{"reg:tweedie", Log, true},
		{"multi:softprob", Softprob, true},
		{"multi:softmax", Softmax, true},
		{"rank:pairwise", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ByName(tt.name)
			if got != tt.want || ok != tt.ok {
				t.Errorf("ByName(%q) = %v, %v; want %v, %v", tt.name, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestSupported_SortedAndComplete(t *testing.T) {
	got := Supported()
	want := "binary:logistic, binary:logitraw, count:poisson, multi:softmax, multi:softprob, " +
		"reg:absoluteerror, reg:gamma, reg:linear, reg:logistic, reg:pseudohubererror, " +
		"reg:squarederror, reg:tweedie"
	if got != want {
		t.Errorf("Supported() = %q, want %q", got, want)
	}
	for _, name := range strings.Split(got, ", ") {
		if _, ok := ByName(name); !ok {
			t.Errorf("Supported lists %q, which ByName does not know", name)
		}
	}
}

func TestObjective_BaseMargin(t *testing.T) {
	tests := []struct {
		name         string
		obj          Objective
		v            float64
		major, minor int
		want         float64
		err          string // a substring of the error; "" for none
	}{
		{"identity keeps the value", Identity, 0.5, 1, 0, 0.5, ""},
		{"softprob keeps the value", Softprob, -1, 2, 0, -1, ""},
		{"logistic takes the logit", Logistic, 0.6, 1, 0, logit(0.6), ""},
		{"logistic clamps 0 to 1e-6", Logistic, 0, 2, 0, logit(1e-6), ""},
		{"logistic clamps 1 to 1-1e-6", Logistic, 1, 2, 0, logit(1 - 1e-6), ""},
		{"logistic below 0", Logistic, -0.1, 1, 0, 0, "must be in [0, 1]"},
		{"logistic above 1", Logistic, 1.5, 1, 0, 0, "must be in [0, 1]"},
		{"logitraw 1.3 takes the logit", LogitRaw, 0.2, 1, 3, logit(0.2), ""},
		{"logitraw 0.90 takes the logit", LogitRaw, 0.2, 0, 90, logit(0.2), ""},
		{"logitraw 1.3 checks the range", LogitRaw, 2, 1, 3, 0, "must be in [0, 1]"},
		{"logitraw 1.4 keeps the value", LogitRaw, 0.2, 1, 4, 0.2, ""},
		{"logitraw 2.0 keeps the value", LogitRaw, 2, 2, 0, 2, ""},
		{"log link takes the log", Log, 2, 1, 0, math.Log(2), ""},
		{"log link at 0", Log, 0, 1, 0, 0, "must be positive"},
		{"log link below 0", Log, -1, 1, 0, 0, "must be positive"},
		{"NaN", Identity, math.NaN(), 1, 0, 0, "must be finite"},
		{"+Inf with logitraw 1.4", LogitRaw, math.Inf(1), 1, 4, 0, "must be finite"},
		{"-Inf", Log, math.Inf(-1), 1, 0, 0, "must be finite"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.obj.BaseMargin(tt.v, tt.major, tt.minor)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("BaseMargin(%v) = %v, %v; want an error containing %q", tt.v, got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("BaseMargin(%v): %v", tt.v, err)
			}
			if got != tt.want {
				t.Errorf("BaseMargin(%v) = %v, want %v", tt.v, got, tt.want)
			}
		})
	}
}

func TestObjective_Transform(t *testing.T) {
	e := math.E
	tests := []struct {
		name   string
		obj    Objective
		margin []float64
		want   []float64
	}{
		{"identity copies", Identity, []float64{-1.5, 2}, []float64{-1.5, 2}},
		{"logitraw copies", LogitRaw, []float64{-3}, []float64{-3}},
		{"sigmoid", Logistic, []float64{0, math.Log(3)}, []float64{0.5, 0.75}},
		{"sigmoid saturates without NaN", Logistic, []float64{-1000, 1000}, []float64{0, 1}},
		{"exp", Log, []float64{0, 1}, []float64{1, e}},
		{"softmax probabilities", Softprob, []float64{0, math.Log(3)}, []float64{0.25, 0.75}},
		{"softmax of large margins stays finite", Softprob, []float64{1000, 1000 + math.Log(3)}, []float64{0.25, 0.75}},
		{"argmax", Softmax, []float64{0.1, 2, -1}, []float64{1}},
		{"argmax takes the first on ties", Softmax, []float64{3, 1, 3}, []float64{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if w := tt.obj.Width(len(tt.margin)); w != len(tt.want) {
				t.Fatalf("Width(%d) = %d, want %d", len(tt.margin), w, len(tt.want))
			}
			out := make([]float64, len(tt.want))
			tt.obj.Transform(tt.margin, out)
			for k := range tt.want {
				if math.Abs(out[k]-tt.want[k]) > 1e-12 {
					t.Errorf("Transform(%v) = %v, want %v", tt.margin, out, tt.want)
					break
				}
			}
		})
	}
}
