package training

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"

	"github.com/kilnml/kiln/ml/dataset"
	"github.com/kilnml/kiln/ml/train"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// MaxClasses bounds the classes of a classification target.
const MaxClasses = 1000

// FrameSpec says which columns of a dataset version make a training frame.
type FrameSpec struct {
	Version *structs.DatasetVersion
	// Path is the version's file on this node.
	Path   string
	Target string
	// Features are the feature columns, in order; empty means every column
	// but the target, in the file's order.
	Features []string
	Task     train.Task
	// Classes, when set, are the class labels to index the target by (a
	// validation frame takes its training frame's); a label outside them is
	// an error. Nil: the labels found, sorted (numerically when all are
	// numbers).
	Classes []string
}

// FeatureColumns returns the feature columns of spec (Features, or every
// column but the target) and checks they are numbers, booleans or
// timestamps: built-in trainers take numeric features.
func FeatureColumns(v *structs.DatasetVersion, target string, features []string) ([]string, error) {
	if len(features) == 0 {
		for _, c := range v.Columns {
			if c.Name != target {
				features = append(features, c.Name)
			}
		}
	}
	for _, f := range features {
		i := slices.IndexFunc(v.Columns, func(c structs.DatasetColumn) bool { return c.Name == f })
		if i < 0 {
			return nil, fmt.Errorf("feature %q is not a column of dataset %s", f, v.Ref())
		}
		if v.Columns[i].Type == "string" {
			return nil, fmt.Errorf("feature %q of dataset %s is a string column; built-in trainers take numbers, booleans and timestamps (leave it out with features, or encode it)", f, v.Ref())
		}
	}
	if len(features) == 0 {
		return nil, fmt.Errorf("dataset %s has no column besides the target %q", v.Ref(), target)
	}
	return features, nil
}

// CheckTarget refuses a target column whose type cannot be the task's: a
// string for regression, or a binary target with other than two values
// (when the statistics know them exactly).
func CheckTarget(v *structs.DatasetVersion, target string, task train.Task) error {
	i := slices.IndexFunc(v.Columns, func(c structs.DatasetColumn) bool { return c.Name == target })
	if i < 0 {
		return fmt.Errorf("target %q is not a column of dataset %s", target, v.Ref())
	}
	c := v.Columns[i]
	switch {
	case task == train.Regression && (c.Type == "string" || c.Type == "bool"):
		return fmt.Errorf("target %q is a %s column; a regression needs numbers", target, c.Type)
	case task == train.Binary && c.Categorical != nil && c.Categorical.Exact && c.Categorical.Distinct != 2:
		return fmt.Errorf("target %q has %d distinct values; a binary objective needs 2", target, c.Categorical.Distinct)
	case task == train.Binary && c.Numeric != nil && c.Type == "float":
		return fmt.Errorf("target %q is a float column; a binary objective needs two labels (0 and 1, or two strings)", target)
	}
	return nil
}

// LoadFrame reads a frame from a dataset file in one pass. A missing
// feature value is NaN; a missing target is an error naming its line.
func LoadFrame(ctx context.Context, spec FrameSpec) (*train.Frame, []string, error) {
	v := spec.Version
	features, err := FeatureColumns(v, spec.Target, spec.Features)
	if err != nil {
		return nil, nil, err
	}
	schema := make([]dataset.Column, len(v.Columns))
	index := map[string]int{}
	for i, c := range v.Columns {
		schema[i] = dataset.Column{Name: c.Name, Type: dataset.Type(c.Type)}
		index[c.Name] = i
	}
	target, ok := index[spec.Target]
	if !ok {
		return nil, nil, fmt.Errorf("target %q is not a column of dataset %s", spec.Target, v.Ref())
	}
	cols := make([]int, len(features))
	for i, f := range features {
		cols[i] = index[f]
	}
	f, err := os.Open(spec.Path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()

	fr := &train.Frame{Cols: len(cols), FeatureNames: features}
	if v.Rows > 0 && v.Rows < 1<<31 {
		fr.X = make([]float64, 0, int(v.Rows)*len(cols))
		fr.Y = make([]float64, 0, int(v.Rows))
	}
	classify := spec.Task != train.Regression
	labels := map[string]int{} // label -> index in order seen
	for i, c := range spec.Classes {
		labels[c] = i
	}
	var order []string = slices.Clone(spec.Classes)
	rows := 0
	opts := dataset.Options{Format: dataset.Format(v.Format), Schema: schema, NoHeader: v.NoHeader, OnRow: func(line int64, row []dataset.Value) error {
		if rows%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		for _, c := range cols {
			fr.X = append(fr.X, numeric(valueAt(row, c)))
		}
		t := valueAt(row, target)
		if t.Kind == "" {
			return fmt.Errorf("line %d: the target %q is missing", line, spec.Target)
		}
		if classify {
			label := t.Text
			k, seen := labels[label]
			if !seen {
				if spec.Classes != nil {
					return fmt.Errorf("line %d: label %q is not one of the training classes %v", line, label, spec.Classes)
				}
				if len(order) == MaxClasses {
					return fmt.Errorf("line %d: the target %q has more than %d classes", line, spec.Target, MaxClasses)
				}
				k = len(order)
				labels[label] = k
				order = append(order, label)
			}
			fr.Y = append(fr.Y, float64(k))
		} else {
			if t.Kind == dataset.String || t.Kind == dataset.Bool {
				return fmt.Errorf("line %d: the target %q is %q, not a number", line, spec.Target, t.Text)
			}
			fr.Y = append(fr.Y, t.Num)
		}
		rows++
		return nil
	}}
	_, err = dataset.ScanFile(f, v.Size, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("reading dataset %s: %w", v.Ref(), err)
	}
	fr.Rows = rows
	if rows == 0 {
		return nil, nil, fmt.Errorf("dataset %s has no rows", v.Ref())
	}
	if !classify {
		return fr, nil, nil
	}
	if spec.Classes != nil {
		return fr, order, nil
	}
	// Index the classes in sorted order, so that a model's outputs do not
	// depend on which label the file happens to show first.
	sorted := sortLabels(order)
	remap := make([]float64, len(order))
	for i, l := range order {
		remap[i] = float64(slices.Index(sorted, l))
	}
	for i, y := range fr.Y {
		fr.Y[i] = remap[int(y)]
	}
	if spec.Task == train.Binary && len(sorted) != 2 {
		return nil, nil, fmt.Errorf("the target %q has %d classes %v; a binary objective needs 2", spec.Target, len(sorted), sorted)
	}
	if len(sorted) < 2 {
		return nil, nil, fmt.Errorf("the target %q has one class, %v; a classifier needs two or more", spec.Target, sorted)
	}
	return fr, sorted, nil
}

func valueAt(row []dataset.Value, i int) dataset.Value {
	if i < len(row) {
		return row[i]
	}
	return dataset.Value{}
}

// numeric is a feature value as a number: NaN for a null, 1 or 0 for a
// boolean.
func numeric(v dataset.Value) float64 {
	switch v.Kind {
	case "":
		return math.NaN()
	case dataset.Bool:
		if v.Text == "true" {
			return 1
		}
		return 0
	}
	return v.Num
}

// sortLabels orders class labels: numerically when every label is a
// number, else as strings.
func sortLabels(labels []string) []string {
	out := slices.Clone(labels)
	nums := make(map[string]float64, len(out))
	for _, l := range out {
		f, err := strconv.ParseFloat(l, 64)
		if err != nil {
			slices.Sort(out)
			return out
		}
		nums[l] = f
	}
	slices.SortFunc(out, func(a, b string) int { return cmp.Compare(nums[a], nums[b]) })
	return out
}
