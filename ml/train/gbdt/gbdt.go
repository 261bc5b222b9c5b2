package gbdt

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/kilnml/kiln/ml/internal/xgbobj"
	"github.com/kilnml/kiln/ml/train"
)

// Format is the ml format name of the models Train writes.
const Format = "xgboost-json"

// Params are the parameters Train takes, named as XGBoost's scikit-learn
// API names them where it has the same parameter:
//
//	n_estimators           boosting rounds (default 100); a multiclass round grows a tree per class
//	learning_rate          shrinkage of every leaf, XGBoost's eta (default 0.3, in (0, 1])
//	max_depth              largest depth of a tree (default 6; 0 = no limit, only with max_leaves)
//	max_leaves             most leaves of a tree (default 0 = no limit); when set, trees grow
//	                       best-first (XGBoost's lossguide), else level by level (depthwise)
//	min_child_weight       smallest hessian sum of a child (default 1)
//	lambda                 L2 penalty on leaf weights (default 1)
//	gamma                  smallest gain of a split, XGBoost's min_split_loss (default 0)
//	subsample              fraction of the rows each round samples (default 1, in (0, 1])
//	colsample              fraction of the features each tree samples (default 1, in (0, 1])
//	early_stopping_rounds  stop when the validation loss has not improved for this many
//	                       rounds and keep the best round's trees (default 0 = off; needs Valid)
//	max_bin                most bins per feature (default 256, 2 to 256)
//	objective              XGBoost's objective; it must be the task's: reg:squarederror,
//	                       binary:logistic or multi:softprob
var Params = []string{
	"n_estimators", "learning_rate", "max_depth", "max_leaves", "min_child_weight",
	"lambda", "gamma", "subsample", "colsample", "early_stopping_rounds", "max_bin", "objective",
}

// config is the parameters, checked.
type config struct {
	objective      string
	rounds         int
	eta            float64
	maxDepth       int
	maxLeaves      int
	minChildWeight float64
	lambda         float64
	gamma          float64
	subsample      float64
	colsample      float64
	earlyStop      int
	maxBin         int
}

func parseConfig(in *train.Input) (*config, error) {
	p := in.Params
	if err := p.Check(Params...); err != nil {
		return nil, err
	}
	want, _, ok := objectiveOf(in.Task)
	if !ok {
		return nil, fmt.Errorf("%w: task %q is not one of %s, %s, %s", train.ErrParam, in.Task, train.Regression, train.Binary, train.Multiclass)
	}
	c := &config{}
	var err error
	inf := math.Inf(1)
	for _, step := range []func() error{
		func() error {
			c.objective, err = p.String("objective", want, "reg:squarederror", "binary:logistic", "multi:softprob")
			if err == nil && c.objective != want {
				err = fmt.Errorf("%w: objective %s does not fit the task %s, whose objective is %s", train.ErrParam, c.objective, in.Task, want)
			}
			return err
		},
		func() error { c.rounds, err = p.Int("n_estimators", 100, 1, 1_000_000); return err },
		func() error { c.eta, err = positiveFraction(p, "learning_rate", 0.3); return err },
		func() error { c.maxDepth, err = p.Int("max_depth", 6, 0, 63); return err },
		func() error { c.maxLeaves, err = p.Int("max_leaves", 0, 0, 1<<24); return err },
		func() error { c.minChildWeight, err = p.Float("min_child_weight", 1, 0, inf); return err },
		func() error { c.lambda, err = p.Float("lambda", 1, 0, inf); return err },
		func() error { c.gamma, err = p.Float("gamma", 0, 0, inf); return err },
		func() error { c.subsample, err = positiveFraction(p, "subsample", 1); return err },
		func() error { c.colsample, err = positiveFraction(p, "colsample", 1); return err },
		func() error { c.earlyStop, err = p.Int("early_stopping_rounds", 0, 0, 1_000_000); return err },
		func() error { c.maxBin, err = p.Int("max_bin", 256, 2, 256); return err },
	} {
		if err := step(); err != nil {
			return nil, err
		}
	}
	if c.maxDepth == 0 && c.maxLeaves == 0 {
		return nil, fmt.Errorf("%w: max_depth 0 (no limit) needs max_leaves to bound the tree", train.ErrParam)
	}
	if c.earlyStop > 0 && in.Valid == nil {
		return nil, fmt.Errorf("%w: early_stopping_rounds needs a validation set", train.ErrParam)
	}
	return c, nil
}

// positiveFraction reads a parameter in (0, 1].
func positiveFraction(p train.Params, name string, def float64) (float64, error) {
	v, err := p.Float(name, def, 0, 1)
	if err == nil && v == 0 {
		err = fmt.Errorf("%w: %s must be greater than 0 and at most 1, not 0", train.ErrParam, name)
	}
	return v, err
}

// maxTarget bounds a regression target: a tenth of float32's largest value,
// so that sums of outputs near the targets stay finite in float32.
const maxTarget = 3e37

// checkData checks the frames against the task and returns the number of
// outputs per row (classes for multiclass, else 1).
func checkData(in *train.Input) (int, error) {
	k := 1
	switch in.Task {
	case train.Binary:
		if len(in.Classes) != 0 && len(in.Classes) != 2 {
			return 0, fmt.Errorf("%w: a binary task has 2 classes, not %d", train.ErrData, len(in.Classes))
		}
	case train.Multiclass:
		k = len(in.Classes)
		if k < 2 {
			return 0, fmt.Errorf("%w: a multiclass task needs at least 2 classes, not %d", train.ErrData, k)
		}
	}
	if in.Train == nil {
		return 0, fmt.Errorf("%w: no training frame", train.ErrData)
	}
	if err := checkFrame("training", in.Train, in.Task, k); err != nil {
		return 0, err
	}
	if in.Train.Cols < 1 {
		return 0, fmt.Errorf("%w: the training frame has no features", train.ErrData)
	}
	if in.Valid != nil {
		if err := checkFrame("validation", in.Valid, in.Task, k); err != nil {
			return 0, err
		}
		if in.Valid.Cols != in.Train.Cols {
			return 0, fmt.Errorf("%w: the validation frame has %d features, the training frame %d", train.ErrData, in.Valid.Cols, in.Train.Cols)
		}
	}
	return k, nil
}

func checkFrame(which string, f *train.Frame, task train.Task, k int) error {
	if f.Rows < 1 {
		return fmt.Errorf("%w: the %s frame has no rows", train.ErrData, which)
	}
	if f.Cols < 0 || len(f.X) != f.Rows*f.Cols || len(f.Y) != f.Rows {
		return fmt.Errorf("%w: the %s frame has %d rows and %d columns but %d values and %d targets",
			train.ErrData, which, f.Rows, f.Cols, len(f.X), len(f.Y))
	}
	if f.Rows >= math.MaxUint32 {
		return fmt.Errorf("%w: the %s frame has %d rows; at most %d fit", train.ErrData, which, f.Rows, math.MaxUint32-1)
	}
	for i, y := range f.Y {
		// A regression target must fit float32, in which XGBoost adds up
		// a model's outputs.
		ok := math.Abs(y) <= maxTarget
		switch task {
		case train.Binary:
			ok = y == 0 || y == 1
		case train.Multiclass:
			ok = y >= 0 && y < float64(k) && y == math.Trunc(y)
		}
		if !ok {
			return fmt.Errorf("%w: %s row %d has target %v, which does not fit a %s task with %d classes", train.ErrData, which, i, y, task, k)
		}
	}
	return nil
}

// Train fits gradient-boosted trees to in.Train and returns the model as
// XGBoost JSON (Format). See the package documentation for the algorithm.
// It returns ctx.Err() when ctx is done before it finishes, an error
// wrapping train.ErrParam for a bad parameter and one wrapping
// train.ErrData for data that does not fit the task.
func Train(ctx context.Context, in *train.Input) (*train.Output, error) {
	b, err := fit(ctx, in)
	if err != nil {
		return nil, err
	}
	model, err := b.model.marshal()
	if err != nil {
		return nil, fmt.Errorf("gbdt: writing the model: %w", err)
	}
	eval, margins := in.Train, b.margin
	if b.valid != nil {
		eval, margins = in.Valid, b.valid.bestMargin
	}
	return &train.Output{
		Model:   model,
		Format:  Format,
		Metrics: train.Evaluate(in.Task, b.k, eval.Y, b.outputs(margins)),
	}, nil
}

// fit checks the input and boosts. The booster it returns holds the model
// and its margins on the training and validation rows.
func fit(ctx context.Context, in *train.Input) (*booster, error) {
	if in == nil {
		return nil, fmt.Errorf("%w: no input", train.ErrData)
	}
	cfg, err := parseConfig(in)
	if err != nil {
		return nil, err
	}
	k, err := checkData(in)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b := newBooster(in, cfg, k)
	defer b.w.close()
	if err := b.run(ctx); err != nil {
		return nil, err
	}
	return b, nil
}

// booster runs the boosting rounds.
type booster struct {
	in   *train.Input
	cfg  *config
	k    int // outputs per row
	w    *workers
	loss string // "rmse" or "logloss"
	obj  xgbobj.Objective

	bins   *binMatrix
	margin []float64  // training margins, k per row
	gh     [][]ghPair // gradient pairs per output and row
	grow   *grower
	rng    *rand.Rand
	sample []uint32 // this round's rows, ascending
	valid  *evalSet
	model  *ensemble
}

// evalSet is the validation frame as float32 rows, with its margins.
type evalSet struct {
	rows, cols int
	x          []float32
	y          []float64
	margin     []float64
	bestMargin []float64 // the margins of the model Train returns
}

func newBooster(in *train.Input, cfg *config, k int) *booster {
	// More goroutines than the runtime runs at once would only spin
	// against each other; the model does not depend on their number.
	threads := min(max(in.Threads, 1), runtime.GOMAXPROCS(0))
	obj, _ := xgbobj.ByName(cfg.objective)
	_, loss, _ := objectiveOf(in.Task)
	b := &booster{
		in:   in,
		cfg:  cfg,
		k:    k,
		w:    newWorkers(threads),
		loss: loss,
		obj:  obj,
		// A fixed stream, so that the same Seed samples the same rows and
		// features whatever else changes.
		rng: rand.New(rand.NewPCG(in.Seed, 0x6b696c6e67626474)),
	}
	fr := in.Train
	b.bins = quantize(fr, cfg.maxBin, b.w)
	grid := leafGrid(in.Task, fr.Y)
	b.grow = newGrower(b.bins, cfg, b.w, grid)

	base := baseScore(in.Task, fr.Y, grid)
	e := &ensemble{
		task:       in.Task,
		objective:  cfg.objective,
		numClass:   k,
		numFeature: fr.Cols,
		baseScore:  strconv.FormatFloat(float64(base), 'g', -1, 32),
	}
	// The margin is computed from the string the file holds, as a loader
	// computes it, so the trainer's margins are the loaded model's.
	v, _ := strconv.ParseFloat(e.baseScore, 64)
	e.baseMargin, _ = obj.BaseMargin(v, 1, 7)
	if names := fr.FeatureNames; validFeatureNames(names, fr.Cols) {
		e.featureNames = slices.Clone(names)
	}
	b.model = e

	b.margin = make([]float64, fr.Rows*k)
	for i := range b.margin {
		b.margin[i] = e.baseMargin
	}
	b.gh = make([][]ghPair, k)
	for c := range b.gh {
		b.gh[c] = make([]ghPair, fr.Rows)
	}
	if v := in.Valid; v != nil {
		s := &evalSet{rows: v.Rows, cols: v.Cols, x: make([]float32, len(v.X)), y: v.Y, margin: make([]float64, v.Rows*k)}
		for i, x := range v.X {
			s.x[i] = float32(x)
		}
		for i := range s.margin {
			s.margin[i] = e.baseMargin
		}
		s.bestMargin = s.margin
		if cfg.earlyStop > 0 {
			s.bestMargin = slices.Clone(s.margin)
		}
		b.valid = s
	}
	return b
}

// baseScore is the model's starting prediction, in output space: for
// regression about the mean target, a multiple of the leaf grid whose
// shortest float32 decimal (as the file writes it) is exact, so that Kiln's
// float64 parse and XGBoost's float32 parse read the same number; 0.5 (a
// margin of exactly 0) for binary and multiclass, as XGBoost 1.7 does. For
// multiclass any value gives every class the same start; for binary a
// margin of exactly 0 keeps XGBoost's float32 sums exact (see leafGrid),
// where the logit of the share of positives would be rounded differently by
// XGBoost and Kiln.
func baseScore(task train.Task, y []float64, grid float64) float32 {
	if task != train.Regression {
		return 0.5
	}
	var sum float64
	for _, v := range y {
		sum += v
	}
	mean := sum / float64(len(y))
	// Coarser grids give shorter decimals; 0 ends the search at the latest.
	for g := grid; ; g *= 2 {
		v := onGrid(mean, g) + 0 // + 0 turns -0 into 0
		if p, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'g', -1, 32), 64); p == v {
			return float32(v)
		}
	}
}

// leafGrid returns the power of two every leaf value and the regression
// base score are rounded to. XGBoost sums a row's leaf values in float32,
// Kiln in float64; when every term is a multiple of 2^(e-24) and the
// partial sums stay below 2^e, both sums are exact and so agree bit for
// bit, whatever the number of trees. e is chosen so that 2^e is at least
// twice the largest |target| for regression (a model's outputs stay near
// the range of its targets) and 8 for classification (beyond a margin of 8
// the slope of the sigmoid is below 3.4e-4, so the float32 rounding that
// resumes there moves a probability by less than 1e-8). Rounding moves each
// leaf by at most half the grid, 2^-22 for classification: far below
// anything boosting resolves. For regression it is about one float32 step
// of the largest target, the precision XGBoost's float32 sums have anyway.
func leafGrid(task train.Task, y []float64) float64 {
	bound := 8.0
	if task == train.Regression {
		bound = 0
		for _, v := range y {
			bound = max(bound, 2*math.Abs(v))
		}
	}
	e := -100
	if bound > 0 {
		e = max(e, int(math.Ceil(math.Log2(bound))))
	}
	return math.Ldexp(1, e-24)
}

// validFeatureNames reports whether names can go in the model: one per
// feature, unique, non-empty, without the characters XGBoost refuses in a
// feature name ([, ] and <).
func validFeatureNames(names []string, cols int) bool {
	if len(names) != cols {
		return false
	}
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if n == "" || seen[n] || strings.ContainsAny(n, "[]<") {
			return false
		}
		seen[n] = true
	}
	return true
}

// run boosts cfg.rounds rounds, or fewer when early stopping ends it.
func (b *booster) run(ctx context.Context) error {
	cfg, k := b.cfg, b.k
	y := b.in.Train.Y
	lossAndGrad(b.in.Task, k, b.margin, y, b.gh, b.w)
	usable := b.usableFeatures()
	var (
		best      = math.Inf(1)
		bestRound = -1
	)
	for round := range cfg.rounds {
		if err := ctx.Err(); err != nil {
			return err
		}
		b.sampleRows()
		for c := range k {
			if err := ctx.Err(); err != nil {
				return err
			}
			n := copy(b.grow.rows, b.sample)
			t, err := b.grow.grow(ctx, n, b.gh[c], b.sampleFeatures(usable))
			if err != nil {
				return err
			}
			t.group = c
			b.addTree(t)
		}
		last := round == cfg.rounds-1
		gh := b.gh
		if last {
			gh = nil
		}
		b.report(round, "train_"+b.loss, lossAndGrad(b.in.Task, k, b.margin, y, gh, b.w))
		v := b.valid
		if v == nil {
			continue
		}
		loss := lossAndGrad(b.in.Task, k, v.margin, v.y, nil, b.w)
		b.report(round, "valid_"+b.loss, loss)
		if cfg.earlyStop == 0 {
			continue
		}
		if loss < best {
			best, bestRound = loss, round
			copy(v.bestMargin, v.margin)
		} else if round-bestRound >= cfg.earlyStop {
			break
		}
	}
	if cfg.earlyStop > 0 && bestRound >= 0 {
		b.model.trees = b.model.trees[:(bestRound+1)*k]
	}
	return nil
}

func (b *booster) report(round int, name string, v float64) {
	if b.in.Report != nil {
		b.in.Report(train.Point{Step: round + 1, Name: name, Value: v})
	}
}

// usableFeatures returns the features a split can use: those with two bins,
// or with missing values and a value to split them from.
func (b *booster) usableFeatures() []int {
	var out []int
	for f := range b.bins.cols {
		if b.bins.numBins(f) > 1 || (b.bins.missCode[f] >= 0 && b.bins.lowOK[f]) {
			out = append(out, f)
		}
	}
	return out
}

// sampleRows draws this round's rows: each row with probability subsample,
// as XGBoost's uniform sampling does (all rows when subsample is 1).
func (b *booster) sampleRows() {
	n := b.bins.rows
	b.sample = b.sample[:0]
	if b.cfg.subsample >= 1 {
		for r := range n {
			b.sample = append(b.sample, uint32(r))
		}
		return
	}
	for r := range n {
		if b.rng.Float64() < b.cfg.subsample {
			b.sample = append(b.sample, uint32(r))
		}
	}
}

// sampleFeatures draws a tree's features: max(1, colsample*cols) of all
// features, chosen uniformly, of which it returns the usable ones,
// ascending.
func (b *booster) sampleFeatures(usable []int) []int {
	if b.cfg.colsample >= 1 {
		return usable
	}
	cols := b.bins.cols
	take := max(1, int(b.cfg.colsample*float64(cols)))
	perm := make([]int, cols)
	for i := range perm {
		perm[i] = i
	}
	for i := range take {
		j := i + b.rng.IntN(cols-i)
		perm[i], perm[j] = perm[j], perm[i]
	}
	chosen := perm[:take]
	slices.Sort(chosen)
	out := chosen[:0]
	for _, f := range chosen {
		if _, ok := slices.BinarySearch(usable, f); ok {
			out = append(out, f)
		}
	}
	return out
}

// addTree adds t's outputs to the training and validation margins and t to
// the model. The sampled training rows take their leaf's value from the
// grower's partition; the others are routed by their bin codes, which sends
// every row where the float32 comparison with the split conditions does.
func (b *booster) addTree(t *tree) {
	k, c := b.k, t.group
	b.grow.forLeaves(func(value float32, rows []uint32) {
		for _, r := range rows {
			b.margin[int(r)*k+c] += float64(value)
		}
	})
	if len(b.sample) < b.bins.rows {
		next := 0
		for r := range b.bins.rows {
			if next < len(b.sample) && int(b.sample[next]) == r {
				next++
				continue
			}
			b.margin[r*k+c] += float64(t.leafByCode(b.bins, r))
		}
	}
	if v := b.valid; v != nil {
		blocks := (v.rows + blockSize - 1) / blockSize
		b.w.run(blocks, func(blk int) {
			for r := blk * blockSize; r < min((blk+1)*blockSize, v.rows); r++ {
				v.margin[r*k+c] += float64(t.leaf(v.x[r*v.cols : (r+1)*v.cols]))
			}
		})
	}
	b.model.trees = append(b.model.trees, t)
}

// outputs turns margins (k per row) into the model's outputs.
func (b *booster) outputs(margins []float64) []float64 {
	out := make([]float64, len(margins))
	for r := 0; r < len(margins); r += b.k {
		b.obj.Transform(margins[r:r+b.k], out[r:r+b.k])
	}
	return out
}
