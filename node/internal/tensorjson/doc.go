// Package tensorjson turns the JSON bodies of prediction requests into
// tensors and predictions back into JSON: Kiln's v1 form (instances, inputs,
// predictions), with a fast path for the common single-input tabular row, and
// the input and output tensors of the Open Inference Protocol v2.
//
// It is pure code, shared by the HTTP endpoints of node. Requests are checked
// against the version's schema here, so that every mistake is reported with
// the path of the value at fault (instances[3][1], inputs.age[7],
// inputs[0].data) rather than as a shape error deep in a runtime. Every
// error is a *structs.CodedError.
package tensorjson
