package serving

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kilnml/kiln/raftfsm/structs"
)

func newTestMetrics() *Metrics { return NewMetrics(prometheus.NewRegistry()) }

// bucketWidth is the width, in ms, of the latency bucket that holds ms.
func bucketWidth(ms float64) float64 {
	s := ms / 1000
	lower := 0.0
	for _, upper := range latencyBuckets {
		if s <= upper {
			return (upper - lower) * 1000
		}
		lower = upper
	}
	return math.Inf(1)
}

// observeUniform records n latencies spread evenly over [lo, hi] ms.
func observeUniform(m *Metrics, model string, version uint64, n int, lo, hi float64) {
	for i := range n {
		ms := lo + (hi-lo)*float64(i)/float64(n-1)
		m.Observe(model, version, time.Duration(ms*float64(time.Millisecond)), nil)
	}
}

func statsOf(t *testing.T, stats []VersionStats, version uint64) VersionStats {
	t.Helper()
	for _, s := range stats {
		if s.Version == version {
			return s
		}
	}
	t.Fatalf("no stats for version %d in %+v", version, stats)
	return VersionStats{}
}

func TestMetrics_Percentiles(t *testing.T) {
	m := newTestMetrics()
	observeUniform(m, "m", 1, 1000, 1, 10)
	s := statsOf(t, m.Stats("m"), 1)
	if s.Requests != 1000 || s.Count != 1000 || s.Errors != 0 {
		t.Fatalf("requests %d, count %d, errors %d; want 1000, 1000, 0", s.Requests, s.Count, s.Errors)
	}
	for _, tc := range []struct {
		name      string
		got, want float64
	}{
		{"p50", s.P50MS, 5.5},
		{"p95", s.P95MS, 9.55},
		{"p99", s.P99MS, 9.91},
	} {
		if w := bucketWidth(tc.want); math.Abs(tc.got-tc.want) > w {
			t.Errorf("%s = %.3f ms, want %.3f ± %.3f ms (one bucket)", tc.name, tc.got, tc.want, w)
		}
	}
	if !(s.P50MS < s.P95MS && s.P95MS <= s.P99MS) {
		t.Errorf("percentiles out of order: p50 %.3f, p95 %.3f, p99 %.3f", s.P50MS, s.P95MS, s.P99MS)
	}
}

func TestQuantile(t *testing.T) {
	// cumulative counts with n samples in bucket i and none elsewhere.
	oneBucket := func(i int, n uint64) []uint64 {
		c := make([]uint64, len(latencyBuckets))
		for j := i; j < len(c); j++ {
			c[j] = n
		}
		return c
	}
	last := len(latencyBuckets) - 1
	tests := []struct {
		name       string
		q          float64
		cumulative []uint64
		count      uint64
		want       float64
	}{
		{name: "no samples", q: 0.5, cumulative: make([]uint64, len(latencyBuckets)), count: 0, want: 0},
		{name: "no samples, no buckets", q: 0.99, count: 0, want: 0},
		// Inside a bucket the estimate is linear from its lower bound.
		{name: "middle of a bucket", q: 0.5, cumulative: oneBucket(10, 100), count: 100,
			want: latencyBuckets[9] + (latencyBuckets[10]-latencyBuckets[9])*0.5},
		{name: "top of a bucket", q: 1, cumulative: oneBucket(10, 100), count: 100, want: latencyBuckets[10]},
		{name: "first bucket starts at zero", q: 0.5, cumulative: oneBucket(0, 10), count: 10, want: latencyBuckets[0] / 2},
		// Samples above the last bound are counted but in no bucket.
		{name: "beyond the last bound", q: 0.99, cumulative: make([]uint64, len(latencyBuckets)), count: 10, want: latencyBuckets[last]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := quantile(tc.q, tc.cumulative, tc.count); math.Abs(got-tc.want) > 1e-12 {
				t.Fatalf("quantile(%v) = %v, want %v", tc.q, got, tc.want)
			}
		})
	}
}

func TestMetrics_ZeroSamples(t *testing.T) {
	m := newTestMetrics()
	if s := m.Stats("m"); len(s) != 0 {
		t.Fatalf("Stats of an unseen model = %+v, want none", s)
	}
	merged := MergeStats(nil, []VersionStats{{Version: 3}})
	s := statsOf(t, merged, 3)
	if s.Count != 0 || s.P50MS != 0 || s.P95MS != 0 || s.P99MS != 0 {
		t.Fatalf("stats without samples = %+v, want zero percentiles", s)
	}
}

func TestMergeStats_SumsBucketByBucket(t *testing.T) {
	fast, slow := newTestMetrics(), newTestMetrics()
	observeUniform(fast, "m", 1, 500, 1, 3)
	observeUniform(slow, "m", 1, 300, 20, 40)
	slow.Observe("m", 1, 30*time.Millisecond, errors.New("boom"))
	observeUniform(slow, "m", 2, 10, 5, 6) // only one node saw version 2

	a, b := fast.Stats("m"), slow.Stats("m")
	merged := MergeStats(a, b)
	if len(merged) != 2 || merged[0].Version != 1 || merged[1].Version != 2 {
		t.Fatalf("merged versions %+v, want 1 then 2", merged)
	}
	a1, b1, m1 := statsOf(t, a, 1), statsOf(t, b, 1), merged[0]
	if m1.Requests != a1.Requests+b1.Requests || m1.Errors != a1.Errors+b1.Errors || m1.Count != a1.Count+b1.Count {
		t.Fatalf("merged counts %d/%d/%d, want the sums of %+v and %+v", m1.Requests, m1.Errors, m1.Count, a1, b1)
	}
	if m1.Requests != 801 || m1.Errors != 1 {
		t.Fatalf("merged requests %d, errors %d; want 801, 1", m1.Requests, m1.Errors)
	}
	for i := range latencyBuckets {
		if m1.Buckets[i] != a1.Buckets[i]+b1.Buckets[i] {
			t.Fatalf("bucket %d: merged %d, want %d + %d", i, m1.Buckets[i], a1.Buckets[i], b1.Buckets[i])
		}
	}
	if !(a1.P50MS < m1.P50MS && m1.P50MS < b1.P50MS) {
		t.Fatalf("merged p50 %.3f ms does not lie between the nodes' %.3f and %.3f ms", m1.P50MS, a1.P50MS, b1.P50MS)
	}
	if m2, b2 := merged[1], statsOf(t, b, 2); m2.Requests != 10 || m2.P50MS != b2.P50MS {
		t.Fatalf("version 2 merged %+v, want the one node's %+v", m2, b2)
	}
}

func TestMetrics_StatsFiltersByModel(t *testing.T) {
	m := newTestMetrics()
	observeUniform(m, "a", 1, 10, 1, 2)
	observeUniform(m, "a", 2, 4, 1, 2)
	observeUniform(m, "b", 1, 7, 1, 2)
	m.Observe("b", 3, time.Millisecond, structs.Errorf(structs.CodeInvalid, "bad"))

	tests := []struct {
		model        string
		wantVersions []uint64
		wantRequests []uint64
		wantErrors   []uint64
	}{
		{model: "a", wantVersions: []uint64{1, 2}, wantRequests: []uint64{10, 4}, wantErrors: []uint64{0, 0}},
		{model: "b", wantVersions: []uint64{1, 3}, wantRequests: []uint64{7, 1}, wantErrors: []uint64{0, 1}},
		{model: "c"},
	}
	for _, tc := range tests {
		t.Run(tc.model, func(t *testing.T) {
			stats := m.Stats(tc.model)
			if len(stats) != len(tc.wantVersions) {
				t.Fatalf("Stats(%q) = %+v, want versions %v", tc.model, stats, tc.wantVersions)
			}
			for i, s := range stats {
				if s.Version != tc.wantVersions[i] || s.Requests != tc.wantRequests[i] || s.Errors != tc.wantErrors[i] || s.Count != tc.wantRequests[i] {
					t.Fatalf("Stats(%q)[%d] = version %d, %d requests, %d errors, count %d; want %d, %d, %d",
						tc.model, i, s.Version, s.Requests, s.Errors, s.Count, tc.wantVersions[i], tc.wantRequests[i], tc.wantErrors[i])
				}
			}
		})
	}
}

func TestMetrics_NilRecordsNothing(t *testing.T) {
	var m *Metrics
	m.Observe("m", 1, time.Millisecond, nil) // must not panic
}

func TestMetrics_ForgetDeletesSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.Observe("a", 1, time.Millisecond, nil)
	m.Observe("a", 1, time.Millisecond, structs.Errorf(structs.CodeInvalid, "bad"))
	m.Observe("a", 1, time.Millisecond, errors.New("boom"))
	m.Observe("a", 2, time.Millisecond, structs.Errorf(structs.CodeInvalid, "bad"))
	m.Observe("b", 1, time.Millisecond, nil)

	// series counts the exported series of each family with model and version.
	series := func(model, version string) map[string]int {
		t.Helper()
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int{}
		for _, f := range families {
			for _, pb := range f.GetMetric() {
				var gotModel, gotVersion string
				for _, l := range pb.GetLabel() {
					switch l.GetName() {
					case "model":
						gotModel = l.GetValue()
					case "version":
						gotVersion = l.GetValue()
					}
				}
				if gotModel == model && gotVersion == version {
					out[f.GetName()]++
				}
			}
		}
		return out
	}
	if got := series("a", "1"); got["kiln_predict_requests_total"] != 1 || got["kiln_predict_latency_seconds"] != 1 || got["kiln_predict_errors_total"] != 2 {
		t.Fatalf("series of a v1 before Forget: %v", got)
	}

	forgot := m.Forget(func(model string, version uint64) bool { return model != "a" || version != 1 })
	if forgot != 1 {
		t.Fatalf("Forget forgot %d versions, want 1", forgot)
	}
	if got := series("a", "1"); len(got) != 0 {
		t.Fatalf("series of a v1 after Forget: %v, want none", got)
	}
	if s := m.Stats("a"); len(s) != 1 || s[0].Version != 2 || s[0].Requests != 1 || s[0].Errors != 1 {
		t.Fatalf("Stats(a) after Forget = %+v, want version 2 alone, untouched", s)
	}
	if s := m.Stats("b"); len(s) != 1 || s[0].Requests != 1 {
		t.Fatalf("Stats(b) after Forget = %+v, want version 1 untouched", s)
	}

	// A version seen again after Forget starts over.
	m.Observe("a", 1, time.Millisecond, nil)
	if s := statsOf(t, m.Stats("a"), 1); s.Requests != 1 || s.Errors != 0 {
		t.Fatalf("a v1 observed after Forget = %+v, want 1 request, no errors", s)
	}
	var none *Metrics
	if n := none.Forget(func(string, uint64) bool { return false }); n != 0 {
		t.Fatalf("a nil Metrics forgot %d versions", n)
	}
}

func TestSumStats(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	for range 90 {
		m.Observe("m", 1, time.Millisecond, nil)
	}
	for range 10 {
		m.Observe("m", 2, time.Second, errors.New("x"))
	}
	sum := SumStats(m.Stats("m"))
	if sum.Requests != 100 || sum.Errors != 10 || sum.Count != 100 {
		t.Fatalf("sum %+v", sum)
	}
	// Nine in ten requests took 1 ms, one in ten 1 s: the median is near
	// 1 ms and the 99th percentile near 1 s, over both versions.
	if sum.P50MS > 1.5 || sum.P99MS < 800 {
		t.Errorf("p50 %v ms, p99 %v ms", sum.P50MS, sum.P99MS)
	}
}
