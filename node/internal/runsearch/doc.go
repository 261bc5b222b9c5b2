// Package runsearch implements MLflow's search syntax over Kiln's tracking
// records: the filter_string and order_by of search_runs and
// search_experiments, and their page tokens, as MLflow 2.11 defines them
// (mlflow/utils/search_utils.py: SearchUtils, SearchExperimentsUtils). It
// is pure code over structs.Run and structs.Experiment, used by node's
// MLflow-compatible endpoints and /v1/runs, so that a query an MLflow client
// sends finds the same runs, in the same order, as on an MLflow server.
//
// # Run filters
//
// A filter is empty (every run), or comparisons joined by AND (in any case;
// there is no OR, NOT or parentheses, as in MLflow):
//
//	filter     = [ comparison { "AND" comparison } ]
//	comparison = identifier comparator value
//	identifier = [ entity "." ] key
//	entity     = "metric" | "metrics"
//	           | "parameter" | "parameters" | "param" | "params"
//	           | "tag" | "tags"
//	           | "attribute" | "attributes" | "attr" | "run"
//	key        = word { "." word } | `back quoted` | "double quoted"
//	value      = number | 'single quoted' | "double quoted" | list
//	list       = "(" string { "," string } ")"
//
// A word is letters, digits and '_'; a key that holds anything else (a
// blank, '-', '/') is quoted: metrics.`val-loss`, tags."mlflow.runName". A
// dotted key may go bare (tags.mlflow.runName) or quoted whole. The entity
// may be backquoted too. Without an entity the key is an attribute
// (status = 'FINISHED'). Entity names and keys are case-sensitive;
// comparators and AND are not.
//
// Comparators by what they compare:
//
//	metrics.<key>               = != < <= > >=       a number
//	params.<key>, tags.<key>    = != LIKE ILIKE      a quoted string
//	                            < <= > >=            a number, bare or quoted (Kiln's)
//	run_id                      = != LIKE ILIKE      a quoted string
//	                            IN, NOT IN           a list of quoted strings
//	run_name, status, user_id,
//	artifact_uri                = != LIKE ILIKE      a quoted string
//	start_time, end_time        = != < <= > >=       a number of milliseconds
//
// The aliases created and Created stand for start_time, and "run name",
// "Run name" and "Run Name" (quoted) for run_name, as in MLflow. Dataset
// filters (datasets.name ...) are refused: Kiln runs record no dataset
// inputs.
//
// Kiln's numeric comparison of params and tags (params.max_depth > 4)
// compares the value as a number; a run whose value is not a decimal
// number does not match, so that "10" > 4 holds where MLflow would refuse
// the comparator.
//
// A comparison on a metric, param or tag that a run lacks is false, whatever
// its comparator, as in MLflow; so is one on end_time for a run that has not
// ended, and one on artifact_uri unless the caller supplies the runs' URIs
// (RunFilter.WithArtifactURI: structs.Run does not hold one). A run lacking
// the tag mlflow.runName answers with its name, as MLflow keeps the two
// equal.
//
// # Strings and LIKE
//
// In a single- or double-quoted string a doubled quote stands for the quote
// and a backslash escapes the quote or a backslash, so that the filter
//
//	tags.note = 'it''s' AND tags.note2 = 'it\'s'
//
// compares both tags with it's. Before any other character a backslash
// stays, for LIKE.
//
// LIKE and ILIKE match the whole value: % is any run of characters, _ is
// one character, and \% \_ \\ are the characters themselves; every other
// character, '.', '*' or '(' included, stands for itself. LIKE is case-sensitive, ILIKE
// not. (MLflow's file store runs the pattern as a Python regular expression
// without escaping it, where "a.c" matches "abc"; its database stores do as
// here.)
//
// # Order
//
// An order_by clause is identifier [ASC | DESC], either in any case, ASC
// when left out: metrics.auc DESC, params.lr, start_time. A '+' counts as a
// blank (order_by=metrics.auc+desc). Runs order by each clause in turn, then
// start_time descending, then run_id ascending, MLflow's natural order.
// Under each clause, whatever the direction, runs with a value come first,
// runs whose metric is NaN next, runs without the key last. Metrics and
// times compare as numbers; params, tags and other attributes as strings.
//
// # Experiments
//
// Experiment filters take name (= != LIKE ILIKE), creation_time and
// last_update_time (= != < <= > >=, in milliseconds), with no prefix or
// "attribute.", and tags.<key> or tag.<key> as run tags. Their order_by
// takes name, experiment_id, creation_time and last_update_time. With no
// order, experiments sort by creation_time descending, then experiment_id
// ascending; with one that does not name experiment_id, it ends with
// experiment_id descending: both as MLflow. Experiment IDs compare as
// numbers.
//
// # Pages
//
// Page cuts one page from sorted results. Its tokens are MLflow's: base64 of
// {"offset": n}.
//
// Every error wraps ErrInvalid (a structs.CodedError with CodeInvalid) and
// quotes the offending token, as MLflow's "Invalid clause(s) in filter
// string: 'OR'" does.
package runsearch
