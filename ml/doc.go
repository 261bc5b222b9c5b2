// Package ml is Kiln's pure computation: model runtimes, dataset files and
// their statistics (ml/dataset, ml/stats), and later the built-in trainers,
// metrics and drift tests. It knows nothing of the cluster: no
// Raft, no transport, no HTTP. The serving actors load a model through a runtime
// in a subpackage and call Predict; training will write models in formats these
// runtimes read.
//
// Every runtime speaks the same small vocabulary, declared here: a Tensor is a
// named, shaped block of float64 values in row-major order, NaN standing for a
// missing value; a Schema lists a model's inputs and outputs; a Model scores a
// batch of input tensors. Tabular models (linear, LightGBM, XGBoost) take one
// input of shape [batch, features]; ONNX models take the inputs their graph
// names. float64 carries every numeric type the runtimes use exactly enough
// (float32 and the int64 range a feature index or class id needs), and one
// element type keeps the request path free of type switches.
//
// Errors a caller caused (wrong shape, a missing value a runtime cannot take)
// wrap ErrBadInput and name the input and the expected shape, so the HTTP layer
// answers 400; a model file that does not load wraps ErrBadModel with the
// loader's reason. A panic inside a third-party runtime is turned into an error
// wrapping ErrRuntime by Guard, so one bad request never kills a replica.
package ml
