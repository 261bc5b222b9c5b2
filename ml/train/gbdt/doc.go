// Package gbdt is Kiln's built-in trainer of gradient-boosted decision
// trees: XGBoost's "hist" method in pure Go. Train fits regression
// (reg:squarederror), binary (binary:logistic) and multiclass
// (multi:softprob) models to a train.Input and writes them in XGBoost's JSON
// model format (Format, "xgboost-json"), so that Kiln serves them with
// package ml/xgbjson and XGBoost 1.7 or later loads them and predicts the
// same values. Params lists the parameters; DESIGN.md has the measured
// comparison with XGBoost.
//
// # Algorithm
//
// Boosting is Newton boosting as XGBoost does it. Every row starts at the
// base score; each round computes every row's gradient g and hessian h of
// the loss at its current margin (g = m-y, h = 1 for squared error;
// g = p-y, h = max(p(1-p), 1e-16) for the logistic loss; g = p_c-[y=c],
// h = max(2p_c(1-p_c), 1e-16) for softmax, one tree per class) and grows a
// tree that adds to the margins. A leaf's value is -G/(H+lambda) times the
// learning rate, G and H summed over its rows. A split's gain is
//
//	G_L²/(H_L+lambda) + G_R²/(H_R+lambda) - G²/(H+lambda)
//
// and a node is split at its best split when both children have a hessian
// sum of at least min_child_weight and the gain exceeds both gamma and
// XGBoost's kRtEps (1e-6). gamma (XGBoost's min_split_loss) is applied as
// each split is chosen: a node whose best gain is at most gamma stays a
// leaf.
//
// Histograms. Before boosting every feature is quantized into at most
// max_bin bins (255 when it has missing values and max_bin is 256, so that
// the missing code fits a byte) from the exact quantiles of its training
// values, compared as float32 as XGBoost compares them: the values are
// radix-sorted; a feature with at most max_bin distinct values gets a bin
// per value, any other bins of about equal counts whose edges fall between
// distinct values. A bin edge, and so a split condition, is the float32
// midpoint of the neighbouring distinct values (or the upper one where
// float32 has no midpoint), so float32(x) < condition holds exactly for the
// rows of the bins on the left. Bin codes are kept twice, one byte per
// value: column by column for partitioning rows and row by row for
// building histograms, where a row's gradient pair is read once and added
// to the slots of all its features. A node's histogram holds (G, H) per bin
// and feature, plus a slot for missing values; of two siblings only the
// one with fewer rows is built from its rows, the other is the parent's
// histogram minus it (past a memory budget of 256 MiB of histograms, both
// are built). A node's rows are a range of one index array, partitioned
// stably at every split.
//
// Missing values (NaN) learn a direction: for every cut the gain is
// computed with the node's missing rows on the left and on the right, and
// also for the split that sends every present value right and only the
// missing ones left; default_left records the winner. Where a node has no
// missing rows for the chosen feature, missing values at prediction time
// go to the child with the larger hessian sum.
//
// Growth is depthwise (every splittable node of a level is split before
// the next level, up to max_depth), or, when max_leaves is set, best-first
// (XGBoost's lossguide: the open node of largest gain is split until the
// tree has max_leaves leaves, within max_depth unless it is 0). Ties go to
// the lower feature, the lower cut, missing values right, and the older
// node.
//
// Sampling: each round keeps each training row with probability subsample
// (shared by a multiclass round's trees); each tree draws
// max(1, colsample*features) features. Sampling uses a PCG generator seeded
// with Input.Seed on a fixed stream.
//
// Early stopping: with a validation frame every round's validation loss is
// computed; with early_stopping_rounds set, training stops when it has not
// fallen below its best for that many rounds, and the model keeps the
// trees of the best round. Input.Report receives "train_rmse" or
// "train_logloss" after every round, and with a validation frame
// "valid_rmse" or "valid_logloss" (Point.Step counts rounds from 1). The
// final Output.Metrics are train.Evaluate of the returned model's
// predictions on the validation frame, or the training frame without one.
//
// Threads and determinism: the trainer keeps Input.Threads goroutines busy
// (the caller's and Threads-1 workers, which spin briefly between the
// short parallel steps of a round before they park, as OpenMP's threads
// do). Work is cut into tasks that write disjoint memory, and every sum
// over rows is cut into chunks of fixed size added in a fixed order, so a
// model depends only on the input and Seed: not on Threads, nor on
// scheduling. Train checks ctx between trees and between the levels of a
// tree and returns ctx.Err() when it is done.
//
// # Format
//
// The model is XGBoost 1.7's JSON (version [1, 7, 6]) with only the fields
// 1.7 writes and later versions read: learner.attributes (empty),
// feature_names and feature_types ("float"; written only when the frame's
// names are one per feature, unique and free of the [, ] and < XGBoost
// refuses, else empty), gradient_booster gbtree with gbtree_model_param and
// per tree tree_param, split_indices, split_conditions, default_left (0/1),
// left_children, right_children, parents (2147483647 at the root),
// base_weights, loss_changes, sum_hessian, split_type (zeros), empty
// categories fields and tree_info; learner_model_param with base_score,
// num_class (0 unless multiclass) and num_feature; objective with its
// parameters (reg_loss_param or softmax_multiclass_param).
//
// Three details decide whether XGBoost reads the file as written, each
// found by loading models into XGBoost 1.7.4:
//   - Every float is written with a decimal point or an exponent ("0.0",
//     not "0"): XGBoost's JSON parser takes "0" for an integer and refuses
//     it where a float belongs.
//   - base_score is written as the shortest decimal of a float32
//     ("0.38671875"), as XGBoost writes it. Given more digits XGBoost 1.7
//     silently keeps its default 0.5 instead.
//   - Split conditions and leaf values are float32 values written with the
//     shortest decimal that reads back as the same float32.
//
// Predictions agree with XGBoost's, not just to float32 precision. XGBoost
// adds a row's leaf values in float32, Kiln (xgbjson and the trainer) in
// float64. The trainer therefore rounds every leaf value to a multiple of
// a power of two, the grid, chosen so that all partial sums stay below
// 2^24 grid steps: 2^-21 for classification (margins up to ±8, beyond
// which a probability barely moves) and about one float32 step of the
// largest |target| for regression. Both sums are then exact and equal.
// The base score is on the grid too: the mean target for regression
// (rounded until its shortest float32 decimal is exact), and 0.5, a margin
// of exactly 0, for binary and multiclass. Measured: regression
// predictions equal XGBoost's bit for bit, probabilities differ by under
// 1e-7 (XGBoost's float32 sigmoid and softmax).
//
// # Left out
//
// Categorical splits, sample weights, L1 regularization (alpha),
// max_delta_step, monotone and interaction constraints, objectives other
// than the three above, the dart and gblinear boosters, colsample by level
// or by node, max_bin above 256, external memory and distributed training.
// Early stopping watches the loss, not another metric. The binary base
// score is 0.5 rather than the class prior (see above). Quantiles are exact,
// computed from all training rows in memory, where XGBoost sketches.
package gbdt
