package onnx

import (
	"errors"
	"fmt"
	"io"
	"os"

	pb "github.com/advancedclimatesystems/gonnx/onnx"

	"github.com/kilnml/kiln/ml"
)

// The runtimes a node can run ONNX models with (onnx { runtime } in the
// node config).
const (
	RuntimeAuto  = "auto"  // ORT when its library loads, gonnx otherwise
	RuntimeORT   = "ort"   // ONNX Runtime, through its C API
	RuntimeGonnx = "gonnx" // pure Go, always there
)

// Runtimes lists the values of onnx { runtime }.
var Runtimes = []string{RuntimeAuto, RuntimeORT, RuntimeGonnx}

// DefaultLibraryPaths are where RuntimeAuto looks for ONNX Runtime's shared
// library when no path is configured, in order: where
// scripts/install-onnxruntime puts it, then the dynamic linker's own search
// (LD_LIBRARY_PATH, ld.so.cache).
var DefaultLibraryPaths = []string{"/usr/local/lib/libonnxruntime.so.1", "libonnxruntime.so.1"}

// minORTOpset is the lowest default-domain opset ONNX Runtime has kernels for.
const minORTOpset = 7

// Backend loads ONNX models into one runtime. It is chosen once, at start-up
// (Open): ORT's environment is one per process.
type Backend struct {
	name    string
	version string // ORT's version; "" for gonnx
	library string // the ORT library loaded
	reason  string
}

// Name is RuntimeORT or RuntimeGonnx.
func (b *Backend) Name() string { return b.name }

// Version is ONNX Runtime's version, "" under gonnx.
func (b *Backend) Version() string { return b.version }

// Library is the path of the ORT library loaded, "" under gonnx.
func (b *Backend) Library() string { return b.library }

// Reason says why this backend was chosen, for the start-up log line.
func (b *Backend) Reason() string { return b.reason }

// Platform is the model platform the Open Inference Protocol reports:
// "onnxruntime_onnx" under ORT, as Triton says, and "gonnx_onnx" under gonnx.
func (b *Backend) Platform() string {
	if b.name == RuntimeORT {
		return "onnxruntime_onnx"
	}
	return "gonnx_onnx"
}

// Gonnx is the pure-Go backend.
func Gonnx() *Backend {
	return &Backend{name: RuntimeGonnx, reason: "onnx runtime = \"gonnx\""}
}

// Open chooses the backend for runtime (one of Runtimes; "" is auto).
// libraryPath is ORT's shared library; "" tries DefaultLibraryPaths.
//   - ort: the library must load, or Open fails naming every path tried;
//   - auto: ORT if the library loads, else gonnx, with the reason;
//   - gonnx: gonnx.
func Open(runtime, libraryPath string) (*Backend, error) {
	paths := DefaultLibraryPaths
	if libraryPath != "" {
		paths = []string{libraryPath}
	}
	switch runtime {
	case RuntimeGonnx:
		return Gonnx(), nil
	case RuntimeORT, RuntimeAuto, "":
	default:
		return nil, fmt.Errorf("onnx: runtime %q: use one of auto, ort, gonnx", runtime)
	}
	var errs []error
	for _, p := range paths {
		if isPath(p) {
			if _, err := os.Stat(p); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", p, err))
				continue
			}
		}
		version, err := initORT(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
			continue
		}
		return &Backend{name: RuntimeORT, version: version, library: p,
			reason: fmt.Sprintf("ONNX Runtime %s loaded from %s", version, p)}, nil
	}
	err := errors.Join(errs...)
	if runtime == RuntimeORT {
		return nil, fmt.Errorf("onnx: runtime \"ort\": ONNX Runtime's library did not load (install it with scripts/install-onnxruntime, or set onnx { library_path }): %w", err)
	}
	b := Gonnx()
	b.reason = fmt.Sprintf("ONNX Runtime's library did not load, so gonnx runs ONNX models (install ORT with scripts/install-onnxruntime): %v", err)
	return b, nil
}

func isPath(p string) bool {
	for _, c := range p {
		if c == '/' {
			return true
		}
	}
	return false
}

// Load reads an ONNX model of at most MaxModelBytes from r and readies it in
// this backend. Errors wrap ml.ErrBadModel with the runtime's own reason.
func (b *Backend) Load(r io.Reader, opts ml.LoadOptions) (ml.Model, error) {
	if b.name != RuntimeORT {
		return load(r, MaxModelBytes)
	}
	data, err := readModelFile(r, MaxModelBytes)
	if err != nil {
		return nil, err
	}
	return loadORT(data, b.version, opts)
}

// ortGraph parses the model's protobuf for what Kiln checks before ORT
// sees it: a graph with nodes, an opset ORT has kernels for, and the
// schema.
func ortGraph(data []byte) (gr *graph, err error) {
	mp, err := parseModel(data)
	if err != nil {
		return nil, err
	}
	g := mp.GetGraph()
	for _, imp := range mp.GetOpsetImport() {
		if d := imp.GetDomain(); (d == domainDefault || d == domainAlias) && imp.GetVersion() < minORTOpset {
			return nil, fmt.Errorf("%w: onnx: model uses opset %d of the default ONNX domain; ONNX Runtime has no kernels below opset %d. Convert it with onnx.version_converter.convert_version(model, 13) and push the result",
				ml.ErrBadModel, imp.GetVersion(), minORTOpset)
		}
	}
	inits := make(map[string]bool, len(g.GetInitializer()))
	for _, t := range g.GetInitializer() {
		inits[t.GetName()] = true
	}
	gr, err = readGraph(g, func(name string) bool { return inits[name] }, true)
	if err != nil {
		return nil, err
	}
	gr.nanOK = readsMissing(g)
	return gr, nil
}

// missingOps are the ai.onnx.ml ops that read a float NaN as a missing
// value (a tree's missing branch, an imputed value), as LightGBM and
// XGBoost models converted to ONNX rely on.
var missingOps = map[string]bool{"TreeEnsembleClassifier": true, "TreeEnsembleRegressor": true, "TreeEnsemble": true, "Imputer": true}

// readsMissing reports whether the graph has one of missingOps: only then
// does a request's NaN reach the model; elsewhere it would only turn the
// answer into NaN, and is refused as a missing value.
func readsMissing(g *pb.GraphProto) bool {
	for _, n := range g.GetNode() {
		if n.GetDomain() == domainML && missingOps[n.GetOpType()] {
			return true
		}
	}
	return false
}
