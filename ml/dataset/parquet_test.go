package dataset

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
)

type parquetRow struct {
	ID    int64     `parquet:"id"`
	X     float64   `parquet:"x"`
	Y     *float32  `parquet:"y,optional"`
	OK    bool      `parquet:"ok"`
	Label string    `parquet:"label"`
	When  time.Time `parquet:"when,timestamp(millisecond)"`
}

func parquetFile(t *testing.T, rows []parquetRow) *bytes.Reader {
	t.Helper()
	var buf bytes.Buffer
	if err := parquet.Write(&buf, rows); err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(buf.Bytes())
}

// A Parquet file's columns are typed from the file, and each gets its
// statistics; an optional column's nulls are counted.
func TestScanParquet(t *testing.T) {
	base := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	var rows []parquetRow
	for i := range 1000 {
		r := parquetRow{ID: int64(i), X: float64(i) / 10, OK: i%4 == 0, Label: []string{"a", "b", "c"}[i%3], When: base.Add(time.Duration(i) * time.Hour)}
		if i%10 != 0 {
			y := float32(i)
			r.Y = &y
		}
		rows = append(rows, r)
	}
	f := parquetFile(t, rows)
	res, err := ScanParquet(f, f.Size(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != 1000 || res.BadRows != 0 {
		t.Fatalf("rows %d bad %d", res.Rows, res.BadRows)
	}
	want := map[string]Type{"id": Int, "x": Float, "y": Float, "ok": Bool, "label": String, "when": Timestamp}
	for name, typ := range want {
		if c := column(t, res, name); c.Type != typ {
			t.Errorf("%s: type %s, want %s", name, c.Type, typ)
		}
	}
	if x := column(t, res, "x").Numeric; x.Count != 1000 || x.Min != 0 || x.Max != 99.9 || math.Abs(x.Mean-49.95) > 1e-9 {
		t.Errorf("x: %+v", x)
	}
	if y := column(t, res, "y").Numeric; y.Count != 900 || y.Nulls != 100 || y.Max != 999 {
		t.Errorf("y: %+v, want 900 values and 100 nulls", y)
	}
	if ok := column(t, res, "ok").Categorical; ok.Top[0].Value != "false" || ok.Top[0].Count != 750 {
		t.Errorf("ok: %+v", ok)
	}
	if w := column(t, res, "when").Numeric; w.Min != float64(base.Unix()) || w.Max != float64(base.Add(999*time.Hour).Unix()) {
		t.Errorf("when: min %v max %v, want %d and %d", w.Min, w.Max, base.Unix(), base.Add(999*time.Hour).Unix())
	}
}

// A pinned schema must name the file's columns; a wider type is taken.
func TestScanParquet_Schema(t *testing.T) {
	f := parquetFile(t, []parquetRow{{ID: 1, X: 2, Label: "a"}})
	schema := []Column{{"id", Float}, {"x", Float}, {"y", Float}, {"ok", String}, {"label", String}, {"when", Timestamp}}
	res, err := ScanParquet(f, f.Size(), Options{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	if c := column(t, res, "id"); c.Type != Float {
		t.Fatalf("id pinned as float: %s", c.Type)
	}
	if c := column(t, res, "ok"); c.Type != String || c.Categorical == nil {
		t.Fatalf("ok pinned as string: %+v", c)
	}
	bad := append([]Column(nil), schema...)
	bad[1] = Column{"x", Int}
	if _, err := ScanParquet(f, f.Size(), Options{Schema: bad}); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "x float") {
		t.Fatalf("x pinned as int: %v, want ErrFormat naming it", err)
	}
	if _, err := ScanParquet(strings.NewReader("not parquet"), 11, Options{}); !errors.Is(err, ErrFormat) {
		t.Fatalf("not a parquet file: %v", err)
	}
}

// OnRow gets each Parquet row with its 1-based row number and the values as
// the file types them, in the schema's order; ErrStop ends the scan there.
func TestScanParquet_OnRow(t *testing.T) {
	base := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	var rows []parquetRow
	for i := range 2000 { // more than one batch
		r := parquetRow{ID: int64(i), X: float64(i) / 4, OK: i%2 == 0, Label: "l" + strconv.Itoa(i), When: base.Add(time.Duration(i) * time.Second)}
		if i%3 != 0 {
			y := float32(i)
			r.Y = &y
		}
		rows = append(rows, r)
	}
	f := parquetFile(t, rows)
	schema := []Column{{"id", Float}, {"x", Float}, {"y", Float}, {"ok", Bool}, {"label", String}, {"when", Timestamp}}
	var got []gotRow
	res, err := ScanParquet(f, f.Size(), Options{Schema: schema, OnRow: collectRows(&got)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != 2000 || len(got) != 2000 {
		t.Fatalf("rows %d, OnRow called %d times; want 2000", res.Rows, len(got))
	}
	for _, i := range []int{0, 1, 1025, 1999} {
		y := num(Float, float64(i), strconv.Itoa(i))
		if i%3 == 0 {
			y = Value{}
		}
		want := []Value{
			num(Int, float64(i), strconv.Itoa(i)), // an int in a float column stays an int
			num(Float, float64(i)/4, strconv.FormatFloat(float64(i)/4, 'g', -1, 64)),
			y,
			text(Bool, strconv.FormatBool(i%2 == 0)),
			text(String, "l"+strconv.Itoa(i)),
			num(Timestamp, float64(base.Unix()+int64(i)), base.Add(time.Duration(i)*time.Second).Format(time.RFC3339)),
		}
		g := got[i]
		if g.line != int64(i+1) || !slices.Equal(g.row, want) {
			t.Errorf("row %d: line %d %+v, want line %d %+v", i, g.line, g.row, i+1, want)
		}
	}

	calls := 0
	res, err = ScanParquet(f, f.Size(), Options{OnRow: func(int64, []Value) error {
		if calls++; calls == 3 {
			return ErrStop
		}
		return nil
	}})
	if err != nil || res.Rows != 3 || calls != 3 {
		t.Fatalf("ErrStop at row 3: err %v, rows %d, %d calls", err, res.Rows, calls)
	}
	if id := column(t, res, "id").Numeric; id.Count != 3 || id.Max != 2 {
		t.Fatalf("id %+v, want the statistics of rows 0-2", id)
	}
	boom := errors.New("boom")
	if _, err := ScanParquet(f, f.Size(), Options{OnRow: func(int64, []Value) error { return boom }}); !errors.Is(err, boom) {
		t.Fatalf("OnRow error: %v, want it returned", err)
	}
}

// A Parquet timestamp's text is what a CSV file would hold, and parses back
// to the same instant.
func TestParquetColumn_TimeText(t *testing.T) {
	for _, tc := range []struct {
		col  parquetColumn
		x    int64
		want string
	}{
		{parquetColumn{typ: Timestamp, scale: 86400, date: true}, 20455, "2026-01-02"},
		{parquetColumn{typ: Timestamp, scale: 86400, date: true}, -1, "1969-12-31"},
		{parquetColumn{typ: Timestamp, scale: 1e-3}, 1767312000250, "2026-01-02T00:00:00.25Z"},
		{parquetColumn{typ: Timestamp, scale: 1e-6}, -1, "1969-12-31T23:59:59.999999Z"},
		{parquetColumn{typ: Timestamp, scale: 1e-9}, 1767312000000000001, "2026-01-02T00:00:00.000000001Z"},
	} {
		got := tc.col.timeText(tc.x)
		if got != tc.want {
			t.Errorf("%d units of %v s: %q, want %q", tc.x, tc.col.scale, got, tc.want)
		}
		if v := parse(got); v.Kind != Timestamp || math.Abs(v.Num-float64(tc.x)*tc.col.scale) > 1e-6 {
			t.Errorf("%q parses as %+v, want the timestamp %v", got, v, float64(tc.x)*tc.col.scale)
		}
	}
}
