package raftfsm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/kilnml/kiln/raftfsm/structs"
)

var txnSchema = map[string]string{"user_id": "int", "ts": "timestamp", "amount": "float", "country": "string", "n": "int"}

func putSource(t testing.TB, name string, schema map[string]string) []byte {
	return encode(t, structs.SourcePutType, &structs.SourcePutRequest{Spec: structs.SourceSpec{Name: name, Kind: structs.SourcePush, Schema: schema}, At: t0})
}

func putEntity(t testing.TB, name string, keys ...string) []byte {
	return encode(t, structs.EntityPutType, &structs.EntityPutRequest{Entity: structs.Entity{Name: name, JoinKeys: keys, UpdatedAt: t0}})
}

func putView(t testing.TB, v structs.FeatureView) []byte {
	v.UpdatedAt = t0
	return encode(t, structs.FeatureViewPutType, &structs.FeatureViewPutRequest{View: v})
}

func ingest(t testing.TB, req structs.SourceIngestRequest) []byte {
	if req.At.IsZero() {
		req.At = t0
	}
	return encode(t, structs.SourceIngestType, &req)
}

// txnView is a view over txnSchema with every kind of feature.
func txnView(ttl string) structs.FeatureView {
	return structs.FeatureView{
		Name: "txn_stats", Entity: "user", Source: "txns", TimestampColumn: "ts", TTL: ttl,
		Features: []structs.Feature{
			{Name: "amount"}, {Name: "country"},
			{Name: "amount_sum_1h", Expr: "sum(amount)", Window: "1h"},
			{Name: "n_sum_1h", Expr: "sum(n)", Window: "1h"},
			{Name: "count_1d", Expr: "count()", Window: "1d"},
			{Name: "amount_count_1d", Expr: "count(amount)", Window: "1d"},
			{Name: "amount_avg_1d", Expr: "avg(amount)", Window: "1d"},
			{Name: "amount_min_2h", Expr: "min(amount)", Window: "2h"},
			{Name: "n_max_2h", Expr: "max(n)", Window: "2h"},
			{Name: "country_last_1d", Expr: "last(country)", Window: "1d"},
		},
	}
}

func featureSetup(t testing.TB, f *FSM, ttl string) uint64 {
	t.Helper()
	mustApply(t, f, 1, putSource(t, "txns", txnSchema), putEntity(t, "user", "user_id"), putView(t, txnView(ttl)))
	return 4
}

// event is one generated record, in the order it was ingested.
type event struct {
	user    int64
	ts      int64
	amount  any // float64 or nil
	n       int64
	country string
}

func (e event) row() structs.FeatureRow {
	return structs.FeatureRow{View: "txn_stats", Entity: structs.EntityKey(fmt.Sprint(e.user)), TS: e.ts,
		Values: map[string]any{"amount": e.amount, "country": e.country, "n": e.n}}
}

// oracle computes what a feature of txnView must be for user at time at,
// by brute force over every event: the latest at or before at is the one
// with the greatest (ts, ingestion order).
func oracle(events []event, f structs.Feature, ttl time.Duration, user int64, at int64) any {
	if !f.Windowed() {
		best := -1
		for i, e := range events {
			if e.user == user && e.ts <= at && (best < 0 || e.ts >= events[best].ts) {
				best = i
			}
		}
		if best < 0 || (ttl > 0 && at-events[best].ts > int64(ttl)) {
			return nil
		}
		return events[best].row().Values[f.Name]
	}
	fn, col, _ := structs.ParseAggregation(f.Expr)
	var in []event
	for _, e := range events {
		if e.user == user && e.ts <= at && at-e.ts < int64(f.WindowDuration()) {
			in = append(in, e)
		}
	}
	var vals []any
	for _, e := range in {
		if v := e.row().Values[col]; col != "" && v != nil {
			vals = append(vals, v)
		}
	}
	num := func(v any) float64 {
		if i, ok := v.(int64); ok {
			return float64(i)
		}
		return v.(float64)
	}
	switch fn {
	case "count":
		if col == "" {
			return int64(len(in))
		}
		return int64(len(vals))
	case "sum":
		if f.Type == "int" {
			var s int64
			for _, v := range vals {
				s += v.(int64)
			}
			return s
		}
		s := 0.0
		for _, v := range vals {
			s += num(v)
		}
		return s
	case "last":
		best := -1
		for i, e := range in {
			if e.row().Values[col] != nil && (best < 0 || e.ts >= in[best].ts) {
				best = i
			}
		}
		if best < 0 {
			return nil
		}
		return in[best].row().Values[col]
	}
	if len(vals) == 0 {
		return nil
	}
	switch fn {
	case "avg":
		s := 0.0
		for _, v := range vals {
			s += num(v)
		}
		return s / float64(len(vals))
	case "min", "max":
		m := num(vals[0])
		for _, v := range vals {
			if fn == "min" {
				m = math.Min(m, num(v))
			} else {
				m = math.Max(m, num(v))
			}
		}
		if f.Type == "int" {
			return int64(m)
		}
		return m
	}
	return nil
}

func sameValue(a, b any) bool {
	fa, aok := a.(float64)
	fb, bok := b.(float64)
	if aok && bok {
		return math.Abs(fa-fb) <= 1e-9*math.Max(1, math.Abs(fa))
	}
	return a == b
}

// TestFeatureCursor_MatchesOracle writes random events (few users, second
// timestamps so that ties are common, null amounts, in shuffled order so
// that they arrive out of order, in several commands) and checks every
// feature at random times and at every event's own time against the brute
// force oracle, with and without a TTL.
func TestFeatureCursor_MatchesOracle(t *testing.T) {
	for _, ttl := range []string{"", "30m", "6h"} {
		t.Run("ttl="+ttl, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(7, uint64(len(ttl))))
			f := testFSM(t)
			idx := featureSetup(t, f, ttl)
			base := t0.UnixNano()
			var events []event
			for range 3000 {
				e := event{
					user:    rng.Int64N(12),
					ts:      base + rng.Int64N(3*24*3600/20)*int64(20*time.Second), // 20 s grid: many ties
					n:       rng.Int64N(100) - 50,
					country: []string{"fr", "de", "us"}[rng.IntN(3)],
				}
				if rng.IntN(5) > 0 {
					e.amount = math.Round(rng.Float64()*10000) / 100
				}
				events = append(events, e)
			}
			for lo := 0; lo < len(events); lo += 700 {
				batch := events[lo:min(lo+700, len(events))]
				rows := make([]structs.FeatureRow, len(batch))
				for i, e := range batch {
					rows[i] = e.row()
				}
				mustApply(t, f, idx, ingest(t, structs.SourceIngestRequest{Source: "txns", Rows: rows, Read: int64(len(rows)), Accepted: int64(len(rows))}))
				idx++
			}
			txn := f.ReadTxn()
			defer txn.Discard()
			v, err := txn.FeatureView("txn_stats")
			if err != nil || v.Rows != uint64(len(events)) {
				t.Fatalf("view = %+v, %v; want %d rows", v, err, len(events))
			}
			feats := make([]*structs.Feature, len(v.Features))
			for i := range v.Features {
				feats[i] = &v.Features[i]
			}
			cur, err := txn.FeatureCursor("txn_stats")
			must(t, err)
			defer cur.Close()
			var times []int64
			for _, e := range events[:300] {
				times = append(times, e.ts, e.ts-1, e.ts+int64(time.Hour))
			}
			for range 300 {
				times = append(times, base+rng.Int64N(4*24*int64(time.Hour))-int64(time.Hour))
			}
			var read *ViewRead
			checked := 0
			for i, at := range times {
				user := int64(i % 13) // user 12 has no events
				read, err = cur.Read(v, feats, structs.EntityKey(fmt.Sprint(user)), time.Unix(0, at), read)
				must(t, err)
				for j, feat := range feats {
					want := oracle(events, *feat, v.TTLDuration(), user, at)
					if !sameValue(read.Values[j], want) {
						t.Fatalf("user %d at %v: %s = %#v, want %#v", user, time.Unix(0, at).UTC(), feat.Name, read.Values[j], want)
					}
					if want != nil {
						checked++
					}
				}
			}
			if checked < len(times) {
				t.Fatalf("only %d non-null values checked; the generated data do not exercise the features", checked)
			}
		})
	}
}

func TestFSM_SourceIngestPosition(t *testing.T) {
	f := testFSM(t)
	featureSetup(t, f, "")
	batch := func(from, to string) []byte {
		return ingest(t, structs.SourceIngestRequest{Source: "txns", From: map[string]string{"p0": from}, Advance: map[string]string{"p0": to}, Read: 1, Accepted: 1})
	}
	res := f.ApplyBatch(commandLogs(4, batch("", "10"), batch("", "10"), batch("10", "20"), batch("5", "30")))
	for i, want := range []string{"", structs.CodeConflict, "", structs.CodeConflict} {
		if got := codeOf(res[i]); got != want {
			t.Errorf("batch %d: code %q, want %q (%v)", i, got, want, res[i])
		}
	}
	txn := f.ReadTxn()
	defer txn.Discard()
	s, err := txn.Source("txns")
	if err != nil || s.Position["p0"] != "20" || s.Read != 2 || s.Accepted != 2 {
		t.Fatalf("source = %+v, %v; want position 20 after 2 batches", s, err)
	}
}

func TestFSM_FeatureViewChecks(t *testing.T) {
	view := func(change func(*structs.FeatureView)) []byte {
		v := txnView("")
		change(&v)
		return putView(t, v)
	}
	tests := []struct {
		name, code, text string
		cmd              []byte
	}{
		{"unknown entity", structs.CodeNotFound, `entity "card"`, view(func(v *structs.FeatureView) { v.Entity = "card" })},
		{"unknown source", structs.CodeNotFound, `source "orders"`, view(func(v *structs.FeatureView) { v.Source = "orders" })},
		{"missing column", structs.CodeInvalid, `(price) is not a column`, view(func(v *structs.FeatureView) { v.Features[0].Name = "price" })},
		{"wrong type", structs.CodeInvalid, "declared int, but the column is a string", view(func(v *structs.FeatureView) { v.Features[1].Type = "int" })},
		{"sum of a string", structs.CodeInvalid, "needs a numeric column", view(func(v *structs.FeatureView) { v.Features[2].Expr = "sum(country)" })},
		{"timestamp not a timestamp", structs.CodeInvalid, "not a timestamp", view(func(v *structs.FeatureView) { v.TimestampColumn = "amount" })},
		{"bad window", structs.CodeInvalid, "window", view(func(v *structs.FeatureView) { v.Features[2].Window = "soon" })},
		{"bad aggregation", structs.CodeInvalid, "windowed feature", view(func(v *structs.FeatureView) { v.Features[2].Expr = "median(amount)" })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := testFSM(t)
			mustApply(t, f, 1, putSource(t, "txns", txnSchema), putEntity(t, "user", "user_id"))
			res := f.ApplyBatch(commandLogs(3, tt.cmd))[0]
			if codeOf(res) != tt.code || !strings.Contains(fmt.Sprint(res), tt.text) {
				t.Fatalf("result %v (%s), want %s naming %q", res, codeOf(res), tt.code, tt.text)
			}
		})
	}
}

func TestFSM_FeatureDependencies(t *testing.T) {
	f := testFSM(t)
	idx := featureSetup(t, f, "")
	svc := encode(t, structs.FeatureServicePutType, &structs.FeatureServicePutRequest{Service: structs.FeatureService{Name: "fraud", Features: []string{"txn_stats:amount", "txn_stats:*"}, UpdatedAt: t0}})
	mustApply(t, f, idx, svc)
	del := func(typ structs.MessageType, name string) []byte {
		return encode(t, typ, &structs.NameRequest{Name: name})
	}
	badSvc := encode(t, structs.FeatureServicePutType, &structs.FeatureServicePutRequest{Service: structs.FeatureService{Name: "bad", Features: []string{"txn_stats:nope"}, UpdatedAt: t0}})
	newSchema := putSource(t, "txns", map[string]string{"user_id": "int", "ts": "timestamp"})
	rekey := putEntity(t, "user", "account_id")
	res := f.ApplyBatch(commandLogs(idx+1,
		badSvc, newSchema, rekey,
		del(structs.FeatureViewDeleteType, "txn_stats"),
		del(structs.EntityDeleteType, "user"),
		del(structs.SourceDeleteType, "txns"),
		del(structs.FeatureServiceDeleteType, "fraud"),
		del(structs.FeatureViewDeleteType, "txn_stats"),
		del(structs.EntityDeleteType, "user"),
		del(structs.SourceDeleteType, "txns"),
	))
	want := []string{structs.CodeInvalid, structs.CodeConflict, structs.CodeConflict, structs.CodeConflict, structs.CodeConflict, structs.CodeConflict, "", "", "", ""}
	for i, code := range want {
		if got := codeOf(res[i]); got != code {
			t.Errorf("command %d: code %q, want %q (%v)", i, got, code, res[i])
		}
	}
}

func TestFSM_FeatureCompact(t *testing.T) {
	f := testFSM(t)
	idx := featureSetup(t, f, "")
	var rows []structs.FeatureRow
	for u := range 50 {
		for h := range 10 {
			rows = append(rows, event{user: int64(u), ts: t0.Add(time.Duration(h) * time.Hour).UnixNano(), n: int64(h)}.row())
		}
	}
	mustApply(t, f, idx, ingest(t, structs.SourceIngestRequest{Source: "txns", Rows: rows}))
	idx++
	cut := t0.Add(4 * time.Hour).UnixNano() // hours 0-3 go, 4-9 stay
	compact := func(limit int) []byte {
		return encode(t, structs.FeatureCompactType, &structs.FeatureCompactRequest{View: "txn_stats", Before: cut, Limit: limit})
	}
	first := mustApply(t, f, idx, compact(150))[0].(*structs.FeatureCompactResult)
	second := mustApply(t, f, idx+1, compact(8000))[0].(*structs.FeatureCompactResult)
	if *first != (structs.FeatureCompactResult{Deleted: 150, More: true}) || *second != (structs.FeatureCompactResult{Deleted: 50, More: false}) {
		t.Fatalf("compactions = %+v, %+v; want 150 with more, then the other 50", first, second)
	}
	txn := f.ReadTxn()
	defer txn.Discard()
	n, err := txn.FeatureValueCount("txn_stats")
	if err != nil || n != 300 {
		t.Fatalf("%d values left (%v), want 300", n, err)
	}
	cur, err := txn.FeatureCursor("txn_stats")
	must(t, err)
	defer cur.Close()
	for u := range 50 {
		r, err := cur.Latest(structs.EntityKey(fmt.Sprint(u)), cut)
		if err != nil || r == nil || r.Values["n"] != int64(4) {
			t.Fatalf("user %d at the cut: %+v, %v; want hour 4's row", u, r, err)
		}
		if r, _ := cur.Latest(structs.EntityKey(fmt.Sprint(u)), cut-1); r != nil {
			t.Fatalf("user %d before the cut: %+v, want nothing", u, r)
		}
	}
	// A deleted view's values go, by compaction, before its name is free.
	mustApply(t, f, idx+2, encode(t, structs.FeatureViewDeleteType, &structs.NameRequest{Name: "txn_stats"}))
	txn2 := f.ReadTxn()
	defer txn2.Discard()
	if n, _ := txn2.FeatureValueCount("txn_stats"); n != 0 {
		t.Fatalf("%d values left after the view's deletion, want 0", n)
	}
}

// TestFSM_SourceIngestDedupe: a source read whole on every run sends its
// unchanged records again; with Dedupe they are stored once, and a changed
// value at the same time is a new row.
func TestFSM_SourceIngestDedupe(t *testing.T) {
	f := testFSM(t)
	idx := featureSetup(t, f, "")
	second := txnView("")
	second.Name = "txn_b"
	mustApply(t, f, idx, putView(t, second))
	idx++
	rows := func(amount float64) []structs.FeatureRow {
		out := []structs.FeatureRow{
			event{user: 1, ts: t0.UnixNano(), amount: 2.5, n: 3, country: "fr"}.row(),
			event{user: 2, ts: t0.UnixNano(), amount: amount, n: -7, country: "de"}.row(),
			event{user: 2, ts: t0.UnixNano(), amount: amount, n: -7, country: "de"}.row(), // twice in one batch
		}
		// The same records for the second view, in the same command.
		for _, r := range out[:3] {
			r.View = "txn_b"
			out = append(out, r)
		}
		return out
	}
	mustApply(t, f, idx,
		ingest(t, structs.SourceIngestRequest{Source: "txns", Rows: rows(1), Dedupe: true}),
		ingest(t, structs.SourceIngestRequest{Source: "txns", Rows: rows(1), Dedupe: true}),
		ingest(t, structs.SourceIngestRequest{Source: "txns", Rows: rows(9), Dedupe: true}),
		ingest(t, structs.SourceIngestRequest{Source: "txns", Rows: rows(9)}),
	)
	txn := f.ReadTxn()
	defer txn.Discard()
	for _, view := range []string{"txn_stats", "txn_b"} {
		n, err := txn.FeatureValueCount(view)
		if err != nil || n != 3+3 {
			t.Fatalf("%s: %d values (%v); want 2 from the first batch, 1 changed, and all 3 of the batch without dedupe", view, n, err)
		}
	}
}
