package runsearch

import (
	"encoding/base64"
	"slices"
	"strconv"
	"testing"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestPage_WalksAllPages(t *testing.T) {
	cases := []struct {
		n, maxResults int
		pages         int
	}{
		{10, 4, 3},
		{8, 4, 2}, // the last page is full: no token after it
		{1, 1, 1},
		{0, 5, 1},
		{5, 5, 1},
		{5, 6, 1},
		{7, 1, 7},
	}
	for _, tc := range cases {
		t.Run(strconv.Itoa(tc.n)+"/"+strconv.Itoa(tc.maxResults), func(t *testing.T) {
			items := make([]int, tc.n)
			for i := range items {
				items[i] = i
			}
			var got []int
			token, pages := "", 0
			for {
				page, next, err := Page(items, token, tc.maxResults)
				if err != nil {
					t.Fatalf("page %d: %v", pages, err)
				}
				pages++
				if len(page) > tc.maxResults {
					t.Fatalf("page of %d items, max %d", len(page), tc.maxResults)
				}
				got = append(got, page...)
				if next == "" {
					break
				}
				if pages > tc.n {
					t.Fatal("tokens never end")
				}
				token = next
			}
			if pages != tc.pages {
				t.Fatalf("%d pages, want %d", pages, tc.pages)
			}
			if !slices.Equal(got, items) && !(len(got) == 0 && len(items) == 0) {
				t.Fatalf("pages hold %v, want %v", got, items)
			}
		})
	}
}

func TestPage_TokensAreMLflows(t *testing.T) {
	items := make([]int, 2000)
	_, next, err := Page(items, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	// Python: base64.b64encode(json.dumps({"offset": 1000}).encode())
	if want := "eyJvZmZzZXQiOiAxMDAwfQ=="; next != want {
		t.Fatalf("token %q, want MLflow's %q", next, want)
	}
	if got, err := decodePageToken("eyJvZmZzZXQiOiA0fQ=="); err != nil || got != 4 {
		t.Fatalf("MLflow's token for offset 4 decodes to %d, %v", got, err)
	}
}

func TestPage_AcceptedTokens(t *testing.T) {
	items := []string{"a", "b", "c", "d", "e", "f"}
	cases := []struct {
		name, token string
		want        []string
		next        int // offset of the next token; 0: none
	}{
		{"first", "", []string{"a", "b"}, 2},
		{"ours", encodePageToken(2), []string{"c", "d"}, 4},
		{"offset as a string", b64(`{"offset": "3"}`), []string{"d", "e"}, 5},
		{"compact json", b64(`{"offset":4}`), []string{"e", "f"}, 0},
		{"url-safe unpadded", base64.RawURLEncoding.EncodeToString([]byte(`{"offset": 1}`)), []string{"b", "c"}, 3},
		{"extra fields", b64(`{"offset": 5, "v": 1}`), []string{"f"}, 0},
		{"past the end", b64(`{"offset": 100}`), []string{}, 0},
		{"at the end", b64(`{"offset": 6}`), []string{}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			page, next, err := Page(items, tc.token, 2)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(page, tc.want) {
				t.Fatalf("page %v, want %v", page, tc.want)
			}
			wantNext := ""
			if tc.next > 0 {
				wantNext = encodePageToken(tc.next)
			}
			if next != wantNext {
				t.Fatalf("next token %q, want %q", next, wantNext)
			}
		})
	}
}

func TestPage_BadTokens(t *testing.T) {
	cases := []struct {
		name, token, want string
	}{
		{"not base64", "!!!", "could not base64-decode"},
		{"not json", b64("offset=3"), "decoded value"},
		{"no offset", b64(`{}`), "decoded value"},
		{"array", b64(`[1]`), "decoded value"},
		{"null", b64(`null`), "decoded value"},
		{"null offset", b64(`{"offset": null}`), "offset 'null'"},
		{"zero", b64(`{"offset": 0}`), "offset '0'"},
		{"negative", b64(`{"offset": -2}`), "offset '-2'"},
		{"fraction", b64(`{"offset": 1.5}`), "offset '1.5'"},
		{"word", b64(`{"offset": "x"}`), `offset '"x"'`},
		{"huge", b64(`{"offset": 99999999999999999999999}`), "offset"},
	}
	items := []int{1, 2, 3}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Page(items, tc.token, 2)
			checkInvalid(t, err, "invalid page token")
			checkInvalid(t, err, tc.want)
		})
	}
}

func TestPage_MaxResults(t *testing.T) {
	items := []int{1, 2, 3}
	for _, n := range []int{0, -1, MaxResults + 1} {
		_, _, err := Page(items, "", n)
		checkInvalid(t, err, "max_results")
	}
	if page, _, err := Page(items, "", MaxResults); err != nil || len(page) != 3 {
		t.Fatalf("max_results %d: %v, %v", MaxResults, page, err)
	}
}
