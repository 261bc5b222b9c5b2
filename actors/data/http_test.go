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

// Cursor pagination follows the answers' cursors; the position is the
// cursor of the next page, moved only by a page's last batch, so that a
// later run resumes there.
func TestHTTP_CursorPagination(t *testing.T) {
	// cursor -> (records, next cursor); "" is the first page.
	var mu sync.Mutex
	chain := map[string]struct {
		ids  []int
		next any
	}{
		"":   {[]int{1, 2, 3}, "c1"},
		"c1": {[]int{4, 5, 6}, 2},
		"2":  {[]int{7}, nil},
	}
	s := serve(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		page := chain[r.URL.Query().Get("cursor")]
		mu.Unlock()
		recs := []map[string]int{}
		for _, id := range page.ids {
			recs = append(recs, map[string]int{"id": id})
		}
		json.NewEncoder(w).Encode(map[string]any{"items": recs, "next": page.next})
	})
	r := newHTTP(t, &structs.HTTPSource{URL: s.URL + "/feed?cursor=", Format: "json", RecordsField: "items",
		Pagination: &structs.HTTPPagination{Type: structs.PaginationCursor, Param: "cursor", CursorField: "next"}}, Env{})
	read := func(from Position) *collector {
		t.Helper()
		c := newCollector(from)
		if err := r.Read(context.Background(), from, 2, c.emit); err != nil {
			t.Fatal(err)
		}
		return c
	}
	ids := func(c *collector) []int64 {
		var out []int64
		for _, rec := range c.records() {
			out = append(out, rec["id"].(int64))
		}
		return out
	}

	first := read(Position{})
	if got := ids(first); !reflect.DeepEqual(got, []int64{1, 2, 3, 4, 5, 6, 7}) {
		t.Fatalf("first run read %v", got)
	}
	var advances []Position
	for _, b := range first.batches {
		advances = append(advances, b.Advance)
	}
	// Pages of 3 in batches of 2: the second batch of a page moves the
	// position; the last page, which gives no cursor, moves nothing.
	want := []Position{nil, {"": "c1"}, nil, {"": "2"}, nil}
	if !reflect.DeepEqual(advances, want) {
		t.Fatalf("batches moved the position %v, want %v", advances, want)
	}
	if first.pos[""] != "2" {
		t.Fatalf("position after the first run %v, want the last cursor 2", first.pos)
	}

	// New records behind the last page: the next run asks for it again
	// from the position, and follows on.
	mu.Lock()
	chain["2"] = struct {
		ids  []int
		next any
	}{[]int{7}, "c3"}
	chain["c3"] = struct {
		ids  []int
		next any
	}{[]int{8}, ""}
	mu.Unlock()
	before := len(s.requests())
	second := read(first.pos)
	if got := ids(second); !reflect.DeepEqual(got, []int64{7, 8}) {
		t.Fatalf("second run read %v, want the last page again and the new one", got)
	}
	if got := s.requests()[before]; got != "cursor=2" {
		t.Fatalf("second run's first request %q, want cursor=2", got)
	}
	if second.pos[""] != "c3" {
		t.Fatalf("position after the second run %v, want c3", second.pos)
	}
}

// A token is sent as a Bearer header; without it the server's refusal is an
// error naming the status; the token never shows in an error, nor do the
// URL's query values.
func TestHTTP_BearerToken(t *testing.T) {
	const token = "s3cret-token"
	s := serve(t, func(w http.ResponseWriter, r *http.Request) {
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
	url := s.URL + "/v1/records?api_key=querysecret"
	cases := []struct {
		name    string
		secret  structs.Secret
		wantErr string
	}{
		{"token", structs.Secret{File: tokenFile}, ""},
		{"no token", structs.Secret{}, "401 Unauthorized"},
		{"wrong token", structs.Secret{File: wrongFile}, "401 Unauthorized"},
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
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "/v1/records") {
				t.Fatalf("Read: %v, want an error naming the URL and %s", err, tc.wantErr)
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
