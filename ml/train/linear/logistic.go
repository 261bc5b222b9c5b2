package linear

import (
	"context"
	"math"

	linearfmt "github.com/kilnml/kiln/ml/linear"
	"github.com/kilnml/kiln/ml/train"
)

// LogisticParams are the parameters Logistic takes; see the package doc.
var LogisticParams = []string{"l2", "max_epochs", "tol", "standardize"}

// SoftmaxParams are the parameters Softmax takes; see the package doc.
var SoftmaxParams = []string{"l2", "max_epochs", "tol", "standardize"}

// Logistic fits a binary logistic regression with an L2 penalty by L-BFGS;
// see the package doc. The task must be train.Binary.
func Logistic(ctx context.Context, in *train.Input) (*train.Output, error) {
	return trainClassifier(ctx, in, "logistic", train.Binary, LogisticParams)
}

// Softmax fits a multinomial logistic regression with an L2 penalty by
// L-BFGS; see the package doc. The task must be train.Multiclass.
func Softmax(ctx context.Context, in *train.Input) (*train.Output, error) {
	return trainClassifier(ctx, in, "softmax", train.Multiclass, SoftmaxParams)
}

func trainClassifier(ctx context.Context, in *train.Input, name string, task train.Task, params []string) (*train.Output, error) {
	c, err := fitClassifier(ctx, in, name, task, params)
	if err != nil {
		return nil, err
	}
	return output(ctx, name, in, c.model(in))
}

// classifier is a fitted logistic or softmax regression in the space it was
// fitted in: the standardized features when mean is set.
type classifier struct {
	mean, scale []float64
	// k is the number of outputs: 1 (a sigmoid) or the number of classes.
	k, p int
	// params are the weights, k rows of p, then the k intercepts.
	params []float64
	epochs int
}

// fitClassifier reads the parameters, checks the data and fits.
func fitClassifier(ctx context.Context, in *train.Input, name string, task train.Task, params []string) (*classifier, error) {
	if err := in.Params.Check(params...); err != nil {
		return nil, err
	}
	n := 1
	if in.Train != nil {
		n = max(1, in.Train.Rows)
	}
	l2, err := in.Params.Float("l2", 1/float64(n), 0, math.MaxFloat64)
	if err != nil {
		return nil, err
	}
	maxEpochs, err := in.Params.Int("max_epochs", 100, 1, 100000)
	if err != nil {
		return nil, err
	}
	tol, err := in.Params.Float("tol", 1e-6, 0, 1)
	if err != nil {
		return nil, err
	}
	standardize, err := boolParam(in.Params, "standardize", true)
	if err != nil {
		return nil, err
	}
	if err := checkInput(name, in, task); err != nil {
		return nil, err
	}

	f := in.Train
	c := &classifier{k: len(in.Classes), p: f.Cols}
	if task == train.Binary {
		c.k = 1
	}
	if standardize {
		c.mean, c.scale = columnStats(f)
	}
	c.params = make([]float64, c.k*c.p+c.k)
	tr := c.problem(f, in.Threads)
	c.initIntercepts(tr.y, len(in.Classes))
	var va *problem
	if in.Valid != nil && in.Report != nil {
		va = c.problem(in.Valid, in.Threads)
	}

	weights := c.k * c.p // the penalized parameters come first
	obj := func(x, grad []float64) (float64, float64, error) {
		loss, err := tr.eval(ctx, x, grad)
		if err != nil {
			return 0, 0, err
		}
		var pen float64
		for i, w := range x[:weights] {
			pen += w * w
			grad[i] += l2 * w
		}
		return loss + l2/2*pen, loss, nil
	}
	after := func(epoch int, loss float64) error {
		if in.Report == nil {
			return nil
		}
		in.Report(train.Point{Step: epoch, Name: "train_logloss", Value: loss})
		if va == nil {
			return nil
		}
		vloss, err := va.eval(ctx, c.params, nil)
		if err != nil {
			return err
		}
		in.Report(train.Point{Step: epoch, Name: "valid_logloss", Value: vloss})
		return nil
	}
	c.epochs, err = minimize(ctx, obj, c.params, lbfgsSettings{maxIter: maxEpochs, tol: tol, after: after})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// initIntercepts starts the intercepts at the log odds of the classes'
// shares (each count plus ½, so an absent class stays finite), which is the
// optimum while the weights are zero and saves the first epochs finding it.
func (c *classifier) initIntercepts(y []int, classes int) {
	counts := make([]float64, classes)
	for _, v := range y {
		counts[v]++
	}
	b := c.params[c.k*c.p:]
	if c.k == 1 {
		b[0] = math.Log((counts[1] + 0.5) / (counts[0] + 0.5))
		return
	}
	var mean float64
	for i, n := range counts {
		b[i] = math.Log(n + 0.5)
		mean += b[i] / float64(classes)
	}
	for i := range b {
		b[i] -= mean // softmax ignores a shift; centered reads better
	}
}

// model writes c as an ml/linear model.
func (c *classifier) model(in *train.Input) *linearfmt.Model {
	kind := linearfmt.KindSoftmax
	if c.k == 1 {
		kind = linearfmt.KindLogistic
	}
	w := make([][]float64, c.k)
	for j := range w {
		w[j] = c.params[j*c.p : (j+1)*c.p]
	}
	return &linearfmt.Model{
		Kind:         kind,
		NFeatures:    c.p,
		FeatureNames: in.Train.FeatureNames,
		Classes:      in.Classes,
		Scaler:       scaler(c.mean, c.scale),
		Layers:       []linearfmt.Layer{{Weights: w, Bias: c.params[c.k*c.p:]}},
	}
}

// problem is a frame's rows as the classifier sees them.
type problem struct {
	z       []float64 // features, transformed, row-major
	y       []int
	n, p, k int
	threads int
	// partial holds each row block's loss and then its gradient.
	partial []float64
}

func (c *classifier) problem(f *train.Frame, threads int) *problem {
	y := make([]int, f.Rows)
	for i, v := range f.Y {
		y[i] = int(v)
	}
	return &problem{z: transform(f, c.mean, c.scale), y: y, n: f.Rows, p: f.Cols, k: c.k, threads: threads}
}

// partialBudget bounds the per-block partial sums, in float64s (32 MiB):
// a wide softmax gets fewer, larger blocks.
const partialBudget = 1 << 22

// eval returns the mean log loss of the rows under params and, when grad is
// not nil, writes its gradient there.
func (pr *problem) eval(ctx context.Context, params, grad []float64) (float64, error) {
	stride := 1 + len(params)
	nb, size := blocks(pr.n, max(1, partialBudget/stride))
	if len(pr.partial) < nb*stride {
		pr.partial = make([]float64, nb*stride)
	}
	err := parallel(ctx, pr.threads, nb, func(b int) {
		part := pr.partial[b*stride : (b+1)*stride]
		clear(part)
		g := part[1:]
		r := make([]float64, pr.k)
		var loss float64
		for i := b * size; i < min((b+1)*size, pr.n); i++ {
			z := pr.z[i*pr.p : (i+1)*pr.p]
			loss += pr.residual(params, z, pr.y[i], r)
			if grad == nil {
				continue
			}
			for c, rc := range r {
				axpy(rc, z, g[c*pr.p:(c+1)*pr.p])
				g[pr.k*pr.p+c] += rc
			}
		}
		part[0] = loss
	})
	if err != nil {
		return 0, err
	}
	var loss float64
	if grad != nil {
		clear(grad)
	}
	for b := range nb {
		part := pr.partial[b*stride : (b+1)*stride]
		loss += part[0]
		if grad != nil {
			axpy(1, part[1:], grad)
		}
	}
	inv := 1 / float64(pr.n)
	if grad != nil {
		scale(inv, grad)
	}
	return loss * inv, nil
}

// logits writes the row's scores into s, summed in the order the ml/linear
// runtime sums them.
func (pr *problem) logits(params, z, s []float64) {
	for c := range s {
		s[c] = dot(params[c*pr.p:(c+1)*pr.p], z) + params[pr.k*pr.p+c]
	}
}

// residual sets r to the row's predicted probabilities less its one-hot
// target (for a sigmoid, p − y), and returns the row's log loss, computed
// from the scores so that it stays finite however confident the model.
func (pr *problem) residual(params, z []float64, y int, r []float64) float64 {
	pr.logits(params, z, r)
	if pr.k == 1 {
		s := r[0]
		softplus := max(s, 0) + math.Log1p(math.Exp(-math.Abs(s)))
		r[0] = sigmoid(s) - float64(y)
		return softplus - float64(y)*s
	}
	lse := logSumExp(r)
	loss := lse - r[y]
	for c := range r {
		r[c] = math.Exp(r[c] - lse)
	}
	r[y]--
	return loss
}

// probabilities writes the row's predicted probabilities into out: P(class
// 1) for a sigmoid, one per class for a softmax.
func (pr *problem) probabilities(params, z, out []float64) {
	pr.logits(params, z, out)
	if pr.k == 1 {
		out[0] = sigmoid(out[0])
		return
	}
	lse := logSumExp(out)
	for c := range out {
		out[c] = math.Exp(out[c] - lse)
	}
}

// sigmoid is 1/(1+e^-v), never overflowing, as the runtime computes it.
func sigmoid(v float64) float64 {
	if v >= 0 {
		return 1 / (1 + math.Exp(-v))
	}
	e := math.Exp(v)
	return e / (1 + e)
}

func logSumExp(s []float64) float64 {
	m := s[0]
	for _, v := range s[1:] {
		m = max(m, v)
	}
	var sum float64
	for _, v := range s {
		sum += math.Exp(v - m)
	}
	return m + math.Log(sum)
}
