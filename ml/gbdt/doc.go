// Package gbdt is Kiln's runtime for gradient-boosted tree ensembles in two
// file formats: LightGBM's text model (ml.FormatLightGBM, LoadLightGBM) and
// XGBoost's legacy binary model (ml.FormatXGBoost, LoadXGBoost; the JSON model
// of XGBoost 1.0 and later is package xgbjson). Trees are walked by
// github.com/dmitryikh/leaves; this package checks the file before leaves
// sees it, fixes what leaves gets wrong, and speaks ml's vocabulary. A model
// has one input "input" (FP64, shape [-1, features]) and one output "output"
// of shape [-1], or [-1, classes] for a multiclass model; a LightGBM model
// also reports its feature_names. A loaded model is read-only and safe for
// concurrent Predict calls; each call scores its batch on the calling
// goroutine (leaves with nThreads 1), since the serving layer provides the
// concurrency.
//
// LightGBM's text format is read in versions v2 to v4 (LightGBM 2.x to 4.x).
// leaves refuses v4, but v4 differs from v3 only by an optional "parser:"
// section after the parameters (microsoft/LightGBM #4782), so a v4 header is
// relabelled v3 before leaves reads it.
//
// Outputs are what LightGBM's and XGBoost's own predict functions return.
// LightGBM models are loaded with leaves' transformation: sigmoid for binary,
// softmax for multiclass, exp for poisson, gamma and tweedie, the raw score
// for the objectives named regression and regression_*; for a reg_sqrt model
// ("regression sqrt"), which leaves scores as a plain regression, Predict
// squares the score back keeping its sign, as LightGBM does. leaves rejects
// any other objective. For XGBoost, leaves
// implements only binary:logistic and refuses to load every other objective
// when asked for the transformation (multi:softprob and multi:softmax
// included: leaves never applies softmax to an XGBoost model), so LoadXGBoost
// takes leaves' raw margins and applies XGBoost's output function itself
// with the code package xgbjson uses (ml/internal/xgbobj): sigmoid for
// binary:logistic and reg:logistic; exp for count:poisson, reg:gamma and
// reg:tweedie; the margin for
// reg:squarederror, reg:linear, reg:absoluteerror, reg:pseudohubererror and
// binary:logitraw; softmax over the classes for multi:softprob; and for
// multi:softmax the index of the most probable class (first on ties), shape
// [-1], as XGBoost's predict returns it. Other objectives are rejected.
//
// base_score. Files written before XGBoost 1.0 store it as a margin, which
// leaves adds as it is. From 1.0 on the file holds it in output space and
// XGBoost converts it when it loads (logit, log, or unchanged; clamped as
// XGBoost does; binary:logitraw was converted only by 1.0 to 1.3), so
// LoadXGBoost adds the difference. Binary files of XGBoost 2 and later lay
// out leaf vectors differently and are rejected: save such models as JSON.
//
// Missing values. NaN in the input is a missing value, routed as the training
// library routes it, which leaves reproduces: at a LightGBM split whose
// missing type is NaN it takes the default side, at one whose missing type is
// None it is read as 0 (and at missing type Zero it takes the default side, as
// 0 does); at an XGBoost split it takes the default side. A sparse (libsvm)
// row's absent features are missing: send them as NaN.
//
// Split rule. XGBoost compares features in float32 and sends a row left when
// float32(x) < threshold; leaves tests x <= threshold in float64 for both
// formats, which is LightGBM's rule but not XGBoost's (a row whose value
// equals the threshold, or rounds to it, goes the wrong way). For XGBoost
// models Predict therefore rounds each value to float32 and moves it up by
// one float32 step before calling leaves: for float32 values x < t exactly
// when nextUp(x) <= t.
//
// Checks. leaves trusts its input: a huge length field makes it allocate
// without bound (an out-of-memory crash that recover cannot catch), and a
// child link that points back up a tree sends its prediction loop round for
// ever. So both loaders first walk the file as leaves will read it and reject,
// with an error wrapping ml.ErrBadModel, lengths the file cannot hold, child
// indices out of range, nodes reached twice from a root, split features beyond
// the model's feature count, and models leaves would score wrongly (LightGBM
// linear trees, an objective whose output count disagrees with the trees per
// iteration). Whatever slips past and panics inside leaves is recovered: at
// load as ml.ErrBadModel, at Predict as ml.ErrRuntime. Loaders read at most
// MaxModelSize bytes (512 MiB) and keep the whole file in memory while they
// load it.
package gbdt
