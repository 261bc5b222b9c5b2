package data

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// answerServer is a test API server that records the query strings and
// Authorization headers of the requests it answers.
type answerServer struct {
	*httptest.Server
	mu sync.Mutex // guards queries, auths
	// queries and auths are what each request asked, in order.
	queries []string
	auths   []string
}

func serve(t *testing.T, handler func(w http.ResponseWriter, r *http.Request)) *answerServer {
	t.Helper()
	s := &answerServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.queries = append(s.queries, r.URL.RawQuery)
		s.auths = append(s.auths, r.Header.Get("Authorization"))
		s.mu.Unlock()
		handler(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *answerServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.queries...)
}

func fixed(status int, body string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}
}

func newHTTP(t *testing.T, spec *structs.HTTPSource, env Env) Reader {
	t.Helper()
	r, err := NewHTTP("api", spec, env, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Each format's answer becomes records typed as the format allows; a bad
// record is quarantined with its offset and the read goes on; without
// pagination the position does not move.
func TestHTTP_Formats(t *testing.T) {
	cases := []struct {
		name, format, field, body string
		want                      []Record
		wantBad                   []string // offsets
	}{
		{"json array", "json", "", `[{"id": 1, "x": 1.5, "ok": true, "s": "a", "n": null, "o": {"k": [1]}}, {"id": 2}]`,
			[]Record{{"id": int64(1), "x": 1.5, "ok": true, "s": "a", "n": nil, "o": `{"k":[1]}`}, {"id": int64(2)}}, nil},
		{"json array with a bad record", "json", "", `[{"id": 1}, 7, {"id": 3}]`,
			[]Record{{"id": int64(1)}, {"id": int64(3)}}, []string{"record 2 of page 1"}},
		{"object with records_field", "json", "data", `{"data": [{"id": 1}, {"id": 2}], "total": 2}`,
			[]Record{{"id": int64(1)}, {"id": int64(2)}}, nil},
		{"records_field null", "json", "data", `{"data": null}`, nil, nil},
		{"ndjson with a bad line", "ndjson", "", "{\"id\": 1}\n\n{not json\n{\"id\": 3, \"big\": 12345678901234567890}\n",
			[]Record{{"id": int64(1)}, {"id": int64(3), "big": 12345678901234567890.0}}, []string{"line 3 of page 1"}},
		{"csv", "csv", "", "id,x,ok,s,empty\n1,2.5,true,hello,\n2,-3,FALSE,\"a,b\",x\n3,4\n",
			[]Record{{"id": int64(1), "x": 2.5, "ok": true, "s": "hello", "empty": nil},
				{"id": int64(2), "x": int64(-3), "ok": false, "s": "a,b", "empty": "x"}}, []string{"line 4 of page 1"}},
		{"csv empty", "csv", "", "", nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := serve(t, fixed(http.StatusOK, tc.body))
			r := newHTTP(t, &structs.HTTPSource{URL: s.URL + "/records", Format: tc.format, RecordsField: tc.field}, Env{})
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
					if br.Reason == "" || br.Raw == "" {
						t.Errorf("bad record %+v has no reason or raw text", br)
					}
				}
				if len(b.Advance) != 0 {
					t.Errorf("a read without pagination moved the position: %v", b.Advance)
				}
			}
			if !reflect.DeepEqual(bad, tc.wantBad) {
				t.Errorf("bad records at %q, want %q", bad, tc.wantBad)
			}
		})
	}
}

// Page pagination asks for page Start, Start+1, ... until one is empty or
// MaxPages are read; pages are split into batches of at most maxBatch.
func TestHTTP_PagePagination(t *testing.T) {
	const pages, perPage = 3, 4
	handler := func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("p"))
		recs := []map[string]int{}
		if n >= 1 && n <= pages {
			for i := range perPage {
				recs = append(recs, map[string]int{"id": (n-1)*perPage + i})
			}
		}
		json.NewEncoder(w).Encode(recs)
	}
	cases := []struct {
		name      string
		start     int
		maxPages  int
		wantRecs  int
		wantPages []string
	}{
		{"from 1 until an empty page", 0, 0, pages * perPage, []string{"p=1", "p=2", "p=3", "p=4"}},
		{"max pages", 2, 1, perPage, []string{"p=2"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := serve(t, handler)
			r := newHTTP(t, &structs.HTTPSource{URL: s.URL, Format: "json",
				Pagination: &structs.HTTPPagination{Type: structs.PaginationPage, Param: "p", Start: tc.start, MaxPages: tc.maxPages}}, Env{})
			c := newCollector(nil)
			if err := r.Read(context.Background(), Position{}, 3, c.emit); err != nil {
				t.Fatal(err)
			}
			recs := c.records()
			if len(recs) != tc.wantRecs {
				t.Fatalf("read %d records, want %d", len(recs), tc.wantRecs)
			}
			for i, rec := range recs {
				if rec["id"] != int64(i+(max(tc.start, 1)-1)*perPage) {
					t.Fatalf("record %d is %v: out of order", i, rec)
				}
			}
			for _, b := range c.batches {
				if b.Len() > 3 || len(b.Advance) != 0 {
					t.Errorf("batch of %d records moving %v; want at most 3 and no position", b.Len(), b.Advance)
				}
			}
			if got := s.requests(); !reflect.DeepEqual(got, tc.wantPages) {
				t.Errorf("requests %q, want %q", got, tc.wantPages)
			}
		})
	}
}

// cursorFeed is a test API of cursor pagination: each cursor ("" the
// first) answers a page of records and the next page's cursor.
type cursorFeed struct {
	mu    sync.Mutex // guards pages
	pages map[string]feedPage
}

type feedPage struct {
	ids  []int
	next any // a string, a number, or nil for none
}

func (f *cursorFeed) set(cursor string, ids []int, next any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pages[cursor] = feedPage{ids, next}
}

func (f *cursorFeed) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	page := f.pages[r.URL.Query().Get("cursor")]
	f.mu.Unlock()
	recs := []any{}
	for _, id := range page.ids {
		if id < 0 {
			recs = append(recs, id) // not an object: a bad record
			continue
		}
		recs = append(recs, map[string]int{"id": id})
	}
	json.NewEncoder(w).Encode(map[string]any{"items": recs, "next": page.next})
}

func newCursorFeed(t *testing.T) (*cursorFeed, *answerServer, Reader) {
	t.Helper()
	f := &cursorFeed{pages: map[string]feedPage{}}
	s := serve(t, f.serve)
	r := newHTTP(t, &structs.HTTPSource{URL: s.URL + "/feed?cursor=", Format: "json", RecordsField: "items",
		Pagination: &structs.HTTPPagination{Type: structs.PaginationCursor, Param: "cursor", CursorField: "next"}}, Env{})
	return f, s, r
}

// feedIDs are the ids of the records collectors committed, in order, with
// a bad record as -1.
func feedIDs(cs ...*collector) []int64 {
	var out []int64
	for _, c := range cs {
		for _, b := range c.batches {
			for _, rec := range b.Records {
				out = append(out, rec["id"].(int64))
			}
			for range b.Bad {
				out = append(out, -1)
			}
		}
	}
	return out
}

// Cursor pagination follows the answers' cursors. Every batch moves the
// position to the cursor of its page and the page's records handed over;
// the batch that ends a page moves it to the next page's cursor. The last
// page stays the position: a later run asks for it again and reads only
// the records it has gained, then follows on.
func TestHTTP_CursorPagination(t *testing.T) {
	feed, s, r := newCursorFeed(t)
	feed.set("", []int{1, 2, 3}, "c1")
	feed.set("c1", []int{4, 5, 6}, 2)
	feed.set("2", []int{7}, nil)
	read := func(from Position) *collector {
		t.Helper()
		c := newCollector(from)
		if err := r.Read(context.Background(), from, 2, c.emit); err != nil {
			t.Fatal(err)
		}
		return c
	}

	first := read(Position{})
	if got := feedIDs(first); !reflect.DeepEqual(got, []int64{1, 2, 3, 4, 5, 6, 7}) {
		t.Fatalf("first run read %v", got)
	}
	var advances []Position
	for _, b := range first.batches {
		advances = append(advances, b.Advance)
	}
	// Pages of 3 in batches of 2.
	want := []Position{
		{"": "", "skip": "2"}, {"": "c1", "skip": "0"},
		{"": "c1", "skip": "2"}, {"": "2", "skip": "0"},
		{"": "2", "skip": "1"},
	}
	if !reflect.DeepEqual(advances, want) {
		t.Fatalf("batches moved the position\n got %v\nwant %v", advances, want)
	}

	// Nothing new: the last page is asked for again, and nothing emitted.
	before := len(s.requests())
	if again := read(first.pos); len(again.batches) != 0 {
		t.Fatalf("a run with nothing new emitted %v", again.batches)
	}
	if got := s.requests()[before:]; !reflect.DeepEqual(got, []string{"cursor=2"}) {
		t.Fatalf("a run with nothing new asked %q, want the last page again", got)
	}

	// The last page grows and gains a next page: the next run reads the
	// new record of the page, and the next page.
	feed.set("2", []int{7, 8}, "c3")
	feed.set("c3", []int{9}, "")
	second := read(first.pos)
	if got := feedIDs(second); !reflect.DeepEqual(got, []int64{8, 9}) {
		t.Fatalf("second run read %v, want the last page's new record and the new page's", got)
	}
	if want := (Position{"": "c3", "skip": "1"}); !reflect.DeepEqual(second.pos, want) {
		t.Fatalf("position after the second run %v, want %v", second.pos, want)
	}

	// The last page grows again, with no next page yet.
	feed.set("c3", []int{9, 10, 11}, nil)
	if got := feedIDs(read(second.pos)); !reflect.DeepEqual(got, []int64{10, 11}) {
		t.Fatalf("third run read %v, want the last page's new records 10, 11", got)
	}

	// A position from before skip counts: the cursor of the next page.
	if got := feedIDs(read(Position{"": "c1"})); !reflect.DeepEqual(got, []int64{4, 5, 6, 7, 8, 9, 10, 11}) {
		t.Fatalf("a run from cursor c1 alone read %v", got)
	}
	c := newCollector(nil)
	if err := r.Read(context.Background(), Position{"": "c1", "skip": "x"}, 2, c.emit); err == nil || !strings.Contains(err.Error(), "skip") {
		t.Fatalf("Read from a bad skip: %v, want an error naming it", err)
	}
}

// A run stopped after any batch, then run again from the position
// committed, reads every record once, good and bad, in order; so does a
// run stopped once more after the last page has grown.
func TestHTTP_CursorResumesAfterEachBatch(t *testing.T) {
	feed, _, r := newCursorFeed(t)
	const maxBatch = 2
	setFirst := func() {
		feed.set("", []int{1, -1, 3, 4, 5}, "a")
		feed.set("a", []int{6}, "b")
		feed.set("b", nil, "c") // an empty page in the chain
		feed.set("c", []int{7, 8, -1}, nil)
	}
	grow := func() {
		feed.set("c", []int{7, 8, -1, 9, 10, 11}, "d")
		feed.set("d", []int{12, 13, 14}, nil)
	}
	read := func(t *testing.T, from Position, failAt int) *collector {
		t.Helper()
		c := newCollector(from)
		c.failAt = failAt
		err := r.Read(context.Background(), from, maxBatch, c.emit)
		if failAt > 0 && !errors.Is(err, errNotCommitted) {
			t.Fatalf("Read with commit %d failing: %v, want the commit's error", failAt, err)
		}
		if failAt == 0 && err != nil {
			t.Fatal(err)
		}
		return c
	}
	setFirst()
	whole := read(t, Position{}, 0)
	want := []int64{1, -1, 3, 4, 5, 6, 7, 8, -1}
	if got := feedIDs(whole); !reflect.DeepEqual(got, want) {
		t.Fatalf("an uninterrupted run read %v, want %v", got, want)
	}
	grow()
	wantGrown := append(append([]int64{}, want...), 9, 10, 11, 12, 13, 14)
	grown := read(t, whole.pos, 0)
	if got := feedIDs(whole, grown); !reflect.DeepEqual(got, wantGrown) {
		t.Fatalf("the runs before and after the feed grew read %v, want %v", got, wantGrown)
	}
	for stop := 1; stop < len(whole.batches); stop++ {
		t.Run(fmt.Sprintf("after batch %d", stop), func(t *testing.T) {
			setFirst()
			first := read(t, Position{}, stop+1)
			second := read(t, first.pos, 0)
			if got := feedIDs(first, second); !reflect.DeepEqual(got, want) {
				t.Fatalf("the two runs read %v, want %v", got, want)
			}
			if !reflect.DeepEqual(second.pos, whole.pos) {
				t.Fatalf("position after the runs %v, want %v", second.pos, whole.pos)
			}
		})
	}
	for stop := 1; stop < len(grown.batches); stop++ {
		t.Run(fmt.Sprintf("grown, after batch %d", stop), func(t *testing.T) {
			grow()
			third := read(t, whole.pos, stop+1)
			fourth := read(t, third.pos, 0)
			if got := feedIDs(whole, third, fourth); !reflect.DeepEqual(got, wantGrown) {
				t.Fatalf("the runs read %v, want %v", got, wantGrown)
			}
		})
	}
}

// A token is sent as a Bearer header; without it the server's refusal (401
// or 403) is ErrAuth, naming the status; the token never shows in an
// error, nor do the URL's query values.
func TestHTTP_BearerToken(t *testing.T) {
	const token = "s3cret-token"
	s := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer "+token+"-readonly" {
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `{"error": "this token may not read records"}`)
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintf(w, `{"error": "bad token %q"}`, r.Header.Get("Authorization"))
			return
		}
		fmt.Fprint(w, `[{"id": 1}]`)
	})
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte(token+"\n"), 0o600)
	wrongFile := filepath.Join(t.TempDir(), "wrong")
	os.WriteFile(wrongFile, []byte(token+"-old"), 0o600)
	readonlyFile := filepath.Join(t.TempDir(), "readonly")
	os.WriteFile(readonlyFile, []byte(token+"-readonly"), 0o600)
	url := s.URL + "/v1/records?api_key=querysecret"
	cases := []struct {
		name    string
		secret  structs.Secret
		wantErr string
	}{
		{"token", structs.Secret{File: tokenFile}, ""},
		{"no token", structs.Secret{}, "401 Unauthorized"},
		{"wrong token", structs.Secret{File: wrongFile}, "401 Unauthorized"},
		{"token without the right", structs.Secret{File: readonlyFile}, "403 Forbidden"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newHTTP(t, &structs.HTTPSource{URL: url, Format: "json", Token: tc.secret}, Env{})
			c := newCollector(nil)
			err := r.Read(context.Background(), Position{}, 10, c.emit)
			if tc.wantErr == "" {
				if err != nil || len(c.records()) != 1 {
					t.Fatalf("Read: %d records, %v", len(c.records()), err)
				}
				return
			}
			if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "/v1/records") {
				t.Fatalf("Read: %v, want ErrAuth naming the URL and %s", err, tc.wantErr)
			}
			for _, secret := range []string{token, "querysecret"} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("error %q shows %q", err, secret)
				}
			}
		})
	}
	t.Run("missing token file", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "none")
		_, err := NewHTTP("api", &structs.HTTPSource{URL: url, Token: structs.Secret{File: missing}}, Env{}, nil)
		if !errors.Is(err, ErrSecret) || !strings.Contains(err.Error(), missing) {
			t.Fatalf("NewHTTP: %v, want ErrSecret naming %s", err, missing)
		}
	})
}

// A failed answer, one that does not decode, or one past the size limit is
// an error naming the URL; nothing is emitted.
func TestHTTP_Errors(t *testing.T) {
	cases := []struct {
		name    string
		handler func(http.ResponseWriter, *http.Request)
		format  string
		field   string
		maxBody int64
		want    []string
	}{
		{"server error", fixed(http.StatusInternalServerError, "database is down\n"+strings.Repeat("x", 4096)), "json", "", 0,
			[]string{"/records", "500 Internal Server Error", "database is down"}},
		{"not found", fixed(http.StatusNotFound, "no such thing"), "json", "", 0, []string{"404 Not Found", "no such thing"}},
		{"not an array", fixed(http.StatusOK, `{"data": []}`), "json", "", 0, []string{"not a JSON array"}},
		{"not an object", fixed(http.StatusOK, `[]`), "json", "data", 0, []string{`not a JSON object holding "data"`}},
		{"too large", fixed(http.StatusOK, "["+strings.Repeat(`{"id": 1},`, 100)+`{"id": 1}]`), "json", "", 256,
			[]string{"too large", "more than 256 bytes"}},
		{"too large ndjson", fixed(http.StatusOK, strings.Repeat("{\"id\": 1}\n", 100)), "ndjson", "", 256,
			[]string{"too large"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := serve(t, tc.handler)
			r := newHTTP(t, &structs.HTTPSource{URL: s.URL + "/records", Format: tc.format, RecordsField: tc.field}, Env{})
			if tc.maxBody > 0 {
				r.(*httpReader).maxBody = tc.maxBody
			}
			c := newCollector(nil)
			err := r.Read(context.Background(), Position{}, 10, c.emit)
			if err == nil {
				t.Fatal("Read succeeded")
			}
			if errors.Is(err, ErrAuth) {
				t.Errorf("error %q is ErrAuth: no credential was refused", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if len(err.Error()) > 1024 {
				t.Errorf("error is %d bytes long: the body should be cut", len(err.Error()))
			}
			if len(c.batches) != 0 {
				t.Errorf("%d batches emitted before the error", len(c.batches))
			}
		})
	}
}

// The answer decoders take any bytes without panicking, and give records
// of Record's types only.
func FuzzHTTP_Decode(f *testing.F) {
	for _, seed := range []string{`[{"id": 1, "x": [1, {"a": null}]}]`, `{"data": [{"a": 1e400}], "next": 3}`,
		"{\"a\": 1}\nnot json\n", "a,b\n1,2.5\n\"x\n", "a\n1,2\n\n"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		for _, format := range []string{"json", "ndjson", "csv"} {
			for _, field := range []string{"", "data"} {
				r := &httpReader{spec: structs.HTTPSource{Format: format, RecordsField: field,
					Pagination: &structs.HTTPPagination{Type: structs.PaginationCursor, CursorField: "next"}}}
				var pg *page
				var err error
				switch format {
				case "json":
					pg, err = r.decodeJSON(strings.NewReader(body), 1)
				case "ndjson":
					pg, err = r.decodeNDJSON(strings.NewReader(body), 1)
				case "csv":
					pg, err = r.decodeCSV(strings.NewReader(body), 1)
				}
				if err != nil {
					continue
				}
				for _, e := range pg.entries {
					for k, v := range e.rec {
						switch v.(type) {
						case nil, bool, int64, float64, string:
						default:
							t.Fatalf("%s: column %q holds a %T", format, k, v)
						}
					}
				}
			}
		}
	})
}
