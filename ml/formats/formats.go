// Package formats loads a model file in any format Kiln serves in-process,
// and guesses a file's format from its first bytes when the user gives none.
// It is the one place that knows every runtime package; the runtimes know
// nothing of each other.
package formats

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/ml/gbdt"
	"github.com/kilnml/kiln/ml/linear"
	"github.com/kilnml/kiln/ml/onnx"
	"github.com/kilnml/kiln/ml/xgbjson"
)

// Names lists the formats Load takes.
var Names = []string{ml.FormatLinear, ml.FormatLightGBM, ml.FormatXGBoost, ml.FormatXGBoostJSON, ml.FormatONNX}

// loaders maps a format to its runtime's loader; ONNX is the Loader's
// backend's.
var loaders = map[string]func(io.Reader) (ml.Model, error){
	ml.FormatLinear:      linear.Load,
	ml.FormatLightGBM:    gbdt.LoadLightGBM,
	ml.FormatXGBoost:     gbdt.LoadXGBoost,
	ml.FormatXGBoostJSON: xgbjson.Load,
}

// Supported reports whether Load takes format.
func Supported(format string) bool {
	_, ok := loaders[format]
	return ok || format == ml.FormatONNX
}

// A Loader loads model files, running ONNX models in one backend.
type Loader struct {
	onnx *onnx.Backend
}

// NewLoader returns a Loader whose ONNX models run in b.
func NewLoader(b *onnx.Backend) *Loader { return &Loader{onnx: b} }

// ONNX is the backend ONNX models run in.
func (l *Loader) ONNX() *onnx.Backend { return l.onnx }

// Load reads the model file at path in the given format, with opts for the
// runtimes that take them. Errors wrap ml.ErrBadModel with the runtime's
// reason when the file does not load.
func (l *Loader) Load(format, path string, opts ml.LoadOptions) (ml.Model, error) {
	load, ok := loaders[format]
	if format == ml.FormatONNX {
		load, ok = func(r io.Reader) (ml.Model, error) { return l.onnx.Load(r, opts) }, true
	}
	if !ok {
		return nil, fmt.Errorf("%w: format %q is not served in-process", ml.ErrBadModel, format)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return load(bufio.NewReaderSize(f, 1<<20))
}

// Default is the Loader of a process that configures nothing: ONNX models
// run in ONNX Runtime when its library is installed where onnx.Open looks,
// and in gonnx otherwise.
var Default = sync.OnceValue(func() *Loader {
	b, err := onnx.Open(onnx.RuntimeAuto, "")
	if err != nil { // auto falls back rather than fail; keep gonnx regardless
		b = onnx.Gonnx()
	}
	return NewLoader(b)
})

// Load reads the model file at path in the given format with the Default
// loader, on the CPU.
func Load(format, path string) (ml.Model, error) {
	return Default().Load(format, path, ml.CPUOnly)
}

// Detect guesses the format of a model file from its first bytes (a few KiB
// are plenty). It returns "" when it cannot tell; the caller then asks the
// user to name the format.
func Detect(head []byte) string {
	trimmed := bytes.TrimLeft(head, " \t\r\n\ufeff")
	switch {
	case len(trimmed) > 0 && trimmed[0] == '{':
		// Both JSON formats: Kiln's linear names itself; XGBoost's has a
		// "learner" object.
		if bytes.Contains(trimmed, []byte(`"kiln-linear"`)) {
			return ml.FormatLinear
		}
		if bytes.Contains(trimmed, []byte(`"learner"`)) {
			return ml.FormatXGBoostJSON
		}
		return ""
	case bytes.HasPrefix(trimmed, []byte("tree\n")), bytes.HasPrefix(trimmed, []byte("tree\r\n")),
		bytes.HasPrefix(trimmed, []byte("version=v")):
		return ml.FormatLightGBM
	case bytes.HasPrefix(head, []byte("binf")):
		return ml.FormatXGBoost
	case looksLikeONNX(head):
		return ml.FormatONNX
	}
	return ""
}

// looksLikeONNX checks for a ModelProto's usual opening: field 1 (ir_version,
// varint, tag 0x08) with a small version, then a length-delimited field (the
// producer name, tag 0x12, or the graph, tag 0x3a, or opset_import, 0x42).
func looksLikeONNX(head []byte) bool {
	if len(head) < 3 || head[0] != 0x08 || head[1] == 0 || head[1] > 20 {
		return false
	}
	switch head[2] {
	case 0x12, 0x1a, 0x22, 0x2a, 0x32, 0x3a, 0x42:
		return true
	}
	return false
}
