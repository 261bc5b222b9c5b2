#!/usr/bin/env python3
"""Drive a tracking server with the real MLflow client (written against 2.11).

Modes:

  python3 client_script.py
      Needs MLFLOW_TRACKING_URI. Runs the full sequence below once, printing
      what each call returns and checking the parts a Kiln implementation
      must get right. Exits non-zero on the first mismatch.

  MLFLOW_RUN_ID=<id> python3 client_script.py --env-run
      What a Kiln training job's script does: `with mlflow.start_run():`
      resumes the run named by MLFLOW_RUN_ID, logs one metric and one param,
      and leaves the block (which marks the run FINISHED).

The experiment names start with "e" so that the filter "name LIKE 'e%'" in the
search step matches them; a second, tag-less experiment exists only so that
max_results=1 forces a second page. Names carry a millisecond suffix because
MLflow never frees an experiment name, even after deletion. Both experiments,
and the run, are deleted at the end.
"""

import argparse
import os
import sys
import tempfile
import time

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient


def step(name, value):
    print(f"== {name}: {value!r}", flush=True)
    return value


def check(cond, what):
    if not cond:
        print(f"!! check failed: {what}", file=sys.stderr, flush=True)
        sys.exit(1)


def full_sequence():
    client = MlflowClient()
    now_ms = int(time.time() * 1000)
    exp_name = f"e-kiln-compat-{now_ms}"

    exp_id = step(
        "create_experiment",
        mlflow.create_experiment(exp_name, tags={"team": "kiln", "purpose": "compat"}),
    )
    check(isinstance(exp_id, str) and exp_id, "experiment_id is a non-empty string")

    exp = step("get_experiment", mlflow.get_experiment(exp_id))
    check(exp.name == exp_name, "get_experiment returns the name")
    check(exp.tags.get("team") == "kiln", "get_experiment returns the tags")
    check(exp.lifecycle_stage == "active", "new experiment is active")

    by_name = step("get_experiment_by_name", mlflow.get_experiment_by_name(exp_name))
    check(by_name is not None and by_name.experiment_id == exp_id, "get-by-name finds it")
    # The client maps 404 RESOURCE_DOES_NOT_EXIST to None.
    missing = step(
        "get_experiment_by_name(missing)",
        mlflow.get_experiment_by_name(f"no-such-experiment-{now_ms}"),
    )
    check(missing is None, "get-by-name of a missing experiment returns None")

    # A second matching experiment, so that max_results=1 forces a second page.
    other_id = step("create_experiment (2nd)", client.create_experiment(exp_name + "-b"))
    page1 = client.search_experiments(filter_string="name LIKE 'e%'", max_results=1)
    step("search_experiments page 1", [(e.experiment_id, e.name) for e in page1])
    step("search_experiments page 1 token", page1.token)
    check(len(page1) == 1 and page1.token, "page 1 holds one experiment and a next-page token")
    page2 = client.search_experiments(
        filter_string="name LIKE 'e%'", max_results=1, page_token=page1.token
    )
    step("search_experiments page 2", [(e.experiment_id, e.name) for e in page2])
    step("search_experiments page 2 token", page2.token)
    check(
        len(page2) == 1 and page2[0].experiment_id != page1[0].experiment_id,
        "page 2 holds a different experiment",
    )

    run = mlflow.start_run(
        experiment_id=exp_id, run_name="compat-run", tags={"stage": "dev", "owner": "kiln"}
    )
    run_id = step("start_run", run.info.run_id)
    check(run.info.run_name == "compat-run", "start_run returns run_name")
    check(run.info.status == "RUNNING", "new run is RUNNING")
    check(run.info.experiment_id == exp_id, "run belongs to the experiment")
    step("start_run artifact_uri", run.info.artifact_uri)

    step("log_param", mlflow.log_param("lr", "0.1"))
    step("log_params", mlflow.log_params({"max_depth": 6, "optimizer": "adam"}))
    step("log_metric", mlflow.log_metric("auc", 0.91, step=1))
    step("log_metrics", mlflow.log_metrics({"loss": 0.35, "accuracy": 0.88}, step=1))
    ts = int(time.time() * 1000)
    step(
        "log_batch",
        client.log_batch(
            run_id,
            metrics=[Metric("auc", 0.93, ts, 2), Metric("loss", 0.30, ts + 1, 2)],
            params=[Param("batch_size", "32")],
            tags=[RunTag("dataset", "iris")],
        ),
    )
    step("set_tag", mlflow.set_tag("phase", "train"))

    history = client.get_metric_history(run_id, "auc")
    step("get_metric_history", [(m.key, m.value, m.timestamp, m.step) for m in history])
    check(sorted((m.step, m.value) for m in history) == [(1, 0.91), (2, 0.93)], "auc history")

    flt = "metrics.auc > 0.5 and params.lr = '0.1'"
    order = ["metrics.auc DESC"]
    runs1 = client.search_runs([exp_id], filter_string=flt, order_by=order, max_results=1)
    step("search_runs page 1", [r.info.run_id for r in runs1])
    step("search_runs page 1 token", runs1.token)
    check([r.info.run_id for r in runs1] == [run_id], "search_runs finds the run")
    if runs1.token:
        runs2 = client.search_runs(
            [exp_id], filter_string=flt, order_by=order, max_results=1, page_token=runs1.token
        )
        step("search_runs page 2", [r.info.run_id for r in runs2])
        step("search_runs page 2 token", runs2.token)
        check(len(runs2) == 0, "page 2 is empty: only one run exists")

    step("end_run", mlflow.end_run())

    got = client.get_run(run_id)
    step("get_run info", got.info)
    step("get_run params", got.data.params)
    step("get_run metrics", got.data.metrics)
    step("get_run tags", {k: v for k, v in got.data.tags.items()})
    check(got.info.status == "FINISHED" and got.info.end_time, "run FINISHED with end_time")
    check(
        got.data.params
        == {"lr": "0.1", "max_depth": "6", "optimizer": "adam", "batch_size": "32"},
        "params",
    )
    check(got.data.metrics.get("auc") == 0.93, "latest auc is the step-2 value")
    check(got.data.tags.get("phase") == "train" and got.data.tags.get("dataset") == "iris", "tags")
    check(got.data.tags.get("mlflow.runName") == "compat-run", "mlflow.runName tag")

    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "notes.txt")
        with open(src, "w") as f:
            f.write("kiln compat artifact\n")
        step("log_artifact", client.log_artifact(run_id, src))
        listing = client.list_artifacts(run_id)
        step("list_artifacts", [(a.path, a.is_dir, a.file_size) for a in listing])
        check([(a.path, a.is_dir) for a in listing] == [("notes.txt", False)], "listing")
        dst = os.path.join(tmp, "dl")
        local = step(
            "download_artifacts",
            mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path="notes.txt", dst_path=dst
            ),
        )
        with open(local) as f:
            check(f.read() == "kiln compat artifact\n", "downloaded content matches")

    step("delete_run", client.delete_run(run_id))
    step("delete_experiment", mlflow.delete_experiment(exp_id))
    mlflow.delete_experiment(other_id)
    print("OK", flush=True)


def env_run():
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if not run_id:
        sys.exit("client_script: --env-run needs MLFLOW_RUN_ID")
    with mlflow.start_run() as run:
        check(run.info.run_id == run_id, "start_run resumed MLFLOW_RUN_ID")
        step("resumed run", run.info.run_id)
        step("log_metric", mlflow.log_metric("job_loss", 0.42, step=3))
        step("log_param", mlflow.log_param("epochs", "3"))
    print("OK", flush=True)


def main():
    ap = argparse.ArgumentParser(description="Drive a tracking server with the MLflow client.")
    ap.add_argument(
        "--env-run",
        action="store_true",
        help="resume the run in MLFLOW_RUN_ID and log into it, as a training job does",
    )
    args = ap.parse_args()
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        sys.exit("client_script: set MLFLOW_TRACKING_URI")
    step("mlflow version", mlflow.__version__)
    env_run() if args.env_run else full_sequence()


if __name__ == "__main__":
    main()
