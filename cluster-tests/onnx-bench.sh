#!/bin/bash
# ONNX figures (issue 15), on one dev agent (127.0.0.1:7070):
#  - single-row predict of ml/testdata/onnx/mlp.onnx under onnx { runtime =
#    "ort" } and "gonnx": p50/p99 at 1 client, req/s at 64 clients;
#  - under ORT, against a bare net/http handler calling ORT on the same file
#    in the bench process (kiln bench predict -baseline);
#  - peak RSS (VmHWM) of the agent serving 10 ONNX versions (distinct
#    28-512-512-3 MLPs from cluster-tests/onnxgen, one deployment each).
# Needs ONNX Runtime installed (scripts/install-onnxruntime). Run from the
# repository root: bash cluster-tests/onnx-bench.sh
set -eu
cd "$(dirname "$0")/.."
mkdir -p bin
go build -o bin/kiln ./cmd/kiln
K=$PWD/bin/kiln
export KILN_ADDR=http://127.0.0.1:7070
tmp=$(mktemp -d)
pid=""
stop() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; pid=""; }
trap 'stop; rm -rf "$tmp"' EXIT
start() {
  printf 'onnx {\n  runtime = "%s"\n}\n' "$1" > "$tmp/onnx.hcl"
  $K agent -dev -config "$tmp/onnx.hcl" > "$tmp/agent-$1.log" 2>&1 &
  pid=$!
  for _ in $(seq 60); do $K models list >/dev/null 2>&1 && break; sleep 0.5; done
  grep -o 'onnx runtime:.*' "$tmp/agent-$1.log" | head -1
}
echo "$(nproc) CPUs; $(uptime)"
for rt in ort gonnx; do
  start $rt
  $K models push mlp ml/testdata/onnx/mlp.onnx > /dev/null
  $K deploy -wait 60s -version 1 -replicas 1 mlp > /dev/null
  echo "== $rt, 1 client";   $K bench predict -c 1 -d 10s -data '[[0,1,2]]' mlp | tail -1
  echo "== $rt, 64 clients"; $K bench predict -c 64 -d 10s -data '[[0,1,2]]' mlp | tail -1
  if [ $rt = ort ]; then
    echo "== ort through kiln against a bare handler calling ORT, 64 clients"
    $K bench predict -c 64 -d 10s -data '[[0,1,2]]' -baseline ml/testdata/onnx/mlp.onnx -baseline-format onnx mlp
  fi
  stop
done
go run ./cluster-tests/onnxgen -n 10 -sizes 28,512,512,3 -out "$tmp"
for rt in ort gonnx; do
  start $rt
  row="[[$(seq -s, 1 28)]]"
  for i in $(seq 10); do
    $K models push m$i "$tmp/mlp-$i.onnx" > /dev/null
    $K deploy -wait 60s -version 1 -replicas 1 m$i > /dev/null
    $K bench predict -c 4 -d 1s -data "$row" m$i > /dev/null
  done
  echo "== $rt, 10 versions deployed and scored: $(grep -E 'VmHWM|VmRSS' /proc/$pid/status | tr -s ' \t\n' ' ')"
  stop
done
