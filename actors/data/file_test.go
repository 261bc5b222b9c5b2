package data

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/kilnml/kiln/raftfsm/structs"
)

func writeFile(t *testing.T, path string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func newFile(t *testing.T, spec *structs.FileSource) Reader {
	t.Helper()
	r, err := NewFile("files", spec, Env{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

type parquetEvent struct {
	ID    int64     `parquet:"id"`
	Score *float64  `parquet:"score,optional"`
	OK    bool      `parquet:"ok"`
	Name  string    `parquet:"name"`
	When  time.Time `parquet:"when,timestamp(microsecond)"`
}

func parquetBytes(t *testing.T, rows []parquetEvent) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := parquet.Write(&buf, rows); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Each format's rows become records typed by their column (an int in a
// float column is a float64); a bad row is quarantined with its line and
// the file read on; a file that cannot be read at all is quarantined whole.
// The file's checksum moves the position.
func TestFile_Formats(t *testing.T) {
	when := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	half := 0.5
	cases := []struct {
		name, file, format string
		data               []byte
		want               []Record
		wantBad            []string // offsets, with "<path>" for the file's path
	}{
		{"csv", "a.csv", "", []byte("id,x,ok,when,s\n1,2.5,true,2026-01-02T03:04:05Z,a\n2,3,false,2026-01-03,\n3,4\n"),
			[]Record{{"id": int64(1), "x": 2.5, "ok": true, "when": when, "s": "a"},
				{"id": int64(2), "x": 3.0, "ok": false, "when": time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC), "s": nil}},
			[]string{"line 4 of <path>"}},
		{"tsv", "a.tsv", "", []byte("id\tname\n1\tx y\n2\t7\n"),
			[]Record{{"id": int64(1), "name": "x y"}, {"id": int64(2), "name": "7"}}, nil},
		{"jsonl", "a.jsonl", "", []byte("{\"id\": 1, \"tags\": [\"a\"]}\nnot json\n{\"id\": 2, \"extra\": \"2026-01-02T03:04:05Z\"}\n"),
			[]Record{{"id": int64(1), "tags": `["a"]`, "extra": nil}, {"id": int64(2), "tags": nil, "extra": when}},
			[]string{"line 2 of <path>"}},
		{"ndjson extension", "a.ndjson", "", []byte("{\"id\": 1}\n"), []Record{{"id": int64(1)}}, nil},
		{"parquet", "a.parquet", "", parquetBytes(t, []parquetEvent{{ID: 1, Score: &half, OK: true, Name: "a", When: when}, {ID: 2, Name: "b", When: when}}),
			[]Record{{"id": int64(1), "score": 0.5, "ok": true, "name": "a", "when": when},
				{"id": int64(2), "score": nil, "ok": false, "name": "b", "when": when}}, nil},
		{"format from the spec", "a.txt", "csv", []byte("id\n1\n"), []Record{{"id": int64(1)}}, nil},
		{"format detected", "a.data", "", []byte("{\"id\": 1}\n"), []Record{{"id": int64(1)}}, nil},
		{"empty file", "a.csv", "", nil, nil, nil},
		{"unknown format", "a.bin", "", []byte("\x00\x01\x02"), nil, []string{"<path>"}},
		{"csv header twice", "a.csv", "", []byte("id,id\n1,2\n"), nil, []string{"<path>"}},
		{"not parquet", "a.parquet", "", []byte("id\n1\n"), nil, []string{"<path>"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), tc.file)
			sum := writeFile(t, path, tc.data)
			r := newFile(t, &structs.FileSource{Path: path, Format: tc.format})
			c := newCollector(nil)
			if err := r.Read(context.Background(), Position{}, 100, c.emit); err != nil {
				t.Fatal(err)
			}
			if got := c.records(); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("records\n got %#v\nwant %#v", got, tc.want)
			}
			var bad []string
			for _, b := range c.batches {
				for _, br := range b.Bad {
					bad = append(bad, br.Offset)
					if br.Reason == "" {
						t.Errorf("bad record %+v gives no reason", br)
					}
				}
			}
			var wantBad []string
			for _, o := range tc.wantBad {
				wantBad = append(wantBad, replacePath(o, path))
			}
			if !reflect.DeepEqual(bad, wantBad) {
				t.Errorf("bad records at %q, want %q", bad, wantBad)
			}
			if !reflect.DeepEqual(c.pos, Position{path: sum}) {
				t.Errorf("position %v, want the file's checksum %s", c.pos, sum)
			}
		})
	}
}

func replacePath(s, path string) string { return strings.ReplaceAll(s, "<path>", path) }

// Runs over a glob read new and changed files, in name order, and skip
// files whose checksum is in the position. A file is split into batches:
// each but the last moves its position to "<sha256>@<records so far>",
// the last to its checksum.
func TestFile_Positions(t *testing.T) {
	dir := t.TempDir()
	csv := func(ids ...string) []byte {
		b := []byte("id\n")
		for _, id := range ids {
			b = append(b, id+"\n"...)
		}
		return b
	}
	sums := map[string]string{
		filepath.Join(dir, "b.csv"): writeFile(t, filepath.Join(dir, "b.csv"), csv("b1", "b2", "b3")),
		filepath.Join(dir, "a.csv"): writeFile(t, filepath.Join(dir, "a.csv"), csv("a1", "a2")),
	}
	writeFile(t, filepath.Join(dir, "ignored.json"), []byte("{}"))
	r := newFile(t, &structs.FileSource{Path: filepath.Join(dir, "*.csv")})
	pos := Position{}
	read := func() *collector {
		t.Helper()
		c := newCollector(pos)
		if err := r.Read(context.Background(), pos, 2, c.emit); err != nil {
			t.Fatal(err)
		}
		pos = c.pos
		return c
	}
	ids := func(c *collector) []string {
		var out []string
		for _, rec := range c.records() {
			out = append(out, rec["id"].(string))
		}
		return out
	}

	first := read()
	if got := ids(first); !reflect.DeepEqual(got, []string{"a1", "a2", "b1", "b2", "b3"}) {
		t.Fatalf("first run read %v", got)
	}
	var moved []Position
	for _, b := range first.batches {
		if b.Len() > 2 {
			t.Errorf("a batch of %d records, max 2", b.Len())
		}
		moved = append(moved, b.Advance)
	}
	// a.csv fits one batch; b.csv takes two, the first moving its position
	// inside it.
	a, b := filepath.Join(dir, "a.csv"), filepath.Join(dir, "b.csv")
	want := []Position{{a: sums[a]}, {b: sums[b] + "@2"}, {b: sums[b]}}
	if !reflect.DeepEqual(moved, want) {
		t.Errorf("batches moved the position\n got %v\nwant %v", moved, want)
	}

	if again := read(); len(again.batches) != 0 {
		t.Fatalf("a run with no file changed emitted %d batches", len(again.batches))
	}

	bSum := writeFile(t, filepath.Join(dir, "b.csv"), csv("b1", "b2", "b3", "b4"))
	writeFile(t, filepath.Join(dir, "c.csv"), csv("c1"))
	third := read()
	if got := ids(third); !reflect.DeepEqual(got, []string{"b1", "b2", "b3", "b4", "c1"}) {
		t.Fatalf("after b changed and c came, the run read %v", got)
	}
	if pos[filepath.Join(dir, "b.csv")] != bSum {
		t.Fatalf("b.csv's position %q, want its new checksum %s", pos[filepath.Join(dir, "b.csv")], bSum)
	}
}

// A read stopped by a failed commit inside a file resumes it after the
// records committed; a file replaced since is read again whole.
func TestFile_StoppedMidFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.csv")
	sum := writeFile(t, path, []byte("id\n1\n2\n3\n"))
	r := newFile(t, &structs.FileSource{Path: filepath.Join(dir, "*.csv")})
	c := newCollector(nil)
	c.failAt = 2
	if err := r.Read(context.Background(), Position{}, 2, c.emit); !errors.Is(err, errNotCommitted) {
		t.Fatalf("Read with a failing commit: %v, want the commit's error", err)
	}
	if want := (Position{path: sum + "@2"}); !reflect.DeepEqual(c.pos, want) || len(c.records()) != 2 {
		t.Fatalf("before the failure: %d records committed, position %v; want 2 and %v", len(c.records()), c.pos, want)
	}
	again := newCollector(c.pos)
	if err := r.Read(context.Background(), c.pos, 2, again.emit); err != nil {
		t.Fatal(err)
	}
	if got := again.records(); !reflect.DeepEqual(got, []Record{{"id": int64(3)}}) {
		t.Fatalf("the next run read %v, want only the record not committed, 3", got)
	}
	if want := (Position{path: sum}); !reflect.DeepEqual(again.pos, want) {
		t.Fatalf("position after the file %v, want %v", again.pos, want)
	}

	// A file replaced after part of it was read is another content: read
	// whole, the price of a file changed rather than written once.
	tmp := filepath.Join(dir, "a.tmp")
	newSum := writeFile(t, tmp, []byte("id\n1\n2\n3\n4\n"))
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	replaced := newCollector(c.pos)
	if err := r.Read(context.Background(), c.pos, 2, replaced.emit); err != nil {
		t.Fatal(err)
	}
	if n := len(replaced.records()); n != 4 || replaced.pos[path] != newSum {
		t.Fatalf("after the file was replaced: read %d records to position %v; want the whole file's 4 and %s", n, replaced.pos, newSum)
	}
}

// A run stopped after any batch, then run again from the position
// committed, reads every record of every file exactly once, good and bad,
// in the order of one uninterrupted run; a third run reads nothing.
func TestFile_ResumesAfterEachBatch(t *testing.T) {
	dir := t.TempDir()
	when := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var events []parquetEvent
	for i := range 5 {
		events = append(events, parquetEvent{ID: int64(i), Name: fmt.Sprint("p", i), When: when})
	}
	writeFile(t, filepath.Join(dir, "a.csv"), []byte("id,name\n1,a\n2\n3,c\n4,d,extra\n5,e\n"))
	writeFile(t, filepath.Join(dir, "b.jsonl"), []byte("{\"id\": 6}\nnot json\n{\"id\": 7}\n"))
	writeFile(t, filepath.Join(dir, "c.parquet"), parquetBytes(t, events))
	writeFile(t, filepath.Join(dir, "d.csv"), nil)
	writeFile(t, filepath.Join(dir, "e.bin"), []byte("\x00\x01\x02"))
	r := newFile(t, &structs.FileSource{Path: filepath.Join(dir, "*")})
	const maxBatch = 2

	// seen is what collectors committed, in order: the records as their
	// text, then the bad records as their offsets. (A batch does not keep
	// the order of its good and bad records among each other.)
	seen := func(cs ...*collector) []string {
		var good, bad []string
		for _, c := range cs {
			for _, b := range c.batches {
				for _, rec := range b.Records {
					good = append(good, fmt.Sprint(rec))
				}
				for _, br := range b.Bad {
					bad = append(bad, "bad "+br.Offset)
				}
			}
		}
		return append(good, bad...)
	}
	whole := newCollector(nil)
	if err := r.Read(context.Background(), Position{}, maxBatch, whole.emit); err != nil {
		t.Fatal(err)
	}
	want := seen(whole)
	if len(want) != 14 { // 3+2 in a.csv, 2+1 in b.jsonl, 5 in c.parquet, e.bin whole
		t.Fatalf("an uninterrupted run read %d records, good and bad, want 14: %q", len(want), want)
	}
	for stop := 1; stop < len(whole.batches); stop++ {
		t.Run(fmt.Sprintf("after batch %d", stop), func(t *testing.T) {
			first := newCollector(nil)
			first.failAt = stop + 1
			if err := r.Read(context.Background(), Position{}, maxBatch, first.emit); !errors.Is(err, errNotCommitted) {
				t.Fatalf("Read with commit %d failing: %v, want the commit's error", stop+1, err)
			}
			second := newCollector(first.pos)
			if err := r.Read(context.Background(), first.pos, maxBatch, second.emit); err != nil {
				t.Fatal(err)
			}
			if got := seen(first, second); !reflect.DeepEqual(got, want) {
				t.Fatalf("the two runs read\n%q\nwant\n%q", got, want)
			}
			if !reflect.DeepEqual(second.pos, whole.pos) {
				t.Fatalf("position after the runs %v, want %v", second.pos, whole.pos)
			}
			third := newCollector(second.pos)
			if err := r.Read(context.Background(), second.pos, maxBatch, third.emit); err != nil || len(third.batches) != 0 {
				t.Fatalf("a third run emitted %d batches, %v; want none", len(third.batches), err)
			}
		})
	}
}
