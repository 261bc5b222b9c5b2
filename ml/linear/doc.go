// Package linear is Kiln's own model format, and its runtime, for linear
// regression, binary logistic regression, softmax (multinomial) regression and
// small multilayer perceptrons. A model is one JSON document, specified below
// field by field. Kiln's built-in trainers write it, and any other tool can: a
// scikit-learn model's coef_ and intercept_ map onto it directly. The registry
// calls the format ml.FormatLinear ("linear"); inside the file it names itself
// "kiln-linear".
//
// Load reads and checks a file and returns an ml.Model. Decode reads and checks
// a file and returns its Go form, Model; New builds the runtime from a Model in
// memory, so a trainer can score what it has just fitted without writing it
// out; Model.Encode writes a file. Every check happens at load, so a model
// that loads scores any row of finite numbers (short of float64 overflow), and
// a file that does not load gives an error wrapping ml.ErrBadModel that names
// the field and the index at fault ("layers[1].weights[0] has 8 columns;
// layers[0] has 16 outputs"). A
// loaded model keeps no state between calls, so any number of goroutines may
// share it.
//
// # The file
//
// A kiln-linear file is one JSON object. Its fields are these, and a field not
// listed here is an error (so is anything after the object):
//
//   - format (string, required): "kiln-linear".
//   - version (integer, required): 1. Any change to the format, even a new
//     optional field, gets a new version; this package refuses versions it
//     does not know.
//   - kind (string, required): "linear", "logistic", "softmax" or "mlp"; see
//     Kinds.
//   - n_features (integer, required, at least 1): the number of columns of an
//     input row.
//   - feature_names (array of strings, optional): the columns' names in order;
//     when present, exactly n_features names, each non-empty and unique. They
//     become the schema's FeatureNames, so requests may send columns by name.
//   - classes (array of strings, optional): a classifier's class labels, each
//     non-empty and unique; see Outputs for which kinds take them and how many.
//   - scaler (object, optional): standardization applied to a row before the
//     first layer, with fields "mean" and "scale", each exactly n_features
//     numbers. Column i becomes (x[i] - mean[i]) / scale[i]; no scale may be 0.
//   - layers (array of objects, required, at least one): dense layers, applied
//     in order.
//
// Each layer has these fields:
//
//   - weights (array of arrays of numbers, required): one row per output of
//     the layer, each row holding one weight per input of the layer, so the
//     shape is [outputs][inputs]. The first layer's inputs are the n_features
//     columns; a later layer's inputs are the previous layer's outputs.
//   - bias (array of numbers, required): one number per output.
//   - activation (string): "identity", "relu", "tanh", "sigmoid" or "softmax".
//     Whether it is required depends on the kind.
//
// Every number in weights, bias, mean and scale must be finite. JSON has no
// NaN or infinity, but some writers emit null for NaN: null is an error too,
// never a silent 0.
//
// Given its inputs in[0], in[1], ..., a layer computes for each output j
//
//	z[j] = sum over k of weights[j][k] * in[k], plus bias[j]
//
// and then applies its activation: identity leaves z as it is; relu is
// max(0, z[j]); tanh is tanh(z[j]); sigmoid is 1 / (1 + exp(-z[j])); softmax is
// exp(z[j]) / (sum over i of exp(z[i])), over the outputs of the layer. Sigmoid
// and softmax are computed in forms whose exponentials cannot overflow, so an
// extreme z gives probabilities at or near 0 and 1, never NaN.
//
// # Kinds
//
// The kind fixes how many layers there are and what the last one does:
//
//   - "linear": linear regression. One layer with any number of outputs (more
//     than one is multi-output regression); its activation is identity and may
//     be omitted. No classes.
//   - "logistic": binary logistic regression. One layer with exactly one
//     output; its activation is sigmoid and may be omitted. The output is the
//     probability of the positive class, classes[1].
//   - "softmax": multinomial logistic regression. One layer with at least two
//     outputs, one per class; its activation is softmax and may be omitted.
//     Output j is the probability of classes[j].
//   - "mlp": a multilayer perceptron of one or more layers, each of which must
//     name its activation. Softmax may only be the activation of the last
//     layer, and only if that layer has at least two outputs.
//
// Where a single-layer kind's activation is given, it must be the one the kind
// implies.
//
// # Outputs
//
// The model's schema has one input, "input", FP64, of shape [-1, n_features],
// and one output, "output", FP64: of shape [-1] when the last layer has one
// output (a linear regression of one target, a logistic model, an mlp with one
// output unit), and of shape [-1, k] when it has k > 1 outputs.
//
// Classes are allowed only when the last layer's activation is sigmoid or
// softmax (so never for kind "linear"). There is one label per output, except
// that a single sigmoid output takes two labels, [negative, positive], as
// scikit-learn's classes_ lists them for a binary classifier. The runtime's
// Classes method returns them.
//
// # Requests
//
// Predict takes a [rows, n_features] input, or a single row of shape
// [n_features]. These models cannot take missing values: a NaN (null) in a
// request is an error wrapping ml.ErrBadInput that names the row and the
// feature; so is ±Inf. Outputs are always finite: a row whose arithmetic
// overflows float64 (an input near 1e308, say) is refused the same way,
// naming the row and the layer.
//
// # Limits
//
// A file is at most MaxFileBytes (64 MiB) and a model has at most MaxParams
// (16,777,216) parameters, counting every weight and bias and, when there is a
// scaler, its 2 × n_features numbers.
//
// # From scikit-learn
//
// LinearRegression, LogisticRegression (binary) and multinomial
// LogisticRegression map as weights = coef_ (as a 2-D array) and bias =
// intercept_, with classes = classes_ for the classifiers; StandardScaler gives
// mean = mean_ and scale = scale_. MLPClassifier and MLPRegressor store each
// coefs_[i] as [inputs][outputs], so it is transposed into weights, with
// intercepts_[i] as bias; their "logistic" activation is "sigmoid" here, and a
// binary MLPClassifier has one sigmoid output.
// One-vs-rest logistic regression has no kind here.
//
// # Examples
//
// A linear regression of a house price on three standardized columns. For the
// row [4, 100, 30] the scaler gives [1, 1, 1] and the output is
// 25 + 40 - 5 + 300 = 360; the output's shape is [-1].
//
//	{
//	  "format": "kiln-linear",
//	  "version": 1,
//	  "kind": "linear",
//	  "n_features": 3,
//	  "feature_names": ["rooms", "area_m2", "age_years"],
//	  "scaler": {"mean": [3, 80, 20], "scale": [1, 20, 10]},
//	  "layers": [
//	    {"weights": [[25, 40, -5]], "bias": [300]}
//	  ]
//	}
//
// A logistic regression of churn. For the row [20, 5], z = -0.05·20 + 0.8·5 - 1
// = 2 and the output is sigmoid(2) ≈ 0.8808, the probability of "churns"; for
// [20, 2.5], z = 0 and the output is 0.5.
//
//	{
//	  "format": "kiln-linear",
//	  "version": 1,
//	  "kind": "logistic",
//	  "n_features": 2,
//	  "feature_names": ["tenure_months", "support_calls"],
//	  "classes": ["stays", "churns"],
//	  "layers": [
//	    {"weights": [[-0.05, 0.8]], "bias": [-1], "activation": "sigmoid"}
//	  ]
//	}
//
// A softmax regression over three iris species. For the row [1, 0],
// z = [-1, 0, 1] and the output is [e^-1, 1, e] / (e^-1 + 1 + e)
// ≈ [0.0900, 0.2447, 0.6652]; the output's shape is [-1, 3].
//
//	{
//	  "format": "kiln-linear",
//	  "version": 1,
//	  "kind": "softmax",
//	  "n_features": 2,
//	  "feature_names": ["petal_length", "petal_width"],
//	  "classes": ["setosa", "versicolor", "virginica"],
//	  "layers": [
//	    {"weights": [[-1, 0], [0, 0], [1, 0]], "bias": [0, 0, 0]}
//	  ]
//	}
//
// An MLP that computes XOR. The hidden layer gives h = [relu(a + b),
// relu(a + b - 1)]; the output is sigmoid(10·h[0] - 20·h[1] - 5), which is
// sigmoid(-5) ≈ 0.0067 for [0, 0] and [1, 1] and sigmoid(5) ≈ 0.9933 for
// [0, 1] and [1, 0], the probability of "true".
//
//	{
//	  "format": "kiln-linear",
//	  "version": 1,
//	  "kind": "mlp",
//	  "n_features": 2,
//	  "feature_names": ["a", "b"],
//	  "classes": ["false", "true"],
//	  "layers": [
//	    {"weights": [[1, 1], [1, 1]], "bias": [0, -1], "activation": "relu"},
//	    {"weights": [[10, -20]], "bias": [-5], "activation": "sigmoid"}
//	  ]
//	}
package linear
