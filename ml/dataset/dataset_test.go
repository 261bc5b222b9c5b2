package dataset

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func scanString(t *testing.T, format Format, body string, opts Options) (*Result, []BadRow, error) {
	t.Helper()
	var bad []BadRow
	opts.Format = format
	if opts.OnBadRow == nil {
		opts.OnBadRow = func(b BadRow, _ []byte) error { bad = append(bad, b); return nil }
	}
	res, err := Scan(strings.NewReader(body), opts)
	return res, bad, err
}

func column(t *testing.T, r *Result, name string) ColumnStats {
	t.Helper()
	for _, c := range r.Columns {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no column %q in %+v", name, r.Columns)
	return ColumnStats{}
}

// The iris file: its columns' types are inferred, and the statistics match
// the ones computed directly from the file.
func TestScan_Iris(t *testing.T) {
	path := filepath.Join("..", "testdata", "datasets", "iris.csv")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := Scan(f, Options{Format: CSV})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != 150 || res.BadRows != 0 {
		t.Fatalf("rows %d, bad %d; want 150, 0", res.Rows, res.BadRows)
	}
	want := map[string]Type{"_index_": Int, "Sepal_Length": Float, "Sepal_Width": Float, "Petal_Length": Float, "Petal_Width": Float, "Species": String}
	for name, typ := range want {
		if c := column(t, res, name); c.Type != typ {
			t.Errorf("%s: type %s, want %s", name, c.Type, typ)
		}
	}
	// Reference: the file read with encoding/csv, moments computed directly.
	raw, _ := os.ReadFile(path)
	recs, err := csv.NewReader(strings.NewReader(string(raw))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var sum, sumSq, lo, hi float64 = 0, 0, math.Inf(1), math.Inf(-1)
	for _, r := range recs[1:] {
		x, _ := strconv.ParseFloat(r[1], 64)
		sum, sumSq, lo, hi = sum+x, sumSq+x*x, math.Min(lo, x), math.Max(hi, x)
	}
	mean := sum / 150
	std := math.Sqrt(sumSq/150 - mean*mean)
	sl := column(t, res, "Sepal_Length").Numeric
	if sl.Count != 150 || sl.Min != lo || sl.Max != hi || math.Abs(sl.Mean-mean) > 1e-9 || math.Abs(sl.Std-std) > 1e-9 {
		t.Fatalf("Sepal_Length stats %+v, want count 150 min %v max %v mean %v std %v", sl, lo, hi, mean, std)
	}
	sp := column(t, res, "Species").Categorical
	if sp.Distinct != 3 || len(sp.Top) != 3 || sp.Top[0].Count != 50 || !sp.Exact {
		t.Fatalf("Species stats %+v, want 3 values of 50", sp)
	}
}

// Types widen as values arrive; empty fields are nulls in any column.
func TestScan_InferredTypes(t *testing.T) {
	body := "i,f,b,ts,d,s,mixed,empty\n" +
		"1,1,true,2026-01-02T03:04:05Z,2026-01-02,x,1,\n" +
		"2,2.5,False,2026-01-03T00:00:00Z,2026-01-03,y,true,\n" +
		",,,,,,,\n"
	res, bad, err := scanString(t, CSV, body, Options{})
	if err != nil || len(bad) != 0 {
		t.Fatalf("err %v, bad %v", err, bad)
	}
	want := map[string]Type{"i": Int, "f": Float, "b": Bool, "ts": Timestamp, "d": Timestamp, "s": String, "mixed": String, "empty": String}
	for name, typ := range want {
		if c := column(t, res, name); c.Type != typ {
			t.Errorf("%s: type %s, want %s", name, c.Type, typ)
		}
	}
	if n := column(t, res, "i").Numeric; n.Count != 2 || n.Nulls != 1 || n.Mean != 1.5 {
		t.Errorf("i: %+v, want 2 values, 1 null, mean 1.5", n)
	}
	if c := column(t, res, "mixed").Categorical; c.Count != 2 || c.Nulls != 1 {
		t.Errorf("mixed: %+v, want 2 values and 1 null", c)
	}
	if ts := column(t, res, "ts").Numeric; ts.Min != 1767323045 {
		t.Errorf("ts min %v, want the Unix seconds of 2026-01-02T03:04:05Z", ts.Min)
	}
}

// A bad row is reported with its line and reason and left out of the
// statistics; OnBadRow's error stops the scan (strict mode).
func TestScan_BadRows(t *testing.T) {
	body := "a,b\n1,2\n3\n4,5,6\n\"x,7\n"
	res, bad, err := scanString(t, CSV, body, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != 1 || res.BadRows != 3 || len(bad) != 3 {
		t.Fatalf("rows %d bad %d %v; want 1 row and 3 bad", res.Rows, res.BadRows, bad)
	}
	for i, want := range []struct {
		line int64
		says string
	}{{3, "1 fields"}, {4, "3 fields"}, {5, "quote"}} {
		if bad[i].Line != want.line || !strings.Contains(bad[i].Reason, want.says) {
			t.Errorf("bad row %d = %+v, want line %d saying %q", i, bad[i], want.line, want.says)
		}
	}
	stop := errors.New("strict")
	_, _, err = scanString(t, CSV, body, Options{OnBadRow: func(BadRow, []byte) error { return stop }})
	if !errors.Is(err, stop) {
		t.Fatalf("strict scan: %v, want its OnBadRow error", err)
	}
}

// A pinned schema checks the header and every value.
func TestScan_PinnedSchema(t *testing.T) {
	schema := []Column{{Name: "n", Type: Int}, {Name: "x", Type: Float}}
	res, bad, err := scanString(t, TSV, "n\tx\n1\t2\n2.5\t3\n4\t5\n", Options{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != 2 || len(bad) != 1 || bad[0].Line != 3 || !strings.Contains(bad[0].Reason, `"2.5" is not a int`) {
		t.Fatalf("rows %d, bad %+v; want 2 rows and line 3 refused", res.Rows, bad)
	}
	if c := column(t, res, "x"); c.Type != Float || c.Numeric.Mean != 3.5 {
		t.Fatalf("x: %+v, want float of mean 3.5 (an int fits a float column)", c)
	}
	for _, tc := range []struct{ body, says string }{
		{"n\ty\n1\t2\n", `"y" is not in the schema`},
		{"n\n1\n", "1 columns, the schema 2"},
		{"", "empty"},
	} {
		if _, _, err := scanString(t, TSV, tc.body, Options{Schema: schema}); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("header %q: %v, want ErrFormat saying %q", tc.body, err, tc.says)
		}
	}
	if _, _, err := scanString(t, CSV, "a,a\n1,2\n", Options{}); !errors.Is(err, ErrFormat) {
		t.Errorf("a duplicate header column: %v, want ErrFormat", err)
	}
}

// JSON lines: keys in first-seen order, missing keys are nulls (also for
// rows before a key first appears), numbers typed by their form, quoted
// numbers are text, nested values are text.
func TestScan_JSONLines(t *testing.T) {
	body := `{"a": 1, "b": "x"}
{"a": 2.5, "b": "y", "c": true}

not json
{"a": null, "b": "7", "d": {"k": [1]}}
[1, 2]
`
	res, bad, err := scanString(t, JSONL, body, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != 3 || len(bad) != 2 || bad[0].Line != 4 || bad[1].Line != 6 {
		t.Fatalf("rows %d bad %+v; want 3 rows, lines 4 and 6 bad", res.Rows, bad)
	}
	names := []string{}
	for _, c := range res.Columns {
		names = append(names, c.Name)
	}
	if strings.Join(names, ",") != "a,b,c,d" {
		t.Fatalf("columns %v, want a,b,c,d", names)
	}
	if a := column(t, res, "a"); a.Type != Float || a.Numeric.Count != 2 || a.Numeric.Nulls != 1 {
		t.Errorf("a: %+v", a)
	}
	if b := column(t, res, "b"); b.Type != String || b.Categorical.Distinct != 3 {
		t.Errorf("b: %+v, want three strings", b)
	}
	if c := column(t, res, "c"); c.Type != Bool || c.Categorical.Count != 1 || c.Categorical.Nulls != 2 {
		t.Errorf("c: %+v, want one bool and two nulls", c.Categorical)
	}
	if d := column(t, res, "d"); d.Type != String || d.Categorical.Top[0].Value != `{"k": [1]}` {
		t.Errorf("d: %+v", d.Categorical)
	}
}

func TestScan_UnknownFormat(t *testing.T) {
	if _, _, err := scanString(t, "xlsx", "a\n1\n", Options{}); !errors.Is(err, ErrFormat) {
		t.Fatalf("err %v, want ErrFormat", err)
	}
}

// rowsReader produces n CSV rows on demand, so a benchmark streams a file of
// any size without holding it.
type rowsReader struct {
	n, i int
	buf  []byte
}

func (r *rowsReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.i == r.n {
			return 0, io.EOF
		}
		if r.i == 0 {
			r.buf = append(r.buf, "id,x,y,label,when\n"...)
		}
		r.buf = fmt.Appendf(r.buf, "%d,%g,%d,c%d,2026-01-%02dT00:00:00Z\n", r.i, float64(r.i)*0.37, r.i%100, r.i%7, 1+r.i%28)
		r.i++
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// Rows per second of a 5-column CSV scan, statistics included.
func BenchmarkScan_CSV(b *testing.B) {
	const rows = 100000
	b.ReportAllocs()
	for b.Loop() {
		res, err := Scan(&rowsReader{n: rows}, Options{Format: CSV})
		if err != nil || res.Rows != rows {
			b.Fatalf("%v %+v", err, res)
		}
	}
	b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
}

// LibSVM: a label and one column per feature index, in index order; a
// feature a row leaves out is 0 there; bad tokens make the row bad.
func TestScan_LibSVM(t *testing.T) {
	body := "1 1:0.5 3:2\n# a comment\n0 qid:7 3:4\n1 2:x\n-1 2:1 1:1.5\nyes 1:1\n"
	res, bad, err := scanString(t, LibSVM, body, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != 3 || len(bad) != 2 || bad[0].Line != 4 || bad[1].Line != 6 {
		t.Fatalf("rows %d, bad %+v; want 3 rows, lines 4 and 6 bad", res.Rows, bad)
	}
	names := []string{}
	for _, c := range res.Columns {
		names = append(names, c.Name)
	}
	if strings.Join(names, ",") != "label,f1,f2,f3" {
		t.Fatalf("columns %v, want label,f1,f2,f3", names)
	}
	f1 := column(t, res, "f1")
	// f1 is 0.5, absent (0), 1.5: mean 2/3, min 0.
	if f1.Type != Float || f1.Numeric.Count != 3 || f1.Numeric.Min != 0 || math.Abs(f1.Numeric.Mean-2.0/3) > 1e-12 || f1.Categorical != nil {
		t.Fatalf("f1: %+v %+v", f1, f1.Numeric)
	}
	if f3 := column(t, res, "f3").Numeric; f3.Count != 3 || f3.Mean != 2 {
		t.Fatalf("f3: %+v, want 2, 4 and an absent 0: mean 2", f3)
	}
	if l := column(t, res, "label"); l.Type != Int || l.Numeric.Mean != 0 {
		t.Fatalf("label: %+v", l.Numeric)
	}
	// An index given twice makes the row bad (its statistics would count
	// the row twice).
	res, bad, err = scanString(t, LibSVM, "1 1:1\n0 1:2 1:3\n", Options{})
	if err != nil || res.Rows != 1 || len(bad) != 1 || bad[0].Line != 2 || !strings.Contains(bad[0].Reason, "feature 1 is given twice") {
		t.Fatalf("duplicate index: err %v, rows %d, bad %+v; want line 2 bad", err, res.Rows, bad)
	}
}

// gotRow is one OnRow call, its row copied (OnRow's slice is reused).
type gotRow struct {
	line int64
	row  []Value
}

// collectRows is an OnRow that keeps every row.
func collectRows(into *[]gotRow) func(int64, []Value) error {
	return func(line int64, row []Value) error {
		*into = append(*into, gotRow{line, slices.Clone(row)})
		return nil
	}
}

func num(k Type, x float64, text string) Value { return Value{Kind: k, Num: x, Text: text} }
func text(k Type, s string) Value              { return Value{Kind: k, Text: s} }

var zero = num(Int, 0, "0") // a LibSVM feature a row leaves out

// OnRow gets every good row once it is counted, with its line and typed
// values in the scan's column order: the pinned schema's, else the file's.
func TestScan_OnRow(t *testing.T) {
	day := float64(time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC).Unix())
	for _, tc := range []struct {
		name   string
		format Format
		body   string
		schema []Column
		want   []gotRow
	}{{
		name:   "csv pinned, header in another order",
		format: CSV,
		body:   "x,n,when,ok,s\n2.5,1,2026-01-02,TRUE,hi\nbad,3,,,\n,2,,false,\n",
		schema: []Column{{"n", Int}, {"x", Float}, {"ok", Bool}, {"when", Timestamp}, {"s", String}},
		want: []gotRow{
			{2, []Value{num(Int, 1, "1"), num(Float, 2.5, "2.5"), text(Bool, "true"), num(Timestamp, day, "2026-01-02"), text(String, "hi")}},
			{4, []Value{num(Int, 2, "2"), {}, text(Bool, "false"), {}, {}}},
		},
	}, {
		name:   "csv inferred, header order",
		format: CSV,
		body:   "b,a\nx,7\n\ny,8.5\n",
		want: []gotRow{
			{2, []Value{text(String, "x"), num(Int, 7, "7")}},
			{4, []Value{text(String, "y"), num(Float, 8.5, "8.5")}},
		},
	}, {
		name:   "tsv pinned, an int in a float column stays an int",
		format: TSV,
		body:   "a\tb\n1\t2\n",
		schema: []Column{{"b", Float}, {"a", String}},
		want:   []gotRow{{2, []Value{num(Int, 2, "2"), num(Int, 1, "1")}}},
	}, {
		name:   "jsonl pinned, keys in any order, a missing key null",
		format: JSONL,
		body:   "{\"b\": \"x\", \"a\": 1}\n{\"z\": 1}\n\n{\"a\": 2.5, \"c\": true}\n",
		schema: []Column{{"a", Float}, {"b", String}, {"c", Bool}},
		want: []gotRow{
			{1, []Value{num(Int, 1, "1"), text(String, "x"), {}}},
			{4, []Value{num(Float, 2.5, "2.5"), {}, text(Bool, "true")}},
		},
	}, {
		name:   "jsonl inferred, the row grows with a new key",
		format: JSONL,
		body:   "{\"a\": 1}\n{\"b\": \"2026-01-02\", \"a\": null}\n",
		want: []gotRow{
			{1, []Value{num(Int, 1, "1")}},
			{2, []Value{{}, num(Timestamp, day, "2026-01-02")}},
		},
	}, {
		name:   "libsvm pinned, schema order, a left-out feature 0",
		format: LibSVM,
		body:   "# header\n1 1:0.5 3:2\n0 3:4\n",
		schema: []Column{{"label", Int}, {"f3", Float}, {"f1", Float}},
		want: []gotRow{
			{2, []Value{num(Int, 1, "1"), num(Int, 2, "2"), num(Float, 0.5, "0.5")}},
			{3, []Value{num(Int, 0, "0"), num(Int, 4, "4"), zero}},
		},
	}, {
		name:   "libsvm inferred, features in the order first seen",
		format: LibSVM,
		body:   "1 3:2\n-1 1:1 qid:4\n",
		want: []gotRow{
			{1, []Value{num(Int, 1, "1"), num(Int, 2, "2")}},
			{2, []Value{num(Int, -1, "-1"), zero, num(Int, 1, "1")}},
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			var got []gotRow
			res, _, err := scanString(t, tc.format, tc.body, Options{Schema: tc.schema, OnRow: collectRows(&got)})
			if err != nil {
				t.Fatal(err)
			}
			if res.Rows != int64(len(got)) {
				t.Errorf("%d rows counted, OnRow called %d times", res.Rows, len(got))
			}
			if len(got) != len(tc.want) {
				t.Fatalf("rows %+v, want %+v", got, tc.want)
			}
			for i := range got {
				if got[i].line != tc.want[i].line || !slices.Equal(got[i].row, tc.want[i].row) {
					t.Errorf("row %d: line %d %+v, want line %d %+v", i, got[i].line, got[i].row, tc.want[i].line, tc.want[i].row)
				}
			}
		})
	}
}

// ErrStop from OnRow (or OnBadRow) ends the scan with the rows counted so
// far and no error; any other error is returned as it is.
func TestScan_ErrStop(t *testing.T) {
	for _, tc := range []struct {
		format Format
		body   string
	}{
		{CSV, "a,b\n1,x\n2\n3,y\n4,z\n5,w\n"},
		{JSONL, "{\"a\": 1}\n[]\n{\"a\": 3}\n{\"a\": 4}\n{\"a\": 5}\n"},
		{LibSVM, "1 1:1\nx 1:2\n0 2:3\n1 1:4\n0 1:5\n"},
	} {
		t.Run(string(tc.format), func(t *testing.T) {
			calls := 0
			stopAt2 := func(int64, []Value) error {
				if calls++; calls == 2 {
					return fmt.Errorf("enough: %w", ErrStop)
				}
				return nil
			}
			res, bad, err := scanString(t, tc.format, tc.body, Options{OnRow: stopAt2})
			if err != nil {
				t.Fatalf("err %v, want nil after ErrStop", err)
			}
			if calls != 2 || res.Rows != 2 || res.BadRows != 1 || len(bad) != 1 {
				t.Fatalf("%d calls, rows %d, bad %d; want the scan stopped at the second good row, one bad before it", calls, res.Rows, res.BadRows)
			}
			if n := res.Columns[0].Numeric; n == nil || n.Count+n.Nulls != 2 {
				t.Fatalf("first column %+v, want statistics of the 2 rows read", res.Columns[0])
			}
			if tc.format == LibSVM {
				// Row 3 left f1 out: its 0 is counted even though the scan stopped.
				if f1 := column(t, res, "f1").Numeric; f1.Count != 2 || f1.Min != 0 || f1.Max != 1 {
					t.Fatalf("f1 %+v, want 1 and an absent 0", f1)
				}
			}

			boom := errors.New("boom")
			res, _, err = scanString(t, tc.format, tc.body, Options{OnRow: func(int64, []Value) error { return boom }})
			if !errors.Is(err, boom) || res != nil {
				t.Fatalf("OnRow error: %v %+v, want it returned and no result", err, res)
			}

			res, _, err = scanString(t, tc.format, tc.body, Options{OnBadRow: func(BadRow, []byte) error { return ErrStop }})
			if err != nil || res.Rows != 1 || res.BadRows != 1 {
				t.Fatalf("ErrStop from OnBadRow: err %v, %+v; want the row before it", err, res)
			}
		})
	}
}

// A pinned LibSVM schema names the label and features f<index>: its columns
// are exactly those, and a row with another index is bad.
func TestScan_LibSVMSchema(t *testing.T) {
	schema := []Column{{"label", Float}, {"f2", Float}, {"f0", Int}}
	body := "1 0:1 2:0.5\n0 7:1\n0.5 0:3\n1 0:1.5\n1 2:1 2:2\n"
	res, bad, err := scanString(t, LibSVM, body, Options{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	wantBad := []struct {
		line int64
		says string
	}{{2, "feature index 7 is not in the schema"}, {4, `column f0: "1.5" is not a int`}, {5, "feature 2 is given twice"}}
	if res.Rows != 2 || len(bad) != len(wantBad) {
		t.Fatalf("rows %d, bad %+v; want 2 rows and lines 2, 4, 5 bad", res.Rows, bad)
	}
	for i, w := range wantBad {
		if bad[i].Line != w.line || !strings.Contains(bad[i].Reason, w.says) {
			t.Errorf("bad row %d = %+v, want line %d saying %q", i, bad[i], w.line, w.says)
		}
	}
	var names []string
	for _, c := range res.Columns {
		names = append(names, c.Name+" "+string(c.Type))
	}
	if got := strings.Join(names, ","); got != "label float,f2 float,f0 int" {
		t.Fatalf("columns %s, want the schema's", got)
	}
	// f2 is 0.5 in row 1 and left out (0) in row 3.
	if f2 := column(t, res, "f2"); f2.Numeric.Count != 2 || f2.Numeric.Mean != 0.25 || f2.Categorical != nil {
		t.Fatalf("f2 %+v %+v, want 0.5 and 0", f2, f2.Numeric)
	}

	for _, tc := range []struct {
		schema []Column
		says   string
	}{
		{[]Column{{"y", Int}, {"f1", Float}}, `"y"`},
		{[]Column{{"label", Int}, {"x1", Float}}, `"x1"`},
		{[]Column{{"label", Int}, {"f-1", Float}}, `"f-1"`},
		{[]Column{{"label", Int}, {"f", Float}}, `"f"`},
		{[]Column{{"label", Int}, {"f1", Float}, {"f01", Float}}, `"f1" and "f01" are both feature 1`},
		{[]Column{{"label", Int}, {"f1", String}}, `"f1" has type string`},
		{[]Column{{"label", Bool}}, `"label" has type bool`},
	} {
		if _, _, err := scanString(t, LibSVM, "1 1:1\n", Options{Schema: tc.schema}); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("schema %v: %v, want ErrFormat saying %s", tc.schema, err, tc.says)
		}
	}
}

// A UTF-8 byte-order mark is not part of the first column's name.
func TestScan_ByteOrderMark(t *testing.T) {
	res, _, err := scanString(t, CSV, "\ufeffa,b\n1,2\n", Options{Schema: []Column{{"a", Int}, {"b", Int}}})
	if err != nil || res.Rows != 1 {
		t.Fatalf("err %v, %+v; want the header to match a,b", err, res)
	}
}

// FuzzScan: no input makes a scan panic, and OnRow sees exactly the counted
// rows, none wider than the columns.
func FuzzScan(f *testing.F) {
	f.Add("a,b\n1,x\n2,\n", uint8(0))
	f.Add("a\tb\n1\t2\n", uint8(1))
	f.Add("{\"a\": 1, \"b\": [1]}\n{\"c\": null}\n", uint8(2))
	f.Add("1 1:0.5 3:2 qid:1\n0 2:1 2:1\n", uint8(3))
	f.Add("1 1:0.5 3:2\n0 7:1\n", uint8(4))
	f.Fuzz(func(t *testing.T, body string, which uint8) {
		opts := Options{Format: []Format{CSV, TSV, JSONL, LibSVM, LibSVM}[which%5]}
		if which%5 == 4 {
			opts.Schema = []Column{{"label", Float}, {"f1", Float}, {"f3", Int}}
		}
		calls := int64(0)
		opts.OnRow = func(_ int64, row []Value) error {
			calls++
			if opts.Schema != nil && len(row) != len(opts.Schema) {
				t.Fatalf("row of %d values, the schema has %d columns", len(row), len(opts.Schema))
			}
			return nil
		}
		res, err := Scan(strings.NewReader(body), opts)
		if err != nil {
			return
		}
		if calls != res.Rows {
			t.Fatalf("OnRow called %d times, %d rows counted", calls, res.Rows)
		}
	})
}

func TestScan_NoHeader(t *testing.T) {
	file := "1\t0.5\ta\n0\t1.5\tb\n1\t\tc\n"
	var rows [][]Value
	var lines []int64
	res, err := Scan(strings.NewReader(file), Options{Format: TSV, NoHeader: true, OnRow: func(line int64, row []Value) error {
		rows = append(rows, slices.Clone(row))
		lines = append(lines, line)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != 3 || len(res.Columns) != 3 || res.Columns[0].Name != "c0" || res.Columns[1].Type != Float || res.Columns[2].Name != "c2" {
		t.Fatalf("result %+v, want 3 rows of columns c0 (int), c1 (float), c2", res)
	}
	if len(rows) != 3 || rows[0][2].Text != "a" || rows[1][1].Num != 1.5 || rows[2][1].Kind != "" || !slices.Equal(lines, []int64{1, 2, 3}) {
		t.Fatalf("rows %v at lines %v, want the first line as the first row", rows, lines)
	}
}

func TestScan_Sample(t *testing.T) {
	var b strings.Builder
	b.WriteString("x,name,late\n")
	for i := range 1000 {
		fmt.Fprintf(&b, "%d,n%d,\n", i, i%7)
	}
	scan := func() *Sample {
		res, err := Scan(strings.NewReader(b.String()), Options{Format: CSV, SampleRows: 100, Seed: 7})
		if err != nil {
			t.Fatal(err)
		}
		return res.Sample
	}
	s := scan()
	if s.Rows != 100 || len(s.Columns) != 3 {
		t.Fatalf("sample has %d rows, %d columns; want 100, 3", s.Rows, len(s.Columns))
	}
	x, name := s.Columns[0], s.Columns[1]
	if x.Type != Int || len(x.Num) != 100 || name.Type != String || len(name.Text) != 100 {
		t.Fatalf("columns: %+v %+v", x.Type, name.Type)
	}
	// Rows stay whole: name is n(x mod 7) in every sampled row.
	high := 0
	for i, v := range x.Num {
		if want := fmt.Sprintf("n%d", int(v)%7); name.Text[i] != want {
			t.Fatalf("row %d: x %v with name %q, want %q", i, v, name.Text[i], want)
		}
		if v >= 500 {
			high++
		}
	}
	// Uniform over the file, not its head: about half from the second half.
	if high < 30 || high > 70 {
		t.Errorf("%d of 100 sampled rows come from the second half of the file", high)
	}
	if !slices.Equal(scan().Columns[0].Num, x.Num) {
		t.Error("the same file and seed gave another sample")
	}
	for i, v := range s.Columns[2].Text {
		if v != "" {
			t.Fatalf("null column, row %d: %q", i, v)
		}
	}
}

func TestScan_SampleSmallFile(t *testing.T) {
	res, err := Scan(strings.NewReader("a\n1.5\n\n2\n"), Options{Format: CSV, SampleRows: 10})
	if err != nil {
		t.Fatal(err)
	}
	got := res.Sample.Columns[0].Num
	if res.Sample.Rows != 2 || len(got) != 2 || got[0] != 1.5 || got[1] != 2 {
		t.Fatalf("sample %+v", res.Sample)
	}
}
