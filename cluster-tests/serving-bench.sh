#!/bin/bash
# Serving figures (issue 3) on a 3-node loopback cluster from configs/node*.hcl:
#  - single-row predictions on the linear iris model, through the node that
#    holds the replica and through one that forwards, each against a bare
#    net/http handler running the same file (kiln bench predict -baseline);
#  - the same for the LightGBM multiclass model (28 features);
#  - the LightGBM multiclass model unbatched and with dynamic batching.
# Run from the repository root: bash cluster-tests/serving-bench.sh
# It kills only the agents it starts (by their config paths) and removes
# their data dirs (/tmp/kiln-node1..3) at the end.
set -eu
cd "$(dirname "$0")/.."
mkdir -p bin
go build -o bin/kiln ./cmd/kiln
K=$PWD/bin/kiln
stop() { pkill -9 -f "configs/node[123].hcl" || true; rm -rf /tmp/kiln-node{1,2,3}; }
trap stop EXIT
stop; sleep 1
for i in 1 2 3; do ($K agent -config configs/node$i.hcl > /tmp/kiln-bench-n$i.log 2>&1 &); done
export KILN_ADDR=http://127.0.0.11:7070
for _ in $(seq 60); do $K status >/dev/null 2>&1 && $K models list >/dev/null 2>&1 && break; sleep 0.5; done
$K models create iris >/dev/null; $K models push iris ml/testdata/linear/iris.json >/dev/null
$K models create lgb >/dev/null; $K models push lgb ml/testdata/lightgbm/lgmulticlass.model >/dev/null
$K deploy -wait 60s -version 1 -replicas 1 iris >/dev/null
$K deploy -wait 60s -version 1 -replicas 1 lgb >/dev/null
holder() { $K deployments get -format json "$1" | python3 -c "import json,sys; print(json.load(sys.stdin)['replica_states'][0]['node_name'][-1])"; }
HI=$(holder iris); FI=$(( HI % 3 + 1 ))
echo "iris replica on node$HI; forwarding through node$FI; $(nproc) CPUs; $(uptime)"
for run in 1 2; do
  echo "== iris through the holder, node$HI (run $run)"
  $K bench predict -address 127.0.0.1$HI:7070 -c 64 -d 10s -data '[[5.1,3.5,1.4,0.2]]' -baseline ml/testdata/linear/iris.json -baseline-format linear iris
  echo "== iris through a forwarding node, node$FI (run $run)"
  $K bench predict -address 127.0.0.1$FI:7070 -c 64 -d 10s -data '[[5.1,3.5,1.4,0.2]]' -baseline ml/testdata/linear/iris.json -baseline-format linear iris
done
ROW=$(head -1 ml/testdata/lightgbm/multiclass_test.tsv | cut -f2- | tr '\t' ',')
HL=$(holder lgb); FL=$(( HL % 3 + 1 )); echo "lgb replica on node$HL"
for run in 1 2; do
  echo "== lgb through the holder, node$HL (run $run)"
  $K bench predict -address 127.0.0.1$HL:7070 -c 64 -d 10s -data "[[$ROW]]" -baseline ml/testdata/lightgbm/lgmulticlass.model -baseline-format lightgbm lgb
  echo "== lgb through a forwarding node, node$FL (run $run)"
  $K bench predict -address 127.0.0.1$FL:7070 -c 64 -d 10s -data "[[$ROW]]" -baseline ml/testdata/lightgbm/lgmulticlass.model -baseline-format lightgbm lgb
done
for run in 1 2; do
  for mb in 0 32; do
    $K deploy -wait 60s -version 1 -replicas 1 -max-batch $mb -max-wait-ms 2 lgb > /dev/null
    echo "== lgb max_batch=$mb, all nodes (run $run): $($K bench predict -address 127.0.0.11:7070,127.0.0.12:7070,127.0.0.13:7070 -c 64 -d 10s -data "[[$ROW]]" lgb | tail -1)"
    echo "== lgb max_batch=$mb, via the holder (run $run): $($K bench predict -address 127.0.0.1$HL:7070 -c 64 -d 10s -data "[[$ROW]]" lgb | tail -1)"
  done
done
$K models metrics lgb
