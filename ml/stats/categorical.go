package stats

import (
	"cmp"
	"container/heap"
	"slices"
)

// Defaults of a Categorical accumulator.
const (
	// DefaultCapacity is how many distinct values a Categorical accumulator
	// counts before it keeps only the heaviest.
	DefaultCapacity = 1024
	// DefaultTopK is how many values Result reports.
	DefaultTopK = 10
)

// Categorical accumulates the statistics of a column of strings (or any
// values named by strings: booleans, categories). Its zero value is not
// ready: use NewCategorical.
type Categorical struct {
	count, nulls int64
	capacity     int
	counters     map[string]*counter
	byCount      minHeap // the same counters, least counted first
	overflowed   bool    // a value was counted in place of another: counts are bounds
}

type counter struct {
	value string
	count int64 // an upper bound on the value's count
	err   int64 // count - err is a lower bound
	index int   // in byCount
}

// minHeap orders counters by count, then value, for a deterministic choice
// of the one to replace.
type minHeap []*counter

func (h minHeap) Len() int { return len(h) }
func (h minHeap) Less(i, j int) bool {
	if h[i].count != h[j].count {
		return h[i].count < h[j].count
	}
	return h[i].value < h[j].value
}
func (h minHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *minHeap) Push(x any) {
	c := x.(*counter)
	c.index = len(*h)
	*h = append(*h, c)
}
func (h *minHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	*h = old[:len(old)-1]
	return c
}

// NewCategorical returns an accumulator that keeps at most capacity
// counters (DefaultCapacity when 0).
func NewCategorical(capacity int) *Categorical {
	if capacity <= 0 {
		capacity = DefaultCapacity
	}
	return &Categorical{capacity: capacity, counters: make(map[string]*counter, min(capacity, 64))}
}

// Add counts one value.
func (c *Categorical) Add(v string) {
	c.count++
	if ct := c.counters[v]; ct != nil {
		ct.count++
		heap.Fix(&c.byCount, ct.index)
		return
	}
	if len(c.counters) < c.capacity {
		ct := &counter{value: v, count: 1}
		c.counters[v] = ct
		heap.Push(&c.byCount, ct)
		return
	}
	// SpaceSaving: the value takes the least-counted counter's place and
	// inherits its count, which becomes its error bound.
	ct := c.byCount[0]
	delete(c.counters, ct.value)
	ct.value, ct.err = v, ct.count
	ct.count++
	c.counters[v] = ct
	heap.Fix(&c.byCount, 0)
	c.overflowed = true
}

// AddNull counts one missing value.
func (c *Categorical) AddNull() { c.nulls++ }

// CategoricalStats is what a Categorical accumulator reports.
type CategoricalStats struct {
	Count int64 `json:"count" msgpack:"count"`
	Nulls int64 `json:"nulls" msgpack:"nulls"`
	// Distinct is the number of distinct values; 0 when there were more than
	// the accumulator's capacity (Exact is false then).
	Distinct int64        `json:"distinct" msgpack:"distinct"`
	Top      []ValueCount `json:"top" msgpack:"top"`
	// Exact is true when every count in Top is exact; otherwise each is an
	// upper bound, at most its Error above the true count.
	Exact bool `json:"exact" msgpack:"exact"`
}

// ValueCount is one of the most frequent values.
type ValueCount struct {
	Value string `json:"value" msgpack:"value"`
	Count int64  `json:"count" msgpack:"count"`
	Error int64  `json:"error,omitempty" msgpack:"error,omitempty"`
}

// Result reports the k most frequent values (DefaultTopK when 0), by count
// then by value.
func (c *Categorical) Result(k int) CategoricalStats {
	if k <= 0 {
		k = DefaultTopK
	}
	s := CategoricalStats{Count: c.count, Nulls: c.nulls, Exact: !c.overflowed, Top: []ValueCount{}}
	if !c.overflowed {
		s.Distinct = int64(len(c.counters))
	}
	for v, ct := range c.counters {
		s.Top = append(s.Top, ValueCount{Value: v, Count: ct.count, Error: ct.err})
	}
	slices.SortFunc(s.Top, func(a, b ValueCount) int {
		if a.Count != b.Count {
			return cmp.Compare(b.Count, a.Count)
		}
		return cmp.Compare(a.Value, b.Value)
	})
	if len(s.Top) > k {
		s.Top = s.Top[:k]
	}
	return s
}
