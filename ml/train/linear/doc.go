// Package linear holds Kiln's built-in trainers for linear models: Ridge
// (least squares with an L2 penalty), Logistic (binary logistic regression)
// and Softmax (multinomial logistic regression). Each is a train.Trainer and
// writes an ml/linear model ("linear" format) whose scaler carries the
// standardization, so the served model takes the raw feature columns, and
// whose final metrics are scored by the ml/linear runtime loaded from the
// very bytes returned: what a run reports is what will be served.
//
// # Ridge
//
// Ridge minimizes ‖y − Zw − b‖² + l2·‖w‖² over the (standardized) features
// Z; the intercept b is not penalized. It solves the normal equations
// (ZcᵀZc + l2·I) w = Zcᵀyc on column-centered data by Cholesky, and sets
// b = ȳ − z̄·w. With l2 = 0 and collinear columns there is no unique solution
// and Ridge says so (an error wrapping train.ErrData); a column that is
// constant gets weight 0. The penalty weighs coefficients of standardized
// columns, as scikit-learn's make_pipeline(StandardScaler(), Ridge(alpha))
// does, not of raw ones. Parameters (RidgeParams):
//
//   - l2 (number ≥ 0, default 1): the penalty, scikit-learn's alpha.
//   - fit_intercept (bool, default true): fit b; without it the model passes
//     through the origin of the raw features (the scaler then only scales).
//   - standardize (bool, default true): scale each column to unit variance
//     (population standard deviation) and, with an intercept, center it.
//
// # Logistic and Softmax
//
// Both minimize the mean log loss over the training rows plus
// (l2/2)·‖W‖², the intercepts unpenalized, by L-BFGS (10 correction pairs,
// backtracking line search) over the full training set. An epoch is one
// L-BFGS iteration; after each they report "train_logloss" (the mean log
// loss, without the penalty) and, when there are validation rows,
// "valid_logloss", with the epoch number as the step. They stop after
// max_epochs, or when an epoch lowers the objective by less than tol times
// max(1, |objective|), or when no component of the gradient exceeds tol. The
// optimum of a penalized convex loss is the model asked for, so the
// validation loss is reported but does not stop training early. Logistic
// predicts P(class 1) with one sigmoid output; Softmax has one output per
// class. Parameters (LogisticParams, SoftmaxParams):
//
//   - l2 (number ≥ 0, default 1/n for n training rows): the penalty. The
//     default matches scikit-learn's LogisticRegression(C=1), whose objective
//     is C·Σloss + ½‖W‖², divided through by n·C; scikit-learn's C is
//     1/(n·l2). As with Ridge, it weighs standardized coefficients.
//   - max_epochs (integer from 1 to 100000, default 100).
//   - tol (number from 0 to 1, default 1e-6).
//   - standardize (bool, default true): center and scale each column.
//
// # Data
//
// Linear models need complete rows: a NaN (missing) or infinite feature
// value, in Train or Valid, is an error wrapping train.ErrData that names the
// column and the row; drop or impute such rows before training. Targets must
// be finite for Ridge and class indices below len(Classes) for the
// classifiers. A task other than the trainer's (Ridge: Regression; Logistic:
// Binary; Softmax: Multiclass) is an error wrapping train.ErrParam, as is a
// parameter the trainer does not take or a value out of range.
//
// # Threads and determinism
//
// The gradient is summed over blocks of rows whose bounds depend on the row
// count alone, on up to Input.Threads goroutines, and the blocks' sums are
// added in block order; each entry of Ridge's XᵀX is one dot product over
// the rows in order, whichever goroutine computes it. So a fit is bitwise the
// same for any Threads. None of the trainers samples, so Input.Seed is not
// used.
package linear
