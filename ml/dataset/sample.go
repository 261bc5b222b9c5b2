package dataset

import (
	"math"
	"math/rand/v2"
	"strconv"
)

// Sample is a uniform random sample of a file's good rows, kept by
// reservoir sampling (Vitter's Algorithm R) in the same pass as the
// statistics, with a generator seeded by Options.Seed: the same file gives
// the same sample. It is the reference drift checks test live traffic
// against, exactly rather than from binned statistics.
type Sample struct {
	Rows    int            `msgpack:"rows"`
	Columns []SampleColumn `msgpack:"columns"`
}

// SampleColumn is one column of a Sample: Num for a numeric column (int,
// float, timestamp as Unix seconds; NaN for a null), Text for a bool or
// string one ("" for a null). A number in a column that ended up a string
// column is written with strconv's shortest form, which may differ from the
// file's text ("1.50" becomes "1.5").
type SampleColumn struct {
	Name string    `msgpack:"name"`
	Type Type      `msgpack:"type"`
	Num  []float64 `msgpack:"num,omitempty"`
	Text []string  `msgpack:"text,omitempty"`
}

// reservoir holds up to k rows, column by column: nums[j][slot], and
// texts[j][slot] for a column once it has seen a value that is not a
// number.
type reservoir struct {
	k     int
	seen  int64
	n     int // slots filled
	nums  [][]float64
	texts [][]string
	rng   *rand.Rand
}

func newReservoir(k int, seed uint64) *reservoir {
	return &reservoir{k: k, rng: rand.New(rand.NewPCG(seed, 0x5a4d91e3))}
}

// add offers one row to the reservoir.
func (r *reservoir) add(row []Value) {
	r.seen++
	slot := r.n
	if r.n >= r.k {
		j := r.rng.Int64N(r.seen)
		if j >= int64(r.k) {
			return
		}
		slot = int(j)
	} else {
		r.n++
	}
	for len(r.nums) < len(row) {
		col := make([]float64, slot, max(slot+1, 16))
		for i := range col {
			col[i] = math.NaN() // rows before the column was known
		}
		r.nums = append(r.nums, col)
		r.texts = append(r.texts, nil)
	}
	for j := range r.nums {
		v := Value{}
		if j < len(row) {
			v = row[j]
		}
		num := math.NaN()
		switch v.Kind {
		case Int, Float, Timestamp:
			num = v.Num
		}
		if slot == len(r.nums[j]) {
			r.nums[j] = append(r.nums[j], num)
		} else {
			r.nums[j][slot] = num
		}
		text := ""
		if v.Kind == Bool || v.Kind == String {
			text = v.Text
			if r.texts[j] == nil {
				r.texts[j] = make([]string, 0, cap(r.nums[j]))
			}
		}
		if r.texts[j] != nil {
			for len(r.texts[j]) <= slot {
				r.texts[j] = append(r.texts[j], "")
			}
			if text == "" && !math.IsNaN(num) {
				text = strconv.FormatFloat(num, 'g', -1, 64)
			}
			r.texts[j][slot] = text
		}
	}
}

// result returns the sample with the columns' final types.
func (r *reservoir) result(cols []ColumnStats) *Sample {
	s := &Sample{Rows: r.n, Columns: make([]SampleColumn, len(cols))}
	for j, c := range cols {
		sc := SampleColumn{Name: c.Name, Type: c.Type}
		var nums []float64
		if j < len(r.nums) {
			nums = r.nums[j]
		}
		for len(nums) < r.n {
			nums = append(nums, math.NaN())
		}
		switch c.Type {
		case Int, Float, Timestamp:
			sc.Num = nums[:r.n]
		default:
			sc.Text = make([]string, r.n)
			for i := range r.n {
				switch {
				case j < len(r.texts) && i < len(r.texts[j]) && r.texts[j][i] != "":
					sc.Text[i] = r.texts[j][i]
				case !math.IsNaN(nums[i]):
					sc.Text[i] = strconv.FormatFloat(nums[i], 'g', -1, 64)
				}
			}
		}
		s.Columns[j] = sc
	}
	return s
}

// withSample wraps opts.OnRow to feed a reservoir of opts.SampleRows rows.
func withSample(opts *Options) *reservoir {
	if opts.SampleRows <= 0 {
		return nil
	}
	r := newReservoir(opts.SampleRows, opts.Seed)
	next := opts.OnRow
	opts.OnRow = func(line int64, row []Value) error {
		r.add(row)
		if next != nil {
			return next(line, row)
		}
		return nil
	}
	return r
}
