package gbdt

import (
	"context"
	"testing"

	"github.com/kilnml/kiln/ml/train"
)

// BenchmarkGrowTree grows one depth-6 tree on 160,000 rows of the 30-feature
// comparison dataset, from the gradients of the base score, with 2 threads.
func BenchmarkGrowTree(b *testing.B) {
	fr := synthBinary(160000, 30, 1)
	in := &train.Input{Task: train.Binary, Train: fr, Threads: 2, Params: train.Params{"learning_rate": 0.1}}
	cfg, err := parseConfig(in)
	if err != nil {
		b.Fatal(err)
	}
	bo := newBooster(in, cfg, 1)
	defer bo.w.close()
	lossAndGrad(in.Task, 1, bo.margin, fr.Y, bo.gh, bo.w)
	bo.sampleRows()
	feats := bo.usableFeatures()
	b.ResetTimer()
	for b.Loop() {
		n := copy(bo.grow.rows, bo.sample)
		if _, err := bo.grow.grow(context.Background(), n, bo.gh[0], feats); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkQuantize bins 160,000 rows of 30 features with 2 threads.
func BenchmarkQuantize(b *testing.B) {
	fr := synthBinary(160000, 30, 1)
	w := newWorkers(2)
	defer w.close()
	for b.Loop() {
		quantize(fr, 256, w)
	}
}

// BenchmarkLossAndGrad computes the binary log loss and gradients of
// 160,000 rows with 2 threads.
func BenchmarkLossAndGrad(b *testing.B) {
	fr := synthBinary(160000, 30, 1)
	margins := make([]float64, fr.Rows)
	for i := range margins {
		margins[i] = float64(i%200)/50 - 2
	}
	gh := [][]ghPair{make([]ghPair, fr.Rows)}
	w := newWorkers(2)
	defer w.close()
	for b.Loop() {
		lossAndGrad(train.Binary, 1, margins, fr.Y, gh, w)
	}
}

// BenchmarkTrainComparison trains Kiln's side of TestCompareXGBoost (160,000
// rows of the 200,000 x 30 dataset, 200 trees of depth 6, learning rate 0.1,
// 2 threads, validation loss every round) without needing XGBoost:
//
//	go test ./ml/train/gbdt -run XXX -bench TrainComparison -benchtime 3x
func BenchmarkTrainComparison(b *testing.B) {
	tr, va := splitFrame(synthBinary(compareRows, compareCols, 1), 0.8)
	in := &train.Input{
		Task: train.Binary, Train: tr, Valid: va, Threads: compareThreads,
		Params: train.Params{"n_estimators": float64(compareRounds), "max_depth": 6.0, "learning_rate": 0.1},
	}
	for b.Loop() {
		if _, err := Train(context.Background(), in); err != nil {
			b.Fatal(err)
		}
	}
}
