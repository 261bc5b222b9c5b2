// Package onnx runs ONNX models in one of two backends behind one Backend
// type: ONNX Runtime (ORT, through github.com/yalue/onnxruntime_go and ORT's
// C API, loaded at run time from libonnxruntime.so.1) or
// github.com/advancedclimatesystems/gonnx (v1.1.0, pure Go). Either way a
// loaded model is an ml.Model whose Predict feeds the graph's named inputs
// and returns its outputs as float64 tensors in schema order.
//
// Choosing. Open picks the backend once per process (ORT has one
// environment per process): "ort" needs the library to load and fails
// naming every path tried; "auto" (the node's default) uses ORT when it
// loads and gonnx otherwise, and says why; "gonnx" never touches ORT. With
// no path configured ORT is looked for where scripts/install-onnxruntime
// puts it (/usr/local/lib), then on the dynamic linker's path. ORT code is
// built under cgo on linux only (ort.go); elsewhere, and with
// CGO_ENABLED=0, ort_stub.go makes every ORT load fail, so such a binary
// runs ONNX models on gonnx.
//
// What both share (graph.go). The schema comes from the model's protobuf,
// read by Kiln whichever backend runs it: the inputs (initializers
// excluded) and outputs, with element type and shape, a dimension with a
// symbolic name or no value being free (-1). Every request is checked
// against it before a backend sees it (graph.match): input names, rank,
// fixed dimensions, dimensions two inputs share by name, and integer and
// boolean values whole and in range. So malformed input never reaches ORT's
// C++ code, and both backends refuse it with the same words. Two things
// differ: under ORT a float NaN passes to a model with a tree ensemble or
// an Imputer (ai.onnx.ml ops that read NaN as a missing value; elsewhere a
// NaN only makes the answer NaN, and is refused as missing), and an empty
// dimension is a valid empty tensor; gonnx refuses both (it has neither
// op, and gorgonia has no empty tensors). Rank-0 inputs and
// outputs go to ORT as scalars (the binding's tensors need a dimension).
//
// ORT (ort.go). One session per loaded model (per replica), shared by all
// its goroutines: ORT's Run is safe to call concurrently. Intra-op threads
// default to 1 (replicas and their workers already give the parallelism;
// ml.LoadOptions.Threads, from a deployment's resources.threads, raises
// it) and inter-op threads are 1. Opsets below 7, for which ORT has no
// kernels, are refused before ORT is asked, naming
// onnx.version_converter as the fix; anything else ORT cannot load is
// refused with ORT's own message. A replica that reserved a GPU asks for
// ORT's CUDA provider on that device, and runs on CPU when the provider
// does not load (the npm build Kiln installs has none); the model's
// Runtime() says which. Input tensors are pooled per input and shape (an
// ORT tensor over a Go slice of its element type: refilling the slice
// reuses the tensor), up to 32 shapes of 8 tensors a model; rank-0 inputs
// are made per call. Outputs are allocated by ORT, since their shapes are
// only known after the run, and freed after conversion. A ZipMap output (a
// sequence of maps class -> probability, as skl2onnx and onnxmltools
// write classifiers) is served as an FP32 tensor [rows, classes], its
// columns in the ZipMap's class-label order; an int64 label output is a
// tensor as any other. String label outputs and BYTES inputs are not
// served: ml tensors carry numbers.
//
// gonnx, in detail:
//
// Opsets. gonnx implements opset 13 of the default ONNX domain and nothing
// else, plus the ai.onnx.ml ops Scaler and LinearRegressor. A model of
// opset 13 loads as it is. A model of opset 14 to 17 has its default-domain
// opset import rewritten to 13 when every node, subgraphs included, means
// the same at 13: an op with no new version in 14..17 is unchanged; an op
// with one is accepted only where the table changedAfter13 (in opset.go)
// says the change does not matter for that node: Add/Sub/Mul/Div-14,
// Relu-14, PRelu-16, GreaterOrEqual/LessOrEqual-16 and the like only widened
// their types; Reshape-14 is accepted without allowzero (or allowzero=0),
// GRU/LSTM/RNN-14 without layout=1, Shape-15 without start/end; new ops
// (LayerNormalization-17, HardSwish-14, Trilu-14, ...) have no opset-13
// version and are refused, naming the op and the opset. The table is taken
// from onnx/onnx docs/Changelog.md, sections "Version 14" to "Version 17 of
// the default ONNX operator set", each entry compared with the op's
// previous version there. Opsets below 13 or above 17 are refused, naming
// the opset, as is any op gonnx does not implement, naming the op. All
// refusals wrap ml.ErrBadModel.
//
// Concurrency. gonnx.Model.Run is not used: it hands the model's weight
// tensors to the ops, and some ops change their inputs in place (Conv
// reshapes its bias, GRU its initial state), so a gonnx Model is not even
// safe to run twice in a row (a Conv with a bias fails on the second run)
// and two concurrent runs race. A mutex or a pool of loaded models would
// not help. Instead Predict runs the graph the way Run does, through gonnx's
// own opset-13 operators, on state of its own: fresh input tensors, a clone
// of every weight tensor and of every node. The loaded model is never
// written after Load, so Predict is safe for concurrent use without a lock;
// the price is one copy of the weights per call, a memory copy that is
// small next to gonnx's kernels.
//
// Size. Load reads at most MaxModelBytes (256 MiB); gonnx has no support
// for external weight files, so that caps the weights. Loading holds them
// up to three times (file bytes, protobuf, decoded tensors); afterwards the
// model keeps the tensors, and each Predict call in flight one copy more.
//
// Inputs. A model with one input also takes an unnamed tensor. Under gonnx
// a value that is NaN is refused (its kernels have no notion of a missing
// value), as is a shape that contradicts a fixed dimension or a dimension name two
// inputs share; values are converted to the input's element type (float32,
// float64, int64, int32, narrower integers, bool), integers being required
// to be whole and in range. Those errors wrap ml.ErrBadInput; a failure or
// panic inside gonnx wraps ml.ErrRuntime and names the op.
package onnx
