#!/usr/bin/python3
"""A small random-forest classifier as ONNX, with scikit-learn's own outputs.

Run from the repository root with Debian's Python (python3-sklearn,
python3-onnx; no skl2onnx, no onnxruntime):

    /usr/bin/python3 ml/testdata/onnx/forest/gen.py

It trains RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0)
on scikit-learn's bundled iris data (all 150 rows, as float32), converts it by
hand with onnx.helper into an ai.onnx.ml TreeEnsembleClassifier, and writes:

- forest_zipmap.onnx: outputs "label" (int64 [N]) and "output_probability"
  (sequence(map(int64, float)), through a ZipMap node), the layout skl2onnx
  gives classifiers by default;
- forest_tensor.onnx: the same forest with "label" and the probability tensor
  "probabilities" (float [N, 3]) as graph outputs, no ZipMap;
- expected.json: 20 input rows with sklearn's predict_proba and predict.

Before writing anything it walks the trees again in pure Python over the ONNX
attributes it built (float32 inputs and thresholds, `x <= threshold` goes to
the true branch, float32 sums of the leaf weights, as ONNX Runtime does) and
asserts that this reproduces predict_proba to 1e-6 and predict exactly for all
150 rows. Everything is deterministic: same versions, same bytes.
"""
import json
import os
import sys

import numpy as np
import onnx
import sklearn
from onnx import TensorProto, checker, helper
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

HERE = os.path.dirname(os.path.abspath(__file__))
N_ESTIMATORS = 5
CLASSES = [0, 1, 2]
ROWS = list(range(0, 10)) + list(range(50, 55)) + list(range(100, 105))
ML = "ai.onnx.ml"


def train():
    iris = load_iris()
    X = iris.data.astype(np.float32)
    y = iris.target.astype(np.int64)
    clf = RandomForestClassifier(n_estimators=N_ESTIMATORS, max_depth=3, random_state=0)
    clf.fit(X, y)
    assert list(clf.classes_) == CLASSES, clf.classes_
    return clf, X


def forest_attributes(clf):
    """TreeEnsembleClassifier attributes from each tree's tree_ arrays."""
    a = {k: [] for k in (
        "nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_values",
        "nodes_modes", "nodes_truenodeids", "nodes_falsenodeids",
        "nodes_hitrates", "nodes_missing_value_tracks_true",
        "class_treeids", "class_nodeids", "class_ids", "class_weights")}
    n = len(clf.estimators_)
    for t, est in enumerate(clf.estimators_):
        tree = est.tree_
        for i in range(tree.node_count):
            left, right = int(tree.children_left[i]), int(tree.children_right[i])
            leaf = left == -1
            a["nodes_treeids"].append(t)
            a["nodes_nodeids"].append(i)
            a["nodes_hitrates"].append(1.0)
            a["nodes_missing_value_tracks_true"].append(0)
            if leaf:
                assert right == -1
                a["nodes_modes"].append("LEAF")
                a["nodes_featureids"].append(0)
                a["nodes_values"].append(0.0)
                a["nodes_truenodeids"].append(0)
                a["nodes_falsenodeids"].append(0)
                dist = tree.value[i][0].astype(np.float64)
                dist = dist / dist.sum()
                for c in range(len(CLASSES)):
                    a["class_treeids"].append(t)
                    a["class_nodeids"].append(i)
                    a["class_ids"].append(c)
                    a["class_weights"].append(float(np.float32(dist[c] / n)))
            else:
                a["nodes_modes"].append("BRANCH_LEQ")
                a["nodes_featureids"].append(int(tree.feature[i]))
                a["nodes_values"].append(float(np.float32(tree.threshold[i])))
                a["nodes_truenodeids"].append(left)
                a["nodes_falsenodeids"].append(right)
    return a


def evaluate(a, X):
    """Walk the ONNX trees for each row of X (float32): scores [N, 3], labels."""
    nodes = {}
    for k in range(len(a["nodes_nodeids"])):
        nodes[(a["nodes_treeids"][k], a["nodes_nodeids"][k])] = (
            a["nodes_modes"][k], a["nodes_featureids"][k], np.float32(a["nodes_values"][k]),
            a["nodes_truenodeids"][k], a["nodes_falsenodeids"][k])
    weights = {}
    for k in range(len(a["class_ids"])):
        key = (a["class_treeids"][k], a["class_nodeids"][k])
        weights.setdefault(key, []).append((a["class_ids"][k], np.float32(a["class_weights"][k])))
    trees = sorted(set(a["nodes_treeids"]))
    scores = np.zeros((len(X), len(CLASSES)), dtype=np.float32)
    for r, x in enumerate(X):
        for t in trees:
            node = 0
            while True:
                mode, f, v, tr, fa = nodes[(t, node)]
                if mode == "LEAF":
                    break
                assert mode == "BRANCH_LEQ"
                node = tr if np.float32(x[f]) <= v else fa
            for c, w in weights[(t, node)]:
                scores[r, c] = np.float32(scores[r, c] + w)
    labels = np.array([CLASSES[int(np.argmax(s))] for s in scores], dtype=np.int64)
    return scores, labels


def tree_node(a):
    return helper.make_node(
        "TreeEnsembleClassifier", ["input"], ["label", "probabilities"],
        name="forest", domain=ML,
        classlabels_int64s=CLASSES, post_transform="NONE", **a)


def build(a, zipmap):
    nodes = [tree_node(a)]
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 4])]
    outputs = [helper.make_tensor_value_info("label", TensorProto.INT64, [None])]
    if zipmap:
        nodes.append(helper.make_node(
            "ZipMap", ["probabilities"], ["output_probability"],
            name="zipmap", domain=ML, classlabels_int64s=CLASSES))
        # onnx 1.12 has no make_map_type_proto; build the map type by hand.
        # The map's values are scalar float tensors, as ZipMap's type inference
        # gives them from onnx 1.15 on.
        map_type = onnx.TypeProto()
        map_type.map_type.key_type = TensorProto.INT64
        map_type.map_type.value_type.CopyFrom(helper.make_tensor_type_proto(TensorProto.FLOAT, []))
        outputs.append(helper.make_value_info("output_probability", helper.make_sequence_type_proto(map_type)))
        name = "forest_zipmap"
    else:
        outputs.append(helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, len(CLASSES)]))
        name = "forest_tensor"
    graph = helper.make_graph(nodes, name, inputs, outputs)
    model = helper.make_model(
        graph, producer_name="kiln ml/testdata/onnx/forest/gen.py", producer_version="1",
        opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(ML, 1)])
    model.ir_version = 8
    if zipmap:
        # onnx 1.11 to 1.14 cannot run shape inference over any map type
        # ("type case unsupported for symbolic shape inference. inferred=5",
        # onnx/onnx#5231, fixed by #5188 in 1.15), so full_check would fail on
        # ZipMap whatever the model: check without shape inference here; the
        # same graph without ZipMap gets the full check below.
        checker.check_model(model)
        out = model.graph.output[1].type.sequence_type.elem_type.map_type
        assert out.key_type == TensorProto.INT64
        assert out.value_type.tensor_type.elem_type == TensorProto.FLOAT
    else:
        checker.check_model(model, full_check=True)
    return model


def main():
    clf, X = train()
    a = forest_attributes(clf)

    proba = clf.predict_proba(X)
    pred = clf.predict(X)
    scores, labels = evaluate(a, X)
    err = float(np.max(np.abs(scores.astype(np.float64) - proba)))
    if err > 1e-6 or not np.array_equal(labels, pred):
        sys.exit("evaluator does not reproduce sklearn: max |diff| %g, label mismatches %d"
                 % (err, int(np.sum(labels != pred))))
    # No ties at the top in the rows kept, so the label is unambiguous.
    for r in ROWS:
        top = np.sort(proba[r])[::-1]
        assert top[0] - top[1] > 1e-3, (r, proba[r])

    for zipmap, fname in ((True, "forest_zipmap.onnx"), (False, "forest_tensor.onnx")):
        model = build(a, zipmap)
        with open(os.path.join(HERE, fname), "wb") as f:
            f.write(model.SerializeToString())

    rows = X[ROWS]
    note = ("RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0) trained on "
            "scikit-learn's bundled iris (150 rows, float32), converted by hand to "
            "forest_zipmap.onnx / forest_tensor.onnx by gen.py. inputs are iris rows %s "
            "(float32 values); probabilities and labels are sklearn %s predict_proba and "
            "predict on them. ONNX sums float32 leaf weights, so compare probabilities to "
            "about 1e-6. onnx %s." % (
                ",".join(str(r) for r in ROWS), sklearn.__version__, onnx.__version__))

    def row(vals, conv):
        return "[" + ", ".join(repr(conv(v)) for v in vals) + "]"

    lines = ["{", '  "_note": %s,' % json.dumps(note), '  "inputs": [']
    lines.append(",\n".join("    " + row(x, float) for x in rows))
    lines.append("  ],")
    lines.append('  "probabilities": [')
    lines.append(",\n".join("    " + row(p, float) for p in proba[ROWS]))
    lines.append("  ],")
    lines.append('  "labels": ' + row(pred[ROWS], int))
    lines.append("}")
    text = "\n".join(lines) + "\n"
    parsed = json.loads(text)
    assert parsed["inputs"] == [[float(v) for v in x] for x in rows]
    assert parsed["probabilities"] == [[float(v) for v in p] for p in proba[ROWS]]
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        f.write(text)

    print("sklearn %s, onnx %s, numpy %s: evaluator max |diff| %.3g over 150 rows; wrote %s"
          % (sklearn.__version__, onnx.__version__, np.__version__, err,
             ", ".join(("forest_zipmap.onnx", "forest_tensor.onnx", "expected.json"))))


if __name__ == "__main__":
    main()
