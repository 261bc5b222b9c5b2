package dataset

import (
	"bytes"
	"strings"
	"testing"
)

func TestDetect(t *testing.T) {
	var pq bytes.Buffer
	pq.ReadFrom(parquetFile(t, []parquetRow{{ID: 1, Label: "a"}}))
	for _, tc := range []struct {
		name string
		head string
		want Format // "" when it cannot tell
	}{
		{"parquet", pq.String(), Parquet},
		{"jsonl", "{\"a\": 1}\n{\"a\": 2}\n", JSONL},
		{"jsonl after blank lines", "\n  \r\n  {\"a\": 1}", JSONL},
		{"json array", "[{\"a\": 1}]\n", ""},
		{"libsvm", "1 1:0.5 3:2\n0 2:1\n", LibSVM},
		{"libsvm float label, qid", "-0.5 qid:3 10:1e-3\n", LibSVM},
		{"libsvm after a comment", "# made by hand\n+1 4:1\n", LibSVM},
		{"libsvm cut in its last token", "1 1:0.5 2:0.", LibSVM},
		{"libsvm cut after the colon", "1 1:0.5 22:", LibSVM},
		{"libsvm, one pair, no newline", "1 7:2", LibSVM},
		{"label only is a column", "1\n0\n", CSV},
		{"qid only", "1 qid:2\n", CSV},
		{"negative index", "1 -1:2\n", CSV},
		{"word label", "yes 1:2\n", CSV},
		{"tsv", "a\tb\tc\n1\t2\t3\n", TSV},
		{"tsv, empty first name", "\tb\n1\t2\n", TSV},
		{"tsv with a comma in a name", "a,b\tc\td\n", TSV},
		{"csv", "a,b,c\n1,2,3\n", CSV},
		{"csv with a tab in a name", "a\tb,c,d\n", CSV},
		{"csv of numbers", "1,2\n3,4\n", CSV},
		{"single column", "name\nx\n", CSV},
		{"csv with a byte-order mark", "\ufeffa,b\n1,2\n", CSV},
		{"csv, crlf", "a,b\r\n1,2\r\n", CSV},
		{"empty", "", ""},
		{"blank", " \n\t\r\n", ""},
		{"a NUL byte", "a,b\n1,\x002\n", ""},
		{"binary", "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", ""},
		{"control characters", "\x01\x02\x03abc\n", ""},
		{"parquet magic late", "x,PAR1\n", CSV},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Detect([]byte(tc.head))
			if got != tc.want || ok != (tc.want != "") {
				t.Fatalf("Detect(%q) = %q, %v; want %q, %v", tc.head, got, ok, tc.want, tc.want != "")
			}
		})
	}
}

// What Detect guesses, Scan reads.
func TestDetect_ScanReads(t *testing.T) {
	for _, body := range []string{
		"{\"a\": 1}\n",
		"1 1:0.5 3:2\n",
		"a\tb\n1\t2\n",
		"a,b\n1,2\n",
		"\ufeffa,b\n1,2\n",
	} {
		format, ok := Detect([]byte(body))
		if !ok {
			t.Fatalf("Detect(%q): cannot tell", body)
		}
		res, bad, err := scanString(t, format, body, Options{})
		if err != nil || res.Rows != 1 || len(bad) != 0 {
			t.Errorf("%q read as %s: err %v, %+v, bad %v; want one good row", body, format, err, res, bad)
		}
	}
}

// FuzzDetect: any head gets an answer without panicking, a known format
// when it can tell, and "" when it cannot.
func FuzzDetect(f *testing.F) {
	for _, s := range []string{"PAR1", "{\"a\":1}", "1 1:2 3:4", "# c\n1 1:2", "a\tb", "a,b", "", "\x00", "\n\n[", "1 2:"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, head []byte) {
		format, ok := Detect(head)
		switch {
		case !ok && format != "":
			t.Fatalf("Detect(%q) = %q but cannot tell", head, format)
		case ok && !strings.Contains(" csv tsv jsonl libsvm parquet ", " "+string(format)+" "):
			t.Fatalf("Detect(%q) = %q, not a format", head, format)
		}
	})
}
