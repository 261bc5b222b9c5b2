#!/usr/bin/env bash
# Re-record testdata/ against the reference MLflow server (after setup.sh with QSP_SRC).
#
#   PYTHONPATH=$MLFLOW_SRC:$QSP_SRC ./record_reference.sh
#
# Starts `mlflow server` (sqlite backend, --serve-artifacts) in a fresh temporary
# directory on 127.0.0.1:5000, puts record_proxy.py in front of it on :5599, runs
# client_script.py in both modes through the proxy, and stops what it started.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3
work=$(mktemp -d)
out="$here/testdata"
mkdir -p "$out"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -- "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# setsid: `mlflow server` forks gunicorn; killing the negative pid stops both.
setsid $py -m mlflow server --backend-store-uri "sqlite:///$work/mlflow.db" \
  --artifacts-destination "$work/mlartifacts" --serve-artifacts \
  --host 127.0.0.1 --port 5000 --workers 1 >"$work/server.log" 2>&1 &
pids+=("-$!")
for _ in $(seq 60); do
  curl -sf http://127.0.0.1:5000/health >/dev/null && break
  sleep 1
done
curl -sf http://127.0.0.1:5000/health >/dev/null || { cat "$work/server.log"; exit 1; }

record() {  # record OUTFILE CMD...
  local f=$1; shift
  rm -f "$f"
  $py "$here/record_proxy.py" --target http://127.0.0.1:5000 --listen 127.0.0.1:5599 \
    --out "$f" 2>>"$work/proxy.log" &
  local proxy=$!
  sleep 1
  MLFLOW_TRACKING_URI=http://127.0.0.1:5599 "$@"
  kill "$proxy"; wait "$proxy" 2>/dev/null || true
}

record "$out/mlflow-2.11-reference.jsonl" $py "$here/client_script.py"

# The env-run mode needs a run to resume; create it directly (not recorded),
# as Kiln does when it starts a training job.
run_id=$(MLFLOW_TRACKING_URI=http://127.0.0.1:5000 $py -c '
import mlflow
from mlflow.tracking import MlflowClient
c = MlflowClient()
e = c.create_experiment("env-run-job")
print(c.create_run(e, run_name="job-run").info.run_id)')
MLFLOW_RUN_ID=$run_id record "$out/mlflow-2.11-reference-envrun.jsonl" \
  $py "$here/client_script.py" --env-run
echo "recorded into $out"
