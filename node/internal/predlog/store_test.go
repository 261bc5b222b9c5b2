package predlog

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/kilnml/kiln/cluster-tests/testutil"
	"github.com/kilnml/kiln/ml"
)

// TestMain fails the run if a goroutine (the writer, Badger's) outlives the tests.
func TestMain(m *testing.M) { testutil.Main(m) }

// t0 is when the records of these tests were served. Badger's TTL counts from
// the wall clock at write time, not from Record.At, so a time in the past is
// fine.
var t0 = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

// testStore opens a store (in memory when opts.Dir is empty), closed at the
// end of the test.
func testStore(t testing.TB, opts Options) *Store {
	t.Helper()
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// tabular is a request of rows × len(in)/rows features answered with
// rows × len(out)/rows values, as a tabular model's ingress logs it.
func tabular(id, deployment string, at time.Time, rows int, in, out []float64) *Record {
	return &Record{
		ID: id, At: at, Deployment: deployment, Version: 1, Latency: 1500 * time.Microsecond,
		Inputs:  []ml.Tensor{{Name: "input", Shape: []int{rows, len(in) / rows}, Data: in}},
		Outputs: []ml.Tensor{{Name: "output", Shape: []int{rows, len(out) / rows}, Data: out}},
	}
}

// appendAll appends recs, each of which must be queued, and waits until they
// are written.
func appendAll(t testing.TB, s *Store, recs ...*Record) {
	t.Helper()
	before := s.Written()
	for _, r := range recs {
		if !s.Append(r) {
			t.Fatalf("Append(%s) dropped the record", r.ID)
		}
	}
	s.Sync()
	if got, want := s.Written()-before, uint64(len(recs)); got != want {
		t.Fatalf("Written moved by %d after Sync, want %d (dropped %d)", got, want, s.Dropped())
	}
}

// queryAll returns the records of deployment in [from, to).
func queryAll(t testing.TB, s *Store, deployment string, from, to time.Time) []*Record {
	t.Helper()
	var out []*Record
	if err := s.Query(deployment, from, to, func(r *Record) bool { out = append(out, r); return true }); err != nil {
		t.Fatalf("Query(%s): %v", deployment, err)
	}
	return out
}

func ids(recs []*Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

// sameBits compares floats bit for bit, so that NaN equals NaN and -0 does
// not equal 0.
func sameBits(a, b []float64) bool {
	return slices.EqualFunc(a, b, func(x, y float64) bool { return math.Float64bits(x) == math.Float64bits(y) })
}

func sameTensors(a, b []ml.Tensor) bool {
	return slices.EqualFunc(a, b, func(x, y ml.Tensor) bool {
		return x.Name == y.Name && slices.Equal(x.Shape, y.Shape) && sameBits(x.Data, y.Data)
	})
}

func TestStore_QueryReturnsRecordsInTimeOrder(t *testing.T) {
	s := testStore(t, Options{})
	from, to := t0, t0.Add(5*time.Second)
	odd := &Record{
		ID: "a2", At: t0.Add(2*time.Second + 123), Deployment: "iris", Version: 7, Latency: 1234567 * time.Nanosecond,
		Inputs: []ml.Tensor{
			{Name: "x", Shape: []int{1, 3}, Data: []float64{math.NaN(), math.Inf(-1), math.Copysign(0, -1)}},
			{Name: "mask", Shape: []int{1}, Data: []float64{1}},
		},
		Outputs: []ml.Tensor{{Name: "probabilities", Shape: []int{1, 2}, Data: []float64{0.25, 0.75}}, {Name: "label", Shape: []int{1}, Data: []float64{1}}},
	}
	want := *odd
	want.Inputs = slices.Clone(odd.Inputs)
	want.Inputs[0].Data = slices.Clone(odd.Inputs[0].Data)
	appendAll(t, s,
		tabular("a3", "iris", t0.Add(3*time.Second), 1, []float64{3, 3}, []float64{3}),
		tabular("a1", "iris", t0.Add(1*time.Second), 1, []float64{1, 1}, []float64{1}),
		odd,
		tabular("a0", "iris", from, 1, []float64{0, 0}, []float64{0}),                         // at from: in
		tabular("before", "iris", from.Add(-1), 1, []float64{9, 9}, []float64{9}),             // before from: out
		tabular("at-to", "iris", to, 1, []float64{9, 9}, []float64{9}),                        // at to: out
		tabular("b1", "iris2", t0.Add(1*time.Second), 1, []float64{5, 5, 5}, []float64{5, 5}), // another deployment, iris a prefix of its name
	)
	// Append encoded the record: changing the caller's tensors now changes nothing.
	odd.Inputs[0].Data[0] = 42

	got := queryAll(t, s, "iris", from, to)
	if want := []string{"a0", "a1", "a2", "a3"}; !slices.Equal(ids(got), want) {
		t.Fatalf("Query(iris) = %v, want %v", ids(got), want)
	}
	for i, r := range got {
		if wantAt := t0.Add(time.Duration(i) * time.Second); r.ID != "a2" && !r.At.Equal(wantAt) {
			t.Errorf("%s.At = %v, want %v", r.ID, r.At, wantAt)
		}
		if r.Deployment != "iris" || r.Labels != nil {
			t.Errorf("%s: deployment %q, labels %v; want iris and none", r.ID, r.Deployment, r.Labels)
		}
	}
	r := got[2]
	if !r.At.Equal(want.At) || r.Version != 7 || r.Latency != 1234*time.Microsecond {
		t.Errorf("a2: at %v, version %d, latency %v; want %v, 7, 1.234ms (µs precision)", r.At, r.Version, r.Latency, want.At)
	}
	if !sameTensors(r.Inputs, want.Inputs) || !sameTensors(r.Outputs, want.Outputs) {
		t.Errorf("a2 tensors = %+v -> %+v, want %+v -> %+v", r.Inputs, r.Outputs, want.Inputs, want.Outputs)
	}

	if got := queryAll(t, s, "iris2", from, to); !slices.Equal(ids(got), []string{"b1"}) || got[0].Deployment != "iris2" || !sameBits(got[0].Inputs[0].Data, []float64{5, 5, 5}) {
		t.Fatalf("Query(iris2) = %v, want b1 with its inputs", ids(got))
	}
	if got := queryAll(t, s, "iri", from, to); len(got) != 0 {
		t.Fatalf("Query(iri) = %v, want nothing: no deployment has that name", ids(got))
	}

	var seen []string
	err := s.Query("iris", from, to, func(r *Record) bool { seen = append(seen, r.ID); return len(seen) < 2 })
	if err != nil || !slices.Equal(seen, []string{"a0", "a1"}) {
		t.Fatalf("Query stopped by fn saw %v, %v; want a0 a1", seen, err)
	}
	if s.Dropped() != 0 {
		t.Fatalf("Dropped = %d, want 0", s.Dropped())
	}
}

func TestStore_Window(t *testing.T) {
	// batch is a request of 3 rows of 4 features with 3 class probabilities:
	// row i is 10i+j, its outputs 100i+k.
	batch := tabular("batch", "iris", t0, 3,
		[]float64{0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23},
		[]float64{100, 101, 102, 200, 201, 202, 300, 301, 302})
	single := tabular("single", "iris", t0.Add(time.Second), 1, []float64{30, 31, 32, 33}, []float64{400, 401, 402})
	wide := tabular("wide", "iris", t0.Add(2*time.Second), 2, []float64{1, 2, 3, 4, 5, 1, 2, 3, 4, 5}, []float64{1, 2, 3, 1, 2, 3})
	late := tabular("late", "iris", t0.Add(time.Hour), 1, []float64{9, 9, 9, 9}, []float64{9, 9, 9})
	other := tabular("other", "iris2", t0.Add(time.Second), 1, []float64{8, 8, 8, 8}, []float64{8, 8, 8})

	s := testStore(t, Options{})
	appendAll(t, s, batch, single, wide, late, other)
	allRows := &Columns{
		Rows:     4,
		Features: [][]float64{{0, 10, 20, 30}, {1, 11, 21, 31}, {2, 12, 22, 32}, {3, 13, 23, 33}},
		Outputs:  [][]float64{{100, 200, 300, 400}, {101, 201, 301, 401}, {102, 202, 302, 402}},
		Skipped:  2,
	}
	tests := []struct {
		name    string
		to      time.Time
		maxRows int
		want    *Columns
	}{
		{name: "rows of a batch and of a single request, another width skipped", to: t0.Add(time.Minute), maxRows: 100, want: allRows},
		{name: "exactly maxRows rows", to: t0.Add(time.Minute), maxRows: 4, want: allRows},
		{name: "truncated in a batch", to: t0.Add(time.Minute), maxRows: 2, want: &Columns{
			Rows:      2,
			Features:  [][]float64{{0, 10}, {1, 11}, {2, 12}, {3, 13}},
			Outputs:   [][]float64{{100, 200}, {101, 201}, {102, 202}},
			Truncated: true,
		}},
		{name: "only the window", to: t0.Add(time.Second), maxRows: 100, want: &Columns{
			Rows:     3,
			Features: [][]float64{{0, 10, 20}, {1, 11, 21}, {2, 12, 22}, {3, 13, 23}},
			Outputs:  [][]float64{{100, 200, 300}, {101, 201, 301}, {102, 202, 302}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Window("iris", t0, tt.to, tt.maxRows)
			if err != nil {
				t.Fatalf("Window: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Window = %+v\nwant     %+v", got, tt.want)
			}
		})
	}

	t.Run("several input tensors make one row", func(t *testing.T) {
		s := testStore(t, Options{})
		appendAll(t, s, &Record{ID: "two-inputs", At: t0, Deployment: "wine",
			Inputs: []ml.Tensor{
				{Name: "a", Shape: []int{2, 1}, Data: []float64{1, 2}},
				{Name: "b", Shape: []int{2, 2}, Data: []float64{10, 11, 20, 21}},
			},
			Outputs: []ml.Tensor{
				{Name: "first", Shape: []int{2}, Data: []float64{7, 8}},
				{Name: "second", Shape: []int{2, 2}, Data: []float64{0, 0, 0, 0}}, // only the first output is read
			},
		})
		got, err := s.Window("wine", t0, t0.Add(time.Second), 10)
		want := &Columns{Rows: 2, Features: [][]float64{{1, 2}, {10, 20}, {11, 21}}, Outputs: [][]float64{{7, 8}}}
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("Window = %+v, %v\nwant     %+v", got, err, want)
		}
	})
}

// A request of no rows (a v2 input of shape [0, 4] is accepted) is logged
// like any other; it holds no row for a window, and is no reason to fail the
// window of every other record.
func TestStore_WindowIgnoresRecordsWithoutRows(t *testing.T) {
	s := testStore(t, Options{})
	appendAll(t, s,
		tabular("a", "iris", t0, 1, []float64{1, 2, 3, 4}, []float64{0.2, 0.3, 0.5}),
		&Record{ID: "empty", At: t0.Add(time.Second), Deployment: "iris",
			Inputs:  []ml.Tensor{{Name: "input", Shape: []int{0, 4}}},
			Outputs: []ml.Tensor{{Name: "output", Shape: []int{0, 3}}}},
		tabular("b", "iris", t0.Add(2*time.Second), 1, []float64{5, 6, 7, 8}, []float64{0.1, 0.1, 0.8}),
	)
	got, err := s.Window("iris", t0, t0.Add(time.Minute), 100)
	want := &Columns{Rows: 2, Features: [][]float64{{1, 5}, {2, 6}, {3, 7}, {4, 8}}, Outputs: [][]float64{{0.2, 0.1}, {0.3, 0.1}, {0.5, 0.8}}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Window = %+v, %v\nwant     %+v", got, err, want)
	}
}

func TestStore_LabelJoinsByID(t *testing.T) {
	s := testStore(t, Options{})
	batch := tabular("batch", "iris", t0.Add(2*time.Second), 3, make([]float64, 12), []float64{1, 0, 0, 0, 1, 0, 0, 0, 1})
	batch.Version = 3
	batch.Outputs = append(batch.Outputs, ml.Tensor{Name: "label", Shape: []int{3}, Data: []float64{0, 1, 2}}) // Labeled gives the first
	appendAll(t, s,
		tabular("a", "iris", t0, 1, []float64{1, 2, 3, 4}, []float64{0.1, 0.2, 0.7}),
		tabular("b", "iris", t0.Add(time.Second), 1, []float64{1, 2, 3, 4}, []float64{0.3, 0.3, 0.4}),
		batch,
		tabular("c", "iris2", t0, 1, []float64{1, 2, 3, 4}, []float64{0.5, 0.5, 0}),
	)

	found, err := s.Lookup([]string{"a", "batch", "c", "nope"})
	if err != nil {
		t.Fatalf("Lookup: %v", err)
	}
	got := map[string][4]any{}
	for id, m := range found {
		got[id] = [4]any{m.Deployment, m.Version, m.Rows, m.OutWidth}
	}
	want := map[string][4]any{"a": {"iris", uint64(1), 1, 3}, "batch": {"iris", uint64(3), 3, 3}, "c": {"iris2", uint64(1), 1, 3}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Lookup = %v, want %v", got, want)
	}

	missing, err := s.Label(map[string][]float64{"a": {2}, "batch": {0, 1, 2}, "nope": {1}})
	if err != nil || !slices.Equal(missing, []string{"nope"}) {
		t.Fatalf("Label = %v, %v; want nope missing", missing, err)
	}
	labels := map[string][]float64{}
	for _, r := range queryAll(t, s, "iris", t0, t0.Add(time.Minute)) {
		labels[r.ID] = r.Labels
	}
	if want := map[string][]float64{"a": {2}, "b": nil, "batch": {0, 1, 2}}; !reflect.DeepEqual(labels, want) {
		t.Fatalf("labels in Query = %v, want %v", labels, want)
	}

	type labeled struct {
		Version uint64
		At      time.Time
		Out     ml.Tensor
		Labels  []float64
	}
	labeledIn := func(deployment string, from, to time.Time) []labeled {
		t.Helper()
		var out []labeled
		err := s.Labeled(deployment, from, to, func(v uint64, at time.Time, o ml.Tensor, l []float64) { out = append(out, labeled{v, at, o, l}) })
		if err != nil {
			t.Fatalf("Labeled(%s): %v", deployment, err)
		}
		return out
	}
	wantAll := []labeled{
		{1, t0, ml.Tensor{Name: "output", Shape: []int{1, 3}, Data: []float64{0.1, 0.2, 0.7}}, []float64{2}},
		{3, t0.Add(2 * time.Second), ml.Tensor{Name: "output", Shape: []int{3, 3}, Data: []float64{1, 0, 0, 0, 1, 0, 0, 0, 1}}, []float64{0, 1, 2}},
	}
	if got := labeledIn("iris", t0, t0.Add(time.Minute)); !reflect.DeepEqual(got, wantAll) {
		t.Fatalf("Labeled(iris) = %+v, want %+v", got, wantAll)
	}
	if got := labeledIn("iris", t0.Add(time.Second), t0.Add(time.Minute)); !reflect.DeepEqual(got, wantAll[1:]) {
		t.Fatalf("Labeled(iris) from a's time on = %+v, want batch only", got)
	}
	if got := labeledIn("iris2", t0, t0.Add(time.Minute)); len(got) != 0 {
		t.Fatalf("Labeled(iris2) = %+v, want nothing: c has no label", got)
	}

	// A second label replaces the first.
	if missing, err := s.Label(map[string][]float64{"a": {1}}); err != nil || len(missing) != 0 {
		t.Fatalf("Label again = %v, %v", missing, err)
	}
	if got := queryAll(t, s, "iris", t0, t0.Add(time.Second)); len(got) != 1 || !slices.Equal(got[0].Labels, []float64{1}) {
		t.Fatalf("a after a second label = %+v, want labels [1]", got)
	}
}

func TestStore_PendingLabels(t *testing.T) {
	s := testStore(t, Options{})
	later, earlier := t0.Add(time.Second), t0
	must(t, s.AddPending([]Pending{
		{ID: "y", Label: []byte(`[1,2]`)},
		{ID: "x", Label: []byte(`{"species":"setosa"}`), Deployment: "iris"},
	}, later))
	must(t, s.AddPending([]Pending{{ID: "z", Label: []byte(`0`), Deployment: "iris2"}}, earlier))

	type pending struct {
		ID, Label, Deployment string
		Received              time.Time
	}
	view := func(ps []Pending) []pending {
		out := make([]pending, len(ps))
		for i, p := range ps {
			out[i] = pending{p.ID, string(p.Label), p.Deployment, p.Received.UTC()}
		}
		return out
	}
	all := []pending{
		{"z", `0`, "iris2", earlier},
		{"x", `{"species":"setosa"}`, "iris", later},
		{"y", `[1,2]`, "", later},
	}
	tests := []struct {
		limit int
		want  []pending
	}{
		{limit: 10, want: all},
		{limit: 1, want: all[:1]},
		{limit: 0, want: []pending{}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("limit %d", tt.limit), func(t *testing.T) {
			items, n, err := s.PendingLabels(tt.limit)
			if err != nil || n != 3 || !reflect.DeepEqual(view(items), tt.want) {
				t.Fatalf("PendingLabels(%d) = %+v, %d, %v; want %+v and 3 in all", tt.limit, view(items), n, err, tt.want)
			}
		})
	}

	items, _, err := s.PendingLabels(10)
	must(t, err)
	must(t, s.RemovePending(items[:2]))
	items, n, err := s.PendingLabels(10)
	if err != nil || n != 1 || !reflect.DeepEqual(view(items), all[2:]) {
		t.Fatalf("PendingLabels after RemovePending = %+v, %d, %v; want y alone", view(items), n, err)
	}
}

func TestStore_RetentionExpiresEntries(t *testing.T) {
	// Badger's TTL is in whole seconds from the write: with 1s an entry may
	// expire a moment after it is written, so the "still there" check below
	// could not be relied on. 2s leaves it at least one second.
	s := testStore(t, Options{Retention: 2 * time.Second, Grace: 2 * time.Second})
	appendAll(t, s, tabular("a", "iris", t0, 1, []float64{1}, []float64{1}))
	if missing, err := s.Label(map[string][]float64{"a": {1}}); err != nil || len(missing) != 0 {
		t.Fatalf("Label = %v, %v", missing, err)
	}
	must(t, s.AddPending([]Pending{{ID: "p", Label: []byte(`1`)}}, time.Now()))
	if got := queryAll(t, s, "iris", t0, t0.Add(time.Second)); len(got) != 1 || got[0].Labels == nil {
		t.Fatalf("Query just after writing = %v, want a with its label", ids(got))
	}
	testutil.WaitFor(t, 6*time.Second, func() error {
		if got := queryAll(t, s, "iris", t0, t0.Add(time.Second)); len(got) != 0 {
			return fmt.Errorf("Query still returns %v", ids(got))
		}
		if found, err := s.Lookup([]string{"a"}); err != nil || len(found) != 0 {
			return fmt.Errorf("Lookup still finds %v (%v)", found, err)
		}
		if _, n, err := s.PendingLabels(10); err != nil || n != 0 {
			return fmt.Errorf("%d pending labels left (%v)", n, err)
		}
		return nil
	})
}

// blockSizes returns each live block's time (its oldest record's, unix
// nanos) and size as Trim counts it (Badger's estimate, plus the key),
// oldest first.
func blockSizes(t testing.TB, s *Store) (times, sizes []int64) {
	t.Helper()
	type block struct{ at, size int64 }
	var blocks []block
	must(t, s.db.View(func(txn *badger.Txn) error {
		o := badger.DefaultIteratorOptions
		o.Prefix = []byte{tagRecord}
		o.PrefetchValues = false
		it := txn.NewIterator(o)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			key := it.Item().Key()
			blocks = append(blocks, block{int64(binary.BigEndian.Uint64(key[len(key)-suffixLen:])), it.Item().EstimatedSize() + int64(len(key))})
		}
		return nil
	}))
	slices.SortFunc(blocks, func(a, b block) int { return cmp.Compare(a.at, b.at) })
	for _, b := range blocks {
		times, sizes = append(times, b.at), append(sizes, b.size)
	}
	return times, sizes
}

// labelCount counts the label entries in the store, whether or not their
// record is still there (which Labeled would not tell).
func labelCount(t testing.TB, s *Store) int {
	t.Helper()
	n := 0
	must(t, s.db.View(func(txn *badger.Txn) error {
		o := badger.DefaultIteratorOptions
		o.Prefix = []byte{tagLabel}
		o.PrefetchValues = false
		it := txn.NewIterator(o)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	}))
	return n
}

func sum(v []int64) int64 {
	var n int64
	for _, x := range v {
		n += x
	}
	return n
}

func TestStore_TrimDeletesTheOldestAcrossDeployments(t *testing.T) {
	const maxBytes = 64 << 10
	s := testStore(t, Options{MaxBytes: maxBytes})
	if n, err := s.Trim(); err != nil || n != 0 {
		t.Fatalf("Trim of an empty store = %d, %v", n, err)
	}

	// 600 records of 20 features taking turns between two deployments one
	// millisecond apart, written 50 at a time (so in 24 blocks), each
	// labelled.
	const total, perWrite = 600, 50
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Millisecond) }
	recs := make([]*Record, total)
	labels := map[string][]float64{}
	for i := range recs {
		deployment := []string{"iris", "iris2"}[i%2]
		recs[i] = tabular(fmt.Sprintf("r%03d", i), deployment, at(i), 1, make([]float64, 20), []float64{0.2, 0.3, 0.5})
		labels[recs[i].ID] = []float64{float64(i % 3)}
	}
	for i := 0; i < total; i += perWrite {
		appendAll(t, s, recs[i:i+perWrite]...)
	}
	if missing, err := s.Label(labels); err != nil || len(missing) != 0 {
		t.Fatalf("Label = %v, %v", missing, err)
	}
	times, sizes := blockSizes(t, s)
	if len(times) != 2*total/perWrite || sum(sizes) <= maxBytes {
		t.Fatalf("the store holds %d blocks of %d bytes in all; the test needs %d over %d", len(times), sum(sizes), 2*total/perWrite, maxBytes)
	}

	deleted, err := s.Trim()
	if err != nil {
		t.Fatalf("Trim: %v", err)
	}
	var survivors []*Record
	for _, d := range []string{"iris", "iris2"} {
		survivors = append(survivors, queryAll(t, s, d, t0, at(total))...)
	}
	if deleted+len(survivors) != total || deleted == 0 || len(survivors) == 0 {
		t.Fatalf("Trim deleted %d records and %d are left, of %d", deleted, len(survivors), total)
	}
	// The oldest blocks went, whichever deployment they were of: every
	// surviving block is newer than every deleted one, and the survivors
	// fit in nine tenths of MaxBytes while the newest deleted block would
	// not: Trim deleted no more than it had to.
	keptTimes, keptSizes := blockSizes(t, s)
	gone := len(times) - len(keptTimes)
	if !slices.Equal(keptTimes, times[gone:]) {
		t.Fatalf("blocks left %v, want the newest %d of %v", keptTimes, len(keptTimes), times)
	}
	target := int64(maxBytes) / 10 * 9
	if kept := sum(keptSizes); kept > target || kept+sizes[gone-1] <= target {
		t.Fatalf("the %d blocks left take %d bytes; want at most %d, with the newest deleted one (%d bytes) over it", len(keptTimes), kept, target, sizes[gone-1])
	}
	// The labels of the deleted records went with them.
	if n := labelCount(t, s); n != len(survivors) {
		t.Fatalf("%d labels left for %d records", n, len(survivors))
	}
	// A deleted record is no longer found, and labelling it reports it missing.
	if found, err := s.Lookup([]string{recs[0].ID, recs[total-1].ID}); err != nil || len(found) != 1 {
		t.Fatalf("Lookup of a deleted and a kept record = %v, %v", found, err)
	}
	if missing, err := s.Label(map[string][]float64{recs[0].ID: {1}}); err != nil || !slices.Equal(missing, []string{recs[0].ID}) {
		t.Fatalf("Label of a deleted record = %v, %v; want it missing", missing, err)
	}

	if n, err := s.Trim(); err != nil || n != 0 {
		t.Fatalf("Trim under the bound = %d, %v; want 0", n, err)
	}
}

// TestStore_BlocksSpanABoundedTime: records written at once go into blocks
// of at most maxBlockRecords spanning at most maxBlockSpan, and a range
// read keeps each record by its own time, also from a block that starts
// before the range.
func TestStore_BlocksSpanABoundedTime(t *testing.T) {
	s := testStore(t, Options{})
	var recs []*Record
	for i := range 600 { // 300 in the first half second, then 300 over 3 s
		d := time.Duration(i) * time.Millisecond
		if i >= 300 {
			d = 300*time.Millisecond + time.Duration(i-300)*10*time.Millisecond
		}
		recs = append(recs, tabular(fmt.Sprintf("b%d", i), "iris", t0.Add(d), 1, []float64{float64(i)}, []float64{0}))
	}
	appendAll(t, s, recs...)
	times, _ := blockSizes(t, s)
	for i := 1; i < len(times); i++ {
		if times[i] <= times[i-1] {
			t.Fatalf("block times %v are not increasing", times)
		}
	}
	// 300 in 0.3 s: two blocks by count; then 300 over 3 s: at least three
	// more by span.
	if len(times) < 5 {
		t.Fatalf("%d blocks, want at least 5", len(times))
	}
	from, to := t0.Add(700*time.Millisecond), t0.Add(1500*time.Millisecond)
	got := queryAll(t, s, "iris", from, to)
	if len(got) != 80 || got[0].ID != "b340" || got[79].ID != "b419" {
		t.Fatalf("Query of [0.7 s, 1.5 s) gave %d records, %v...; want b340 to b419", len(got), ids(got[:min(len(got), 3)]))
	}
	c, err := s.Window("iris", from, to, 1000)
	if err != nil || c.Rows != 80 || c.Features[0][0] != 340 {
		t.Fatalf("Window = %+v, %v", c, err)
	}
}

func TestStore_ReopenKeepsRecords(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	recs := []*Record{
		tabular("a", "iris", t0, 1, []float64{1, 2}, []float64{3}),
		tabular("b", "iris", t0.Add(time.Second), 2, []float64{1, 2, 3, 4}, []float64{5, 6}),
	}
	appendAll(t, s, recs...)
	if missing, err := s.Label(map[string][]float64{"b": {1, 0}}); err != nil || len(missing) != 0 {
		t.Fatalf("Label = %v, %v", missing, err)
	}
	// Appended but not synced: Close writes what is queued. So many that
	// some are still queued when Close is called.
	c := tabular("c", "iris", t0.Add(2*time.Second), 1, []float64{7, 8}, []float64{9})
	if !s.Append(c) {
		t.Fatal("Append(c) dropped the record")
	}
	const queued = 5000
	for i := range queued {
		if !s.Append(tabular(fmt.Sprintf("q%d", i), "wine", t0.Add(time.Duration(i)), 1, []float64{1}, []float64{2})) {
			t.Fatalf("Append(q%d) dropped the record", i)
		}
	}
	must(t, s.Close())
	if got, want := s.Written(), uint64(len(recs)+1+queued); got != want {
		t.Fatalf("Written = %d after Close, want %d", got, want)
	}

	s = testStore(t, Options{Dir: dir})
	got := queryAll(t, s, "iris", t0, t0.Add(time.Minute))
	if !slices.Equal(ids(got), []string{"a", "b", "c"}) {
		t.Fatalf("after reopening, Query = %v, want a b c", ids(got))
	}
	for i, want := range append(recs, c) {
		if !sameTensors(got[i].Inputs, want.Inputs) || !sameTensors(got[i].Outputs, want.Outputs) {
			t.Errorf("%s after reopening: %+v -> %+v", want.ID, got[i].Inputs, got[i].Outputs)
		}
	}
	if !slices.Equal(got[1].Labels, []float64{1, 0}) {
		t.Fatalf("b's labels after reopening = %v, want [1 0]", got[1].Labels)
	}
	if found, err := s.Lookup([]string{"c"}); err != nil || found["c"].Deployment != "iris" {
		t.Fatalf("Lookup(c) after reopening = %v, %v", found, err)
	}
	if got := queryAll(t, s, "wine", t0, t0.Add(time.Second)); len(got) != queued {
		t.Fatalf("after reopening, %d of the %d records queued at Close are there", len(got), queued)
	}
}

// encodedRecord is a valid record's value, for the decoders.
func encodedRecord() []byte {
	return encodeRecord(&Record{
		ID: "req-1", Version: 300, Latency: 2 * time.Second,
		Inputs:  []ml.Tensor{{Name: "input", Shape: []int{2, 2}, Data: []float64{1, 2, 3, math.NaN()}}},
		Outputs: []ml.Tensor{{Name: "output", Shape: []int{2, 3}, Data: []float64{0.1, 0.2, 0.7, 0.3, 0.3, 0.4}}},
	})
}

func TestDecodeRecord_RefusesTruncatedValues(t *testing.T) {
	good := encodedRecord()
	r, err := decodeRecord(good)
	if err != nil || r.ID != "req-1" || r.Version != 300 || r.Latency != 2*time.Second || len(r.Outputs) != 1 || r.Outputs[0].Len() != 6 {
		t.Fatalf("decodeRecord(valid) = %+v, %v", r, err)
	}
	tests := []struct {
		name string
		n    int
	}{
		{name: "empty", n: 0},
		{name: "version only", n: 2},
		{name: "in the ID", n: 8},
		{name: "in the input's name", n: 15},
		{name: "in the input's values", n: len(good) - 70},
		{name: "before the outputs", n: len(good) - 60},
		{name: "in the output's values", n: len(good) - 9},
		{name: "one byte short", n: len(good) - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r, err := decodeRecord(good[:tt.n]); !errors.Is(err, errCorrupt) {
				t.Fatalf("decodeRecord(%d of %d bytes) = %+v, %v; want errCorrupt", tt.n, len(good), r, err)
			}
			var rs rows
			if err := decodeRows(good[:tt.n], &rs); !errors.Is(err, errCorrupt) {
				t.Fatalf("decodeRows(%d of %d bytes) = %v; want errCorrupt", tt.n, len(good), err)
			}
		})
	}
	// Every truncation, not just those above.
	for n := range len(good) {
		if _, err := decodeRecord(good[:n]); err == nil {
			t.Errorf("decodeRecord(%d of %d bytes) succeeded", n, len(good))
		}
		var rs rows
		if err := decodeRows(good[:n], &rs); err == nil {
			t.Errorf("decodeRows(%d of %d bytes) succeeded", n, len(good))
		}
	}
}

// FuzzDecodeRecord: the decoders read what is on disk; whatever the bytes,
// they return an error or a record, never panic, and a record they return
// encodes to bytes they read back the same.
func FuzzDecodeRecord(f *testing.F) {
	good := encodedRecord()
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(encodeRecord(&Record{}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var rs rows
		_ = decodeRows(b, &rs)
		r, err := decodeRecord(b)
		if err != nil {
			return
		}
		again, err := decodeRecord(encodeRecord(r))
		if err != nil {
			t.Fatalf("a decoded record does not decode once encoded again: %v", err)
		}
		if again.ID != r.ID || again.Version != r.Version || again.Latency != r.Latency ||
			!sameTensors(again.Inputs, r.Inputs) || !sameTensors(again.Outputs, r.Outputs) {
			t.Fatalf("round trip changed the record: %+v, then %+v", r, again)
		}
	})
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// featureRow is a logged request of one row of 20 features answered with 3
// class probabilities.
func featureRow(i int, at time.Time) *Record {
	x := make([]float64, 20)
	for j := range x {
		x[j] = float64(i%97) + float64(j)/20
	}
	return tabular(fmt.Sprintf("req-%d", i), "bench", at, 1, x, []float64{0.2, 0.3, 0.5})
}

// BenchmarkAppend is the cost of logging one request, its write included:
// it waits for the writer every 1024 records, so the queue never drops.
func BenchmarkAppend(b *testing.B) {
	s := testStore(b, Options{})
	r := featureRow(1, t0)
	i := 0
	for b.Loop() {
		r.At = t0.Add(time.Duration(i))
		s.Append(r)
		if i++; i%1024 == 0 {
			s.Sync()
		}
	}
	s.Sync()
	if s.Dropped() != 0 {
		b.Fatalf("%d records dropped: the figure would not be the cost of a write", s.Dropped())
	}
}

// BenchmarkWindow_1M reads a window of one million logged rows of 20
// features as columns, as a drift check does.
func BenchmarkWindow_1M(b *testing.B) {
	if testing.Short() {
		b.Skip("writes a million records")
	}
	const rows = 1_000_000
	s := testStore(b, Options{Dir: b.TempDir()})
	for i := range rows {
		for r := featureRow(i, t0.Add(time.Duration(i)*time.Microsecond)); !s.Append(r); {
			s.Sync()
		}
	}
	s.Sync()
	to := t0.Add(rows * time.Microsecond)
	for b.Loop() {
		c, err := s.Window("bench", t0, to, 2*rows)
		if err != nil {
			b.Fatal(err)
		}
		if c.Rows != rows || len(c.Features) != 20 || len(c.Outputs) != 3 || c.Skipped != 0 {
			b.Fatalf("Window = %d rows, %d features, %d outputs, %d skipped", c.Rows, len(c.Features), len(c.Outputs), c.Skipped)
		}
	}
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}
