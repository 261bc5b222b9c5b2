package node

import (
	"context"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/ml/dataset"
	"github.com/kilnml/kiln/ml/drift"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// maxDriftRows bounds the logged rows one node gives a drift check.
const maxDriftRows = 2_000_000

// driftCheck tests a deployment's logged window against its monitor's
// reference, feature by feature and for the predictions. It does not
// record the check.
func (a *Agent) driftCheck(ctx context.Context, m *structs.Monitor, now time.Time) (*structs.DriftCheck, error) {
	start := time.Now()
	c := &structs.DriftCheck{Deployment: m.Spec.Deployment, CheckedAt: now.UTC(), From: now.Add(-m.Spec.WindowSpan()).UTC(), To: now.UTC(),
		Reference: m.Reference, Features: []structs.FeatureDrift{}}
	cols, missing, err := a.logWindow(ctx, m.Spec.Deployment, c.From, c.To.Add(time.Nanosecond), maxDriftRows)
	if err != nil {
		return nil, err
	}
	c.Samples, c.NodesMissing = cols.Rows, missing
	defer func() { c.DurationMS = time.Since(start).Milliseconds() }()
	if cols.Rows < m.Spec.MinSamples {
		c.Skipped = fmt.Sprintf("the window holds %d logged rows, fewer than min_samples %d", cols.Rows, m.Spec.MinSamples)
		return c, nil
	}
	if len(cols.Features) != len(m.Columns) {
		c.Skipped = fmt.Sprintf("the logged rows have %d input values, the monitor names %d columns", len(cols.Features), len(m.Columns))
		return c, nil
	}
	ref, err := a.references.get(ctx, a, m.Reference)
	if err != nil {
		return nil, err
	}
	c.Features = make([]structs.FeatureDrift, len(m.Columns))
	var wg sync.WaitGroup
	next := make(chan int)
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				c.Features[j] = ref.compare(m, m.Columns[j], cols.Features[j])
			}
		}()
	}
	for j := range m.Columns {
		next <- j
	}
	close(next)
	wg.Wait()
	drifted, tested := 0, 0
	for _, f := range c.Features {
		if f.Error == "" {
			tested++
			if f.Drift {
				drifted++
			}
		}
	}
	if tested > 0 {
		c.ShareDrifted = float64(drifted) / float64(tested)
	}
	c.Prediction = a.predictionDrift(ctx, m, ref, cols.Outputs)
	return c, nil
}

// reference is a dataset version's sample, ready for tests: numeric
// columns sorted, categorical ones counted.
type reference struct {
	sample *dataset.Sample

	mu     sync.Mutex
	sorted map[string][]float64
	counts map[string]map[string]float64
	// preds caches the model's predictions on the sample, by model:version.
	preds map[string]*structs.FeatureDrift
	out   map[string][]float64
}

func (r *reference) column(name string) *dataset.SampleColumn {
	for i := range r.sample.Columns {
		if r.sample.Columns[i].Name == name {
			return &r.sample.Columns[i]
		}
	}
	return nil
}

// compare tests one feature's logged values against the reference.
func (r *reference) compare(m *structs.Monitor, name string, cur []float64) structs.FeatureDrift {
	col := r.column(name)
	if col == nil {
		return structs.FeatureDrift{Name: name, Error: "the reference sample has no such column"}
	}
	if col.Num != nil {
		return numericDrift(name, m.Spec.NumericTest, r.sortedColumn(name, col.Num), drift.SortClean(cur), m.Spec.Alpha)
	}
	return categoricalDrift(name, m.Spec.CategoricalTest, r.countColumn(name, col.Text), countFloats(cur), m.Spec.Alpha)
}

func (r *reference) sortedColumn(name string, num []float64) []float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.sorted[name]
	if !ok {
		s = drift.SortClean(num)
		r.sorted[name] = s
	}
	return s
}

func (r *reference) countColumn(name string, text []string) map[string]float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.counts[name]
	if !ok {
		c = map[string]float64{}
		for _, v := range text {
			if v != "" {
				c[v]++
			}
		}
		r.counts[name] = c
	}
	return c
}

// countFloats counts values as categories, written as the reference's
// text writes numbers (strconv's shortest form).
func countFloats(v []float64) map[string]float64 {
	out := map[string]float64{}
	for _, x := range v {
		if !math.IsNaN(x) {
			out[strconv.FormatFloat(x, 'g', -1, 64)]++
		}
	}
	return out
}

func numericDrift(name, test string, ref, cur []float64, alpha float64) structs.FeatureDrift {
	if len(ref) == 0 || len(cur) == 0 {
		return structs.FeatureDrift{Name: name, Test: test, Error: fmt.Sprintf("no values to test (reference %d, window %d)", len(ref), len(cur))}
	}
	res, err := drift.CompareNumeric(test, ref, cur, alpha)
	return featureDrift(name, res, err)
}

func categoricalDrift(name, test string, ref, cur map[string]float64, alpha float64) structs.FeatureDrift {
	if len(ref) == 0 || len(cur) == 0 {
		return structs.FeatureDrift{Name: name, Test: test, Error: "no values to test"}
	}
	res, err := drift.CompareCategorical(test, ref, cur, alpha)
	return featureDrift(name, res, err)
}

func featureDrift(name string, res drift.Result, err error) structs.FeatureDrift {
	if err != nil {
		return structs.FeatureDrift{Name: name, Test: res.Test, Error: err.Error()}
	}
	return structs.FeatureDrift{Name: name, Test: res.Test, Statistic: res.Statistic, PValue: res.PValue, Threshold: res.Threshold,
		Drift: res.Drift, Reference: res.Reference, Current: res.Current}
}

// predictionDrift tests the logged predictions against the model's own
// predictions on the reference sample: a change in what the model answers,
// whatever its inputs did. A first output of one value per row is tested
// as a number, one of several (class scores) as the class it picks. It is
// nil when the model cannot be run here (a process, or a format Kiln does
// not load in-process) or the window has no outputs.
func (a *Agent) predictionDrift(ctx context.Context, m *structs.Monitor, ref *reference, out [][]float64) *structs.FeatureDrift {
	if len(out) == 0 || len(out[0]) == 0 {
		return nil
	}
	refOut, err := a.referencePredictions(ctx, m, ref, len(out))
	if err != nil {
		return &structs.FeatureDrift{Name: "prediction", Error: err.Error()}
	}
	if len(out) == 1 {
		f := numericDrift("prediction", m.Spec.NumericTest, refOut, drift.SortClean(out[0]), m.Spec.Alpha)
		return &f
	}
	rows := len(out[0])
	cur := map[string]float64{}
	for i := range rows {
		best := 0
		for j := range out {
			if out[j][i] > out[best][i] {
				best = j
			}
		}
		cur[strconv.Itoa(best)]++
	}
	refCounts := map[string]float64{}
	for _, c := range refOut {
		refCounts[strconv.Itoa(int(c))]++
	}
	f := categoricalDrift("prediction", m.Spec.CategoricalTest, refCounts, cur, m.Spec.Alpha)
	return &f
}

// referencePredictions scores the reference sample with the deployment's
// main version (the largest weight), once per version: sorted values for
// one output value per row, the picked class for several.
func (a *Agent) referencePredictions(ctx context.Context, m *structs.Monitor, ref *reference, width int) ([]float64, error) {
	txn := a.fsm.ReadTxn()
	d, err := txn.Deployment(m.Spec.Deployment)
	if err != nil {
		txn.Discard()
		return nil, err
	}
	main := d.Traffic.Versions[0]
	for _, s := range d.Traffic.Versions {
		if s.Weight > main.Weight {
			main = s
		}
	}
	mv, err := txn.Version(m.Spec.Deployment, main.Version)
	txn.Discard()
	if err != nil {
		return nil, err
	}
	key := fmt.Sprintf("%s:%d", mv.Model, mv.Version)
	ref.mu.Lock()
	cached, ok := ref.out[key]
	ref.mu.Unlock()
	if ok {
		return cached, nil
	}
	model, release, err := a.loadInProcess(ctx, mv)
	if err != nil {
		return nil, err
	}
	defer release()
	cols := make([][]float64, len(m.Columns))
	for j, name := range m.Columns {
		col := ref.column(name)
		if col == nil || col.Num == nil {
			return nil, fmt.Errorf("reference column %q is not numeric; the model's input is", name)
		}
		cols[j] = col.Num
	}
	input := ""
	if len(mv.Schema.Inputs) > 0 {
		input = mv.Schema.Inputs[0].Name
	}
	rows, f := ref.sample.Rows, len(cols)
	var preds []float64
	const batch = 1024
	for lo := 0; lo < rows; lo += batch {
		hi := min(lo+batch, rows)
		x := make([]float64, 0, (hi-lo)*f)
		for i := lo; i < hi; i++ {
			for j := range cols {
				x = append(x, cols[j][i])
			}
		}
		out, err := ml.Guard(ctx, model, []ml.Tensor{{Name: input, Shape: []int{hi - lo, f}, Data: x}})
		if err != nil {
			return nil, fmt.Errorf("scoring the reference sample: %w", err)
		}
		if len(out) == 0 || out[0].Len() != (hi-lo)*width {
			return nil, fmt.Errorf("the model gives %d output values per row; the log holds %d", out[0].Len()/max(hi-lo, 1), width)
		}
		for i := range hi - lo {
			row := out[0].Data[i*width : (i+1)*width]
			if width == 1 {
				preds = append(preds, row[0])
				continue
			}
			best := 0
			for c := range row {
				if row[c] > row[best] {
					best = c
				}
			}
			preds = append(preds, float64(best))
		}
	}
	if width == 1 {
		preds = drift.SortClean(preds)
	}
	ref.mu.Lock()
	ref.out[key] = preds
	ref.mu.Unlock()
	return preds, nil
}

// referenceCache keeps the references of recent checks on this node, a
// few at a time: a sample of 100,000 rows of 20 columns is 16 MB.
type referenceCache struct {
	mu    sync.Mutex
	items map[string]*reference
	order []string
}

const maxCachedReferences = 4

// get returns the reference of a dataset version (name:version): its
// stored sample, or for a version written before samples were kept, one
// drawn from its file the same way.
func (rc *referenceCache) get(ctx context.Context, a *Agent, ref string) (*reference, error) {
	rc.mu.Lock()
	if r, ok := rc.items[ref]; ok {
		rc.mu.Unlock()
		return r, nil
	}
	rc.mu.Unlock()
	name, version, err := structs.ParseDatasetRef("reference", ref)
	if err != nil {
		return nil, err
	}
	txn := a.fsm.ReadTxn()
	dv, err := txn.DatasetVersion(name, version)
	txn.Discard()
	if err != nil {
		return nil, err
	}
	var sample *dataset.Sample
	if s := dv.Sample; s != nil {
		path, err := a.xfer.Ensure(ctx, s.Digest, s.Holders)
		if err != nil {
			return nil, fmt.Errorf("fetching the sample of %s: %w", ref, err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		sample = new(dataset.Sample)
		if err := msgpack.Unmarshal(b, sample); err != nil {
			return nil, fmt.Errorf("reading the sample of %s: %w", ref, err)
		}
	} else if sample, err = a.drawSample(ctx, dv); err != nil {
		return nil, err
	}
	r := &reference{sample: sample, sorted: map[string][]float64{}, counts: map[string]map[string]float64{}, out: map[string][]float64{}}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.items == nil {
		rc.items = map[string]*reference{}
	}
	rc.items[ref] = r
	rc.order = append(rc.order, ref)
	if len(rc.order) > maxCachedReferences {
		delete(rc.items, rc.order[0])
		rc.order = rc.order[1:]
	}
	return r, nil
}

// drawSample reads a dataset version's file to draw the sample it would
// have been stored with.
func (a *Agent) drawSample(ctx context.Context, dv *structs.DatasetVersion) (*dataset.Sample, error) {
	path, err := a.xfer.Ensure(ctx, dv.Digest, dv.Holders)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", dv.Ref(), err)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	opts := dataset.Options{Format: dataset.Format(dv.Format), Seed: digestSeed(dv.Digest), NoHeader: dv.NoHeader, SampleRows: structs.MaxDatasetSample}
	res, err := dataset.ScanFile(f, dv.Size, opts)
	if err != nil {
		return nil, fmt.Errorf("sampling %s: %w", dv.Ref(), err)
	}
	return res.Sample, nil
}
