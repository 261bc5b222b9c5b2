package linear

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/kilnml/kiln/cluster-tests/testutil"
)

// docExamples returns the example files of the package doc by kind, so the
// tests check that the documented format loads and predicts as documented.
func docExamples(tb testing.TB) map[Kind]string {
	tb.Helper()
	src, err := os.ReadFile("doc.go")
	if err != nil {
		tb.Fatal(err)
	}
	var blocks []string
	var cur []string
	for line := range strings.SplitSeq(string(src), "\n") {
		if rest, ok := strings.CutPrefix(line, "//\t"); ok {
			cur = append(cur, rest)
			continue
		}
		if len(cur) > 0 {
			blocks = append(blocks, strings.Join(cur, "\n"))
			cur = nil
		}
	}
	out := make(map[Kind]string)
	for _, b := range blocks {
		if !strings.HasPrefix(b, "{") {
			continue
		}
		var h struct {
			Kind Kind `json:"kind"`
		}
		if err := json.Unmarshal([]byte(b), &h); err != nil {
			tb.Fatalf("doc.go example is not JSON: %v\n%s", err, b)
		}
		if _, dup := out[h.Kind]; dup {
			tb.Fatalf("doc.go has two examples of kind %q", h.Kind)
		}
		out[h.Kind] = b
	}
	for _, k := range []Kind{KindLinear, KindLogistic, KindSoftmax, KindMLP} {
		if out[k] == "" {
			tb.Fatalf("doc.go has no example of kind %q", k)
		}
	}
	return out
}

// TestMain fails the run if a test leaves a goroutine behind (STYLE.md rule 6).
func TestMain(m *testing.M) { testutil.Main(m) }
