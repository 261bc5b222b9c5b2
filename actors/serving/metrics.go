package serving

import (
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// latencyBuckets are the upper bounds, in seconds, of the latency histogram:
// 64 exponential buckets from 100 µs to 30 s, about 22% apart, so a
// percentile read from them is within a bucket's width of the truth.
var latencyBuckets = prometheus.ExponentialBucketsRange(0.0001, 30, 64)

// Metrics counts requests, errors and latency per model version, on this
// node's ingress. They are exported as Prometheus metrics and summarised, as
// percentiles read from the histograms, by Stats.
type Metrics struct {
	requests *prometheus.CounterVec
	errors   *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// NewMetrics registers the serving metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_predict_requests_total", Help: "Prediction requests answered by this node's ingress, per model version.",
		}, []string{"model", "version"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_predict_errors_total", Help: "Prediction requests that failed, per model version and error code.",
		}, []string{"model", "version", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kiln_predict_latency_seconds", Help: "Prediction latency at this node's ingress, per model version.",
			Buckets: latencyBuckets,
		}, []string{"model", "version"}),
	}
	reg.MustRegister(m.requests, m.errors, m.latency)
	return m
}

// Refused records a request routed to a version that refused its input
// before it was scored (its schema does not fit): a request and an error of
// that version, with no latency. An input one version refuses may suit
// another, so a canary whose schema changed shows in its error rate. A nil
// Metrics records nothing.
func (m *Metrics) Refused(model string, version uint64, err error) {
	if m == nil {
		return
	}
	v := strconv.FormatUint(version, 10)
	m.requests.WithLabelValues(model, v).Inc()
	m.errors.WithLabelValues(model, v, structs.ErrorCode(err)).Inc()
}

// Observe records one request. A nil Metrics records nothing.
func (m *Metrics) Observe(model string, version uint64, d time.Duration, err error) {
	if m == nil {
		return
	}
	v := strconv.FormatUint(version, 10)
	m.requests.WithLabelValues(model, v).Inc()
	m.latency.WithLabelValues(model, v).Observe(d.Seconds())
	if err != nil {
		m.errors.WithLabelValues(model, v, structs.ErrorCode(err)).Inc()
	}
}

// Forget deletes the series of every model version for which keep returns
// false, so that versions and models deleted from the registry do not stay
// in the exported metrics (and in Stats) for as long as the node runs. It
// returns how many versions it forgot. A nil Metrics forgets nothing.
func (m *Metrics) Forget(keep func(model string, version uint64) bool) int {
	if m == nil {
		return 0
	}
	type modelVersion struct{ model, version string }
	seen := map[modelVersion]bool{}
	find := func(pb *dto.Metric) {
		var mv modelVersion
		for _, l := range pb.GetLabel() {
			switch l.GetName() {
			case "model":
				mv.model = l.GetValue()
			case "version":
				mv.version = l.GetValue()
			}
		}
		seen[mv] = true
	}
	// Observe counts every request, so the requests series name every
	// version that has latency series; errors are collected as well, as
	// they are few and cheap to read (unlike the latency histograms).
	collect(m.requests, find)
	collect(m.errors, find)
	forgot := 0
	for mv := range seen {
		if v, err := strconv.ParseUint(mv.version, 10, 64); err == nil && keep(mv.model, v) {
			continue
		}
		labels := prometheus.Labels{"model": mv.model, "version": mv.version}
		m.requests.Delete(labels)
		m.latency.Delete(labels)
		m.errors.DeletePartialMatch(labels)
		forgot++
	}
	return forgot
}

// VersionStats is one version's counts and latency histogram. Counts are
// cumulative per bucket, as Prometheus keeps them, so stats from several
// nodes add up bucket by bucket.
type VersionStats struct {
	Version  uint64   `msgpack:"version" json:"version"`
	Requests uint64   `msgpack:"requests" json:"requests"`
	Errors   uint64   `msgpack:"errors" json:"errors"`
	Buckets  []uint64 `msgpack:"buckets" json:"-"` // cumulative counts per latencyBuckets bound
	Count    uint64   `msgpack:"count" json:"-"`
	P50MS    float64  `msgpack:"-" json:"p50_ms"`
	P95MS    float64  `msgpack:"-" json:"p95_ms"`
	P99MS    float64  `msgpack:"-" json:"p99_ms"`
}

// Stats returns the counts and histograms of every version of model seen on
// this node, sorted by version, with percentiles filled in.
func (m *Metrics) Stats(model string) []VersionStats {
	byVersion := map[uint64]*VersionStats{}
	get := func(labels []*dto.LabelPair) *VersionStats {
		var name string
		var version uint64
		for _, l := range labels {
			switch l.GetName() {
			case "model":
				name = l.GetValue()
			case "version":
				version, _ = strconv.ParseUint(l.GetValue(), 10, 64)
			}
		}
		if name != model {
			return nil
		}
		s := byVersion[version]
		if s == nil {
			s = &VersionStats{Version: version, Buckets: make([]uint64, len(latencyBuckets))}
			byVersion[version] = s
		}
		return s
	}
	collect(m.requests, func(pb *dto.Metric) {
		if s := get(pb.GetLabel()); s != nil {
			s.Requests += uint64(pb.GetCounter().GetValue())
		}
	})
	collect(m.errors, func(pb *dto.Metric) {
		if s := get(pb.GetLabel()); s != nil {
			s.Errors += uint64(pb.GetCounter().GetValue())
		}
	})
	collect(m.latency, func(pb *dto.Metric) {
		if s := get(pb.GetLabel()); s != nil {
			h := pb.GetHistogram()
			s.Count += h.GetSampleCount()
			for i, b := range h.GetBucket() {
				if i < len(s.Buckets) {
					s.Buckets[i] += b.GetCumulativeCount()
				}
			}
		}
	})
	out := make([]VersionStats, 0, len(byVersion))
	for _, s := range byVersion {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b VersionStats) int { return int(a.Version) - int(b.Version) })
	for i := range out {
		out[i].fillPercentiles()
	}
	return out
}

func collect(c prometheus.Collector, fn func(*dto.Metric)) {
	ch := make(chan prometheus.Metric, 64)
	go func() {
		c.Collect(ch)
		close(ch)
	}()
	for metric := range ch {
		var pb dto.Metric
		if metric.Write(&pb) == nil {
			fn(&pb)
		}
	}
}

// MergeStats adds per-node stats of one model together, version by version.
func MergeStats(parts ...[]VersionStats) []VersionStats {
	byVersion := map[uint64]*VersionStats{}
	for _, part := range parts {
		for _, s := range part {
			t := byVersion[s.Version]
			if t == nil {
				t = &VersionStats{Version: s.Version, Buckets: make([]uint64, len(latencyBuckets))}
				byVersion[s.Version] = t
			}
			t.Requests += s.Requests
			t.Errors += s.Errors
			t.Count += s.Count
			for i := range min(len(t.Buckets), len(s.Buckets)) {
				t.Buckets[i] += s.Buckets[i]
			}
		}
	}
	out := make([]VersionStats, 0, len(byVersion))
	for _, s := range byVersion {
		s.fillPercentiles()
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b VersionStats) int { return int(a.Version) - int(b.Version) })
	return out
}

func (s *VersionStats) fillPercentiles() {
	s.P50MS = round3(quantile(0.50, s.Buckets, s.Count) * 1000)
	s.P95MS = round3(quantile(0.95, s.Buckets, s.Count) * 1000)
	s.P99MS = round3(quantile(0.99, s.Buckets, s.Count) * 1000)
}

// quantile estimates the q-quantile from cumulative bucket counts the way
// Prometheus' histogram_quantile does: find the bucket holding the rank and
// interpolate linearly inside it. Samples above the last bound report that
// bound. 0 when there are no samples.
func quantile(q float64, cumulative []uint64, count uint64) float64 {
	if count == 0 {
		return 0
	}
	rank := q * float64(count)
	for i, c := range cumulative {
		if float64(c) >= rank {
			lower, below := 0.0, uint64(0)
			if i > 0 {
				lower, below = latencyBuckets[i-1], cumulative[i-1]
			}
			inBucket := c - below
			if inBucket == 0 {
				return latencyBuckets[i]
			}
			return lower + (latencyBuckets[i]-lower)*(rank-float64(below))/float64(inBucket)
		}
	}
	return latencyBuckets[len(latencyBuckets)-1]
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

// SubtractStats is what happened between two readings of the same
// cumulative stats, version by version, with percentiles of the interval:
// the window an alert rule looks at. A version missing from before counts
// from zero; a counter that went backwards (a node restarted) counts from
// zero too.
func SubtractStats(now, before []VersionStats) []VersionStats {
	prev := map[uint64]VersionStats{}
	for _, s := range before {
		prev[s.Version] = s
	}
	out := make([]VersionStats, 0, len(now))
	for _, s := range now {
		d := VersionStats{Version: s.Version, Buckets: slices.Clone(s.Buckets)}
		p, ok := prev[s.Version]
		if !ok || p.Requests > s.Requests || p.Count > s.Count || p.Errors > s.Errors {
			p = VersionStats{}
		}
		d.Requests, d.Errors, d.Count = s.Requests-p.Requests, s.Errors-p.Errors, s.Count-p.Count
		for i := range min(len(d.Buckets), len(p.Buckets)) {
			d.Buckets[i] -= min(p.Buckets[i], d.Buckets[i])
		}
		d.fillPercentiles()
		out = append(out, d)
	}
	return out
}

// SumStats adds every version's stats into one (Version 0), with the
// percentiles of all their requests together.
func SumStats(stats []VersionStats) VersionStats {
	sum := VersionStats{Buckets: make([]uint64, len(latencyBuckets))}
	for _, s := range stats {
		sum.Requests += s.Requests
		sum.Errors += s.Errors
		sum.Count += s.Count
		for i := range min(len(sum.Buckets), len(s.Buckets)) {
			sum.Buckets[i] += s.Buckets[i]
		}
	}
	sum.fillPercentiles()
	return sum
}
