"""Helper for package gbdt's tests: runs XGBoost (1.7 or later) on files the
Go tests write. Arrays are raw little-endian float64, row-major.

    xgb.py predict MODEL.json X.f64 COLS OUT.f64
        Loads a model (Kiln's) and writes its predictions for X: one value
        per row, or num_class per row for multi:softprob.

    xgb.py train DIR
        Reads DIR/meta.json ({"cols", "params", "rounds", "evals"}) and
        DIR/{train_x,train_y,valid_x,valid_y}.f64, trains XGBoost with the
        params (timing only xgb.train), and writes DIR/xgb_valid_pred.f64 and
        DIR/xgb_result.json ({"train_seconds", "version"}).
"""
import json
import sys
import time

import numpy as np
import xgboost as xgb


def read(path, cols):
    a = np.fromfile(path, dtype="<f8")
    return a.reshape(-1, cols) if cols else a


def predict(model, x_path, cols, out):
    b = xgb.Booster()
    b.load_model(model)
    x = read(x_path, int(cols))
    d = xgb.DMatrix(x, missing=np.nan, feature_names=b.feature_names)
    p = b.predict(d)
    np.asarray(p, dtype="<f8").tofile(out)


def train(dir):
    meta = json.load(open(dir + "/meta.json"))
    cols = meta["cols"]
    dtrain = xgb.DMatrix(read(dir + "/train_x.f64", cols), label=read(dir + "/train_y.f64", 0), missing=np.nan)
    dvalid = xgb.DMatrix(read(dir + "/valid_x.f64", cols), label=read(dir + "/valid_y.f64", 0), missing=np.nan)
    evals = [(dtrain, "train"), (dvalid, "valid")] if meta.get("evals") else []
    start = time.perf_counter()
    b = xgb.train(meta["params"], dtrain, meta["rounds"], evals=evals, verbose_eval=False)
    seconds = time.perf_counter() - start
    np.asarray(b.predict(dvalid), dtype="<f8").tofile(dir + "/xgb_valid_pred.f64")
    json.dump({"train_seconds": seconds, "version": xgb.__version__}, open(dir + "/xgb_result.json", "w"))


if __name__ == "__main__":
    if sys.argv[1] == "predict":
        predict(*sys.argv[2:6])
    elif sys.argv[1] == "train":
        train(sys.argv[2])
    else:
        sys.exit("usage: xgb.py predict MODEL X COLS OUT | xgb.py train DIR")
