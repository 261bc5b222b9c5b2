// Package xgbjson loads and scores the JSON model format that XGBoost 1.0 and
// later write by default (Booster.save_model("m.json")). It is Kiln's runtime
// for ml.FormatXGBoostJSON, written from the format's schema (doc/model.schema
// in dmlc/xgboost) and XGBoost's loader and predictor, because the legacy
// runtime (github.com/dmitryikh/leaves) reads only the old binary format. A
// loaded model is a plain Go value: it is read-only after Load and safe for
// concurrent Predict calls.
//
// Scope. Boosters gbtree and dart (each tree's output is multiplied by its
// weight_drop, as XGBoost does at inference; a gbtree that carries
// weight_drop, as XGBoost 3.4 writes DART models, is scored the same way).
// gblinear and vector-leaf (multi-target) trees are rejected. Objectives:
// reg:squarederror, reg:linear, reg:absoluteerror, reg:pseudohubererror
// (value), reg:logistic and binary:logistic (probability), binary:logitraw
// (margin), count:poisson, reg:gamma and reg:tweedie (exp of the margin),
// multi:softprob (a probability per class) and multi:softmax (the index of the
// most probable class, first on ties). Any other objective is rejected by name.
// The model has one input "input" of shape [-1, num_feature] and one output
// "output" of shape [-1], or [-1, num_class] for multi:softprob (and for
// other multi-output models).
//
// base_score. XGBoost stores the intercept as a string in the objective's
// output space ("5E-1"; since 3.1 a JSON array in a string, "[5E-1]", one
// value or one per class/target) and converts it to margin when it loads the
// model (ObjFunction::ProbToMargin). So does Load: logit for reg:logistic and
// binary:logistic (after clamping to [1e-6, 1-1e-6], as XGBoost does), log for
// count:poisson, reg:gamma and reg:tweedie, unchanged otherwise, multi:* included.
// binary:logitraw is version-dependent: XGBoost 1.0 to 1.3 applied the logit to
// it, 1.4 and later leave it unchanged (dmlc/xgboost#6517); Load follows the
// file's "version".
//
// Splits. Features and thresholds are compared in float32, as XGBoost converts
// its input to float32: a row goes left when float32(x) < split_condition. NaN
// is missing and follows default_left. At a categorical split (split_type 1)
// the categories listed for the node go RIGHT and all others go left: XGBoost's
// common::Decision returns "go left" for a category NOT in the node's set, and
// treelite's JSON frontend reads the list as its right-child categories. The
// file xgb_toy_categorical_model.json (XGBoost 1.4.0) reproduces XGBoost's own
// predictions only with this direction. A category value is truncated toward
// zero (static_cast<int>); a negative value, one of 2^24 or more, or an
// infinity goes left, as in XGBoost 2.0 and later (1.6 and 1.7 sent such
// values to the default child instead).
//
// Sums are accumulated in float64 while XGBoost uses float32, so outputs agree
// with XGBoost's to float32 precision, not bit for bit.
//
// Load reads at most MaxModelSize bytes and rejects anything malformed with an
// error wrapping ml.ErrBadModel that names the tree, field and index at
// fault: missing fields, arrays whose lengths disagree, child indices out of
// range, cycles or shared subtrees, unknown split types, category lists that
// do not match the categorical nodes. Only the nodes reachable from a tree's
// root are checked and used, so deleted nodes may hold anything.
package xgbjson
