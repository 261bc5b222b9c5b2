// Package onnx is Kiln's ONNX runtime: Load reads a model file, checks it
// against what github.com/advancedclimatesystems/gonnx (v1.1.0, pure Go)
// can run, and returns an ml.Model whose Predict feeds the graph's named
// inputs and returns its outputs as float64 tensors in schema order, each
// with the shape gonnx gave it. The schema comes from the graph: its inputs
// (initializers excluded) and outputs, with element type and shape, a
// dimension with a symbolic name or no value being free (-1).
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
// Inputs. A model with one input also takes an unnamed tensor. A value that
// is NaN is refused (ONNX graphs here have no notion of a missing value), as
// is a shape that contradicts a fixed dimension or a dimension name two
// inputs share; values are converted to the input's element type (float32,
// float64, int64, int32, narrower integers, bool), integers being required
// to be whole and in range. Those errors wrap ml.ErrBadInput; a failure or
// panic inside gonnx wraps ml.ErrRuntime and names the op.
package onnx
