// Package xgbobj holds what an XGBoost objective means at prediction time:
// which objectives Kiln scores, how the base_score a model file stores
// becomes a margin (XGBoost's ObjFunction::ProbToMargin, with its
// version-dependent binary:logitraw rule), and how a row's margins become
// its outputs (sigmoid, exp, softmax, or the index of the largest class
// margin). It is shared by package gbdt, which reads XGBoost's legacy binary
// model, and package xgbjson, which reads its JSON model, because the two
// formats must give the same outputs for the same objective: one table and
// one set of formulas keep them from drifting apart. The rules that belong to
// a file format (the binary format's base_score stored as a margin before
// XGBoost 1.0, a JSON file without a version) stay with its loader.
package xgbobj
