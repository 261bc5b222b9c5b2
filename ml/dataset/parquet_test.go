package dataset

import (
	"bytes"
	"errors"
	"math"
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
