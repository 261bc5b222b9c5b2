// Command onnxgen writes random MLP models as ONNX files, for the ONNX
// benchmarks (cluster-tests/onnx-bench.sh): distinct weights per file, so
// that each version a node serves is its own session.
//
//	go run ./cluster-tests/onnxgen -n 10 -sizes 28,512,512,3 -out DIR
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kilnml/kiln/ml/onnx"
)

func main() {
	n := flag.Int("n", 1, "how many models")
	sizes := flag.String("sizes", "28,512,512,3", "layer widths, input first")
	out := flag.String("out", ".", "folder for mlp-<i>.onnx")
	flag.Parse()
	var widths []int
	for _, s := range strings.Split(*sizes, ",") {
		w, err := strconv.Atoi(s)
		if err != nil || w < 1 {
			fmt.Fprintf(os.Stderr, "onnxgen: -sizes: %q is not a width\n", s)
			os.Exit(2)
		}
		widths = append(widths, w)
	}
	for i := range *n {
		b, err := onnx.RandomMLP(uint64(i+1), widths...).Marshal()
		if err == nil {
			err = os.WriteFile(filepath.Join(*out, fmt.Sprintf("mlp-%d.onnx", i+1)), b, 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "onnxgen:", err)
			os.Exit(1)
		}
	}
}
